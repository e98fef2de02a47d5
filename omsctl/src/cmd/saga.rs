//! `omsctl saga list | show | retry | cancel`.

use oms_contracts::api::{CancelSaga, SagaAction, SagaView};
use oms_contracts::routes::{self, Route};

use oms_ops::client::Request;
use oms_ops::ctx::Ctx;
use oms_ops::render::{opt, table};
use oms_ops::Failure;

use super::confirm::Confirm;

#[derive(Debug, clap::Subcommand)]
pub enum SagaCommand {
    /// List sagas, newest first.
    List {
        /// Only this state (RESERVING, AUTHORIZING, RELEASING, CONFIRMED, CANCELLED).
        #[arg(long, add = clap_complete::ArgValueCandidates::new(crate::complete::saga_states))]
        state: Option<String>,
        /// Only running sagas past their step deadline.
        #[arg(long)]
        stuck: bool,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One saga with its step history.
    Show {
        /// Order id.
        order_id: String,
    },
    /// Send the current step's command again, with a fresh deadline (recorded as a step).
    Retry {
        /// Order id.
        order_id: String,
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Cancel the order now: void or refund the payment, release the stock (recorded as a step;
    /// asking again changes nothing).
    Cancel {
        /// Order id.
        order_id: String,
        /// Why (recorded in the history and the order's cancel detail).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        confirm: Confirm,
    },
}

fn order_id_of(order_id: &str) -> Result<(), Failure> {
    uuid::Uuid::parse_str(order_id)
        .map(|_| ())
        .map_err(|_| Failure::usage(format!("invalid order id {order_id:?} (expected a UUID)")))
}

/// Retries or cancels a saga (`route`) once confirmed, and prints what it did.
async fn act<B: serde::Serialize + 'static>(
    ctx: &Ctx,
    order_id: &str,
    route: Route<B, SagaAction>,
    body: &B,
    confirm: Confirm,
) -> Result<(), Failure> {
    order_id_of(order_id)?;
    let action = if route.spec == routes::RETRY_SAGA.spec {
        "retry"
    } else {
        "cancel"
    };
    if !confirm.yes {
        let saga: SagaView = ctx
            .read_opt(routes::GET_SAGA, &[order_id])
            .await?
            .ok_or_else(|| Failure::verdict(format!("no saga for order {order_id}")))?;
        let what = match action {
            "retry" => format!("retry the {} step of saga {order_id}", saga.state),
            _ => format!("cancel saga {order_id} ({}) with compensation", saga.state),
        };
        if !confirm.go_ahead(&what)? {
            return ctx.print(&saga, || {
                format!(
                    "{order_id} {}: would {action} (dry run: nothing changed)",
                    saga.state
                )
            });
        }
    }
    let done = match ctx.call(route, Request::to(&[order_id]).body(body)).await? {
        Ok(done) => done,
        Err(r) if r.status == reqwest::StatusCode::NOT_FOUND => {
            return Err(Failure::verdict(format!("no saga for order {order_id}")))
        }
        Err(r) if r.status == reqwest::StatusCode::CONFLICT => {
            return Err(Failure::verdict(format!(
                "saga {action} refused: {}",
                r.detail()
            )))
        }
        Err(r) => return Err(r.failure()),
    };
    ctx.print(&serde_json::to_value(&done)?, || {
        let sent = if done.sent.is_empty() {
            "nothing sent".to_owned()
        } else {
            format!("sent {}", done.sent.join(", "))
        };
        let verb = if done.applied { "done" } else { "no change" };
        format!(
            "{order_id} {}: {verb}: {} ({sent})",
            done.saga.state, done.note
        )
    })
}

pub async fn run(ctx: &Ctx, command: SagaCommand) -> Result<(), Failure> {
    match command {
        SagaCommand::List {
            state,
            stuck,
            limit,
        } => {
            let mut query = vec![("limit", limit.to_string()), ("stuck", stuck.to_string())];
            if let Some(s) = state {
                query.push(("state", s.to_ascii_uppercase()));
            }
            let page = ctx.page(routes::LIST_SAGAS, &query).await?;
            ctx.print(&serde_json::to_value(&page.items)?, || {
                let mut t = table(&[
                    "ORDER", "STATE", "CUSTOMER", "TOTAL", "DEADLINE", "STUCK", "UPDATED",
                ]);
                for s in &page.items {
                    t.add_row([
                        s.order_id.to_string(),
                        s.state.to_string(),
                        s.customer_id.to_string(),
                        opt(s.total),
                        opt(s.deadline_at.map(time)),
                        if s.stuck { "yes" } else { "" }.to_string(),
                        time(s.updated_at),
                    ]);
                }
                t.to_string()
            })
        }
        SagaCommand::Retry { order_id, confirm } => {
            act(ctx, &order_id, routes::RETRY_SAGA, &(), confirm).await
        }
        SagaCommand::Cancel {
            order_id,
            reason,
            confirm,
        } => {
            if reason.trim().is_empty() || reason.chars().count() > 200 {
                return Err(Failure::usage(
                    "--reason must be 1 to 200 characters, not all blank",
                ));
            }
            act(
                ctx,
                &order_id,
                routes::CANCEL_SAGA,
                &CancelSaga { reason },
                confirm,
            )
            .await
        }
        SagaCommand::Show { order_id } => {
            order_id_of(&order_id)?;
            let saga: SagaView = ctx
                .read_opt(routes::GET_SAGA, &[&order_id])
                .await?
                .ok_or_else(|| Failure::verdict(format!("no saga for order {order_id}")))?;
            ctx.print(&serde_json::to_value(&saga)?, || {
                let mut t = table(&["TIME", "FROM", "TO", "INPUT", "SENT", "NOTE"]);
                for s in saga.steps.iter().flatten() {
                    let mut input = s.input.clone();
                    if !s.applied {
                        input.push_str(" (ignored)");
                    }
                    t.add_row([
                        time(s.at),
                        opt(s.from.as_ref()),
                        s.to.clone(),
                        input,
                        s.sent.join(", "),
                        s.note.clone(),
                    ]);
                }
                format!(
                    "saga {} {} (total {}, deadline {})\n{t}",
                    saga.order_id,
                    saga.state,
                    opt(saga.total),
                    opt(saga.deadline_at.map(time))
                )
            })
        }
    }
}

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
