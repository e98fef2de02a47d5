//! The saga's second part: the order's life after confirmation, as a pure function like the
//! first.
//!
//! ```text
//! CONFIRMED ─► SHIPPING ──picked──► PICKED ──shipped──► SHIPPED ──delivered──► DELIVERED
//!                 │  │                 ▲
//!                 │  └─cancel─► CANCELLING ─picked (the cancel lost the race)
//!                 │                    │
//!                 └─failed──────┐      └─cancelled─┐
//!                               ▼                  ▼
//!                          REFUNDING (payment.refund + inventory.release) ──both answered──► CANCELLED
//! ```
//!
//! Fulfillment owns the pick, so only its answer decides a cancellation: the saga never refunds
//! a shipment fulfillment did not confirm as cancelled, and never announces a shipment after
//! asking for a refund. No deadline here gives up: a step that waits too long asks again (every
//! command is idempotent), because goods may be on their way; an operator decides the rest.

use chrono::{DateTime, Utc};
use oms_contracts::api::FulfillmentState;
use oms_contracts::messages::{
    CancelReason, CancelShipment, OrderCancelled, OrderDelivered, OrderShipped, RefundPayment,
    ReleaseReason, ReleaseStock, ShipOrder,
};
use oms_contracts::Message;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{deadline, Deadlines, Input, Saga, Step};

/// What the orchestrator knows of the order's fulfillment (stored inside its [`Saga`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fulfillment {
    /// Where it stands.
    pub state: FulfillmentState,
    /// The shipment, once fulfillment named it.
    pub shipment_id: Option<Uuid>,
    /// The carrier's tracking number, once shipped.
    pub tracking_number: Option<String>,
    /// Why it is being or was cancelled.
    pub cancel_reason: Option<CancelReason>,
    /// Details of the cancellation.
    pub cancel_detail: Option<String>,
    /// A cancellation came after the pick and was refused.
    pub cancel_refused: bool,
    /// `payment.refund` was sent.
    pub refund_requested: bool,
    /// The payment service answered the refund.
    pub refunded: bool,
    /// Inventory confirmed the release.
    pub released: bool,
    /// `order.shipped` was sent.
    pub shipped_announced: bool,
    /// A carrier fact arrived after the cancellation and the cancel was asked again (once).
    pub recall_requested: bool,
}

impl Fulfillment {
    fn new() -> Self {
        Self {
            state: FulfillmentState::Shipping,
            shipment_id: None,
            tracking_number: None,
            cancel_reason: None,
            cancel_detail: None,
            cancel_refused: false,
            refund_requested: false,
            refunded: false,
            released: false,
            shipped_announced: false,
            recall_requested: false,
        }
    }
}

/// Starts fulfillment of a just-confirmed saga: `fulfillment.ship` with a deadline.
pub(crate) fn start(
    saga: &mut Saga,
    commands: &mut Vec<Message>,
    now: DateTime<Utc>,
    d: &Deadlines,
) {
    saga.fulfillment = Some(Fulfillment::new());
    saga.deadline_at = deadline(now, d.fulfillment);
    commands.push(ship(saga));
}

fn ship(saga: &Saga) -> Message {
    ShipOrder {
        order_id: saga.order_id,
        customer_id: saga.customer_id.clone(),
        lines: saga.lines.clone(),
        shipping_address: saga.shipping_address.clone(),
    }
    .into()
}

fn cancel_shipment(saga: &Saga, reason: CancelReason) -> Message {
    CancelShipment {
        order_id: saga.order_id,
        reason,
    }
    .into()
}

/// A cancellation that came too late: the shipment goes on, the cancel is forgotten.
fn refuse_cancel(g: &mut Fulfillment) {
    g.cancel_refused = true;
    g.cancel_reason = None;
    g.cancel_detail = None;
}

/// Applies one input to a confirmed saga's fulfillment `f`.
pub(crate) fn transition(
    saga: &Saga,
    f: &Fulfillment,
    input: Input<'_>,
    now: DateTime<Utc>,
    d: &Deadlines,
) -> Step {
    use FulfillmentState as S;
    let ignore = |why: String| Step {
        saga: saga.clone(),
        commands: Vec::new(),
        note: why,
        applied: false,
    };
    let mut next = saga.clone();
    let mut g = f.clone();
    let mut commands: Vec<Message> = Vec::new();
    let mut due = deadline(now, d.fulfillment);
    let picked_or_later = matches!(f.state, S::Picked | S::Shipped | S::Delivered);

    let note: String = match (f.state, input) {
        // A carrier fact after the cancellation: fulfillment confirmed the cancel, so this is a
        // stale or replayed message; ask for the cancellation once more so fulfillment's answer
        // settles it, and never announce or charge anything.
        (
            S::Refunding | S::Cancelled,
            Input::Message(
                m @ (Message::FulfillmentPicked(_)
                | Message::FulfillmentShipped(_)
                | Message::FulfillmentDelivered(_)),
            ),
        ) => {
            if f.recall_requested {
                return ignore(format!(
                    "late {} in {}: its cancellation was asked again already; ignored",
                    m.message_type(),
                    f.state
                ));
            }
            g.recall_requested = true;
            commands.push(cancel_shipment(
                saga,
                f.cancel_reason.unwrap_or(CancelReason::CustomerCancelled),
            ));
            due = saga.deadline_at;
            format!(
                "late {} after the cancellation; the shipment's cancellation asked again",
                m.message_type()
            )
        }

        (S::Shipping | S::Cancelling, Input::Message(Message::FulfillmentPicked(m))) => {
            g.state = S::Picked;
            g.shipment_id = Some(m.shipment_id);
            if f.state == S::Cancelling {
                refuse_cancel(&mut g);
                "picked before the cancellation arrived: the cancellation is refused, shipping on"
                    .to_owned()
            } else {
                format!("shipment {} picked; stock sold", m.shipment_id)
            }
        }
        (
            S::Shipping | S::Cancelling | S::Picked,
            Input::Message(Message::FulfillmentShipped(m)),
        ) => {
            if f.state == S::Cancelling {
                refuse_cancel(&mut g);
            }
            g.state = S::Shipped;
            g.shipment_id = Some(m.shipment_id);
            g.tracking_number = Some(m.tracking_number.clone());
            g.shipped_announced = true;
            commands.push(
                OrderShipped {
                    order_id: saga.order_id,
                    shipment_id: m.shipment_id,
                    tracking_number: m.tracking_number.clone(),
                    customer_id: saga.customer_id.clone(),
                }
                .into(),
            );
            format!("shipped, tracking {}", m.tracking_number)
        }
        (
            S::Shipping | S::Cancelling | S::Picked | S::Shipped,
            Input::Message(Message::FulfillmentDelivered(m)),
        ) => {
            if f.state == S::Cancelling {
                refuse_cancel(&mut g);
            }
            g.state = S::Delivered;
            g.shipment_id = Some(m.shipment_id);
            due = None;
            commands.push(
                OrderDelivered {
                    order_id: saga.order_id,
                    shipment_id: m.shipment_id,
                    customer_id: saga.customer_id.clone(),
                }
                .into(),
            );
            "delivered; the order is complete".to_owned()
        }

        (S::Shipping | S::Cancelling, Input::Message(Message::FulfillmentFailed(m))) => {
            let reason = if f.state == S::Cancelling {
                f.cancel_reason.unwrap_or(CancelReason::CustomerCancelled)
            } else {
                CancelReason::FulfillmentFailed
            };
            let detail = format!(
                "the carrier refused the shipment: {}",
                oms_contracts::wire_name(&m.reason)
            );
            g.shipment_id = Some(m.shipment_id);
            refund(saga, &mut g, &mut commands, reason, detail.clone());
            format!("{detail}; refunding the payment and releasing the stock")
        }
        (S::Shipping | S::Cancelling, Input::Message(Message::FulfillmentCancelled(m))) => {
            let reason = f.cancel_reason.unwrap_or(CancelReason::FulfillmentFailed);
            let detail = f
                .cancel_detail
                .clone()
                .unwrap_or_else(|| "the shipment was cancelled by fulfillment".to_owned());
            g.shipment_id = m.shipment_id.or(f.shipment_id);
            refund(saga, &mut g, &mut commands, reason, detail);
            "shipment cancelled before pick; refunding the payment and releasing the stock"
                .to_owned()
        }

        (S::Shipping, Input::Message(Message::OrderCancelRequested(m))) => {
            g.state = S::Cancelling;
            g.cancel_reason = Some(CancelReason::CustomerCancelled);
            g.cancel_detail = Some(format!("cancelled by the customer ({})", m.requested_by));
            commands.push(cancel_shipment(saga, CancelReason::CustomerCancelled));
            format!(
                "cancellation requested by {}; asking fulfillment to cancel the shipment",
                m.requested_by
            )
        }
        (_, Input::Message(Message::OrderCancelRequested(m))) if picked_or_later => {
            if f.cancel_refused {
                return ignore(format!(
                    "order.cancel-requested by {} in {}: refused already; ignored",
                    m.requested_by, f.state
                ));
            }
            g.cancel_refused = true;
            due = saga.deadline_at;
            format!(
                "cancellation requested by {} refused: the shipment is {}",
                m.requested_by,
                f.state.as_str().to_lowercase()
            )
        }

        (S::Refunding, Input::Message(Message::PaymentRefunded(_))) if !f.refunded => {
            g.refunded = true;
            settle(saga, &mut g, &mut commands, &mut due, "payment refunded")
        }
        (S::Refunding, Input::Message(Message::InventoryReleased(_))) if !f.released => {
            g.released = true;
            settle(saga, &mut g, &mut commands, &mut due, "stock released")
        }

        (S::Shipping | S::Picked | S::Shipped, Input::DeadlinePassed | Input::Retry { .. }) => {
            commands.push(ship(saga));
            format!(
                "{}: the shipment's state asked for again",
                who_asks(input, f.state)
            )
        }
        (S::Cancelling, Input::DeadlinePassed | Input::Retry { .. }) => {
            commands.push(cancel_shipment(
                saga,
                f.cancel_reason.unwrap_or(CancelReason::CustomerCancelled),
            ));
            format!("{}: cancellation asked again", who_asks(input, f.state))
        }
        (S::Refunding, Input::DeadlinePassed | Input::Retry { .. }) => {
            if !f.refunded {
                commands.push(refund_command(saga, f));
            }
            if !f.released {
                commands.push(release(saga));
            }
            format!(
                "{}: {} asked again",
                who_asks(input, f.state),
                match (f.refunded, f.released) {
                    (false, false) => "refund and release",
                    (false, true) => "refund",
                    _ => "release",
                }
            )
        }

        (state, input) => {
            let why = if state.is_terminal() {
                "fulfillment already finished"
            } else {
                "not expected in this state"
            };
            return ignore(format!("{} in {state}: {why}; ignored", input.name()));
        }
    };
    next.fulfillment = Some(g);
    if due != saga.deadline_at {
        next.deadline_extended_ms = 0;
    }
    next.deadline_at = due;
    Step {
        saga: next,
        commands,
        note,
        applied: true,
    }
}

fn who_asks(input: Input<'_>, state: FulfillmentState) -> String {
    match input {
        Input::Retry { who } => format!("retry by {who} in {state}"),
        _ => format!("no answer in {state} before the deadline"),
    }
}

fn refund_command(saga: &Saga, f: &Fulfillment) -> Message {
    RefundPayment {
        order_id: saga.order_id,
        reason: f.cancel_reason.unwrap_or(CancelReason::CustomerCancelled),
    }
    .into()
}

fn release(saga: &Saga) -> Message {
    ReleaseStock {
        order_id: saga.order_id,
        reason: ReleaseReason::Compensation,
    }
    .into()
}

/// The shipment is off: refund the payment and release the stock, both once.
fn refund(
    saga: &Saga,
    g: &mut Fulfillment,
    commands: &mut Vec<Message>,
    reason: CancelReason,
    detail: String,
) {
    g.state = FulfillmentState::Refunding;
    g.cancel_reason = Some(reason);
    g.cancel_detail = Some(detail);
    g.refund_requested = true;
    commands.push(refund_command(saga, g));
    commands.push(release(saga));
}

/// After one of the two compensations answered: cancelled once both have.
fn settle(
    saga: &Saga,
    g: &mut Fulfillment,
    commands: &mut Vec<Message>,
    due: &mut Option<DateTime<Utc>>,
    what: &str,
) -> String {
    if !(g.refunded && g.released) {
        *due = saga.deadline_at;
        return format!("{what}; waiting for the other compensation");
    }
    g.state = FulfillmentState::Cancelled;
    *due = None;
    let reason = g.cancel_reason.unwrap_or(CancelReason::CustomerCancelled);
    commands.push(
        OrderCancelled {
            order_id: saga.order_id,
            reason,
            detail: g.cancel_detail.clone(),
            customer_id: Some(saga.customer_id.clone()),
        }
        .into(),
    );
    format!("{what}; refunded and released, order cancelled")
}
