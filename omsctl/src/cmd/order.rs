//! `omsctl order create | get | list | trace`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;

use oms_contracts::api::{OrderStatus, OrderView};

use oms_contracts::routes;

use oms_ops::client::Request;
use oms_ops::ctx::Ctx;
use oms_ops::render::{opt, table};
use oms_ops::{place, Failure, Output};

use oms_ops::trace::{self, check_id};

use super::confirm::Confirm;

#[derive(Debug, clap::Subcommand)]
pub enum OrderCommand {
    /// Place an order (or many with --count) and optionally follow it to its outcome.
    Create(CreateArgs),
    /// Show one order.
    Get {
        /// Order id.
        id: String,
    },
    /// List orders, newest first.
    List {
        /// Only this status (PENDING, CONFIRMED, SHIPPED, DELIVERED, CANCELLED).
        #[arg(long, add = clap_complete::ArgValueCandidates::new(crate::complete::order_statuses))]
        status: Option<String>,
        /// Only this customer.
        #[arg(long)]
        customer: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// The order's whole journey on one timeline, ending in a verdict.
    Trace {
        /// Order id.
        id: String,
    },
    /// Cancel an order before its shipment is picked (as its customer or an admin): refunded,
    /// stock released. Refused (exit 1) once picked.
    Cancel {
        /// Order id.
        id: String,
        /// Follow it until it is cancelled (exit 0) or ships anyway (exit 1: the pick won).
        #[arg(long)]
        wait: bool,
        /// How long --wait waits.
        #[arg(long, default_value = "60s", value_parser = oms_ops::args::duration)]
        timeout: Duration,
        #[command(flatten)]
        confirm: Confirm,
    },
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// A line as PRODUCT[:QUANTITY] (repeatable), e.g. mouse-01:2.
    #[arg(long = "item", value_parser = oms_ops::place::parse_item)]
    items: Vec<(String, u32)>,
    /// Customer id.
    #[arg(long)]
    customer: Option<String>,
    /// Payment token (tok_visa, tok_chargeDeclined, tok_insufficientFunds, ...).
    #[arg(long)]
    payment_token: Option<String>,
    /// Idempotency key: retrying with it never creates a second order.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Follow the order to CONFIRMED (exit 0) or CANCELLED (exit 1).
    #[arg(long)]
    wait: bool,
    /// How long --wait (or --count) waits for an outcome.
    #[arg(long, default_value = "30s", value_parser = oms_ops::args::duration)]
    timeout: Duration,
    /// Create this many orders (random catalog lines unless --item is given) and summarize.
    #[arg(long)]
    count: Option<u32>,
    /// With --count: orders per second, e.g. 20/s.
    #[arg(long, value_parser = oms_ops::args::rate)]
    rate: Option<f64>,
    /// With --count: requests in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

pub async fn run(ctx: &Ctx, command: OrderCommand) -> Result<(), Failure> {
    match command {
        OrderCommand::Create(args) if args.count.is_some() => create_many(ctx, args).await,
        OrderCommand::Create(args) => create_one(ctx, args).await,
        OrderCommand::Get { id } => get(ctx, &id).await,
        OrderCommand::List {
            status,
            customer,
            limit,
        } => list(ctx, status, customer, limit).await,
        OrderCommand::Trace { id } => print_trace(ctx, &id).await,
        OrderCommand::Cancel {
            id,
            wait,
            timeout,
            confirm,
        } => cancel(ctx, &id, wait, timeout, confirm).await,
    }
}

/// Polls the order until it is no longer PENDING.
async fn follow(ctx: &Ctx, id: &str, timeout: Duration) -> Result<Option<OrderView>, Failure> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(20);
    loop {
        let order: OrderView = ctx.read(routes::GET_ORDER, &[id]).await?;
        if order.status != OrderStatus::Pending {
            return Ok(Some(order));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

fn outcome_line(order: &OrderView) -> String {
    match order.status {
        OrderStatus::Confirmed => format!("CONFIRMED (total {})", opt(order.total)),
        OrderStatus::Shipped => format!(
            "SHIPPED (total {}, tracking {})",
            opt(order.total),
            opt(order.tracking_number.as_ref())
        ),
        OrderStatus::Delivered => format!("DELIVERED (total {})", opt(order.total)),
        OrderStatus::Cancelled => format!(
            "CANCELLED: {} ({})",
            opt(order.cancel_reason.as_ref()),
            opt(order.cancel_detail.as_ref())
        ),
        OrderStatus::Pending => "PENDING".into(),
    }
}

async fn create_one(ctx: &Ctx, args: CreateArgs) -> Result<(), Failure> {
    if args.items.is_empty() {
        return Err(Failure::usage(
            "at least one --item PRODUCT[:QUANTITY] is needed (or --count N for random orders)",
        ));
    }
    place::check_items(ctx, &args.items).await?;
    let b = place::body(
        &args.items,
        args.customer.as_deref(),
        args.payment_token.as_deref(),
    );
    let answer = place::place_one(ctx, &b, args.idempotency_key.as_deref()).await?;
    let id = answer.order_id.to_string();
    if !args.wait {
        return ctx.print(&serde_json::to_value(&answer)?, || {
            format!("{id} {}", answer.status)
        });
    }
    if ctx.output == Output::Table {
        eprintln!("{id} PENDING; waiting for the saga ...");
    }
    match follow(ctx, &id, args.timeout).await? {
        None => Err(Failure::verdict(format!(
            "order {id} still PENDING after {} (see `omsctl order trace {id}`)",
            humantime::format_duration(args.timeout)
        ))),
        Some(order) => {
            ctx.print(&serde_json::to_value(&order)?, || {
                format!("{id} {}", outcome_line(&order))
            })?;
            if order.status.is_placed() {
                Ok(())
            } else {
                Err(Failure {
                    code: 1,
                    error: anyhow::anyhow!("order {id} {}", outcome_line(&order)),
                })
            }
        }
    }
}

async fn create_many(ctx: &Ctx, args: CreateArgs) -> Result<(), Failure> {
    let count = args.count.unwrap_or(0);
    if count == 0 {
        return Err(Failure::usage("--count must be at least 1"));
    }
    if args.concurrency == 0 {
        return Err(Failure::usage("--concurrency must be at least 1"));
    }
    let products = if args.items.is_empty() {
        place::catalog(ctx)
            .await
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                Failure::usage("inventory unreachable: cannot pick random items (give --item)")
            })?
    } else {
        place::check_items(ctx, &args.items).await?;
        Vec::new()
    };
    let bar = if ctx.interactive() {
        let bar = indicatif::ProgressBar::new(u64::from(count));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} finished {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let started = Instant::now();
    let load = place::Load {
        count: count as usize,
        rate: args.rate,
        concurrency: args.concurrency,
        lines: if args.items.is_empty() {
            place::Lines::FromCatalog(products)
        } else {
            place::Lines::All(args.items.clone())
        },
        tokens: args.payment_token.iter().cloned().collect(),
        customer: match &args.customer {
            Some(c) => place::Customer::Fixed(c.clone()),
            None => place::Customer::Default,
        },
    };
    let timeout = args.timeout;
    let outcomes: Vec<Result<OrderView, String>> = place::place(ctx, &load, |accepted| {
        let bar = bar.clone();
        async move {
            let id = accepted.order_id.to_string();
            let result = follow(ctx, &id, timeout)
                .await
                .map_err(|f| f.error.to_string())?
                .ok_or_else(|| format!("order {id} still PENDING after {timeout:?}"));
            bar.inc(1);
            result
        }
    })
    .collect()
    .await;
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    let mut confirmed = 0u32;
    let mut cancelled: BTreeMap<String, u32> = BTreeMap::new();
    let mut errors: BTreeMap<String, u32> = BTreeMap::new();
    let mut latencies: Vec<f64> = Vec::new();
    for outcome in &outcomes {
        match outcome {
            Ok(order) => {
                if order.status.is_placed() {
                    confirmed += 1;
                } else {
                    *cancelled
                        .entry(opt(order.cancel_reason.as_ref()))
                        .or_default() += 1;
                }
                if let Some(done) = order.completed_at {
                    latencies.push((done - order.created_at).as_seconds_f64() * 1000.0);
                }
            }
            Err(e) => *errors.entry(e.clone()).or_default() += 1,
        }
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
            .copied()
    };
    let created = count - errors.values().sum::<u32>();
    let summary = place::LoadSummary {
        requested: count,
        created,
        confirmed,
        cancelled: cancelled.clone(),
        errors: errors.clone(),
        seconds: elapsed.as_secs_f64(),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
    };
    ctx.print(&summary, || {
        let mut t = table(&["FIELD", "VALUE"]);
        t.add_row(["requested".to_string(), count.to_string()]);
        t.add_row(["created".to_string(), created.to_string()]);
        t.add_row(["confirmed".to_string(), confirmed.to_string()]);
        for (reason, n) in &cancelled {
            t.add_row([format!("cancelled {reason}"), n.to_string()]);
        }
        for (e, n) in &errors {
            t.add_row([format!("error: {e}"), n.to_string()]);
        }
        t.add_row([
            "elapsed".to_string(),
            format!("{:.1}s", elapsed.as_secs_f64()),
        ]);
        if let (Some(a), Some(b)) = (pct(0.5), pct(0.99)) {
            t.add_row([
                "p50 / p99 to outcome".to_string(),
                format!("{a:.0} ms / {b:.0} ms"),
            ]);
        }
        t.to_string()
    })?;
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Failure::verdict(format!(
            "{} of {count} orders failed",
            errors.values().sum::<u32>()
        )))
    }
}

/// `POST /orders/{id}/cancel` once confirmed, then (with `wait`) the order until it is
/// cancelled or ships.
async fn cancel(
    ctx: &Ctx,
    id: &str,
    wait: bool,
    timeout: Duration,
    confirm: Confirm,
) -> Result<(), Failure> {
    check_id(id)?;
    if !confirm.yes {
        let order: OrderView = ctx
            .read_opt(routes::GET_ORDER, &[id])
            .await?
            .ok_or_else(|| Failure::verdict(format!("no order {id}")))?;
        if !confirm.go_ahead(&format!("cancel order {id} ({})", order.status))? {
            let plan = match (order.status, order.picked_at) {
                (OrderStatus::Cancelled, _) => "already cancelled".to_owned(),
                (_, Some(_)) => "would be refused: its shipment was picked".to_owned(),
                _ => "would be cancelled: refunded, stock released".to_owned(),
            };
            return ctx.print(&order, || {
                format!("{id} {}: {plan} (dry run: nothing changed)", order.status)
            });
        }
    }
    let mut order = match ctx.call(routes::CANCEL_ORDER, Request::to(&[id])).await? {
        Ok(order) => order,
        Err(refusal) => {
            let mut failure = refusal.failure();
            // Too late is an answer about the order, not a mistake in the command.
            if refusal.status == reqwest::StatusCode::CONFLICT {
                failure.code = 1;
            }
            return Err(failure);
        }
    };
    if wait && order.status != OrderStatus::Cancelled {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(50);
        loop {
            order = ctx.read(routes::GET_ORDER, &[id]).await?;
            if order.status == OrderStatus::Cancelled || order.picked_at.is_some() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Failure::verdict(format!(
                    "order {id} still {} after {} (see `omsctl order trace {id}`)",
                    order.status,
                    humantime::format_duration(timeout)
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }
    let line = match (order.status, order.picked_at) {
        (OrderStatus::Cancelled, _) => format!("{id} {}", outcome_line(&order)),
        (_, Some(at)) => format!(
            "{id} {}: the shipment was picked at {} before the cancellation; it ships",
            order.status,
            at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ),
        _ => format!(
            "{id} {}: cancellation requested; the saga refunds and releases it (--wait follows it)",
            order.status
        ),
    };
    ctx.print(&serde_json::to_value(&order)?, || line.clone())?;
    if wait && order.status != OrderStatus::Cancelled {
        return Err(Failure {
            code: 1,
            error: anyhow::anyhow!("{line}"),
        });
    }
    Ok(())
}

async fn get(ctx: &Ctx, id: &str) -> Result<(), Failure> {
    check_id(id)?;
    let order: OrderView = ctx
        .read_opt(routes::GET_ORDER, &[id])
        .await?
        .ok_or_else(|| Failure::verdict(format!("no order {id}")))?;
    ctx.print(&serde_json::to_value(&order)?, || {
        let mut t = table(&["FIELD", "VALUE"]);
        for (label, value) in [
            ("order", order.order_id.to_string()),
            ("status", order.status.to_string()),
            ("customer", order.customer_id.to_string()),
            ("cancel reason", opt(order.cancel_reason.as_ref())),
            ("cancel detail", opt(order.cancel_detail.as_ref())),
            ("payment", opt(order.payment_id)),
            ("created", order.created_at.to_rfc3339()),
            ("completed", opt(order.completed_at.map(|t| t.to_rfc3339()))),
            ("total", opt(order.total)),
            (
                "ship to",
                opt(order
                    .shipping_address
                    .as_ref()
                    .map(|a| format!("{}, {} {}, {}", a.line1, a.postal_code, a.city, a.country))),
            ),
            ("picked", opt(order.picked_at.map(|t| t.to_rfc3339()))),
            ("shipped", opt(order.shipped_at.map(|t| t.to_rfc3339()))),
            ("delivered", opt(order.delivered_at.map(|t| t.to_rfc3339()))),
            ("tracking", opt(order.tracking_number.as_ref())),
            (
                "cancel requested",
                opt(order.cancel_requested_at.map(|t| t.to_rfc3339())),
            ),
        ] {
            t.add_row([label.to_string(), value]);
        }
        match &order.lines {
            Some(lines) => {
                for l in lines {
                    t.add_row([
                        "line".to_string(),
                        format!("{} x{} @ {}", l.product_id, l.quantity, l.unit_price),
                    ]);
                }
            }
            None => {
                for l in &order.items {
                    t.add_row([
                        "line".to_string(),
                        format!("{} x{}", l.product_id, l.quantity),
                    ]);
                }
            }
        }
        t.to_string()
    })
}

async fn list(
    ctx: &Ctx,
    status: Option<String>,
    customer: Option<String>,
    limit: u32,
) -> Result<(), Failure> {
    let mut query = vec![("limit", limit.to_string())];
    if let Some(s) = status {
        query.push(("status", s.to_ascii_uppercase()));
    }
    if let Some(c) = customer {
        query.push(("customerId", c));
    }
    let page = ctx.page(routes::LIST_ORDERS, &query).await?;
    ctx.print(&serde_json::to_value(&page.items)?, || {
        let mut t = table(&["ORDER", "STATUS", "CUSTOMER", "TOTAL", "REASON", "CREATED"]);
        for o in &page.items {
            t.add_row([
                o.order_id.to_string(),
                o.status.to_string(),
                o.customer_id.to_string(),
                opt(o.total),
                opt(o.cancel_reason.as_ref()),
                o.created_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            ]);
        }
        t.to_string()
    })
}

/// The smoke order of `stack up`: one mouse paid with the test card, followed to its delivery,
/// then its journey. An order that is not delivered within a minute fails the smoke test.
pub async fn smoke(ctx: &Ctx) -> Result<(), Failure> {
    let b = place::body(
        &[("mouse-01".to_owned(), 1)],
        Some("demo"),
        Some("tok_visa"),
    );
    let answer = place::place_one(ctx, &b, None).await?;
    let id = answer.order_id.to_string();
    oms_ops::local::say(format!(
        "order {id} accepted (PENDING); following it through the saga"
    ));
    let mut order = follow(ctx, &id, Duration::from_secs(60))
        .await?
        .ok_or_else(|| Failure::verdict(format!("smoke order {id} still PENDING after 60 s")))?;
    // Placed: follow it through fulfillment to its delivery (a second or two).
    let deadline = Instant::now() + Duration::from_secs(60);
    while order.status.is_placed() && !order.status.is_final() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        order = ctx.read(routes::GET_ORDER, &[&id]).await?;
    }
    print_trace(ctx, &id).await?;
    oms_ops::local::say(format!("order {id}: {}", outcome_line(&order)));
    if order.status == OrderStatus::Delivered {
        Ok(())
    } else {
        Err(Failure::verdict(format!(
            "smoke order {id} {}",
            outcome_line(&order)
        )))
    }
}

async fn print_trace(ctx: &Ctx, id: &str) -> Result<(), Failure> {
    let t = trace::trace(ctx, id).await?;
    ctx.print(&t, || {
        let mut table = table(&["TIME", "SOURCE", "EVENT"]);
        for e in &t.timeline {
            table.add_row([e.at.clone(), e.source.clone(), e.what.clone()]);
        }
        let payment_line = match &t.payment {
            None => "payment: none".to_owned(),
            Some(p) => format!("payment: {} {}", p.status, p.amount),
        };
        let shipment_line = match &t.shipment {
            None => "shipment: none".to_owned(),
            Some(sh) => format!(
                "shipment: {}{}{}",
                sh.status,
                sh.tracking_number
                    .as_deref()
                    .map(|n| format!(", tracking {n}"))
                    .unwrap_or_default(),
                sh.fail_reason
                    .as_deref()
                    .map(|r| format!(", refused: {r}"))
                    .unwrap_or_default()
            ),
        };
        let reservation_line = match &t.reservation {
            None => "reservation: none".to_owned(),
            Some(r) => format!(
                "reservation: {} (updated {})",
                r.status,
                r.updated_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            ),
        };
        format!(
            "{table}\n{payment_line}\n{reservation_line}\n{shipment_line}\n{}\n{}",
            t.trace_line(),
            t.verdict
        )
    })
}
