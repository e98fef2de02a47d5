//! `omsctl saga list | show`.

use crate::ctx::{cell, money, table, Ctx, Svc};
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
            let page = ctx.get(Svc::Saga, &query).await?;
            let items = page["items"].clone();
            ctx.print(&items, || {
                let mut t = table(&[
                    "ORDER", "STATE", "CUSTOMER", "TOTAL", "DEADLINE", "STUCK", "UPDATED",
                ]);
                for s in items.as_array().into_iter().flatten() {
                    t.add_row([
                        cell(&s["orderId"]),
                        cell(&s["state"]),
                        cell(&s["customerId"]),
                        money(&s["total"]),
                        cell(&s["deadlineAt"]),
                        if s["stuck"] == true { "yes" } else { "" }.to_string(),
                        cell(&s["updatedAt"]),
                    ]);
                }
                t.to_string()
            })
        }
        SagaCommand::Show { order_id } => {
            uuid::Uuid::parse_str(&order_id).map_err(|_| {
                Failure::usage(format!("invalid order id {order_id:?} (expected a UUID)"))
            })?;
            let saga = ctx
                .get_opt(Svc::Saga, &format!("/sagas/{order_id}"))
                .await?
                .ok_or_else(|| Failure::verdict(format!("no saga for order {order_id}")))?;
            ctx.print(&saga, || {
                let mut t = table(&["TIME", "FROM", "TO", "INPUT", "SENT", "NOTE"]);
                for s in saga["steps"].as_array().into_iter().flatten() {
                    let sent: Vec<&str> = s["sent"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|v| v.as_str())
                        .collect();
                    let mut input = cell(&s["input"]);
                    if s["applied"] == false {
                        input.push_str(" (ignored)");
                    }
                    t.add_row([
                        cell(&s["at"]),
                        cell(&s["from"]),
                        cell(&s["to"]),
                        input,
                        sent.join(", "),
                        cell(&s["note"]),
                    ]);
                }
                format!(
                    "saga {} {} (total {}, deadline {})\n{t}",
                    cell(&saga["orderId"]),
                    cell(&saga["state"]),
                    money(&saga["total"]),
                    cell(&saga["deadlineAt"])
                )
            })
        }
    }
}
