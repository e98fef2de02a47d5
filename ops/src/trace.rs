//! `omsctl order trace`: everything known about one order's journey, from every service and
//! every topic, in time order, ending in a verdict.

use oms_contracts::api::{
    NotificationView, OrderStatus, OrderView, Page, PaymentView, PendingRow, ReservationView,
    SagaView, ShipmentView,
};
use oms_contracts::routes;
use oms_contracts::ServiceId as Svc;
use serde::{Deserialize, Serialize};

use crate::ctx::Ctx;
use crate::render::opt;
use crate::tail::{self, Record, TailLine};
use crate::Failure;

/// One order's journey (`order trace`, the TUI's detail view).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trace {
    /// The W3C trace id the order was placed under, when it was recorded.
    pub trace_id: Option<String>,
    /// The trace backend's page of it, when `--trace-url` is set.
    pub trace_url: Option<String>,
    /// The order.
    pub order: OrderView,
    /// Its saga.
    pub saga: Option<SagaView>,
    /// Its payment.
    pub payment: Option<PaymentView>,
    /// Its stock reservation.
    pub reservation: Option<ReservationView>,
    /// Its shipment (none also when fulfillment cannot be asked).
    pub shipment: Option<ShipmentView>,
    /// Notifications sent about it.
    pub notifications: Vec<NotificationView>,
    /// Messages about it still in a service's outbox.
    pub outbox_pending: Vec<Pending>,
    /// Every Kafka message keyed by it, dead letters included.
    pub messages: Vec<TailLine>,
    /// What happened, in time order.
    pub timeline: Vec<Event>,
    /// Where it stands and why, in one line.
    pub verdict: String,
}

/// An outbox row not yet published, and the service holding it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    /// The service.
    pub service: String,
    /// The row.
    #[serde(flatten)]
    pub row: PendingRow,
}

/// One line of a journey.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When (RFC 3339).
    pub at: String,
    /// Which service (or topic's writer).
    pub source: String,
    /// What happened.
    pub what: String,
}

impl Trace {
    /// `trace: ID (URL)`, or why there is none.
    pub fn trace_line(&self) -> String {
        match (&self.trace_id, &self.trace_url) {
            (Some(id), Some(url)) => format!("trace: {id} {url}"),
            (Some(id), None) => {
                format!("trace: {id} (set --trace-url or OMS_TRACE_URL to link it)")
            }
            _ => "trace: none recorded".to_owned(),
        }
    }
}

/// Checks an order id: a UUID.
pub fn check_id(id: &str) -> Result<(), Failure> {
    uuid::Uuid::parse_str(id)
        .map(|_| ())
        .map_err(|_| Failure::usage(format!("invalid order id {id:?} (expected a UUID)")))
}

/// Everything known about one order's journey: its trace id (and the trace backend's page of
/// it, when configured), the services' views, every Kafka message with its key, pending outbox
/// rows, a time-ordered timeline and the verdict.
pub async fn trace(ctx: &Ctx, id: &str) -> Result<Trace, Failure> {
    check_id(id)?;
    let order: OrderView = ctx
        .read_opt(routes::GET_ORDER, &[id])
        .await?
        .ok_or_else(|| Failure::verdict(format!("no order {id}")))?;
    let saga: Option<SagaView> = ctx.read_opt(routes::GET_SAGA, &[id]).await?;
    let payment: Option<PaymentView> = ctx.read_opt(routes::GET_PAYMENT, &[id]).await?;
    let reservation: Option<ReservationView> = ctx.read_opt(routes::GET_RESERVATION, &[id]).await?;
    // Fulfillment down leaves the shipment out, like a pending outbox.
    let shipment: Option<ShipmentView> = ctx
        .read_opt(routes::GET_SHIPMENT, &[id])
        .await
        .ok()
        .flatten();
    let notifications: Page<NotificationView> = ctx
        .page(routes::LIST_NOTIFICATIONS, &[("orderId", id.to_owned())])
        .await?;
    let mut pending: Vec<(Svc, PendingRow)> = Vec::new();
    for svc in Svc::all() {
        // A service that is down cannot say; the trace goes on without it.
        let rows: Option<Page<PendingRow>> = ctx
            .page(routes::OUTBOX_PENDING.of(svc), &[("key", id.to_owned())])
            .await
            .ok();
        for row in rows.into_iter().flat_map(|p| p.items) {
            pending.push((svc, row));
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
    let at =
        |t: &chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    events.push(Event {
        at: at(&order.created_at),
        source: "order".into(),
        what: "POST /orders accepted (PENDING)".into(),
    });
    for r in &records {
        let decoded = tail::describe(r);
        let mut what = format!(
            "{} {}",
            decoded.type_name,
            crate::render::coordinates(&r.topic, r.partition, r.offset)
        );
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
    for s in saga.iter().flat_map(|s| s.steps.iter().flatten()) {
        events.push(Event {
            at: at(&s.at),
            source: "saga".into(),
            what: format!(
                "{} -> {} on {}{}: {}",
                s.from.as_deref().unwrap_or("-"),
                s.to,
                s.input,
                if s.applied { "" } else { " (ignored)" },
                s.note
            ),
        });
    }
    for (svc, p) in &pending {
        events.push(Event {
            at: at(&p.created_at),
            source: svc.name().to_owned(),
            what: format!(
                "{} to {} NOT YET PUBLISHED (attempts {}, {})",
                opt(p.message_type.as_ref()),
                p.topic,
                p.attempts,
                match &p.failed_at {
                    None => format!("next try {}", at(&p.next_attempt_at)),
                    Some(_) => format!("set aside: {}", opt(p.last_error.as_ref())),
                }
            ),
        });
    }
    for n in &notifications.items {
        events.push(Event {
            at: at(&n.created_at),
            source: "notification".into(),
            what: n.message.clone(),
        });
    }
    events.sort_by(|a, b| a.at.cmp(&b.at));
    let verdict = verdict(
        &order,
        saga.as_ref(),
        payment.as_ref(),
        reservation.as_ref(),
    );
    let trace_url = order.trace_id.as_deref().and_then(|t| ctx.trace_link(t));
    Ok(Trace {
        trace_id: order.trace_id.clone(),
        trace_url,
        saga,
        payment,
        reservation,
        shipment,
        notifications: notifications.items,
        outbox_pending: pending
            .into_iter()
            .map(|(svc, row)| Pending {
                service: svc.name().to_owned(),
                row,
            })
            .collect(),
        messages: records.iter().map(Record::line).collect(),
        timeline: events,
        verdict,
        order,
    })
}

/// The one-line summary of where an order stands and why.
fn verdict(
    order: &OrderView,
    saga: Option<&SagaView>,
    payment: Option<&PaymentView>,
    reservation: Option<&ReservationView>,
) -> String {
    let reservation_state = reservation
        .map(|r| {
            format!(
                "{} at {}",
                r.status.to_lowercase(),
                r.updated_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            )
        })
        .unwrap_or_else(|| "never reserved".into());
    match order.status {
        OrderStatus::Confirmed => format!(
            "CONFIRMED: {} charged (payment {}); stock {}{}",
            opt(order.total),
            opt(order.payment_id),
            reservation_state,
            match (order.picked_at, order.cancel_requested_at) {
                (Some(at), _) => format!(
                    "; picked at {}",
                    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                ),
                (None, Some(_)) => "; cancellation requested".to_owned(),
                (None, None) => "; waiting for the pick".to_owned(),
            }
        ),
        OrderStatus::Shipped | OrderStatus::Delivered => format!(
            "{}: {} charged (payment {}); stock {}; tracking {}",
            order.status,
            opt(order.total),
            opt(order.payment_id),
            reservation_state,
            opt(order.tracking_number.as_ref())
        ),
        OrderStatus::Cancelled => {
            let charge = match payment.map(|p| p.status.as_str()) {
                None | Some("DECLINED") => "nothing charged".to_owned(),
                Some("REFUNDED") => "the charge was refunded".to_owned(),
                Some("VOIDED") => "the payment was voided".to_owned(),
                Some(other) => format!("payment {}", other.to_lowercase()),
            };
            let reason = opt(order.cancel_reason.as_ref());
            let why = match order.cancel_detail.as_deref() {
                Some(d) if !d.is_empty() => d.to_owned(),
                _ => reason.to_lowercase().replace('_', " "),
            };
            format!("CANCELLED ({reason}): {why}; {charge}; stock {reservation_state}")
        }
        OrderStatus::Pending => match saga {
            Some(s) => format!(
                "PENDING: saga {} (deadline {}{})",
                s.state,
                opt(s
                    .deadline_at
                    .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))),
                if s.stuck { ", STUCK past it" } else { "" }
            ),
            None => "PENDING: the saga has not seen this order yet".into(),
        },
    }
}
