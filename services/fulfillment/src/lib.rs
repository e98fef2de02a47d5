//! The fulfillment service: a shipment per confirmed order, driven through a simulated carrier
//! from `PENDING` to `PICKED`, `SHIPPED` and `DELIVERED`, or refused (`FAILED`) at booking.
//!
//! # Layout
//! - [`carrier`]: the simulated, address-deterministic carrier with fault knobs.
//! - this module: the consumer of `fulfillment.ship` / `fulfillment.cancel`, the carrier worker
//!   that moves shipments on, the HTTP API (`GET /shipments`, `GET /shipments/{orderId}`,
//!   `GET|PUT /carrier/faults`) and [`run`].
//!
//! Fulfillment owns the pick, so it alone decides whether a cancellation comes in time: a
//! `PENDING` shipment is cancelled, a picked one is not, and either way the answer is the
//! shipment's latest fact. Every command is idempotent (the order id is the shipment's key), a
//! cancellation before the shipment request leaves a tombstone, and every step commits with the
//! event it causes through the outbox.

pub mod carrier;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use oms_contracts::api::{
    CarrierKnobs, Page, Problem, ShipmentStatus, ShipmentView, UnknownShipmentStatus,
};
use oms_contracts::messages::{
    CancelReason, FailReason, ShipmentCancelled, ShipmentDelivered, ShipmentFailed, ShipmentPicked,
    ShipmentShipped,
};
use oms_contracts::routes;
use oms_contracts::{Envelope, Message, OrderId, PricedLine, ServiceId, ShippingAddress, Topics};
use oms_runtime::auth::{Admin, Operator};
use oms_runtime::config::{parse_duration, RuntimeConfig};
use oms_runtime::http::{list_filters, page_of, ApiError, ApiJson, ApiPath, ApiQuery};
use oms_runtime::metrics::{count_outcome_after_commit, OutcomeLabel};
use oms_runtime::prometheus_client::metrics::counter::Counter;
use oms_runtime::prometheus_client::metrics::family::Family;
use oms_runtime::service::RuntimeError;
use oms_runtime::{outbox, Handler, HandlerContext, HandlerError, Runtime};
use serde::Deserialize;
use sqlx::{PgConnection, PgPool};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use utoipa::OpenApi as _;
use uuid::Uuid;

use carrier::{Booking, Simulated};

/// The service's name (logs, message source, database `oms_fulfillment`).
pub const SERVICE: ServiceId = ServiceId::Fulfillment;

/// Fulfillment settings.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "oms-fulfillment", version, about = "OMS fulfillment service")]
pub struct Config {
    /// Shared runtime settings.
    #[command(flatten)]
    pub runtime: RuntimeConfig,

    /// Address the HTTP API listens on.
    #[arg(long, env = "OMS_FULFILLMENT_LISTEN", default_value_t = oms_runtime::config::default_listen(SERVICE))]
    pub listen: String,

    /// How long after its request a shipment is booked and picked (the window in which a
    /// customer can still cancel).
    #[arg(long, env = "OMS_FULFILLMENT_PICK_AFTER", default_value = "300ms", value_parser = parse_duration)]
    pub pick_after: Duration,

    /// How long after the pick the carrier takes the parcel.
    #[arg(long, env = "OMS_FULFILLMENT_SHIP_AFTER", default_value = "300ms", value_parser = parse_duration)]
    pub ship_after: Duration,

    /// How long the carrier takes to deliver.
    #[arg(long, env = "OMS_FULFILLMENT_DELIVER_AFTER", default_value = "600ms", value_parser = parse_duration)]
    pub deliver_after: Duration,

    /// The longest the carrier worker sleeps between looks for due shipments. It wakes earlier
    /// when this replica records a shipment request or the next step it knows of falls due; the
    /// interval bounds the wait for steps written by another replica.
    #[arg(long, env = "OMS_FULFILLMENT_CARRIER_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub carrier_interval: Duration,
}

/// When each step of a shipment is due.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    pick_after: Duration,
    ship_after: Duration,
    deliver_after: Duration,
}

/// Every outcome counted by the `shipments` metric.
const OUTCOMES: [&str; 5] = ["picked", "shipped", "delivered", "failed", "cancelled"];

/// Runs the service until `shutdown`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), RuntimeError> {
    let outcomes = Family::<OutcomeLabel, Counter>::default();
    for outcome in OUTCOMES {
        drop(outcomes.get_or_create(&OutcomeLabel {
            outcome: outcome.to_owned(),
        }));
    }
    let mut runtime = Runtime::start(
        SERVICE.name(),
        config.runtime.clone(),
        Some(sqlx::migrate!("./migrations")),
        shutdown,
        |r| {
            r.register(
                "shipments",
                "Shipment steps by outcome (picked, shipped, delivered, failed, cancelled)",
                outcomes.clone(),
            )
        },
    )
    .await?;
    let carrier = Simulated::default();
    let wake = Arc::new(Notify::new());
    let schedule = Schedule {
        pick_after: config.pick_after,
        ship_after: config.ship_after,
        deliver_after: config.deliver_after,
    };
    runtime.consume(
        SERVICE.spec(),
        FulfillmentHandler {
            carrier: carrier.clone(),
            schedule,
            outcomes: outcomes.clone(),
            wake: wake.clone(),
        },
    )?;
    let worker = CarrierWorker {
        pool: runtime.pool().clone(),
        topics: runtime.topics(),
        carrier: carrier.clone(),
        schedule,
        outcomes,
        wake,
    };
    let (token, interval) = (runtime.shutdown().clone(), config.carrier_interval);
    runtime.spawn("carrier", async move {
        worker.run(interval, token).await;
        Ok::<(), String>(())
    });
    let api = router(AppState {
        pool: runtime.pool().clone(),
        carrier,
    });
    runtime.serve(listener, api, ApiDoc::openapi()).await
}

/// A shipment as the handler and the worker need it.
struct Shipment {
    order_id: OrderId,
    shipment_id: Uuid,
    correlation_id: Uuid,
    status: ShipmentStatus,
    lines: Vec<PricedLine>,
    shipping_address: Option<ShippingAddress>,
    tracking_number: Option<String>,
    fail_reason: Option<FailReason>,
    attempts: i32,
    traceparent: Option<String>,
}

const SHIPMENT_FIELDS: &str = "order_id, shipment_id, correlation_id, status, lines, \
     shipping_address, tracking_number, fail_reason, attempts, traceparent";

/// The `SHIPMENT_FIELDS` of a row of `shipments`.
#[derive(sqlx::FromRow)]
struct ShipmentRow {
    order_id: Uuid,
    shipment_id: Uuid,
    correlation_id: Uuid,
    status: String,
    lines: serde_json::Value,
    shipping_address: Option<serde_json::Value>,
    tracking_number: Option<String>,
    fail_reason: Option<String>,
    attempts: i32,
    traceparent: Option<String>,
}

fn shipment(row: ShipmentRow) -> Result<Shipment, sqlx::Error> {
    let status: ShipmentStatus = row
        .status
        .parse()
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let lines = serde_json::from_value(row.lines).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let shipping_address = row
        .shipping_address
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(Shipment {
        order_id: OrderId(row.order_id),
        shipment_id: row.shipment_id,
        correlation_id: row.correlation_id,
        status,
        lines,
        shipping_address,
        tracking_number: row.tracking_number,
        fail_reason: row.fail_reason.and_then(|r| r.parse().ok()),
        attempts: row.attempts,
        traceparent: row.traceparent,
    })
}

async fn lock_shipment(
    conn: &mut PgConnection,
    order: OrderId,
) -> Result<Option<Shipment>, sqlx::Error> {
    let row = sqlx::query_as::<_, ShipmentRow>(&format!(
        "SELECT {SHIPMENT_FIELDS} FROM shipments WHERE order_id = $1 FOR UPDATE"
    ))
    .bind(order.0)
    .fetch_optional(conn)
    .await?;
    row.map(shipment).transpose()
}

impl Shipment {
    /// The fact that says where this shipment stands (none while it is pending: nothing
    /// happened yet).
    fn latest_fact(&self) -> Option<Message> {
        let (order_id, shipment_id) = (self.order_id, self.shipment_id);
        Some(match self.status {
            ShipmentStatus::Pending => return None,
            ShipmentStatus::Picked => ShipmentPicked {
                order_id,
                shipment_id,
                lines: self.lines.clone(),
            }
            .into(),
            ShipmentStatus::Shipped => ShipmentShipped {
                order_id,
                shipment_id,
                tracking_number: self
                    .tracking_number
                    .clone()
                    .unwrap_or_else(|| carrier::tracking_number(shipment_id)),
            }
            .into(),
            ShipmentStatus::Delivered => ShipmentDelivered {
                order_id,
                shipment_id,
            }
            .into(),
            ShipmentStatus::Failed => ShipmentFailed {
                order_id,
                shipment_id,
                reason: self.fail_reason.unwrap_or(FailReason::CarrierRejected),
            }
            .into(),
            ShipmentStatus::Cancelled => ShipmentCancelled {
                order_id,
                shipment_id: Some(shipment_id),
            }
            .into(),
        })
    }
}

fn later(after: Duration) -> DateTime<Utc> {
    let now = Utc::now();
    chrono::TimeDelta::from_std(after)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(now)
}

struct FulfillmentHandler {
    carrier: Simulated,
    schedule: Schedule,
    outcomes: Family<OutcomeLabel, Counter>,
    /// Wakes this replica's carrier worker once a new shipment is committed.
    wake: Arc<Notify>,
}

impl Handler for FulfillmentHandler {
    async fn handle(
        &self,
        ctx: &mut HandlerContext,
        envelope: &Envelope,
    ) -> Result<(), HandlerError> {
        match &envelope.message {
            Message::FulfillmentShip(cmd) => match lock_shipment(ctx.tx(), cmd.order_id).await? {
                // Asked again: say where it stands, change nothing.
                Some(existing) => match existing.latest_fact() {
                    Some(fact) => {
                        ctx.emit(fact).await?;
                    }
                    None => {
                        tracing::info!(order_id = %cmd.order_id, "shipment requested again while pending; the carrier is on it")
                    }
                },
                None => {
                    let address = cmd
                        .shipping_address
                        .as_ref()
                        .map(serde_json::to_value)
                        .transpose()
                        .map_err(|e| HandlerError::Rejected(e.to_string()))?;
                    let lines = serde_json::to_value(&cmd.lines)
                        .map_err(|e| HandlerError::Rejected(e.to_string()))?;
                    let traceparent =
                        oms_runtime::telemetry::traceparent(&tracing::Span::current());
                    sqlx::query(
                        "INSERT INTO shipments (order_id, shipment_id, correlation_id, status, customer_id, \
                         lines, shipping_address, next_at, traceparent) \
                         VALUES ($1, $2, $3, 'PENDING', $4, $5, $6, $7, $8)",
                    )
                    .bind(cmd.order_id.0)
                    .bind(Uuid::now_v7())
                    .bind(envelope.correlation_id)
                    .bind(cmd.customer_id.as_str())
                    .bind(lines)
                    .bind(address)
                    .bind(later(self.schedule.pick_after + self.carrier.latency()))
                    .bind(traceparent)
                    .execute(ctx.tx())
                    .await?;
                    let wake = self.wake.clone();
                    ctx.after_commit(move || wake.notify_one());
                }
            },
            Message::FulfillmentCancel(cmd) => {
                let answer: Message = match lock_shipment(ctx.tx(), cmd.order_id).await? {
                    Some(s) if s.status == ShipmentStatus::Pending => {
                        set_cancelled(ctx.tx(), cmd.order_id, cmd.reason).await?;
                        count_outcome_after_commit(&self.outcomes, ctx, "cancelled");
                        ShipmentCancelled {
                            order_id: cmd.order_id,
                            shipment_id: Some(s.shipment_id),
                        }
                        .into()
                    }
                    // Too late (picked or further), or over already: the truth, unchanged.
                    Some(s) => match s.latest_fact() {
                        Some(fact) => fact,
                        None => return Ok(()),
                    },
                    None => {
                        // Before the shipment request: a tombstone, so the request is refused.
                        let shipment_id = Uuid::now_v7();
                        sqlx::query(
                            "INSERT INTO shipments (order_id, shipment_id, correlation_id, status, cancel_reason) \
                             VALUES ($1, $2, $3, 'CANCELLED', $4)",
                        )
                        .bind(cmd.order_id.0)
                        .bind(shipment_id)
                        .bind(envelope.correlation_id)
                        .bind(cmd.reason.as_str())
                        .execute(ctx.tx())
                        .await?;
                        count_outcome_after_commit(&self.outcomes, ctx, "cancelled");
                        ShipmentCancelled {
                            order_id: cmd.order_id,
                            shipment_id: Some(shipment_id),
                        }
                        .into()
                    }
                };
                ctx.emit(answer).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

async fn set_cancelled(
    conn: &mut PgConnection,
    order: OrderId,
    reason: CancelReason,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE shipments SET status = 'CANCELLED', cancel_reason = $2, next_at = NULL, \
         updated_at = now() WHERE order_id = $1",
    )
    .bind(order.0)
    .bind(reason.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves due shipments on, one carrier step each, each with its event through the outbox.
struct CarrierWorker {
    pool: PgPool,
    topics: Topics,
    carrier: Simulated,
    schedule: Schedule,
    outcomes: Family<OutcomeLabel, Counter>,
    /// Rung by the handler when a shipment is committed.
    wake: Arc<Notify>,
}

/// How soon the carrier worker looks again at a due shipment another replica is moving.
const HELD_ELSEWHERE: Duration = Duration::from_millis(20);

/// Shipments moved per transaction.
const CARRIER_BATCH: i64 = 32;

/// The longest wait before a failed carrier call is tried again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The wait before retry `attempts` (1, 2, ...): 200 ms doubling, at most [`MAX_BACKOFF`].
fn backoff(attempts: i32) -> Duration {
    let exp = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(10);
    (Duration::from_millis(200) * 2u32.pow(exp)).min(MAX_BACKOFF)
}

/// What one carrier step did to a shipment.
enum Moved {
    /// On to `status`, due again after `next` (none: finished), saying `fact`.
    To {
        status: ShipmentStatus,
        next: Option<Duration>,
        fact: Message,
        outcome: &'static str,
    },
    /// The carrier failed transiently: try again later.
    Retry(String),
}

/// When the carrier worker looks again, after a tick.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Next {
    /// A full batch: more may be due now.
    Now,
    /// The next step it knows of falls due after this long.
    After(Duration),
    /// No shipment has a next step.
    Idle,
}

impl Next {
    /// How long to sleep (unless woken), at most `ceiling`.
    fn pause(self, ceiling: Duration) -> Duration {
        match self {
            Next::Now => Duration::ZERO,
            Next::After(d) => d.min(ceiling),
            Next::Idle => ceiling,
        }
    }
}

impl CarrierWorker {
    /// Moves due shipments until `shutdown`: after each tick it sleeps until the next step falls
    /// due, a new shipment is committed here, or `ceiling` passes, whichever comes first.
    async fn run(self, ceiling: Duration, shutdown: CancellationToken) {
        oms_runtime::service::paced("carrier", ceiling, shutdown, Some(&self.wake), || async {
            self.tick().await.map(|next| next.pause(ceiling))
        })
        .await;
    }

    /// Moves the due shipments in one transaction, which also learns when the next step falls
    /// due.
    async fn tick(&self) -> Result<Next, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query_as::<_, ShipmentRow>(&format!(
            "SELECT {SHIPMENT_FIELDS} FROM shipments WHERE next_at <= now() \
             ORDER BY next_at LIMIT $1 FOR UPDATE SKIP LOCKED"
        ))
        .bind(CARRIER_BATCH)
        .fetch_all(&mut *tx)
        .await?;
        let due = rows.len();
        let mut counted = Vec::new();
        for row in rows {
            let s = shipment(row)?;
            let span = tracing::info_span!(
                "carrier step",
                otel.name = "carrier step",
                order_id = %s.order_id,
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty,
            );
            oms_runtime::telemetry::set_parent(&span, s.traceparent.as_deref());
            if let Some(outcome) = self.step(&mut tx, &s).instrument(span).await? {
                counted.push(outcome);
            }
        }
        let next = if due as i64 == CARRIER_BATCH {
            Next::Now
        } else {
            // Our own moves included; rows another replica holds count as they were.
            let due_in: Option<f64> = sqlx::query_scalar(
                "SELECT extract(epoch FROM min(next_at) - clock_timestamp())::float8 \
                 FROM shipments WHERE next_at IS NOT NULL",
            )
            .fetch_one(&mut *tx)
            .await?;
            match due_in {
                None => Next::Idle,
                // Due already: a step we just made (go on at once), or a row another replica
                // holds (look again shortly rather than spin on it).
                Some(s) if s <= 0.0 && due > 0 => Next::Now,
                Some(s) if s <= 0.0 => Next::After(HELD_ELSEWHERE),
                Some(s) => Next::After(Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)),
            }
        };
        tx.commit().await?;
        if !counted.is_empty() {
            outbox::notify(&self.pool).await;
        }
        for outcome in counted {
            self.outcomes
                .get_or_create(&OutcomeLabel {
                    outcome: outcome.to_owned(),
                })
                .inc();
        }
        Ok(next)
    }

    /// Decides and records one shipment's next step.
    async fn step(
        &self,
        tx: &mut PgConnection,
        s: &Shipment,
    ) -> Result<Option<&'static str>, sqlx::Error> {
        let (order_id, shipment_id) = (s.order_id, s.shipment_id);
        let moved = match s.status {
            ShipmentStatus::Pending => match self.carrier.book(s.shipping_address.as_ref()) {
                Err(e) => Moved::Retry(e.to_string()),
                Ok(Booking::Refused(reason)) => Moved::To {
                    status: ShipmentStatus::Failed,
                    next: None,
                    fact: ShipmentFailed {
                        order_id,
                        shipment_id,
                        reason,
                    }
                    .into(),
                    outcome: "failed",
                },
                Ok(Booking::Accepted) => Moved::To {
                    status: ShipmentStatus::Picked,
                    next: Some(self.schedule.ship_after),
                    fact: ShipmentPicked {
                        order_id,
                        shipment_id,
                        lines: s.lines.clone(),
                    }
                    .into(),
                    outcome: "picked",
                },
            },
            ShipmentStatus::Picked => match self.carrier.hand_over(shipment_id) {
                Err(e) => Moved::Retry(e.to_string()),
                Ok(tracking_number) => Moved::To {
                    status: ShipmentStatus::Shipped,
                    next: Some(self.schedule.deliver_after),
                    fact: ShipmentShipped {
                        order_id,
                        shipment_id,
                        tracking_number,
                    }
                    .into(),
                    outcome: "shipped",
                },
            },
            ShipmentStatus::Shipped => match self.carrier.delivered() {
                Err(e) => Moved::Retry(e.to_string()),
                Ok(()) => Moved::To {
                    status: ShipmentStatus::Delivered,
                    next: None,
                    fact: ShipmentDelivered {
                        order_id,
                        shipment_id,
                    }
                    .into(),
                    outcome: "delivered",
                },
            },
            // Finished rows carry no next step; one that does is cleared.
            _ => {
                sqlx::query("UPDATE shipments SET next_at = NULL WHERE order_id = $1")
                    .bind(order_id.0)
                    .execute(&mut *tx)
                    .await?;
                return Ok(None);
            }
        };
        match moved {
            Moved::Retry(error) => {
                let attempts = s.attempts.saturating_add(1);
                sqlx::query(
                    "UPDATE shipments SET attempts = $2, last_error = $3, next_at = $4, updated_at = now() \
                     WHERE order_id = $1",
                )
                .bind(order_id.0)
                .bind(attempts)
                .bind(&error)
                .bind(later(backoff(attempts) + self.carrier.latency()))
                .execute(&mut *tx)
                .await?;
                tracing::info!(%order_id, attempts, %error, "carrier call failed; retrying");
                Ok(None)
            }
            Moved::To {
                status,
                next,
                fact,
                outcome,
            } => {
                let tracking = match &fact {
                    Message::FulfillmentShipped(m) => Some(m.tracking_number.clone()),
                    _ => None,
                };
                let fail_reason = match &fact {
                    Message::FulfillmentFailed(m) => Some(m.reason.as_str()),
                    _ => None,
                };
                sqlx::query(
                    "UPDATE shipments SET status = $2, next_at = $3, attempts = 0, last_error = NULL, \
                     tracking_number = coalesce($4, tracking_number), fail_reason = coalesce($5, fail_reason), \
                     picked_at = CASE WHEN $2 = 'PICKED' THEN now() ELSE picked_at END, \
                     shipped_at = CASE WHEN $2 = 'SHIPPED' THEN now() ELSE shipped_at END, \
                     delivered_at = CASE WHEN $2 = 'DELIVERED' THEN now() ELSE delivered_at END, \
                     updated_at = now() WHERE order_id = $1",
                )
                .bind(order_id.0)
                .bind(status.as_str())
                .bind(next.map(|n| later(n + self.carrier.latency())))
                .bind(tracking)
                .bind(fail_reason)
                .execute(&mut *tx)
                .await?;
                let envelope = Envelope::new(fact, SERVICE.name(), s.correlation_id);
                outbox::enqueue_envelope(&mut *tx, &self.topics, &envelope)
                    .await
                    .map_err(sqlx::Error::from)?;
                tracing::info!(%order_id, status = status.as_str(), "shipment moved on");
                Ok(Some(outcome))
            }
        }
    }
}

/// This service's routes, documented.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list_shipments, get_shipment, get_faults, set_faults), tags(
    (name = "shipments", description = "Shipments and where they stand"),
    (name = "carrier", description = "The simulated carrier's fault knobs")))]
pub struct ApiDoc;

/// The service's whole OpenAPI document (what `GET /openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    oms_runtime::http::openapi_document(SERVICE.name(), ApiDoc::openapi())
}

#[derive(Clone)]
struct AppState {
    pool: PgPool,
    carrier: Simulated,
}

fn router(state: AppState) -> Router {
    Router::new()
        .route(routes::LIST_SHIPMENTS.spec.path, get(list_shipments))
        .route(routes::GET_SHIPMENT.spec.path, get(get_shipment))
        .route(
            routes::GET_CARRIER_FAULTS.spec.path,
            get(get_faults).put(set_faults),
        )
        .with_state(state)
}

const VIEW_COLUMNS: &str = "order_id, shipment_id, status, customer_id, lines, shipping_address, \
     tracking_number, fail_reason, cancel_reason, attempts, last_error, created_at, updated_at, \
     picked_at, shipped_at, delivered_at";

/// The `VIEW_COLUMNS` of a row of `shipments`.
#[derive(sqlx::FromRow)]
struct ShipmentViewRow {
    order_id: Uuid,
    shipment_id: Uuid,
    status: String,
    customer_id: Option<String>,
    lines: serde_json::Value,
    shipping_address: Option<serde_json::Value>,
    tracking_number: Option<String>,
    fail_reason: Option<String>,
    cancel_reason: Option<String>,
    attempts: i32,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    picked_at: Option<DateTime<Utc>>,
    shipped_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
}

fn shipment_view(r: &ShipmentViewRow) -> Result<ShipmentView, ApiError> {
    let internal = |e: &dyn std::fmt::Display| ApiError::internal(e);
    Ok(ShipmentView {
        order_id: r.order_id,
        shipment_id: r.shipment_id,
        status: r
            .status
            .parse()
            .map_err(|e: UnknownShipmentStatus| internal(&e))?,
        customer_id: r.customer_id.clone(),
        lines: Deserialize::deserialize(&r.lines).map_err(|e| internal(&e))?,
        shipping_address: r
            .shipping_address
            .as_ref()
            .map(Deserialize::deserialize)
            .transpose()
            .map_err(|e| internal(&e))?,
        tracking_number: r.tracking_number.clone(),
        fail_reason: r.fail_reason.clone(),
        cancel_reason: r.cancel_reason.clone(),
        attempts: r.attempts,
        last_error: r.last_error.clone(),
        created_at: r.created_at,
        updated_at: r.updated_at,
        picked_at: r.picked_at,
        shipped_at: r.shipped_at,
        delivered_at: r.delivered_at,
    })
}

/// The shipment of an order.
#[utoipa::path(get, path = "/shipments/{order_id}", tag = "shipments", security(("bearer" = ["operator", "admin"])),
    params(("order_id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, description = "The shipment", body = ShipmentView),
        (status = 400, description = "Not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No shipment for this order", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_shipment(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(order_id): ApiPath<Uuid>,
) -> Result<Json<ShipmentView>, ApiError> {
    let row = sqlx::query_as::<_, ShipmentViewRow>(&format!(
        "SELECT {VIEW_COLUMNS} FROM shipments WHERE order_id = $1"
    ))
    .bind(order_id)
    .fetch_optional(&state.pool)
    .await?;
    match row {
        Some(r) => Ok(Json(shipment_view(&r)?)),
        None => Err(ApiError::not_found(format!(
            "No shipment for order {order_id}"
        ))),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only this status: PENDING, PICKED, SHIPPED, DELIVERED, FAILED or CANCELLED (any case).
    #[param(pattern = "^(?i:PENDING|PICKED|SHIPPED|DELIVERED|FAILED|CANCELLED)$")]
    status: Option<String>,
    /// At most this many (1 to 10,000; default 100).
    #[param(minimum = 1, maximum = 10_000)]
    limit: Option<i64>,
    /// The `nextCursor` of the previous page: shipments of older orders than this one.
    cursor: Option<Uuid>,
}

/// Shipments of the newest orders first, paged by `nextCursor`.
#[utoipa::path(get, path = "/shipments", tag = "shipments", params(ListQuery), security(("bearer" = ["operator", "admin"])),
    responses(
        (status = 200, description = "A page of shipments", body = Page<ShipmentView>),
        (status = 400, description = "Bad filter", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_shipments(
    _: Operator,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<ShipmentView>>, ApiError> {
    let statuses: Vec<&str> = ShipmentStatus::ALL.iter().map(|s| s.as_str()).collect();
    let (status, limit) = list_filters(q.status, &statuses, q.limit, (100, 10_000))?;
    let rows = sqlx::query_as::<_, ShipmentViewRow>(&format!(
        "SELECT {VIEW_COLUMNS} FROM shipments \
         WHERE ($1::text IS NULL OR status = $1) AND ($2::uuid IS NULL OR order_id < $2) \
         ORDER BY order_id DESC LIMIT $3"
    ))
    .bind(status)
    .bind(q.cursor)
    .bind(limit + 1)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(page_of(rows, limit, |r| r.order_id, shipment_view)?))
}

/// The simulated carrier's fault knobs.
#[utoipa::path(get, path = "/carrier/faults", tag = "carrier", security(("bearer" = ["operator", "admin"])),
    responses((status = 200, description = "The knobs", body = CarrierKnobs)))]
async fn get_faults(_: Operator, State(state): State<AppState>) -> Json<CarrierKnobs> {
    Json(state.carrier.knobs())
}

/// Replaces the carrier's fault knobs (fields left out are zero).
#[utoipa::path(put, path = "/carrier/faults", tag = "carrier", request_body = CarrierKnobs, security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "The knobs now in force", body = CarrierKnobs),
        (status = 400, description = "A knob out of range, or an unknown one", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
    ))]
async fn set_faults(
    _: Admin,
    State(state): State<AppState>,
    ApiJson(knobs): ApiJson<CarrierKnobs>,
) -> Result<Json<CarrierKnobs>, ApiError> {
    ApiError::check(knobs.problems())?;
    state.carrier.set_knobs(knobs);
    tracing::warn!(?knobs, "carrier fault knobs changed");
    Ok(Json(knobs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carrier_retries_back_off_to_a_ceiling() {
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(2), Duration::from_millis(400));
        assert_eq!(backoff(4), Duration::from_millis(1600));
        assert_eq!(backoff(10), MAX_BACKOFF);
        assert_eq!(backoff(i32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn the_carrier_sleeps_until_the_next_step_at_most_its_ceiling() {
        let ceiling = Duration::from_secs(1);
        assert_eq!(Next::Now.pause(ceiling), Duration::ZERO);
        let soon = Duration::from_millis(30);
        assert_eq!(Next::After(soon).pause(ceiling), soon);
        assert_eq!(Next::After(Duration::MAX).pause(ceiling), ceiling);
        assert_eq!(Next::Idle.pause(ceiling), ceiling);
    }
}
