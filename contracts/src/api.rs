//! The HTTP API of every service, typed once: the services serialize these types and omsctl (and
//! the TUI) deserialize them, so a field renamed on one side fails to compile on the other.
//!
//! Field names are camelCase on the wire. Lists are [`Page`]s; every error is a [`Problem`] (RFC 9457).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::values::{CustomerId, Money, OrderLine, PricedLine, ShippingAddress};

/// The whole number `n` stands for: JSON Schema counts `3.0` as the integer 3, so a body the spec
/// allows must not be refused for writing it that way. `None` for a fraction or beyond what an
/// `f64` holds exactly.
pub fn whole_number(n: &serde_json::Number) -> Option<i64> {
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0)
            .map(|f| f as i64)
    })
}

/// `deserialize_with` for integer fields: any JSON number that is a whole number.
fn whole<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64>,
{
    let n = serde_json::Number::deserialize(d)?;
    whole_number(&n)
        .and_then(|i| T::try_from(i).ok())
        .ok_or_else(|| {
            serde::de::Error::custom(format!("expected a whole number in range, got {n}"))
        })
}

/// Media type of every error answer (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// `type` of a validation problem: `errors` holds one reason per field.
pub const PROBLEM_VALIDATION: &str = "urn:oms:problem:validation";

/// The error body of every endpoint: RFC 9457 problem details, served as
/// `application/problem+json`. `type` is `about:blank` (the status says it all) unless a
/// problem has semantics of its own ([`PROBLEM_VALIDATION`]); `detail` says what happened to this
/// request; `errors` (an extension member) maps each invalid field to its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    /// What kind of problem: a URI; `about:blank` when the status is the whole story.
    #[serde(rename = "type", default = "about_blank")]
    pub kind: String,
    /// A short summary of the kind (the HTTP reason phrase for `about:blank`).
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// What went wrong with this request, for people.
    #[serde(default)]
    pub detail: String,
    /// Per-field reasons, for validation problems.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, String>,
}

fn about_blank() -> String {
    "about:blank".into()
}

impl Problem {
    /// One line for people: the detail, then each field's reason.
    pub fn summary(&self) -> String {
        let mut out = if self.detail.is_empty() {
            self.title.clone()
        } else {
            self.detail.clone()
        };
        if !self.errors.is_empty() {
            let fields: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            out.push_str(&format!(" ({})", fields.join("; ")));
        }
        out
    }
}

/// One page of a list, newest first. `nextCursor`, when present, asks for the next page
/// (`?cursor=`); lists that are never paged leave it null.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// The entries.
    pub items: Vec<T>,
    /// The cursor of the next page, if there is one.
    #[serde(default)]
    pub next_cursor: Option<Uuid>,
}

impl<T> Page<T> {
    /// A page that is the whole list.
    pub fn all(items: Vec<T>) -> Self {
        Self {
            items,
            next_cursor: None,
        }
    }
}

// --- operations (every service) -----------------------------------------------------------------

/// One readiness check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Check {
    /// Whether it passed.
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Check {
    /// A passed check.
    pub fn pass() -> Self {
        Self {
            ok: true,
            error: None,
        }
    }

    /// A failed check and why.
    pub fn fail(reason: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: Some(reason.into()),
        }
    }
}

/// `GET /health/live`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Liveness {
    /// Always `live`.
    pub status: String,
    /// The service's version (absent from builds older than `omsctl version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// What is waiting in a service's outbox.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Backlog {
    /// Rows not yet published (and not failed).
    pub pending: i64,
    /// Age of the oldest of them.
    pub oldest_pending_seconds: f64,
    /// Rows that failed permanently.
    pub failed: i64,
}

/// `GET /health/ready` (200 when ready, 503 when not).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: String,
    /// Its database answers.
    pub database: Check,
    /// The broker answers.
    pub broker: Check,
    /// The relay loop is alive.
    pub relay: Check,
    /// This instance's relay publishes (holds the outbox lock).
    pub relay_leader: bool,
    /// The outbox backlog, when the database answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox: Option<Backlog>,
}

impl Readiness {
    /// Whether every check passed.
    pub fn is_ready(&self) -> bool {
        self.status == "ready"
    }
}

/// `GET /outbox/pending`: a row not yet published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PendingRow {
    /// Row id (publish order).
    pub id: i64,
    /// Destination topic.
    pub topic: String,
    /// Message key, as text.
    pub key: Option<String>,
    /// Message id.
    pub message_id: Option<Uuid>,
    /// Message type.
    pub message_type: Option<String>,
    /// Written at.
    pub created_at: DateTime<Utc>,
    /// Publish attempts so far.
    pub attempts: i32,
    /// Next attempt.
    pub next_attempt_at: DateTime<Utc>,
    /// Last publish error.
    pub last_error: Option<String>,
    /// Set aside as unpublishable.
    pub failed_at: Option<DateTime<Utc>>,
}

// --- order service ------------------------------------------------------------------------------

crate::values::wire_enum! {
    /// Where an order stands.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub enum OrderStatus {
        /// Accepted; the saga runs.
        Pending = "PENDING",
        /// Stock held for it, payment authorized; being fulfilled.
        Confirmed = "CONFIRMED",
        /// The carrier has it.
        Shipped = "SHIPPED",
        /// The customer has it (terminal).
        Delivered = "DELIVERED",
        /// Rejected, declined, timed out or cancelled; everything undone, a charge refunded.
        Cancelled = "CANCELLED",
    }
    /// A name that is no [`OrderStatus`] (in any case).
    pub struct UnknownOrderStatus("order status", any_case);
}

impl OrderStatus {
    /// Confirmed, shipped or delivered: the order was placed (paid, stock held) and not undone.
    pub fn is_placed(self) -> bool {
        matches!(
            self,
            OrderStatus::Confirmed | OrderStatus::Shipped | OrderStatus::Delivered
        )
    }

    /// Delivered or cancelled: nothing more will happen.
    pub fn is_final(self) -> bool {
        matches!(self, OrderStatus::Delivered | OrderStatus::Cancelled)
    }
}

/// `POST /orders` body, as a client sends it. Its fields are plain strings and numbers because
/// the order service checks them itself, reporting every problem under its field name (a client
/// never needs to know the id rules to get a precise answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateOrder {
    /// Who orders (the service's default customer when left out): 1 to 128 characters, no
    /// control characters (C0, DEL, C1), not only blanks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 128,
            pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff][^\x00-\x1f\x7f-\x9f]*$"
        )
    )]
    pub customer_id: Option<String>,
    /// 1 to 50 lines (the service's `--max-lines`); lines of one product are added up into one
    /// line of their total quantity.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 50))]
    pub items: Vec<RequestedLine>,
    /// Payment method token (`tok_visa`, ...; the service's default when left out): 1 to 64
    /// letters, digits or `_`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_]{1,64}$"))]
    pub payment_token: Option<String>,
    /// Where it ships to (left out: the customer's address on file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<ShippingAddress>,
}

/// A line of [`CreateOrder`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestedLine {
    /// Catalog product id: 1 to 64 lowercase ASCII letters, digits, `-`, `_` or `.`.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[a-z0-9._-]{1,64}$"))]
    pub product_id: String,
    /// Units wanted: 1 to 1000 (the service's `--max-quantity`).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub quantity: u32,
}

/// `POST /orders` answer (201, or 200 when an `Idempotency-Key` replays it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct OrderAccepted {
    /// The new order.
    pub order_id: Uuid,
    /// Always `PENDING`.
    pub status: OrderStatus,
    /// Who ordered.
    pub customer_id: CustomerId,
    /// The lines as accepted.
    pub items: Vec<OrderLine>,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// `GET /orders/{id}`, and the entries of `GET /orders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    /// Order id.
    pub order_id: Uuid,
    /// Who ordered.
    pub customer_id: CustomerId,
    /// Where it stands.
    pub status: OrderStatus,
    /// Lines as ordered.
    pub items: Vec<OrderLine>,
    /// Lines as priced (once confirmed).
    pub lines: Option<Vec<PricedLine>>,
    /// Total (once confirmed).
    pub total: Option<Money>,
    /// The authorized payment (once confirmed).
    pub payment_id: Option<Uuid>,
    /// Why it was cancelled.
    pub cancel_reason: Option<String>,
    /// Details of the cancellation.
    pub cancel_detail: Option<String>,
    /// Accepted.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Reached its outcome: confirmed or cancelled (delivery is `deliveredAt`).
    pub completed_at: Option<DateTime<Utc>>,
    /// Where it ships to (absent: the customer's address on file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<ShippingAddress>,
    /// When its shipment was picked: from then on it can no longer be cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picked_at: Option<DateTime<Utc>>,
    /// When the carrier took it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipped_at: Option<DateTime<Utc>>,
    /// When it was delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<DateTime<Utc>>,
    /// The carrier's tracking number (once shipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    /// When the customer asked for it to be cancelled (`POST /orders/{id}/cancel`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_requested_at: Option<DateTime<Utc>>,
    /// The trace of the request that placed it (32 hex digits): its journey through every
    /// service in a trace backend. Absent for orders placed before tracing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{32}$"))]
    pub trace_id: Option<String>,
}

// --- payment service ----------------------------------------------------------------------------

/// `GET /payments/{orderId}`, and the entries of `GET /payments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PaymentView {
    /// The order paid for.
    pub order_id: Uuid,
    /// The payment.
    pub payment_id: Uuid,
    /// `AUTHORIZED`, `DECLINED` or `REFUNDED`.
    pub status: String,
    /// Amount.
    pub amount: Money,
    /// Who pays.
    pub customer_id: Option<String>,
    /// Why it was declined.
    pub decline_reason: Option<String>,
    /// Why it was refunded.
    pub refund_reason: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// Longest latency the gateway knobs accept, in milliseconds.
pub const MAX_GATEWAY_LATENCY_MS: u64 = 120_000;

/// `GET` / `PUT /gateway/faults`: the simulated gateway's fault knobs (fields left out are
/// zero).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayKnobs {
    /// Share of otherwise approved payments declined (0 to 1).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1))]
    pub decline_rate: f64,
    /// Added to every answer, in milliseconds (at most 120,000).
    #[serde(default, deserialize_with = "whole")]
    #[cfg_attr(feature = "openapi", schema(maximum = 120_000))]
    pub latency_ms: u64,
    /// Share of calls that fail transiently (0 to 1).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1))]
    pub error_rate: f64,
}

/// Reasons per field why fault knobs are out of range: rates in 0..=1, a latency of at most
/// [`MAX_GATEWAY_LATENCY_MS`].
fn knob_problems(rates: &[(&'static str, f64)], latency_ms: u64) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (field, rate) in rates {
        if !(0.0..=1.0).contains(rate) {
            out.push((*field, "must be between 0 and 1".to_owned()));
        }
    }
    if latency_ms > MAX_GATEWAY_LATENCY_MS {
        out.push((
            "latencyMs",
            format!("must be at most {MAX_GATEWAY_LATENCY_MS}"),
        ));
    }
    out
}

impl GatewayKnobs {
    /// Reasons per field why these knobs are out of range.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        knob_problems(
            &[
                ("declineRate", self.decline_rate),
                ("errorRate", self.error_rate),
            ],
            self.latency_ms,
        )
    }

    /// Whether every knob is off.
    pub fn is_off(&self) -> bool {
        *self == Self::default()
    }
}

// --- fulfillment service ------------------------------------------------------------------------

crate::values::wire_enum! {
    /// Where a shipment stands.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub enum ShipmentStatus {
        /// Created; waiting to be booked with the carrier and picked. Still cancellable.
        Pending = "PENDING",
        /// Off the shelf (stock sold); no longer cancellable.
        Picked = "PICKED",
        /// With the carrier.
        Shipped = "SHIPPED",
        /// Delivered (terminal).
        Delivered = "DELIVERED",
        /// The carrier refused it before pick (terminal).
        Failed = "FAILED",
        /// Cancelled before pick (terminal).
        Cancelled = "CANCELLED",
    }
    /// A name that is no [`ShipmentStatus`] (in any case).
    pub struct UnknownShipmentStatus("shipment status", any_case);
}

impl ShipmentStatus {
    /// Whether goods left the shelf (picked, shipped or delivered).
    pub fn is_picked(self) -> bool {
        matches!(
            self,
            ShipmentStatus::Picked | ShipmentStatus::Shipped | ShipmentStatus::Delivered
        )
    }
}

/// `GET /shipments/{orderId}`, and the entries of `GET /shipments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ShipmentView {
    /// The order shipped.
    pub order_id: Uuid,
    /// The shipment.
    pub shipment_id: Uuid,
    /// Where it stands.
    pub status: ShipmentStatus,
    /// Who receives it (none for a cancellation that came before the shipment was asked for).
    pub customer_id: Option<String>,
    /// What it holds.
    pub lines: Vec<PricedLine>,
    /// Where to (absent: the customer's address on file).
    pub shipping_address: Option<ShippingAddress>,
    /// The carrier's tracking number (once shipped).
    pub tracking_number: Option<String>,
    /// Why the carrier refused it.
    pub fail_reason: Option<String>,
    /// Why it was cancelled.
    pub cancel_reason: Option<String>,
    /// Carrier calls that failed transiently so far.
    pub attempts: i32,
    /// The last transient carrier error.
    pub last_error: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Picked.
    pub picked_at: Option<DateTime<Utc>>,
    /// Handed to the carrier.
    pub shipped_at: Option<DateTime<Utc>>,
    /// Delivered.
    pub delivered_at: Option<DateTime<Utc>>,
}

/// `GET` / `PUT /carrier/faults`: the simulated carrier's fault knobs (fields left out are zero).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CarrierKnobs {
    /// Share of otherwise deliverable shipments the carrier refuses at booking (0 to 1).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1))]
    pub failure_rate: f64,
    /// Added to every carrier step, in milliseconds (at most 120,000).
    #[serde(default, deserialize_with = "whole")]
    #[cfg_attr(feature = "openapi", schema(maximum = 120_000))]
    pub latency_ms: u64,
    /// Share of carrier calls that fail transiently and are retried (0 to 1; 1 is an outage).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1))]
    pub error_rate: f64,
}

impl CarrierKnobs {
    /// Reasons per field why these knobs are out of range.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        knob_problems(
            &[
                ("failureRate", self.failure_rate),
                ("errorRate", self.error_rate),
            ],
            self.latency_ms,
        )
    }

    /// Whether every knob is off.
    pub fn is_off(&self) -> bool {
        *self == Self::default()
    }
}

// --- inventory service --------------------------------------------------------------------------

/// `GET /products/{id}`, and the entries of `GET /products`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ProductView {
    /// Catalog id.
    pub product_id: String,
    /// Display name.
    pub name: String,
    /// Price of one unit.
    pub unit_price: Money,
    /// Free to reserve.
    pub available: i32,
    /// Held for orders in flight.
    pub reserved: i32,
    /// Sold.
    pub sold: i32,
    /// In the warehouse: available plus reserved.
    pub on_hand: i32,
    /// Stock at first start.
    pub initial: i32,
    /// Net stock added (or removed) by operators since.
    pub adjusted: i32,
    /// Last stock change.
    pub updated_at: DateTime<Utc>,
}

/// `PUT /products/{id}/stock` body: the new available stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetStock {
    /// Units free to reserve: 0 to 1,000,000.
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1_000_000))]
    #[serde(deserialize_with = "whole")]
    pub available: i64,
}

/// `GET /reservations/{orderId}`, and the entries of `GET /reservations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReservationView {
    /// The order.
    pub order_id: Uuid,
    /// `RESERVED`, `REJECTED`, `RELEASED`, `COMMITTED` or `EXPIRED`.
    pub status: String,
    /// Lines as priced (empty when rejected).
    pub lines: Vec<PricedLine>,
    /// Total, when reserved.
    pub total: Option<Money>,
    /// Why it was rejected.
    pub reject_reason: Option<String>,
    /// The products that were short.
    pub rejected_product_ids: Vec<String>,
    /// When an unconfirmed reservation gives its stock back.
    pub expires_at: Option<DateTime<Utc>>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

// --- notification service -----------------------------------------------------------------------

/// The entries of `GET /notifications`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct NotificationView {
    /// Row id.
    pub id: i64,
    /// The order.
    pub order_id: Uuid,
    /// Whose order (absent for notifications of events that did not say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<CustomerId>,
    /// `ORDER_CONFIRMED`, `ORDER_SHIPPED`, `ORDER_DELIVERED` or `ORDER_CANCELLED`.
    pub kind: String,
    /// The cancel reason.
    pub reason: Option<String>,
    /// The text sent.
    pub message: String,
    /// The event that caused it.
    pub cause_event_id: Uuid,
    /// Sent.
    pub created_at: DateTime<Utc>,
}

// --- saga orchestrator --------------------------------------------------------------------------

crate::values::wire_enum! {
    /// Where a saga stands.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub enum SagaState {
        /// `inventory.reserve` sent; waiting for reserved or rejected.
        Reserving = "RESERVING",
        /// Stock reserved, `payment.authorize` sent; waiting for its outcome.
        Authorizing = "AUTHORIZING",
        /// Compensating: `inventory.release` sent; the order is cancelled once stock is back.
        Releasing = "RELEASING",
        /// Terminal: stock sold, payment authorized, `order.confirmed` sent.
        Confirmed = "CONFIRMED",
        /// Terminal: everything undone, `order.cancelled` sent.
        Cancelled = "CANCELLED",
    }
    /// A name that is no [`SagaState`] (in any case).
    pub struct UnknownSagaState("saga state", any_case);
}

impl SagaState {
    /// Confirmed or cancelled: nothing more will happen.
    pub fn is_terminal(self) -> bool {
        matches!(self, SagaState::Confirmed | SagaState::Cancelled)
    }
}

crate::values::wire_enum! {
    /// Where the fulfillment part of a saga stands (after the order was confirmed).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub enum FulfillmentState {
        /// `fulfillment.ship` sent; waiting for the pick (or a carrier refusal).
        Shipping = "SHIPPING",
        /// Picked: stock sold, no longer cancellable; waiting for the carrier.
        Picked = "PICKED",
        /// With the carrier; waiting for delivery.
        Shipped = "SHIPPED",
        /// Terminal: delivered, `order.delivered` sent.
        Delivered = "DELIVERED",
        /// The customer cancelled: `fulfillment.cancel` sent; waiting for fulfillment's answer.
        Cancelling = "CANCELLING",
        /// The shipment is off: refund and release sent; waiting for both.
        Refunding = "REFUNDING",
        /// Terminal: refunded, released, `order.cancelled` sent.
        Cancelled = "CANCELLED",
    }
    /// A name that is no [`FulfillmentState`] (in any case).
    pub struct UnknownFulfillmentState("fulfillment state", any_case);
}

impl FulfillmentState {
    /// Delivered or cancelled: nothing more will happen.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            FulfillmentState::Delivered | FulfillmentState::Cancelled
        )
    }
}

/// The fulfillment part of a [`SagaView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct FulfillmentView {
    /// Where it stands.
    pub state: FulfillmentState,
    /// The shipment (once fulfillment named it).
    pub shipment_id: Option<Uuid>,
    /// The carrier's tracking number (once shipped).
    pub tracking_number: Option<String>,
    /// Why it is being or was cancelled.
    pub cancel_reason: Option<String>,
    /// The customer asked for a cancellation that came too late (after the pick).
    pub cancel_refused: bool,
    /// `payment.refund` was sent.
    pub refund_requested: bool,
    /// When the current step asks again.
    pub deadline_at: Option<DateTime<Utc>>,
}

/// `GET /sagas/{orderId}` (with `steps`), and the entries of `GET /sagas` (without).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SagaView {
    /// The order (and the saga's id).
    pub order_id: Uuid,
    /// The order's journey, carried by every message.
    pub correlation_id: Uuid,
    /// Where it stands.
    pub state: SagaState,
    /// Who pays.
    pub customer_id: CustomerId,
    /// Lines as ordered.
    pub items: Vec<OrderLine>,
    /// Lines as priced (once reserved).
    pub lines: Vec<PricedLine>,
    /// Order total (once reserved).
    pub total: Option<Money>,
    /// The authorized payment.
    pub payment_id: Option<Uuid>,
    /// Why the order is being or was cancelled.
    pub cancel_reason: Option<String>,
    /// Details of the cancellation.
    pub cancel_detail: Option<String>,
    /// `payment.authorize` was sent.
    pub payment_requested: bool,
    /// `payment.refund` was sent.
    pub refund_requested: bool,
    /// When the current step gives up (none once terminal).
    pub deadline_at: Option<DateTime<Utc>>,
    /// After confirmation: the shipment's part of the process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fulfillment: Option<FulfillmentView>,
    /// Past its deadline and still running.
    pub stuck: bool,
    /// The note of its latest applied step.
    pub last_step: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// The step history, oldest first (only on the detail endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<SagaStep>>,
}

/// `POST /sagas/{orderId}/cancel`: why the operator cancels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancelSaga {
    /// Why, for the saga's history and the order's cancel detail (1 to 200 characters, not
    /// all blank).
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 200, pattern = r"\S")
    )]
    pub reason: String,
}

/// The answer of `POST /sagas/{orderId}/retry` and `/cancel`: what the action did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SagaAction {
    /// Whether it changed the saga (false: nothing to do, e.g. already cancelled).
    pub applied: bool,
    /// What it did or why not, as recorded in the history.
    pub note: String,
    /// Message types sent.
    pub sent: Vec<String>,
    /// The saga afterwards.
    pub saga: SagaView,
}

/// One entry of a saga's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SagaStep {
    /// State before (none for the first step).
    pub from: Option<String>,
    /// State after.
    pub to: String,
    /// What arrived: a message type or `deadline`.
    pub input: String,
    /// The message that caused it.
    pub cause_event_id: Option<Uuid>,
    /// Whether it changed anything.
    pub applied: bool,
    /// Why.
    pub note: String,
    /// Message types sent.
    pub sent: Vec<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// `GET /sagas/summary`: counts by state, and running sagas past their deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SagaSummary {
    /// Count per state (every state present, zero included).
    pub by_state: BTreeMap<String, i64>,
    /// Confirmed sagas per fulfillment state (every state present, zero included).
    #[serde(default)]
    pub by_fulfillment_state: BTreeMap<String, i64>,
    /// Running sagas past their deadline.
    pub stuck: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_parse_from_their_names_in_any_case() {
        for s in OrderStatus::ALL {
            assert_eq!(s.as_str().to_lowercase().parse::<OrderStatus>(), Ok(s));
        }
        for s in SagaState::ALL {
            assert_eq!(s.as_str().parse::<SagaState>(), Ok(s));
        }
        for s in ShipmentStatus::ALL {
            assert_eq!(s.as_str().parse::<ShipmentStatus>(), Ok(s));
        }
        assert!("PICKED".parse::<OrderStatus>().is_err());
        assert!("SHIPPING".parse::<ShipmentStatus>().is_err());
        let placed: Vec<OrderStatus> = OrderStatus::ALL
            .into_iter()
            .filter(|s| s.is_placed())
            .collect();
        assert_eq!(
            placed,
            [
                OrderStatus::Confirmed,
                OrderStatus::Shipped,
                OrderStatus::Delivered
            ]
        );
        assert!(
            FulfillmentState::Delivered.is_terminal() && !FulfillmentState::Picked.is_terminal()
        );
        assert!(SagaState::Cancelled.is_terminal() && !SagaState::Releasing.is_terminal());
    }

    #[test]
    fn statuses_and_states_are_wire_enums_with_their_names() {
        use crate::values::check_wire_enum;
        check_wire_enum(&OrderStatus::ALL, OrderStatus::as_str, true);
        check_wire_enum(&ShipmentStatus::ALL, ShipmentStatus::as_str, true);
        check_wire_enum(&SagaState::ALL, SagaState::as_str, true);
        check_wire_enum(&FulfillmentState::ALL, FulfillmentState::as_str, true);
        // The wire, byte for byte: JSON, the status columns and the APIs' filters carry these.
        let json = |v: serde_json::Result<String>| v.unwrap_or_default();
        assert_eq!(
            json(serde_json::to_string(&OrderStatus::ALL)),
            r#"["PENDING","CONFIRMED","SHIPPED","DELIVERED","CANCELLED"]"#
        );
        assert_eq!(
            json(serde_json::to_string(&ShipmentStatus::ALL)),
            r#"["PENDING","PICKED","SHIPPED","DELIVERED","FAILED","CANCELLED"]"#
        );
        assert_eq!(
            json(serde_json::to_string(&SagaState::ALL)),
            r#"["RESERVING","AUTHORIZING","RELEASING","CONFIRMED","CANCELLED"]"#
        );
        assert_eq!(
            json(serde_json::to_string(&FulfillmentState::ALL)),
            r#"["SHIPPING","PICKED","SHIPPED","DELIVERED","CANCELLING","REFUNDING","CANCELLED"]"#
        );
        assert_eq!(
            "LOST".parse::<SagaState>().map_err(|e| e.to_string()),
            Err(r#"unknown saga state "LOST" (expected one of RESERVING, AUTHORIZING, RELEASING, CONFIRMED, CANCELLED)"#.to_owned())
        );
    }

    /// The OpenAPI schemas list the wire names (`cargo test -p oms-contracts --features openapi`).
    #[cfg(feature = "openapi")]
    #[test]
    fn openapi_schemas_list_the_wire_names() {
        use utoipa::PartialSchema;
        fn names<T: PartialSchema>() -> serde_json::Value {
            serde_json::to_value(T::schema()).unwrap_or_default()["enum"].clone()
        }
        let wire = |names: &[&str]| serde_json::json!(names);
        assert_eq!(
            names::<OrderStatus>(),
            wire(&OrderStatus::ALL.map(OrderStatus::as_str))
        );
        assert_eq!(
            names::<ShipmentStatus>(),
            wire(&ShipmentStatus::ALL.map(ShipmentStatus::as_str))
        );
        assert_eq!(
            names::<SagaState>(),
            wire(&SagaState::ALL.map(SagaState::as_str))
        );
        assert_eq!(
            names::<FulfillmentState>(),
            wire(&FulfillmentState::ALL.map(FulfillmentState::as_str))
        );
        assert_eq!(
            names::<crate::auth::Role>(),
            wire(&crate::auth::Role::ALL.map(crate::auth::Role::as_str))
        );
    }

    #[test]
    fn pages_and_errors_keep_their_wire_shape() {
        let page = Page::all(vec![1, 2]);
        let v = serde_json::to_value(&page).unwrap_or_default();
        assert_eq!(v, serde_json::json!({"items": [1, 2], "nextCursor": null}));
        let back: Page<i32> =
            serde_json::from_str(r#"{"items": [3]}"#).unwrap_or_else(|_| Page::all(Vec::new()));
        assert_eq!(back.items, [3]);
        let e: Problem = serde_json::from_str(
            r#"{"type": "urn:oms:problem:validation", "title": "Validation failed", "status": 400, "detail": "1 field is invalid", "errors": {"items": "empty"}}"#,
        )
        .unwrap_or_else(|_| Problem {
            kind: String::new(),
            title: String::new(),
            status: 0,
            detail: String::new(),
            errors: BTreeMap::new(),
        });
        assert_eq!(e.kind, PROBLEM_VALIDATION);
        assert_eq!(e.summary(), "1 field is invalid (items: empty)");
        // A bare problem is about:blank; no `errors` member when there are none.
        let bare: Result<Problem, _> =
            serde_json::from_str(r#"{"title": "Not Found", "status": 404}"#);
        assert_eq!(
            bare.as_ref().map(|p| p.kind.as_str()).ok(),
            Some("about:blank")
        );
        let v = serde_json::to_value(bare.ok()).unwrap_or_default();
        assert!(v.get("errors").is_none(), "{v}");
    }

    #[test]
    fn whole_numbers_may_be_written_with_a_zero_fraction() {
        let n = |s: &str| serde_json::from_str::<serde_json::Number>(s).ok();
        assert_eq!(n("7").as_ref().and_then(whole_number), Some(7));
        assert_eq!(n("7.0").as_ref().and_then(whole_number), Some(7));
        assert_eq!(n("7.5").as_ref().and_then(whole_number), None);
        assert_eq!(n("1e300").as_ref().and_then(whole_number), None);
        let s: Result<SetStock, _> = serde_json::from_str(r#"{"available": 1268.0}"#);
        assert_eq!(s.ok(), Some(SetStock { available: 1268 }));
        assert!(serde_json::from_str::<SetStock>(r#"{"available": 1.5}"#).is_err());
        let k: Result<GatewayKnobs, _> = serde_json::from_str(r#"{"latencyMs": 250.0}"#);
        assert_eq!(k.ok().map(|k| k.latency_ms), Some(250));
        assert!(serde_json::from_str::<GatewayKnobs>(r#"{"latencyMs": -1}"#).is_err());
    }

    #[test]
    fn gateway_knobs_out_of_range_are_named_by_field() {
        let k = GatewayKnobs {
            decline_rate: 1.5,
            latency_ms: MAX_GATEWAY_LATENCY_MS + 1,
            error_rate: -0.1,
        };
        let fields: Vec<&str> = k.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["declineRate", "errorRate", "latencyMs"]);
        assert!(GatewayKnobs::default().problems().is_empty() && GatewayKnobs::default().is_off());
        assert!(serde_json::from_str::<GatewayKnobs>(r#"{"declineRat": 1}"#).is_err());
    }
}
