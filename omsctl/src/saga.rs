//! `omsctl saga list | show`.

use oms_contracts::api::{Page, SagaView};

use crate::ctx::{opt, table, Ctx, Svc};
use crate::Failure;

#[derive(Debug, clap::Subcommand)]
pub enum SagaCommand {
    /// List sagas, newest first.
    List {
        /// Only this state (RESERVING, AUTHORIZING, RELEASING, CONFIRMED, CANCELLED).
        #[arg(long)]
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
}

pub async fn run(ctx: &Ctx, command: SagaCommand) -> Result<(), Failure> {
    match command {
        SagaCommand::List {
            state,
            stuck,
            limit,
        } => {
            let mut query = format!("/sagas?limit={limit}&stuck={stuck}");
            if let Some(s) = state {
                query.push_str(&format!("&state={}", s.to_ascii_uppercase()));
            }
            let page: Page<SagaView> = ctx.get(Svc::Saga, &query).await?;
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
        SagaCommand::Show { order_id } => {
            uuid::Uuid::parse_str(&order_id).map_err(|_| {
                Failure::usage(format!("invalid order id {order_id:?} (expected a UUID)"))
            })?;
            let saga: SagaView = ctx
                .get_opt(Svc::Saga, &format!("/sagas/{order_id}"))
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
