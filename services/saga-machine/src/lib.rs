//! The order saga as a pure function: `(saga, input, now) -> (saga', commands, note)`.
//!
//! Reserve first, then charge (docs/architecture.md, "The order saga"):
//!
//! ```text
//! order.created ──► RESERVING ──inventory.reserved──► AUTHORIZING ──payment.authorized──► CONFIRMED
//!                      │  └─inventory.rejected──► CANCELLED            │
//!                      └─deadline──┐              ┌─payment.declined───┤
//!                                  ▼              ▼    deadline (+ void)┘
//!                                 RELEASING ──inventory.released──► CANCELLED
//! ```
//!
//! Operators add two inputs (`Input::Retry`, `Input::Cancel`), and [`due`] decides whether a
//! deadline that passed during a broker outage stands.
//!
//! Its own crate so that omsctl predicts with the very function the orchestrator runs
//! (`omsctl dlq replay --dry-run`). Nothing here touches a database or a clock: the service
//! loads the saga, calls [`transition`] and stores what comes back, so every rule is unit- and
//! property-tested on its own. A message
//! that does not fit the state (a duplicate, a late answer) is a no-op with a note saying why,
//! never a silent wrong transition. Whenever a payment may exist that no confirmed order stands
//! behind, a `payment.refund` goes out (the payment service refunds or voids it).

use std::time::Duration;

use chrono::{DateTime, Utc};
use oms_contracts::messages::{
    AuthorizePayment, CancelReason, OrderCancelled, OrderConfirmed, OrderCreated, RefundPayment,
    RejectReason, ReleaseReason, ReleaseStock, ReserveStock,
};
use oms_contracts::{CustomerId, Message, Money, OrderId, OrderLine, PricedLine, ShippingAddress};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub mod fulfillment;

pub use fulfillment::Fulfillment;
/// Where a saga and its fulfillment stand: the API's types, so omsctl and the orchestrator share
/// their names.
pub use oms_contracts::api::{FulfillmentState, SagaState};

/// How long each step may wait for its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// Waiting for inventory to reserve or reject.
    pub reserve: Duration,
    /// Waiting for the payment outcome.
    pub payment: Duration,
    /// Waiting for inventory to confirm a release; past it the release is sent again.
    pub release: Duration,
    /// Waiting for each fulfillment step (pick, ship, delivery, cancellation, refund); past it
    /// the step's command is sent again.
    pub fulfillment: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self {
            reserve: Duration::from_secs(30),
            payment: Duration::from_secs(30),
            release: Duration::from_secs(30),
            fulfillment: Duration::from_secs(60),
        }
    }
}

/// Everything the orchestrator knows about one order's saga.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Saga {
    /// The order (and the saga's id).
    pub order_id: OrderId,
    /// The order's journey, carried by every message.
    pub correlation_id: Uuid,
    /// Current state.
    pub state: SagaState,
    /// Who pays.
    pub customer_id: CustomerId,
    /// Payment method token (stored; the API leaves it out).
    pub payment_token: String,
    /// Lines as ordered.
    pub items: Vec<OrderLine>,
    /// Lines as priced by inventory (once reserved).
    pub lines: Vec<PricedLine>,
    /// Order total (once reserved).
    pub total: Option<Money>,
    /// The authorized payment (once authorized).
    pub payment_id: Option<Uuid>,
    /// Why the order is being or was cancelled.
    pub cancel_reason: Option<CancelReason>,
    /// Details of the cancellation.
    pub cancel_detail: Option<String>,
    /// `payment.authorize` was sent.
    pub payment_requested: bool,
    /// `payment.refund` was sent.
    pub refund_requested: bool,
    /// When the current step gives up (none once terminal).
    pub deadline_at: Option<DateTime<Utc>>,
    /// How far the current step's deadline was pushed out for broker outages (ms); a new step
    /// starts at zero.
    #[serde(default)]
    pub deadline_extended_ms: u64,
    /// Where the order ships to (none: the customer's address on file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<ShippingAddress>,
    /// After confirmation: the shipment's part of the process (none for sagas confirmed before
    /// fulfillment existed, which stay finished).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fulfillment: Option<Fulfillment>,
}

impl Saga {
    /// Nothing more will happen: placement finished, and fulfillment too if it started.
    pub fn is_finished(&self) -> bool {
        self.state.is_terminal()
            && self
                .fulfillment
                .as_ref()
                .is_none_or(|f| f.state.is_terminal())
    }
}

/// What arrives at a saga.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// A message about this order.
    Message(&'a Message),
    /// The current step's deadline passed.
    DeadlinePassed,
    /// An operator asks for the current step's command to be sent again (a fresh deadline).
    Retry {
        /// Who asked (the token's subject).
        who: &'a str,
    },
    /// An operator cancels the order now: compensate whatever was done.
    Cancel {
        /// Who asked.
        who: &'a str,
        /// Why, for the record.
        reason: &'a str,
    },
}

impl Input<'_> {
    /// `order.created`, `inventory.reserved`, ..., `deadline`, `operator.retry` or
    /// `operator.cancel`.
    pub fn name(&self) -> &'static str {
        match self {
            Input::Message(m) => m.message_type().as_str(),
            Input::DeadlinePassed => "deadline",
            Input::Retry { .. } => "operator.retry",
            Input::Cancel { .. } => "operator.cancel",
        }
    }
}

/// The result of one input: the saga afterwards, the messages to send, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The saga after the input (equal to before when ignored).
    pub saga: Saga,
    /// Commands and events to send, in order.
    pub commands: Vec<Message>,
    /// Why, for the step history.
    pub note: String,
    /// Whether the input changed anything.
    pub applied: bool,
}

pub(crate) fn deadline(now: DateTime<Utc>, after: Duration) -> Option<DateTime<Utc>> {
    chrono::TimeDelta::from_std(after)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
}

/// The saga that `order.created` starts: in `RESERVING`, asking inventory to reserve every line.
pub fn start(
    created: &OrderCreated,
    correlation_id: Uuid,
    now: DateTime<Utc>,
    deadlines: &Deadlines,
) -> Step {
    let saga = Saga {
        order_id: created.order_id,
        correlation_id,
        state: SagaState::Reserving,
        customer_id: created.customer_id.clone(),
        payment_token: created.payment_token.clone(),
        items: created.items.clone(),
        lines: Vec::new(),
        total: None,
        payment_id: None,
        cancel_reason: None,
        cancel_detail: None,
        payment_requested: false,
        refund_requested: false,
        deadline_at: deadline(now, deadlines.reserve),
        deadline_extended_ms: 0,
        shipping_address: created.shipping_address.clone(),
        fulfillment: None,
    };
    Step {
        commands: vec![reserve(&saga)],
        saga,
        note: "order accepted; reserving stock".into(),
        applied: true,
    }
}

/// Why `message` cannot be a true answer to what this saga asked for, if it cannot: a
/// `payment.authorized` whose amount or currency differs from the total the saga asked the
/// gateway to authorize. Such a fact is never acted on (the service dead-letters it with this
/// reason): a forged or corrupted authorization must not confirm an order.
pub fn refusal(saga: &Saga, message: &Message) -> Option<String> {
    match message {
        Message::PaymentAuthorized(m) => match saga.total {
            Some(total) if m.amount != total => Some(format!(
                "payment.authorized of {} for order {} does not match the {} the saga asked to \
                 authorize (payment {})",
                m.amount, saga.order_id, total, m.payment_id
            )),
            None if saga.payment_requested => Some(format!(
                "payment.authorized for order {} whose total the saga does not know (payment {})",
                saga.order_id, m.payment_id
            )),
            _ => None,
        },
        _ => None,
    }
}

/// Applies one input to `saga`. Pure: the same arguments always give the same step.
pub fn transition(saga: &Saga, input: Input<'_>, now: DateTime<Utc>, d: &Deadlines) -> Step {
    if let (SagaState::Confirmed, Some(f)) = (saga.state, &saga.fulfillment) {
        return fulfillment::transition(saga, f, input, now, d);
    }
    let mut next = saga.clone();
    let mut commands: Vec<Message> = Vec::new();
    let order_id = saga.order_id;
    let ignore = |why: String| Step {
        saga: saga.clone(),
        commands: Vec::new(),
        note: why,
        applied: false,
    };

    let note: String = match (saga.state, input) {
        // A charge nobody stands behind any more gets undone, whatever the state.
        (state, Input::Message(Message::PaymentAuthorized(m)))
            if state != SagaState::Authorizing && state != SagaState::Confirmed =>
        {
            if !saga.payment_requested {
                return ignore(format!(
                    "payment.authorized in {state} although no payment was requested; ignored"
                ));
            }
            if saga.refund_requested {
                return ignore(format!(
                    "late payment.authorized in {state}; its refund is already requested"
                ));
            }
            request_refund(
                &mut next,
                &mut commands,
                saga.cancel_reason.unwrap_or(CancelReason::Timeout),
            );
            format!(
                "late payment.authorized ({}) in {state}; refund requested",
                m.payment_id
            )
        }

        (SagaState::Reserving, Input::Message(Message::InventoryReserved(m))) => {
            next.state = SagaState::Authorizing;
            next.lines = m.lines.clone();
            next.total = Some(m.total);
            next.payment_requested = true;
            next.deadline_at = deadline(now, d.payment);
            commands.push(authorize(saga, m.total));
            format!("stock reserved ({}); authorizing payment", m.total)
        }
        (SagaState::Reserving, Input::Message(Message::InventoryRejected(m))) => {
            let reason = match m.reason {
                RejectReason::OutOfStock => CancelReason::OutOfStock,
                RejectReason::UnknownProduct => CancelReason::UnknownProduct,
            };
            let products: Vec<&str> = m.product_ids.iter().map(|p| p.as_str()).collect();
            let detail = match m.reason {
                RejectReason::OutOfStock => format!("out of stock: {}", products.join(", ")),
                RejectReason::UnknownProduct => format!("unknown product: {}", products.join(", ")),
            };
            cancel(&mut next, &mut commands, reason, detail.clone());
            format!("reservation rejected ({detail}); order cancelled")
        }
        (SagaState::Reserving, Input::DeadlinePassed) => {
            let detail = format!(
                "no answer from inventory within {}",
                humantime::format_duration(d.reserve)
            );
            compensate(
                &mut next,
                &mut commands,
                CancelReason::Timeout,
                &detail,
                now,
                d,
            );
            format!("{detail}; releasing whatever was reserved")
        }

        (SagaState::Authorizing, Input::Message(Message::PaymentAuthorized(m))) => {
            // `refusal` has checked it against the total asked for; the saga's own is confirmed.
            let total = saga.total.unwrap_or(m.amount);
            next.state = SagaState::Confirmed;
            next.payment_id = Some(m.payment_id);
            next.deadline_at = None;
            commands.push(
                OrderConfirmed {
                    order_id,
                    lines: saga.lines.clone(),
                    total,
                    payment_id: m.payment_id,
                    customer_id: Some(saga.customer_id.clone()),
                }
                .into(),
            );
            fulfillment::start(&mut next, &mut commands, now, d);
            format!(
                "payment {} authorized; order confirmed, shipment requested",
                m.payment_id
            )
        }
        (SagaState::Authorizing, Input::Message(Message::PaymentDeclined(m))) => {
            let reason = serde_json::to_value(m.reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let detail = format!("payment declined: {reason}");
            compensate(
                &mut next,
                &mut commands,
                CancelReason::PaymentDeclined,
                &detail,
                now,
                d,
            );
            format!("{detail}; releasing stock")
        }
        (SagaState::Authorizing, Input::Message(Message::InventoryReleased(m)))
            if m.reason == ReleaseReason::Expired =>
        {
            let detail = "reservation expired before the payment outcome".to_owned();
            request_refund(&mut next, &mut commands, CancelReason::Timeout);
            cancel(
                &mut next,
                &mut commands,
                CancelReason::Timeout,
                detail.clone(),
            );
            format!("{detail}; payment voided, order cancelled")
        }
        (SagaState::Authorizing, Input::DeadlinePassed) => {
            let detail = format!(
                "no payment outcome within {}",
                humantime::format_duration(d.payment)
            );
            request_refund(&mut next, &mut commands, CancelReason::Timeout);
            compensate(
                &mut next,
                &mut commands,
                CancelReason::Timeout,
                &detail,
                now,
                d,
            );
            format!("{detail}; voiding the payment and releasing stock")
        }

        (SagaState::Releasing, Input::Message(Message::InventoryReleased(_))) => {
            let reason = saga.cancel_reason.unwrap_or(CancelReason::Timeout);
            let detail = saga.cancel_detail.clone().unwrap_or_default();
            cancel(&mut next, &mut commands, reason, detail);
            "stock released; order cancelled".to_owned()
        }
        (SagaState::Releasing, Input::DeadlinePassed) => {
            next.deadline_at = deadline(now, d.release);
            commands.push(release(order_id));
            "release not confirmed in time; asked again".to_owned()
        }

        (SagaState::Reserving, Input::Retry { who }) => {
            next.deadline_at = deadline(now, d.reserve);
            commands.push(reserve(saga));
            format!("retry by {who}: reservation asked again")
        }
        (SagaState::Authorizing, Input::Retry { who }) => {
            let Some(amount) = saga.total else {
                return ignore(format!(
                    "operator.retry by {who} in AUTHORIZING without a total; ignored"
                ));
            };
            // The payment service answers a repeated authorization with its recorded outcome:
            // asking again never charges twice.
            next.deadline_at = deadline(now, d.payment);
            commands.push(authorize(saga, amount));
            format!("retry by {who}: payment authorization asked again")
        }
        (SagaState::Releasing, Input::Retry { who }) => {
            next.deadline_at = deadline(now, d.release);
            commands.push(release(order_id));
            format!("retry by {who}: release asked again")
        }
        (SagaState::Reserving | SagaState::Authorizing, Input::Cancel { who, reason }) => {
            cancel_running(
                &mut next,
                &mut commands,
                CancelReason::OperatorCancelled,
                format!("cancelled by {who}: {reason}"),
                now,
                d,
            )
        }
        (
            SagaState::Reserving | SagaState::Authorizing,
            Input::Message(Message::OrderCancelRequested(m)),
        ) => cancel_running(
            &mut next,
            &mut commands,
            CancelReason::CustomerCancelled,
            format!("cancelled by the customer ({})", m.requested_by),
            now,
            d,
        ),
        (SagaState::Releasing, Input::Cancel { who, .. }) => {
            return ignore(format!(
                "operator.cancel by {who} in RELEASING: already being cancelled ({}); ignored",
                saga.cancel_detail.as_deref().unwrap_or("-")
            ));
        }

        (state, input) => {
            let why = if state.is_terminal() {
                "saga already finished"
            } else {
                "not expected in this state"
            };
            return ignore(format!("{} in {state}: {why}; ignored", input.name()));
        }
    };
    if next.deadline_at != saga.deadline_at {
        next.deadline_extended_ms = 0;
    }
    Step {
        saga: next,
        commands,
        note,
        applied: true,
    }
}

/// A time the broker could not be reached, as the orchestrator saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    /// When it began.
    pub start: DateTime<Utc>,
    /// When it ended (none while it lasts).
    pub end: Option<DateTime<Utc>>,
}

/// How deadlines treat broker outages: the time a step spent without a broker is given back
/// (up to `budget`, plus `grace` for the backlog to drain and the consumer groups to rejoin; a
/// step that begins within `grace` of an outage's end gets the grace too), so an outage shorter
/// than the budget cancels no order that would otherwise have finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutagePolicy {
    /// The most outage time given back to one step (zero: none).
    pub budget: Duration,
    /// Given on top, once, for the messages held up to arrive.
    pub grace: Duration,
}

/// What to do with a saga whose deadline has passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Leave it: the broker is down now (within the budget); its answer cannot come.
    Hold,
    /// Give back the outage time: the step (deadline pushed out, no commands).
    Extend(Box<Step>),
    /// The deadline stands: apply [`Input::DeadlinePassed`].
    TimeOut,
}

fn step_timeout(state: SagaState, d: &Deadlines) -> Option<Duration> {
    match state {
        SagaState::Reserving => Some(d.reserve),
        SagaState::Authorizing => Some(d.payment),
        SagaState::Releasing => Some(d.release),
        SagaState::Confirmed | SagaState::Cancelled => None,
    }
}

/// Whether no deadline may expire now: the broker is unreachable, for less than the budget.
pub fn holding(outages: &[Outage], now: DateTime<Utc>, policy: &OutagePolicy) -> bool {
    !policy.budget.is_zero()
        && outages.iter().any(|o| {
            o.end.is_none()
                && (now - o.start)
                    .to_std()
                    .is_ok_and(|lasted| lasted < policy.budget)
        })
}

/// Judges a saga past its deadline against the outages seen. Pure, like [`transition`].
pub fn due(
    saga: &Saga,
    now: DateTime<Utc>,
    outages: &[Outage],
    policy: &OutagePolicy,
    d: &Deadlines,
) -> Due {
    let (Some(deadline_at), Some(timeout)) = (saga.deadline_at, step_timeout(saga.state, d)) else {
        return Due::TimeOut;
    };
    if policy.budget.is_zero() {
        return Due::TimeOut;
    }
    let ms = |d: chrono::TimeDelta| u64::try_from(d.num_milliseconds()).unwrap_or(0);
    let budget_ms = u64::try_from(policy.budget.as_millis()).unwrap_or(u64::MAX);
    if holding(outages, now, policy) {
        return Due::Hold;
    }
    // When the step began: its deadline less its timeout and what it was given already.
    let extended = saga.deadline_extended_ms;
    let began = deadline_at
        - chrono::TimeDelta::from_std(timeout).unwrap_or_default()
        - chrono::TimeDelta::milliseconds(i64::try_from(extended).unwrap_or(i64::MAX));
    let overlap: u64 = outages
        .iter()
        .map(|o| {
            let from = o.start.max(began);
            let to = o.end.unwrap_or(now).min(now);
            if to > from {
                ms(to - from)
            } else {
                0
            }
        })
        .sum();
    let grace_ms = u64::try_from(policy.grace.as_millis()).unwrap_or(0);
    // A step that began just after an outage is held up by it too: its command or its answer
    // waits in a backlog, or for a consumer group that lost its session while the broker was
    // away and is rejoining (each group on its own clock, so the saga may be back well before
    // the service it asks). It gets the grace as well.
    let grace = chrono::TimeDelta::milliseconds(i64::try_from(grace_ms).unwrap_or(i64::MAX));
    let after_one = outages
        .iter()
        .filter_map(|o| o.end)
        .any(|end| began >= end && began < end + grace);
    if overlap == 0 && !after_one {
        return Due::TimeOut;
    }
    let owed = overlap.min(budget_ms) + grace_ms;
    // Less than a second owed is measurement noise (another replica's view of the same outage).
    let Some(more) = owed.checked_sub(extended).filter(|m| *m >= 1000) else {
        return Due::TimeOut;
    };
    let mut next = saga.clone();
    next.deadline_at = deadline(deadline_at, Duration::from_millis(more));
    next.deadline_extended_ms = extended + more;
    Due::Extend(Box::new(Step {
        saga: next,
        commands: Vec::new(),
        note: if overlap == 0 {
            format!(
                "deadline extended by {:.1}s: the step began within {} of a broker outage's end",
                more as f64 / 1000.0,
                humantime::format_duration(policy.grace)
            )
        } else {
            format!(
                "deadline extended by {:.1}s: the broker was unreachable for {:.1}s of this step (outage budget {})",
                more as f64 / 1000.0,
                overlap as f64 / 1000.0,
                humantime::format_duration(policy.budget)
            )
        },
        applied: true,
    }))
}

/// Cancels a saga that is reserving or authorizing (an operator or the customer asks): void
/// whatever payment may exist, release the stock, cancel once inventory confirms.
fn cancel_running(
    saga: &mut Saga,
    commands: &mut Vec<Message>,
    reason: CancelReason,
    detail: String,
    now: DateTime<Utc>,
    d: &Deadlines,
) -> String {
    let authorizing = saga.state == SagaState::Authorizing;
    if authorizing {
        request_refund(saga, commands, reason);
    }
    compensate(saga, commands, reason, &detail, now, d);
    if authorizing {
        format!("{detail}; voiding the payment and releasing stock")
    } else {
        format!("{detail}; releasing whatever was reserved")
    }
}

/// Starts compensation: release the stock, then cancel once inventory confirms.
fn compensate(
    saga: &mut Saga,
    commands: &mut Vec<Message>,
    reason: CancelReason,
    detail: &str,
    now: DateTime<Utc>,
    d: &Deadlines,
) {
    saga.state = SagaState::Releasing;
    saga.cancel_reason = Some(reason);
    saga.cancel_detail = Some(detail.to_owned());
    saga.deadline_at = deadline(now, d.release);
    commands.push(release(saga.order_id));
}

/// `inventory.reserve` of every line the saga's order has.
fn reserve(saga: &Saga) -> Message {
    ReserveStock {
        order_id: saga.order_id,
        items: saga.items.clone(),
    }
    .into()
}

/// `payment.authorize` of `amount` with the saga's customer and token.
fn authorize(saga: &Saga, amount: Money) -> Message {
    AuthorizePayment {
        order_id: saga.order_id,
        customer_id: saga.customer_id.clone(),
        amount,
        payment_token: saga.payment_token.clone(),
    }
    .into()
}

/// `inventory.release` of whatever the order holds, as compensation.
fn release(order_id: OrderId) -> Message {
    ReleaseStock {
        order_id,
        reason: ReleaseReason::Compensation,
    }
    .into()
}

/// Asks for the payment to be refunded (or voided), once: the flag guards a second request.
fn request_refund(saga: &mut Saga, commands: &mut Vec<Message>, reason: CancelReason) {
    saga.refund_requested = true;
    commands.push(
        RefundPayment {
            order_id: saga.order_id,
            reason,
        }
        .into(),
    );
}

/// Finishes as cancelled, telling everyone why.
fn cancel(saga: &mut Saga, commands: &mut Vec<Message>, reason: CancelReason, detail: String) {
    saga.state = SagaState::Cancelled;
    saga.cancel_reason = Some(reason);
    saga.cancel_detail = Some(detail.clone());
    saga.deadline_at = None;
    commands.push(
        OrderCancelled {
            order_id: saga.order_id,
            reason,
            detail: Some(detail).filter(|d| !d.is_empty()),
            customer_id: Some(saga.customer_id.clone()),
        }
        .into(),
    );
}

#[cfg(test)]
mod tests;
