//! `omsctl order create | get | list | trace`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};

use crate::ctx::{self, cell, money, table, Ctx, Svc};
use crate::{tail, Failure, Output};

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
        /// Only this status (PENDING, CONFIRMED, CANCELLED).
        #[arg(long)]
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
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// A line as PRODUCT[:QUANTITY] (repeatable), e.g. mouse-01:2.
    #[arg(long = "item", value_parser = parse_item)]
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
    #[arg(long, default_value = "30s", value_parser = ctx::duration)]
    timeout: Duration,
    /// Create this many orders (random catalog lines unless --item is given) and summarize.
    #[arg(long)]
    count: Option<u32>,
    /// With --count: orders per second, e.g. 20/s.
    #[arg(long, value_parser = parse_rate)]
    rate: Option<f64>,
    /// With --count: requests in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

pub(crate) fn parse_item(s: &str) -> Result<(String, u32), String> {
    let (product, quantity) = match s.split_once(':') {
        Some((p, q)) => {
            let q: u32 = q.parse().map_err(|_| {
                format!("invalid quantity {q:?} in {s:?} (expected PRODUCT[:QUANTITY])")
            })?;
            (p, q)
        }
        None => (s, 1),
    };
    if product.is_empty() {
        return Err(format!("invalid item {s:?}: no product"));
    }
    if quantity == 0 {
        return Err(format!("invalid item {s:?}: quantity must be at least 1"));
    }
    Ok((product.to_owned(), quantity))
}

pub(crate) fn parse_rate(s: &str) -> Result<f64, String> {
    let n = s.strip_suffix("/s").unwrap_or(s);
    match n.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err(format!("invalid rate {s:?} (expected e.g. 20/s)")),
    }
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
        OrderCommand::Trace { id } => trace(ctx, &id).await,
    }
}

fn check_id(id: &str) -> Result<(), Failure> {
    uuid::Uuid::parse_str(id)
        .map(|_| ())
        .map_err(|_| Failure::usage(format!("invalid order id {id:?} (expected a UUID)")))
}

/// Product ids of the catalog, or `None` when inventory cannot be asked.
pub(crate) async fn catalog(ctx: &Ctx) -> Option<Vec<String>> {
    let products = ctx.get(Svc::Inventory, "/products").await.ok()?;
    Some(
        products
            .as_array()?
            .iter()
            .filter_map(|p| p["productId"].as_str().map(str::to_owned))
            .collect(),
    )
}

pub(crate) async fn check_items(ctx: &Ctx, items: &[(String, u32)]) -> Result<(), Failure> {
    let Some(known) = catalog(ctx).await else {
        eprintln!("omsctl: warning: inventory unreachable; items not checked against the catalog");
        return Ok(());
    };
    if let Some((unknown, _)) = items.iter().find(|(p, _)| !known.contains(p)) {
        return Err(Failure::usage(format!(
            "unknown item {unknown:?}; the catalog has {}",
            known.join(", ")
        )));
    }
    Ok(())
}

fn body(items: &[(String, u32)], customer: Option<&str>, token: Option<&str>) -> Value {
    let mut b = json!({
        "items": items.iter().map(|(p, q)| json!({"productId": p, "quantity": q})).collect::<Vec<_>>(),
    });
    if let Some(c) = customer {
        b["customerId"] = json!(c);
    }
    if let Some(t) = token {
        b["paymentToken"] = json!(t);
    }
    b
}

/// Places one order: its id, or the service's refusal.
async fn place(ctx: &Ctx, body: &Value, key: Option<&str>) -> Result<Value, Failure> {
    let headers: Vec<(&str, &str)> = key.map(|k| ("Idempotency-Key", k)).into_iter().collect();
    let (status, answer) = ctx.post(Svc::Order, "/orders", body, &headers).await?;
    if !status.is_success() {
        return Err(ctx::api_failure(Svc::Order, status, &answer));
    }
    Ok(answer)
}

/// Polls the order until it is no longer PENDING.
async fn follow(ctx: &Ctx, id: &str, timeout: Duration) -> Result<Option<Value>, Failure> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(20);
    loop {
        let order = ctx.get(Svc::Order, &format!("/orders/{id}")).await?;
        if order["status"] != "PENDING" {
            return Ok(Some(order));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

fn outcome_line(order: &Value) -> String {
    match order["status"].as_str() {
        Some("CONFIRMED") => format!("CONFIRMED (total {})", money(&order["total"])),
        Some("CANCELLED") => format!(
            "CANCELLED: {} ({})",
            cell(&order["cancelReason"]),
            cell(&order["cancelDetail"])
        ),
        Some(other) => other.to_owned(),
        None => "-".into(),
    }
}

async fn create_one(ctx: &Ctx, args: CreateArgs) -> Result<(), Failure> {
    if args.items.is_empty() {
        return Err(Failure::usage(
            "at least one --item PRODUCT[:QUANTITY] is needed (or --count N for random orders)",
        ));
    }
    check_items(ctx, &args.items).await?;
    let b = body(
        &args.items,
        args.customer.as_deref(),
        args.payment_token.as_deref(),
    );
    let answer = place(ctx, &b, args.idempotency_key.as_deref()).await?;
    let id = answer["orderId"].as_str().unwrap_or_default().to_owned();
    if !args.wait {
        return ctx.print(&answer, || {
            format!("{id} {}", answer["status"].as_str().unwrap_or("-"))
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
            ctx.print(&order, || format!("{id} {}", outcome_line(&order)))?;
            if order["status"] == "CONFIRMED" {
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
        catalog(ctx)
            .await
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                Failure::usage("inventory unreachable: cannot pick random items (give --item)")
            })?
    } else {
        check_items(ctx, &args.items).await?;
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
    let interval = args.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let outcomes: Vec<Result<Value, String>> = futures::stream::iter(0..count)
        .map(|i| {
            let items = if args.items.is_empty() {
                let n = 1 + fastrand::usize(0..2);
                let mut lines: Vec<(String, u32)> = Vec::new();
                for _ in 0..n {
                    let p = &products[fastrand::usize(0..products.len())];
                    if !lines.iter().any(|(q, _)| q == p) {
                        lines.push((p.clone(), 1 + fastrand::u32(0..2)));
                    }
                }
                lines
            } else {
                args.items.clone()
            };
            let b = body(
                &items,
                args.customer.as_deref(),
                args.payment_token.as_deref(),
            );
            let bar = bar.clone();
            let timeout = args.timeout;
            async move {
                if let Some(every) = interval {
                    let due = started + every * i;
                    tokio::time::sleep_until(due.into()).await;
                }
                let result = async {
                    let answer = place(ctx, &b, None)
                        .await
                        .map_err(|f| f.error.to_string())?;
                    let id = answer["orderId"].as_str().unwrap_or_default().to_owned();
                    follow(ctx, &id, timeout)
                        .await
                        .map_err(|f| f.error.to_string())?
                        .ok_or_else(|| format!("order {id} still PENDING after {timeout:?}"))
                }
                .await;
                bar.inc(1);
                result
            }
        })
        .buffer_unordered(args.concurrency)
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
                if order["status"] == "CONFIRMED" {
                    confirmed += 1;
                } else {
                    *cancelled
                        .entry(order["cancelReason"].as_str().unwrap_or("-").to_owned())
                        .or_default() += 1;
                }
                if let (Some(a), Some(b)) = (
                    order["createdAt"]
                        .as_str()
                        .and_then(|s| s.parse::<chrono::DateTime<chrono::Utc>>().ok()),
                    order["completedAt"]
                        .as_str()
                        .and_then(|s| s.parse::<chrono::DateTime<chrono::Utc>>().ok()),
                ) {
                    latencies.push((b - a).as_seconds_f64() * 1000.0);
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
    let summary = json!({
        "requested": count,
        "created": created,
        "confirmed": confirmed,
        "cancelled": cancelled,
        "errors": errors,
        "seconds": elapsed.as_secs_f64(),
        "p50Ms": pct(0.5),
        "p99Ms": pct(0.99),
    });
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

async fn get(ctx: &Ctx, id: &str) -> Result<(), Failure> {
    check_id(id)?;
    let order = ctx
        .get_opt(Svc::Order, &format!("/orders/{id}"))
        .await?
        .ok_or_else(|| Failure::verdict(format!("no order {id}")))?;
    ctx.print(&order, || {
        let mut t = table(&["FIELD", "VALUE"]);
        for (k, label) in [
            ("orderId", "order"),
            ("status", "status"),
            ("customerId", "customer"),
            ("cancelReason", "cancel reason"),
            ("cancelDetail", "cancel detail"),
            ("paymentId", "payment"),
            ("createdAt", "created"),
            ("completedAt", "completed"),
        ] {
            t.add_row([label.to_string(), cell(&order[k])]);
        }
        t.add_row(["total".to_string(), money(&order["total"])]);
        let lines = if order["lines"].is_array() {
            &order["lines"]
        } else {
            &order["items"]
        };
        for l in lines.as_array().into_iter().flatten() {
            t.add_row([
                "line".to_string(),
                format!(
                    "{} x{}{}",
                    cell(&l["productId"]),
                    cell(&l["quantity"]),
                    if l["unitPrice"].is_object() {
                        format!(" @ {}", money(&l["unitPrice"]))
                    } else {
                        String::new()
                    }
                ),
            ]);
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
    let mut query = format!("/orders?limit={limit}");
    if let Some(s) = status {
        query.push_str(&format!("&status={}", s.to_ascii_uppercase()));
    }
    if let Some(c) = customer {
        query.push_str(&format!("&customerId={c}"));
    }
    let page = ctx.get(Svc::Order, &query).await?;
    let items = page["items"].clone();
    ctx.print(&items, || {
        let mut t = table(&["ORDER", "STATUS", "CUSTOMER", "TOTAL", "REASON", "CREATED"]);
        for o in items.as_array().into_iter().flatten() {
            t.add_row([
                cell(&o["orderId"]),
                cell(&o["status"]),
                cell(&o["customerId"]),
                money(&o["total"]),
                cell(&o["cancelReason"]),
                cell(&o["createdAt"]),
            ]);
        }
        t.to_string()
    })
}

/// One event of a trace.
struct Event {
    at: String,
    source: String,
    what: String,
}

/// The smoke order of `stack up`: one mouse paid with the test card, followed to its outcome,
/// then its journey. An order that does not confirm fails the smoke test.
pub async fn smoke(ctx: &Ctx) -> Result<(), Failure> {
    let b = body(
        &[("mouse-01".to_owned(), 1)],
        Some("demo"),
        Some("tok_visa"),
    );
    let answer = place(ctx, &b, None).await?;
    let id = answer["orderId"].as_str().unwrap_or_default().to_owned();
    crate::local::say(format!(
        "order {id} accepted (PENDING); following it through the saga"
    ));
    let order = follow(ctx, &id, Duration::from_secs(60))
        .await?
        .ok_or_else(|| Failure::verdict(format!("smoke order {id} still PENDING after 60 s")))?;
    trace(ctx, &id).await?;
    crate::local::say(format!("order {id}: {}", outcome_line(&order)));
    if order["status"] == "CONFIRMED" {
        Ok(())
    } else {
        Err(Failure::verdict(format!(
            "smoke order {id} {}",
            outcome_line(&order)
        )))
    }
}

async fn trace(ctx: &Ctx, id: &str) -> Result<(), Failure> {
    let doc = trace_doc(ctx, id).await?;
    ctx.print(&doc, || {
        let mut t = table(&["TIME", "SOURCE", "EVENT"]);
        for e in doc["timeline"].as_array().into_iter().flatten() {
            t.add_row([cell(&e["at"]), cell(&e["source"]), cell(&e["what"])]);
        }
        let payment_line = match &doc["payment"] {
            Value::Null => "payment: none".to_owned(),
            p => format!("payment: {} {}", cell(&p["status"]), money(&p["amount"])),
        };
        let reservation_line = match &doc["reservation"] {
            Value::Null => "reservation: none".to_owned(),
            r => format!(
                "reservation: {} (updated {})",
                cell(&r["status"]),
                cell(&r["updatedAt"])
            ),
        };
        format!(
            "{t}\n{payment_line}\n{reservation_line}\n{}",
            cell(&doc["verdict"])
        )
    })
}

/// Everything known about one order's journey: the services' views, every Kafka message with
/// its key, pending outbox rows, a time-ordered `timeline` and the `verdict`.
pub async fn trace_doc(ctx: &Ctx, id: &str) -> Result<Value, Failure> {
    check_id(id)?;
    let order = ctx
        .get_opt(Svc::Order, &format!("/orders/{id}"))
        .await?
        .ok_or_else(|| Failure::verdict(format!("no order {id}")))?;
    let saga = ctx.get_opt(Svc::Saga, &format!("/sagas/{id}")).await?;
    let payment = ctx
        .get_opt(Svc::Payment, &format!("/payments/{id}"))
        .await?;
    let reservation = ctx
        .get_opt(Svc::Inventory, &format!("/reservations/{id}"))
        .await?;
    let notifications = ctx
        .get(Svc::Notification, &format!("/notifications?orderId={id}"))
        .await?;
    let mut pending = Vec::new();
    for svc in Svc::all() {
        // A service that is down cannot say; the trace goes on without it.
        if let Ok(Some(rows)) = ctx.get_opt(svc, &format!("/outbox/pending?key={id}")).await {
            for row in rows["items"].as_array().into_iter().flatten() {
                let mut row = row.clone();
                row["service"] = json!(svc.name());
                pending.push(row);
            }
        }
    }
    let topics = ctx.topics.all_with_dlq();
    let brokers = ctx.brokers.clone();
    let key = id.to_owned();
    let records = tokio::task::spawn_blocking(move || {
        tail::scan(&brokers, &topics, |r| {
            r.key.as_deref() == Some(key.as_bytes())
        })
    })
    .await
    .map_err(anyhow::Error::from)??;

    let mut events: Vec<Event> = Vec::new();
    events.push(Event {
        at: cell(&order["createdAt"]),
        source: "order".into(),
        what: "POST /orders accepted (PENDING)".into(),
    });
    for r in &records {
        let decoded = tail::describe(r);
        let mut what = format!("{} {}", decoded.type_name, r.topic);
        if let Some(err) = r.header(oms_contracts::headers::dlq::ERROR_MESSAGE) {
            what.push_str(&format!(" DEAD-LETTERED: {err}"));
        }
        if let Some(from) = r.header(oms_contracts::headers::REPLAYED_FROM) {
            what.push_str(&format!(" (replayed from {from})"));
        }
        events.push(Event {
            at: r.time(),
            source: decoded.source,
            what,
        });
    }
    for s in saga
        .as_ref()
        .and_then(|s| s["steps"].as_array())
        .into_iter()
        .flatten()
    {
        let applied = s["applied"].as_bool().unwrap_or(false);
        events.push(Event {
            at: cell(&s["at"]),
            source: "saga".into(),
            what: format!(
                "{} -> {} on {}{}: {}",
                s["from"].as_str().unwrap_or("-"),
                cell(&s["to"]),
                cell(&s["input"]),
                if applied { "" } else { " (ignored)" },
                cell(&s["note"])
            ),
        });
    }
    for p in &pending {
        events.push(Event {
            at: cell(&p["createdAt"]),
            source: cell(&p["service"]),
            what: format!(
                "{} to {} NOT YET PUBLISHED (attempts {}, {})",
                cell(&p["messageType"]),
                cell(&p["topic"]),
                cell(&p["attempts"]),
                if p["failedAt"].is_null() {
                    format!("next try {}", cell(&p["nextAttemptAt"]))
                } else {
                    format!("set aside: {}", cell(&p["lastError"]))
                }
            ),
        });
    }
    for n in notifications["items"].as_array().into_iter().flatten() {
        events.push(Event {
            at: cell(&n["createdAt"]),
            source: "notification".into(),
            what: cell(&n["message"]),
        });
    }
    events.sort_by(|a, b| a.at.cmp(&b.at));
    let verdict = verdict(
        &order,
        saga.as_ref(),
        payment.as_ref(),
        reservation.as_ref(),
    );
    let doc = json!({
        "order": order,
        "saga": saga,
        "payment": payment,
        "reservation": reservation,
        "notifications": notifications["items"],
        "outboxPending": pending,
        "messages": records.iter().map(tail::Record::to_json).collect::<Vec<_>>(),
        "timeline": events.iter().map(|e| json!({"at": e.at, "source": e.source, "what": e.what})).collect::<Vec<_>>(),
        "verdict": verdict,
    });
    Ok(doc)
}

/// The one-line summary of where an order stands and why.
fn verdict(
    order: &Value,
    saga: Option<&Value>,
    payment: Option<&Value>,
    reservation: Option<&Value>,
) -> String {
    let reservation_state = reservation
        .map(|r| {
            format!(
                "{} at {}",
                cell(&r["status"]).to_lowercase(),
                cell(&r["updatedAt"])
            )
        })
        .unwrap_or_else(|| "never reserved".into());
    match order["status"].as_str() {
        Some("CONFIRMED") => format!(
            "CONFIRMED: {} charged (payment {}); stock {}",
            money(&order["total"]),
            cell(&order["paymentId"]),
            reservation_state
        ),
        Some("CANCELLED") => {
            let charge = match payment.and_then(|p| p["status"].as_str()) {
                None | Some("DECLINED") => "nothing charged".to_owned(),
                Some("REFUNDED") => "the charge was refunded".to_owned(),
                Some("VOIDED") => "the payment was voided".to_owned(),
                Some(other) => format!("payment {}", other.to_lowercase()),
            };
            let why = match order["cancelDetail"].as_str() {
                Some(d) if !d.is_empty() => d.to_owned(),
                _ => cell(&order["cancelReason"])
                    .to_lowercase()
                    .replace('_', " "),
            };
            format!(
                "CANCELLED ({}): {why}; {charge}; stock {}",
                cell(&order["cancelReason"]),
                reservation_state
            )
        }
        _ => match saga {
            Some(s) => format!(
                "PENDING: saga {} (deadline {}{})",
                cell(&s["state"]),
                cell(&s["deadlineAt"]),
                if s["stuck"] == true {
                    ", STUCK past it"
                } else {
                    ""
                }
            ),
            None => "PENDING: the saga has not seen this order yet".into(),
        },
    }
}
