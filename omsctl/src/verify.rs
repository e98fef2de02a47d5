//! `omsctl verify`: the invariants of ARCHITECTURE.md section 4, read through the services' APIs
//! and Kafka, each printed with PASS or FAIL and counts; exit 1 when any fails.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::ctx::{self, table, Ctx, Svc};
use crate::{topics, Failure};

#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// Only orders created within this long (stock is always checked as a whole).
    #[arg(long, value_parser = ctx::duration)]
    pub since: Option<Duration>,
    /// Orders older than this must be finished (the saga's step deadlines added up, with margin).
    #[arg(long, default_value = "2m", value_parser = ctx::duration)]
    pub deadline: Duration,
    /// Orders changed within this long are skipped by the cross-service checks (their messages
    /// may still be in flight).
    #[arg(long, default_value = "10s", value_parser = ctx::duration)]
    pub settle: Duration,
}

struct Check {
    name: &'static str,
    checked: usize,
    failures: Vec<String>,
    info: Option<String>,
}

impl Check {
    fn new(name: &'static str) -> Self {
        Check {
            name,
            checked: 0,
            failures: Vec::new(),
            info: None,
        }
    }
}

fn time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str().and_then(|s| s.parse().ok())
}

/// Every page of a cursor-paged list.
async fn all_pages(ctx: &Ctx, svc: Svc, path: &str) -> Result<Vec<Value>, Failure> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &cursor {
            Some(c) => format!("{path}{sep}limit=1000&cursor={c}"),
            None => format!("{path}{sep}limit=1000"),
        };
        let page = ctx.get(svc, &url).await?;
        out.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return Ok(out),
        }
    }
}

fn by_order(items: Vec<Value>) -> HashMap<String, Value> {
    items
        .into_iter()
        .filter_map(|v| v["orderId"].as_str().map(|k| (k.to_owned(), v.clone())))
        .collect()
}

pub async fn run(ctx: &Ctx, args: VerifyArgs) -> Result<(), Failure> {
    let doc = evaluate(ctx, &args).await?;
    let failed = doc["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["result"] == "FAIL")
        .count();
    ctx.print(&doc, || {
        let mut t = table(&["CHECK", "RESULT", "CHECKED", "DETAIL"]);
        for c in doc["checks"].as_array().into_iter().flatten() {
            let detail = match c["result"].as_str() {
                Some("INFO") => ctx::cell(&c["info"]),
                Some("FAIL") => {
                    let all: Vec<String> = c["failures"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(ctx::cell)
                        .collect();
                    let mut shown: Vec<String> = all.iter().take(5).cloned().collect();
                    if all.len() > 5 {
                        shown.push(format!("… and {} more", all.len() - 5));
                    }
                    shown.join("\n")
                }
                _ => String::new(),
            };
            t.add_row([
                ctx::cell(&c["check"]),
                ctx::cell(&c["result"]),
                ctx::cell(&c["checked"]),
                detail,
            ]);
        }
        format!(
            "{t}\n{} orders checked; {failed} check(s) failed",
            ctx::cell(&doc["orders"])
        )
    })?;
    if failed > 0 {
        return Err(Failure::verdict(format!(
            "{failed} invariant check(s) failed"
        )));
    }
    Ok(())
}

/// Runs every check; the document `run` prints (`ok`, `orders`, `checks`).
pub async fn evaluate(ctx: &Ctx, args: &VerifyArgs) -> Result<Value, Failure> {
    let now = Utc::now();
    let since = args
        .since
        .and_then(|d| chrono::TimeDelta::from_std(d).ok())
        .map(|d| now - d);
    let orders: Vec<Value> = all_pages(ctx, Svc::Order, "/orders")
        .await?
        .into_iter()
        .filter(|o| since.is_none_or(|s| time(&o["createdAt"]).is_some_and(|c| c >= s)))
        .collect();
    let sagas = by_order(all_pages(ctx, Svc::Saga, "/sagas").await?);
    let payments = by_order(all_pages(ctx, Svc::Payment, "/payments").await?);
    let reservations_list = ctx
        .get(Svc::Inventory, "/reservations?limit=100000")
        .await?;
    let reservations_all = reservations_list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let reservations = by_order(reservations_all.clone());
    let products = ctx.get(Svc::Inventory, "/products").await?;

    let deadline = chrono::TimeDelta::from_std(args.deadline).unwrap_or_default();
    let settle = chrono::TimeDelta::from_std(args.settle).unwrap_or_default();
    let mut terminal = Check::new("orders past the deadline are finished");
    let mut saga_agrees = Check::new("order and saga states agree");
    let mut payment_agrees = Check::new("no charge without a confirmed order (unless refunded)");
    let mut reservation_agrees = Check::new("reservations agree with orders");
    for o in &orders {
        let id = o["orderId"].as_str().unwrap_or_default();
        let status = o["status"].as_str().unwrap_or_default();
        let created = time(&o["createdAt"]).unwrap_or(now);
        let updated = time(&o["updatedAt"]).unwrap_or(now);
        terminal.checked += 1;
        if status == "PENDING" && now - created > deadline {
            terminal.failures.push(format!(
                "{id} PENDING since {}",
                o["createdAt"].as_str().unwrap_or("?")
            ));
        }
        if now - updated < settle {
            continue;
        }
        let saga_state = sagas.get(id).and_then(|s| s["state"].as_str());
        saga_agrees.checked += 1;
        let agree = match (status, saga_state) {
            ("CONFIRMED", Some("CONFIRMED")) | ("CANCELLED", Some("CANCELLED")) => true,
            ("PENDING", Some(s)) => !matches!(s, "CONFIRMED" | "CANCELLED"),
            _ => false,
        };
        if !agree {
            saga_agrees.failures.push(format!(
                "{id}: order {status}, saga {}",
                saga_state.unwrap_or("missing")
            ));
        }
        let payment = payments.get(id);
        let payment_status = payment.and_then(|p| p["status"].as_str());
        payment_agrees.checked += 1;
        match (status, payment_status) {
            ("CONFIRMED", Some("AUTHORIZED")) => {
                let p = payment.cloned().unwrap_or_default();
                if p["amount"] != o["total"] || p["paymentId"] != o["paymentId"] {
                    payment_agrees.failures.push(format!(
                        "{id}: confirmed total {} but payment {} {}",
                        ctx::money(&o["total"]),
                        ctx::cell(&p["paymentId"]),
                        ctx::money(&p["amount"])
                    ));
                }
            }
            ("CONFIRMED", other) => payment_agrees.failures.push(format!(
                "{id}: CONFIRMED but payment {}",
                other.unwrap_or("missing")
            )),
            ("CANCELLED", Some("AUTHORIZED")) => payment_agrees.failures.push(format!(
                "{id}: CANCELLED but the payment is still AUTHORIZED"
            )),
            _ => {}
        }
        let reservation_status = reservations.get(id).and_then(|r| r["status"].as_str());
        reservation_agrees.checked += 1;
        let ok = match status {
            "CONFIRMED" => reservation_status == Some("COMMITTED"),
            "CANCELLED" => !matches!(reservation_status, Some("RESERVED" | "COMMITTED")),
            _ => true,
        };
        if !ok {
            reservation_agrees.failures.push(format!(
                "{id}: order {status}, reservation {}",
                reservation_status.unwrap_or("missing")
            ));
        }
    }
    // Payments nobody's order stands behind.
    for (id, p) in &payments {
        if p["status"] == "AUTHORIZED"
            && !orders.iter().any(|o| o["orderId"] == id.as_str())
            && since.is_none()
        {
            payment_agrees
                .failures
                .push(format!("{id}: AUTHORIZED payment without an order"));
        }
    }

    let mut stock = Check::new("stock is conserved");
    let mut held: HashMap<String, (i64, i64)> = HashMap::new();
    for r in &reservations_all {
        let status = r["status"].as_str().unwrap_or_default();
        for l in r["lines"].as_array().into_iter().flatten() {
            let entry = held
                .entry(l["productId"].as_str().unwrap_or_default().to_owned())
                .or_default();
            let q = l["quantity"].as_i64().unwrap_or(0);
            match status {
                "RESERVED" => entry.0 += q,
                "COMMITTED" => entry.1 += q,
                _ => {}
            }
        }
    }
    for p in products.as_array().into_iter().flatten() {
        stock.checked += 1;
        let id = p["productId"].as_str().unwrap_or_default();
        let n = |k: &str| p[k].as_i64().unwrap_or(0);
        if n("available") + n("reserved") + n("sold") != n("initial") + n("adjusted") {
            stock.failures.push(format!(
                "{id}: available {} + reserved {} + sold {} != initial {} + adjusted {}",
                n("available"),
                n("reserved"),
                n("sold"),
                n("initial"),
                n("adjusted")
            ));
        }
        let (reserved, sold) = held.get(id).copied().unwrap_or_default();
        if n("reserved") != reserved || n("sold") != sold {
            stock.failures.push(format!(
                "{id}: reserved {} / sold {} but reservations hold {reserved} / {sold}",
                n("reserved"),
                n("sold")
            ));
        }
    }

    let mut backlog = Check::new("outbox backlog (reported)");
    let mut parts = Vec::new();
    for svc in Svc::all() {
        let ready = ctx.get_opt(svc, "/health/ready").await;
        let text = match ready {
            Ok(Some(r)) => format!(
                "{} {} pending",
                svc.name(),
                r["outbox"]["pending"].as_i64().unwrap_or(0)
            ),
            _ => format!("{} ?", svc.name()),
        };
        backlog.checked += 1;
        parts.push(text);
    }
    backlog.info = Some(parts.join(", "));

    let mut dlq = Check::new("dead letters (reported)");
    let brokers = ctx.brokers.clone();
    let wanted = ctx.dlq_topics();
    let rows = tokio::task::spawn_blocking(move || topics::list(&brokers, &wanted, &[]))
        .await
        .map_err(anyhow::Error::from)??;
    let total: i64 = rows.iter().map(|r| r.messages).sum();
    dlq.checked = rows.len();
    dlq.info = Some(format!(
        "{total} in {}",
        rows.iter()
            .filter(|r| r.messages > 0)
            .map(|r| format!("{}={}", r.topic, r.messages))
            .collect::<Vec<_>>()
            .join(" ")
    ));

    let checks = [
        terminal,
        saga_agrees,
        payment_agrees,
        reservation_agrees,
        stock,
        backlog,
        dlq,
    ];
    let failed = checks.iter().filter(|c| !c.failures.is_empty()).count();
    let doc = json!({
        "ok": failed == 0,
        "orders": orders.len(),
        "checks": checks.iter().map(|c| json!({
            "check": c.name,
            "result": if c.info.is_some() { "INFO" } else if c.failures.is_empty() { "PASS" } else { "FAIL" },
            "checked": c.checked,
            "failures": c.failures,
            "info": c.info,
        })).collect::<Vec<_>>(),
    });
    Ok(doc)
}
