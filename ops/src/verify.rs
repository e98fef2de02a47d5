//! The invariants of docs/architecture.md ("Invariants"), read through the services' APIs and
//! Kafka, each judged PASS or FAIL with counts (`omsctl verify`, and every drill's verdict).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use oms_contracts::api::{
    OrderStatus, OrderView, Page, PaymentView, ProductView, ReservationView, SagaState, SagaView,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use oms_contracts::routes::{self, Route};

use crate::ctx::Ctx;
use crate::{topics, Failure};
use oms_contracts::api::{FulfillmentState, ShipmentStatus, ShipmentView};
use oms_contracts::ServiceId as Svc;

/// What `verify` looks at.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct VerifyArgs {
    /// Only orders created since then: @-10m, @TIMESTAMP (RFC 3339) or 10m (stock is always
    /// checked as a whole).
    #[cfg_attr(feature = "clap", arg(long, value_parser = crate::args::since, allow_hyphen_values = true))]
    pub since: Option<Duration>,
    /// Orders older than this must be finished (the saga's step deadlines added up, with margin).
    #[cfg_attr(feature = "clap", arg(long, default_value = "2m", value_parser = crate::args::duration))]
    pub deadline: Duration,
    /// Orders changed within this long are skipped by the cross-service checks (their messages
    /// may still be in flight).
    #[cfg_attr(feature = "clap", arg(long, default_value = "10s", value_parser = crate::args::duration))]
    pub settle: Duration,
}

/// An invariant `verify` checks, with a stable id (JSON `id`) that tools and the drill verdict
/// read; the title (JSON `check`) is for people and may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckId {
    /// Orders older than the deadline are CONFIRMED or CANCELLED.
    OrdersFinished,
    /// Order and saga states agree.
    SagaAgrees,
    /// No authorized payment without a confirmed order.
    NoChargeWithoutOrder,
    /// Reservations agree with orders.
    ReservationsAgree,
    /// Stock adds up and matches the reservations.
    StockConserved,
    /// No shipment without a paid, confirmed order; sold stock is exactly the picked shipments.
    ShipmentsAgree,
    /// Outbox backlog per service (reported, never fails).
    OutboxBacklog,
    /// Dead letters per topic (reported, never fails).
    DeadLetters,
}

impl CheckId {
    /// The title people read.
    pub fn title(self) -> &'static str {
        match self {
            CheckId::OrdersFinished => "orders past the deadline are finished",
            CheckId::SagaAgrees => "order and saga states agree",
            CheckId::NoChargeWithoutOrder => {
                "no charge without a confirmed order (unless refunded)"
            }
            CheckId::ReservationsAgree => "reservations agree with orders",
            CheckId::StockConserved => "stock is conserved",
            CheckId::ShipmentsAgree => {
                "no shipment without a paid order; sold stock is picked shipments"
            }
            CheckId::OutboxBacklog => "outbox backlog (reported)",
            CheckId::DeadLetters => "dead letters (reported)",
        }
    }
}

/// PASS, FAIL, or INFO for a reported figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Outcome {
    /// Held for everything checked.
    Pass,
    /// Broken at least once.
    Fail,
    /// A figure, not a judgement.
    Info,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Which invariant.
    pub id: CheckId,
    /// How many things were checked.
    pub checked: usize,
    /// One line per breach, naming what broke it.
    pub failures: Vec<String>,
    /// The figure of a reported check.
    pub info: Option<String>,
}

impl Check {
    fn new(id: CheckId) -> Self {
        Check {
            id,
            checked: 0,
            failures: Vec::new(),
            info: None,
        }
    }

    /// Its outcome.
    pub fn outcome(&self) -> Outcome {
        match (&self.info, self.failures.is_empty()) {
            (Some(_), _) => Outcome::Info,
            (None, true) => Outcome::Pass,
            (None, false) => Outcome::Fail,
        }
    }
}

/// `verify -o json`: every check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyView {
    /// No check failed.
    pub ok: bool,
    /// Orders looked at.
    pub orders: usize,
    /// Every check, in a fixed order.
    pub checks: Vec<CheckView>,
}

/// One check's result, for `-o json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckView {
    /// Its stable id.
    pub id: CheckId,
    /// Its title, for people.
    pub check: String,
    /// PASS, FAIL or INFO.
    pub result: Outcome,
    /// How many things were checked.
    pub checked: usize,
    /// One line per breach.
    pub failures: Vec<String>,
    /// The figure of a reported check.
    pub info: Option<String>,
}

/// Everything `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Orders looked at.
    pub orders: usize,
    /// Every check, in a fixed order.
    pub checks: Vec<Check>,
}

impl Report {
    /// The checks that failed.
    pub fn failed(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.outcome() == Outcome::Fail)
    }

    /// One check by id.
    pub fn check(&self, id: CheckId) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// The document of `verify -o json`.
    pub fn view(&self) -> VerifyView {
        VerifyView {
            ok: self.failed().next().is_none(),
            orders: self.orders,
            checks: self
                .checks
                .iter()
                .map(|c| CheckView {
                    id: c.id,
                    check: c.id.title().to_owned(),
                    result: c.outcome(),
                    checked: c.checked,
                    failures: c.failures.clone(),
                    info: c.info.clone(),
                })
                .collect(),
        }
    }
}

/// Every page of a cursor-paged list.
async fn all_pages<T: DeserializeOwned>(
    ctx: &Ctx,
    route: Route<(), Page<T>>,
) -> Result<Vec<T>, Failure> {
    let mut out = Vec::new();
    let mut cursor: Option<uuid::Uuid> = None;
    loop {
        let mut query = vec![("limit", "1000".to_owned())];
        if let Some(c) = cursor {
            query.push(("cursor", c.to_string()));
        }
        let page = ctx.page(route, &query).await?;
        out.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
}

/// What the services hold, as read for one run.
pub struct Snapshot {
    /// Orders in scope.
    pub orders: Vec<OrderView>,
    /// Sagas by order.
    pub sagas: HashMap<Uuid, SagaView>,
    /// Payments by order.
    pub payments: HashMap<Uuid, PaymentView>,
    /// Every reservation.
    pub reservations: Vec<ReservationView>,
    /// The catalog.
    pub products: Vec<ProductView>,
    /// Shipments by order.
    pub shipments: HashMap<Uuid, ShipmentView>,
}

/// How many times the stock is read while it keeps moving before it is judged as it is.
const STOCK_READS: u32 = 5;

/// Whether two reads of the products show the same stock (no reservation, pick, release or
/// adjustment happened between them).
fn same_stock(before: &[ProductView], after: &[ProductView]) -> bool {
    let key = |p: &ProductView| {
        (
            p.product_id.clone(),
            p.available,
            p.reserved,
            p.sold,
            p.adjusted,
            p.updated_at,
        )
    };
    before.len() == after.len() && before.iter().map(key).eq(after.iter().map(key))
}

/// Reads everything, runs every check.
pub async fn evaluate(ctx: &Ctx, args: &VerifyArgs) -> Result<Report, Failure> {
    let now = Utc::now();
    let since = args
        .since
        .and_then(|d| chrono::TimeDelta::from_std(d).ok())
        .map(|d| now - d);
    let orders: Vec<OrderView> = all_pages(ctx, routes::LIST_ORDERS)
        .await?
        .into_iter()
        .filter(|o| since.is_none_or(|s| o.created_at >= s))
        .collect();
    let sagas = all_pages(ctx, routes::LIST_SAGAS)
        .await?
        .into_iter()
        .map(|s| (s.order_id, s))
        .collect();
    let payments = all_pages(ctx, routes::LIST_PAYMENTS)
        .await?
        .into_iter()
        .map(|p| (p.order_id, p))
        .collect();
    // Reservations and product counters are two reads, and a busy stack moves stock between
    // them (a pick turns a reservation COMMITTED and a product's reserved into sold in one
    // transaction, but this reader sees one side before it and the other after). Read the
    // products on both sides of the reservations: when they did not change, nothing in the
    // inventory did, and the two agree as of one moment; else read again (a few times).
    let mut attempts = 0;
    let (reservations, products) = loop {
        attempts += 1;
        let before = ctx.page(routes::LIST_PRODUCTS, &[]).await?;
        let reservations = ctx
            .page(routes::LIST_RESERVATIONS, &[("limit", "100000".to_owned())])
            .await?;
        let after = ctx.page(routes::LIST_PRODUCTS, &[]).await?;
        if same_stock(&before.items, &after.items) || attempts >= STOCK_READS {
            break (reservations, after);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let shipments = all_pages(ctx, routes::LIST_SHIPMENTS)
        .await?
        .into_iter()
        .map(|s| (s.order_id, s))
        .collect();
    let snapshot = Snapshot {
        orders,
        sagas,
        payments,
        reservations: reservations.items,
        products: products.items,
        shipments,
    };
    let mut checks = judge(&snapshot, now, args, since.is_some());

    let mut backlog = Check::new(CheckId::OutboxBacklog);
    let mut parts = Vec::new();
    for svc in Svc::all() {
        let ready = ctx.read_opt(routes::HEALTH_READY.of(svc), &[]).await;
        let text = match ready {
            Ok(Some(r)) => format!(
                "{} {} pending",
                svc.name(),
                r.outbox.map_or(0, |b| b.pending)
            ),
            _ => format!("{} ?", svc.name()),
        };
        backlog.checked += 1;
        parts.push(text);
    }
    backlog.info = Some(parts.join(", "));

    let mut dlq = Check::new(CheckId::DeadLetters);
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
    checks.push(backlog);
    checks.push(dlq);
    Ok(Report {
        orders: snapshot.orders.len(),
        checks,
    })
}

/// The cross-service invariants over one snapshot, as of `now`: a pure function. `scoped`: only
/// recent orders were read, so a payment without one is not a breach.
pub fn judge(s: &Snapshot, now: DateTime<Utc>, args: &VerifyArgs, scoped: bool) -> Vec<Check> {
    let deadline = chrono::TimeDelta::from_std(args.deadline).unwrap_or_default();
    let settle = chrono::TimeDelta::from_std(args.settle).unwrap_or_default();
    let reservations: HashMap<Uuid, &ReservationView> =
        s.reservations.iter().map(|r| (r.order_id, r)).collect();
    let mut terminal = Check::new(CheckId::OrdersFinished);
    let mut saga_agrees = Check::new(CheckId::SagaAgrees);
    let mut payment_agrees = Check::new(CheckId::NoChargeWithoutOrder);
    let mut reservation_agrees = Check::new(CheckId::ReservationsAgree);
    for o in &s.orders {
        let id = o.order_id;
        let status = o.status;
        terminal.checked += 1;
        if status == OrderStatus::Pending && now - o.created_at > deadline {
            terminal
                .failures
                .push(format!("{id} PENDING since {}", o.created_at.to_rfc3339()));
        }
        if now - o.updated_at < settle {
            continue;
        }
        let saga_state = s.sagas.get(&id).map(|s| s.state);
        saga_agrees.checked += 1;
        let fulfillment = s
            .sagas
            .get(&id)
            .and_then(|s| s.fulfillment.as_ref())
            .map(|f| f.state);
        let agree = match (status, saga_state) {
            (OrderStatus::Cancelled, Some(SagaState::Confirmed)) => {
                fulfillment == Some(FulfillmentState::Cancelled)
            }
            (OrderStatus::Delivered, Some(SagaState::Confirmed)) => {
                fulfillment == Some(FulfillmentState::Delivered)
            }
            (OrderStatus::Confirmed | OrderStatus::Shipped, Some(SagaState::Confirmed))
            | (OrderStatus::Cancelled, Some(SagaState::Cancelled)) => true,
            (OrderStatus::Pending, Some(st)) => !st.is_terminal(),
            _ => false,
        };
        if !agree {
            saga_agrees.failures.push(format!(
                "{id}: order {status}, saga {}",
                saga_state.map_or("missing", SagaState::as_str)
            ));
        }
        let payment = s.payments.get(&id);
        payment_agrees.checked += 1;
        match (status, payment.map(|p| p.status.as_str())) {
            (st, Some("AUTHORIZED")) if st.is_placed() => {
                if let Some(p) = payment {
                    if let Some(what) =
                        payment_disagreement(o.total, o.payment_id, p.amount, p.payment_id)
                    {
                        payment_agrees.failures.push(format!("{id}: {what}"));
                    }
                }
            }
            (st, other) if st.is_placed() => payment_agrees.failures.push(format!(
                "{id}: {st} but payment {}",
                other.unwrap_or("missing")
            )),
            (OrderStatus::Cancelled, Some("AUTHORIZED")) => payment_agrees.failures.push(format!(
                "{id}: CANCELLED but the payment is still AUTHORIZED"
            )),
            _ => {}
        }
        let reservation_status = reservations.get(&id).map(|r| r.status.as_str());
        reservation_agrees.checked += 1;
        let picked = s.shipments.get(&id).is_some_and(|sh| sh.status.is_picked());
        let ok = match status {
            // Held until the pick, sold from then on.
            OrderStatus::Confirmed if picked => reservation_status == Some("COMMITTED"),
            OrderStatus::Confirmed => reservation_status == Some("RESERVED"),
            OrderStatus::Shipped | OrderStatus::Delivered => {
                reservation_status == Some("COMMITTED")
            }
            OrderStatus::Cancelled => !matches!(reservation_status, Some("RESERVED" | "COMMITTED")),
            OrderStatus::Pending => true,
        };
        if !ok {
            reservation_agrees.failures.push(format!(
                "{id}: order {status}, reservation {}",
                reservation_status.unwrap_or("missing")
            ));
        }
    }
    // Payments nobody's order stands behind.
    if !scoped {
        for (id, p) in &s.payments {
            if p.status == "AUTHORIZED" && !s.orders.iter().any(|o| o.order_id == *id) {
                payment_agrees
                    .failures
                    .push(format!("{id}: AUTHORIZED payment without an order"));
            }
        }
    }

    let mut stock = Check::new(CheckId::StockConserved);
    let mut held: HashMap<&str, (i64, i64)> = HashMap::new();
    for r in &s.reservations {
        for l in &r.lines {
            let entry = held.entry(l.product_id.as_str()).or_default();
            let q = i64::from(l.quantity);
            match r.status.as_str() {
                "RESERVED" => entry.0 += q,
                "COMMITTED" => entry.1 += q,
                _ => {}
            }
        }
    }
    for p in &s.products {
        stock.checked += 1;
        let id = p.product_id.as_str();
        if p.available + p.reserved + p.sold != p.initial + p.adjusted {
            stock.failures.push(format!(
                "{id}: available {} + reserved {} + sold {} != initial {} + adjusted {}",
                p.available, p.reserved, p.sold, p.initial, p.adjusted
            ));
        }
        let (reserved, sold) = held.get(id).copied().unwrap_or_default();
        if i64::from(p.reserved) != reserved || i64::from(p.sold) != sold {
            stock.failures.push(format!(
                "{id}: reserved {} / sold {} but reservations hold {reserved} / {sold}",
                p.reserved, p.sold
            ));
        }
    }
    let shipments = shipments_agree(s, &reservations, now, settle, scoped);
    vec![
        terminal,
        saga_agrees,
        payment_agrees,
        reservation_agrees,
        stock,
        shipments,
    ]
}

/// No shipment without a paid, confirmed order (a picked one never for a cancelled order), and
/// sold stock is exactly the picked shipments: a reservation is sold if and only if its order's
/// shipment was picked.
fn shipments_agree(
    s: &Snapshot,
    reservations: &HashMap<Uuid, &ReservationView>,
    now: DateTime<Utc>,
    settle: chrono::TimeDelta,
    scoped: bool,
) -> Check {
    let mut check = Check::new(CheckId::ShipmentsAgree);
    let orders: HashMap<Uuid, &OrderView> = s.orders.iter().map(|o| (o.order_id, o)).collect();
    for (id, sh) in &s.shipments {
        if now - sh.updated_at < settle {
            continue;
        }
        let Some(order) = orders.get(id) else {
            if !scoped && sh.status != ShipmentStatus::Cancelled {
                check
                    .failures
                    .push(format!("{id}: shipment {} without an order", sh.status));
            }
            continue;
        };
        if now - order.updated_at < settle {
            continue;
        }
        check.checked += 1;
        let paid = s.payments.get(id).is_some_and(|p| p.status == "AUTHORIZED");
        let live = sh.status.is_picked() || sh.status == ShipmentStatus::Pending;
        if live && !(order.status.is_placed() && paid) {
            check.failures.push(format!(
                "{id}: shipment {} but the order is {} and its payment {}",
                sh.status,
                order.status,
                s.payments.get(id).map_or("missing", |p| p.status.as_str())
            ));
        }
        let sold = reservations
            .get(id)
            .is_some_and(|r| r.status == "COMMITTED");
        if sh.status.is_picked() != sold {
            check.failures.push(format!(
                "{id}: shipment {} but reservation {}",
                sh.status,
                reservations
                    .get(id)
                    .map_or("missing", |r| r.status.as_str())
            ));
        }
    }
    for (id, r) in reservations {
        let in_scope = orders.get(id).is_some_and(|o| now - o.updated_at >= settle);
        if r.status == "COMMITTED" && in_scope && !s.shipments.contains_key(id) {
            check.checked += 1;
            check
                .failures
                .push(format!("{id}: stock sold but no shipment was picked"));
        }
    }
    check
}

/// What disagrees between a placed order and its authorized payment, each difference named
/// with both sides ("amount: order 49.98 EUR, payment 0.01 EUR"), or `None` when they agree.
fn payment_disagreement<M: PartialEq + std::fmt::Display, P: PartialEq + std::fmt::Display>(
    order_total: Option<M>,
    order_payment: Option<P>,
    amount: M,
    payment_id: P,
) -> Option<String> {
    let mut diffs = Vec::new();
    if order_total.as_ref() != Some(&amount) {
        diffs.push(format!(
            "amount: order {}, payment {amount}",
            order_total.map_or("none".to_owned(), |t| t.to_string())
        ));
    }
    if order_payment.as_ref() != Some(&payment_id) {
        diffs.push(format!(
            "payment id: order {}, payment service {payment_id}",
            order_payment.map_or("none".to_owned(), |p| p.to_string())
        ));
    }
    (!diffs.is_empty()).then(|| format!("placed, but its payment disagrees: {}", diffs.join("; ")))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    #[test]
    fn the_stock_is_judged_only_as_of_one_moment() {
        let product = |reserved: i32, sold: i32| ProductView {
            product_id: "mouse-01".into(),
            name: "Mouse".into(),
            unit_price: oms_contracts::Money {
                amount_minor: 2499,
                currency: oms_contracts::Currency::EUR,
            },
            available: 100 - reserved - sold,
            reserved,
            sold,
            on_hand: 100 - sold,
            initial: 100,
            adjusted: 0,
            updated_at: chrono::DateTime::<Utc>::UNIX_EPOCH,
        };
        assert!(same_stock(&[product(3, 5)], &[product(3, 5)]));
        // A pick between the two reads: the same total, but moving.
        assert!(!same_stock(&[product(3, 5)], &[product(2, 6)]));
        assert!(!same_stock(&[product(3, 5)], &[]));
    }

    #[test]
    fn a_disagreeing_payment_names_each_difference_with_both_sides() {
        assert_eq!(payment_disagreement(Some(4998), Some(7), 4998, 7), None);
        let amount = payment_disagreement(Some(4998), Some(7), 1, 7).unwrap_or_default();
        assert!(amount.contains("amount: order 4998, payment 1"), "{amount}");
        assert!(!amount.contains("payment id"), "{amount}");
        let id = payment_disagreement(Some(4998), Some(7), 4998, 8).unwrap_or_default();
        assert!(
            id.contains("payment id: order 7, payment service 8"),
            "{id}"
        );
        assert!(!id.contains("amount"), "{id}");
        let both = payment_disagreement(None::<i64>, None::<i64>, 1, 8).unwrap_or_default();
        assert!(
            both.contains("amount: order none") && both.contains("payment id: order none"),
            "{both}"
        );
    }

    use super::*;

    const T: &str = "2026-12-01T10:00:00Z";
    const ID: &str = "01a23173-32bf-70a1-a897-e2343f144a2a";

    fn view<V: DeserializeOwned>(v: Value) -> V {
        serde_json::from_value(v).expect("a valid view")
    }

    /// One order in `status` with its payment, reservation and shipment as given.
    fn snapshot(
        status: &str,
        payment: &str,
        reservation: &str,
        shipment: Option<&str>,
    ) -> Snapshot {
        let id: Uuid = ID.parse().expect("uuid");
        let eur = json!({"amountMinor": 2499, "currency": "EUR"});
        let line = json!([{"productId": "mouse-01", "quantity": 1, "unitPrice": eur}]);
        let order: OrderView = view(json!({
            "orderId": ID, "customerId": "c", "status": status,
            "items": [{"productId": "mouse-01", "quantity": 1}], "lines": line, "total": eur,
            "paymentId": ID, "cancelReason": null, "cancelDetail": null,
            "createdAt": T, "updatedAt": T, "completedAt": T,
        }));
        let payment: PaymentView = view(json!({
            "orderId": ID, "paymentId": ID, "status": payment, "amount": eur,
            "customerId": "c", "declineReason": null, "refundReason": null,
            "createdAt": T, "updatedAt": T,
        }));
        let reservation: ReservationView = view(json!({
            "orderId": ID, "status": reservation, "lines": line, "total": eur,
            "rejectReason": null, "rejectedProductIds": [], "expiresAt": null,
            "createdAt": T, "updatedAt": T,
        }));
        let shipments = shipment
            .map(|st| {
                let s: ShipmentView = view(json!({
                    "orderId": ID, "shipmentId": ID, "status": st, "customerId": "c",
                    "lines": line, "shippingAddress": null, "trackingNumber": null,
                    "failReason": null, "cancelReason": null, "attempts": 0, "lastError": null,
                    "createdAt": T, "updatedAt": T, "pickedAt": null, "shippedAt": null,
                    "deliveredAt": null,
                }));
                (id, s)
            })
            .into_iter()
            .collect();
        Snapshot {
            orders: vec![order],
            sagas: HashMap::new(),
            payments: [(id, payment)].into(),
            reservations: vec![reservation],
            products: Vec::new(),
            shipments,
        }
    }

    fn failures(s: &Snapshot) -> Vec<String> {
        let now = DateTime::parse_from_rfc3339("2026-12-01T11:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let args = VerifyArgs {
            since: None,
            deadline: Duration::from_secs(3600),
            settle: Duration::ZERO,
        };
        judge(s, now, &args, false)
            .into_iter()
            .find(|c| c.id == CheckId::ShipmentsAgree)
            .map(|c| c.failures)
            .unwrap_or_default()
    }

    #[test]
    fn shipments_agree_with_paid_orders_and_sold_stock() {
        let good = snapshot("DELIVERED", "AUTHORIZED", "COMMITTED", Some("DELIVERED"));
        assert_eq!(failures(&good), Vec::<String>::new());
        let waiting = snapshot("CONFIRMED", "AUTHORIZED", "RESERVED", Some("PENDING"));
        assert_eq!(failures(&waiting), Vec::<String>::new());
        let refunded_cancel = snapshot("CANCELLED", "REFUNDED", "RELEASED", Some("CANCELLED"));
        assert_eq!(failures(&refunded_cancel), Vec::<String>::new());

        // Shipped and refunded: the one thing that must never happen.
        let both = snapshot("CANCELLED", "REFUNDED", "COMMITTED", Some("SHIPPED"));
        let f = failures(&both);
        assert!(
            f.iter()
                .any(|l| l.contains("shipment SHIPPED but the order is CANCELLED")),
            "{f:?}"
        );
        // Sold without a pick, and picked without a sale.
        let sold = snapshot("CONFIRMED", "AUTHORIZED", "COMMITTED", None);
        assert!(failures(&sold)
            .iter()
            .any(|l| l.contains("no shipment was picked")));
        let unsold = snapshot("CONFIRMED", "AUTHORIZED", "RESERVED", Some("PICKED"));
        assert!(failures(&unsold)
            .iter()
            .any(|l| l.contains("but reservation RESERVED")));
    }
}
