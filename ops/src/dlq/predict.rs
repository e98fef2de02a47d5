//! What replaying a dead letter will do, predicted from what the system holds now: the handling
//! service's own record (a payment for the order, a message the event already caused) and the
//! saga's current state run through the orchestrator's pure transition function.
//!
//! The prediction is a pure function of those facts, so it is unit-tested here and checked
//! against what actually happens in `omsctl/tests/operator.rs`.

use chrono::{DateTime, Utc};
use oms_contracts::api::{PaymentView, SagaView};
use oms_contracts::messages::{PaymentAuthorized, PaymentDeclined};
use oms_contracts::{Envelope, Message};
use oms_saga_machine::{transition, Deadlines, Input, Saga};
use serde::{Deserialize, Serialize};

/// What the system holds about an entry's order.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The order's saga, if the orchestrator has one.
    pub saga: Option<SagaView>,
    /// The order's payment, if the payment service has one.
    pub payment: Option<PaymentView>,
    /// Coordinates of a message this very event caused (its causation id): it was handled.
    pub caused: Option<String>,
}

/// What replaying an entry comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The handler acts on it.
    Handled,
    /// It was handled before: the inbox drops it.
    Duplicate,
    /// It is handled, and changes nothing.
    Ignored,
    /// A late authorization is refunded.
    LateChargeRefunded,
    /// It fails again and goes back to the dead letters.
    DeadLetter,
    /// The facts do not say.
    Unknown,
}

impl Outcome {
    /// Its wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Handled => "handled",
            Outcome::Duplicate => "duplicate",
            Outcome::Ignored => "ignored",
            Outcome::LateChargeRefunded => "late-charge-refunded",
            Outcome::DeadLetter => "dead-letter",
            Outcome::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry's predicted fate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Prediction {
    /// What it comes to.
    pub outcome: Outcome,
    /// Why, in a sentence.
    pub detail: String,
}

fn says(outcome: Outcome, detail: impl Into<String>) -> Prediction {
    Prediction {
        outcome,
        detail: detail.into(),
    }
}

/// The orchestrator's view of a saga, as the machine takes it (the payment token is not
/// published; no prediction depends on it).
pub fn saga_of(view: &SagaView) -> Saga {
    Saga {
        order_id: oms_contracts::OrderId(view.order_id),
        correlation_id: view.correlation_id,
        state: view.state,
        customer_id: view.customer_id.clone(),
        payment_token: String::new(),
        items: view.items.clone(),
        lines: view.lines.clone(),
        total: view.total,
        payment_id: view.payment_id,
        cancel_reason: view
            .cancel_reason
            .as_deref()
            .and_then(oms_contracts::from_wire_name),
        cancel_detail: view.cancel_detail.clone(),
        payment_requested: view.payment_requested,
        refund_requested: view.refund_requested,
        deadline_at: view.deadline_at,
        deadline_extended_ms: 0,
        shipping_address: None,
        fulfillment: view
            .fulfillment
            .as_ref()
            .map(|f| oms_saga_machine::Fulfillment {
                state: f.state,
                shipment_id: f.shipment_id,
                tracking_number: f.tracking_number.clone(),
                cancel_reason: f
                    .cancel_reason
                    .as_deref()
                    .and_then(oms_contracts::from_wire_name),
                cancel_detail: None,
                cancel_refused: f.cancel_refused,
                refund_requested: f.refund_requested,
                // Not published: a prediction in REFUNDING assumes neither answer came yet.
                refunded: false,
                released: false,
                shipped_announced: matches!(
                    f.state,
                    oms_saga_machine::FulfillmentState::Shipped
                        | oms_saga_machine::FulfillmentState::Delivered
                ),
                recall_requested: false,
            }),
    }
}

/// How the saga takes `message` now: (outcome, detail).
fn saga_reaction(saga: &SagaView, message: &Message, now: DateTime<Utc>) -> Prediction {
    let step = transition(
        &saga_of(saga),
        Input::Message(message),
        now,
        &Deadlines::default(),
    );
    let sent: Vec<&str> = step
        .commands
        .iter()
        .map(|c| c.message_type().as_str())
        .collect();
    if !step.applied {
        return says(
            Outcome::Ignored,
            format!("the saga ({}) ignores it: {}", saga.state, step.note),
        );
    }
    let refunds = sent.contains(&"payment.refund");
    let outcome = if refunds && matches!(message, Message::PaymentAuthorized(_)) {
        Outcome::LateChargeRefunded
    } else {
        Outcome::Handled
    };
    let then = if sent.is_empty() {
        String::new()
    } else {
        format!(", sending {}", sent.join(", "))
    };
    says(
        outcome,
        format!(
            "the saga ({} -> {}): {}{then}",
            saga.state, step.saga.state, step.note
        ),
    )
}

/// Predicts what replaying `value` to `topic` (unprefixed) does.
pub fn predict(value: Option<&[u8]>, topic: &str, facts: &Facts, now: DateTime<Utc>) -> Prediction {
    let env = match value.map(Envelope::decode) {
        Some(Ok(env)) => env,
        Some(Err(e)) => {
            return says(
                Outcome::DeadLetter,
                format!("dead-lettered again at once: {e} ({})", e.class()),
            )
        }
        None => return says(Outcome::DeadLetter, "dead-lettered again at once: no value"),
    };
    if !oms_contracts::topics::ALL.contains(&topic) {
        return says(
            Outcome::Unknown,
            format!("sent to {topic}, which no OMS service reads"),
        );
    }
    if let Some(at) = &facts.caused {
        return says(
            Outcome::Duplicate,
            format!(
                "ignored as a duplicate: event {} was handled (it caused {at})",
                env.event_id
            ),
        );
    }
    let Some(saga) = &facts.saga else {
        return says(
            Outcome::Unknown,
            "the order has no saga: the saga ignores what this causes",
        );
    };
    let order_id = env.message.order_id();
    match &env.message {
        Message::PaymentAuthorize(cmd) => {
            match &facts.payment {
                Some(p) if p.status == "AUTHORIZED" => {
                    let answer = Message::PaymentAuthorized(PaymentAuthorized {
                        order_id,
                        payment_id: p.payment_id,
                        amount: p.amount,
                    });
                    let r = saga_reaction(saga, &answer, now);
                    says(
                    r.outcome,
                    format!("payment answers its recorded authorization again (no second charge); {}", r.detail),
                )
                }
                Some(p) if p.status == "DECLINED" => says(
                    Outcome::Ignored,
                    format!(
                        "payment answers its recorded decline again; the saga ({}) has it already",
                        saga.state
                    ),
                ),
                Some(p) => says(
                    Outcome::Ignored,
                    format!("payment was {}: not charged", p.status),
                ),
                None => {
                    let approved = Message::PaymentAuthorized(PaymentAuthorized {
                        order_id,
                        payment_id: uuid::Uuid::nil(),
                        amount: cmd.amount,
                    });
                    let r = saga_reaction(saga, &approved, now);
                    let declined = saga_reaction(
                        saga,
                        &Message::PaymentDeclined(PaymentDeclined {
                            order_id,
                            reason: oms_contracts::messages::DeclineReason::CardDeclined,
                        }),
                        now,
                    );
                    // The payment does not exist yet: its id in the saga's note is a placeholder.
                    let detail = format!(
                        "payment charges {} if the gateway approves: {}; if it declines: {}",
                        cmd.amount, r.detail, declined.detail
                    )
                    .replace(&format!("payment {} ", uuid::Uuid::nil()), "the payment ");
                    says(r.outcome, detail)
                }
            }
        }
        Message::PaymentRefund(_) => match &facts.payment {
            Some(p) if p.status == "AUTHORIZED" => says(
                Outcome::Handled,
                format!("payment refunds {} (payment {})", p.amount, p.payment_id),
            ),
            Some(p) => says(
                Outcome::Ignored,
                format!("payment was {} already", p.status),
            ),
            None => says(
                Outcome::Handled,
                "payment voids the order: a later authorization is not charged",
            ),
        },
        Message::InventoryReserve(_) | Message::InventoryRelease(_) => {
            if saga.state.is_terminal() && matches!(env.message, Message::InventoryReserve(_)) {
                says(
                    Outcome::Ignored,
                    format!(
                        "inventory answers; the saga is {} and ignores the answer",
                        saga.state
                    ),
                )
            } else {
                says(
                    Outcome::Handled,
                    format!("inventory handles it and answers the saga ({})", saga.state),
                )
            }
        }
        // Events: the saga (and, for order events, the order and notification services) takes
        // them as they are.
        other => saga_reaction(saga, other, now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oms_contracts::api::SagaView;
    use serde_json::json;

    fn view(state: &str, payment_requested: bool, refund_requested: bool) -> SagaView {
        serde_json::from_value(json!({
            "orderId": "0190aaaa-0000-7000-8000-000000000001",
            "correlationId": "0190aaaa-0000-7000-8000-000000000001",
            "state": state, "customerId": "c-1",
            "items": [{"productId": "mouse-01", "quantity": 1}],
            "lines": [{"productId": "mouse-01", "quantity": 1, "unitPrice": {"amountMinor": 2500, "currency": "EUR"}}],
            "total": {"amountMinor": 2500, "currency": "EUR"},
            "paymentId": null,
            "cancelReason": if state == "CANCELLED" { json!("TIMEOUT") } else { json!(null) },
            "cancelDetail": null, "paymentRequested": payment_requested,
            "refundRequested": refund_requested,
            "deadlineAt": if state == "CANCELLED" || state == "CONFIRMED" { json!(null) } else { json!("2026-12-01T10:00:00Z") },
            "stuck": false, "lastStep": null,
            "createdAt": "2026-12-01T10:00:00Z", "updatedAt": "2026-12-01T10:00:00Z",
        }))
        .expect("a saga view")
    }

    fn authorize() -> Vec<u8> {
        json!({"eventId": "0190aaaa-0000-7000-8000-0000000000aa", "type": "payment.authorize",
            "schemaVersion": 1, "occurredAt": "2026-12-01T10:00:00Z",
            "correlationId": "0190aaaa-0000-7000-8000-000000000001", "causationId": null,
            "source": "saga", "payload": {"orderId": "0190aaaa-0000-7000-8000-000000000001",
            "customerId": "c-1", "amount": {"amountMinor": 2500, "currency": "EUR"},
            "paymentToken": "tok_visa"}})
        .to_string()
        .into_bytes()
    }

    fn payment(status: &str) -> PaymentView {
        serde_json::from_value(json!({"orderId": "0190aaaa-0000-7000-8000-000000000001",
            "paymentId": "0190aaaa-0000-7000-8000-0000000000bb", "status": status,
            "amount": {"amountMinor": 2500, "currency": "EUR"}, "customerId": "c-1",
            "declineReason": null, "refundReason": null,
            "createdAt": "2026-12-01T10:00:00Z", "updatedAt": "2026-12-01T10:00:00Z"}))
        .expect("a payment view")
    }

    fn outcome(facts: &Facts) -> Prediction {
        predict(
            Some(&authorize()),
            "oms.payment.commands",
            facts,
            Utc::now(),
        )
    }

    #[test]
    fn an_authorize_is_predicted_from_the_saga_and_the_payment() {
        // Waiting for it: handled, the order confirmed if approved.
        let p = outcome(&Facts {
            saga: Some(view("AUTHORIZING", true, false)),
            ..Facts::default()
        });
        assert_eq!(p.outcome, Outcome::Handled, "{p:?}");
        assert!(p.detail.contains("AUTHORIZING -> CONFIRMED"), "{p:?}");
        // The saga gave up (timed out, refund not yet requested): a late charge, refunded.
        let p = outcome(&Facts {
            saga: Some(view("CANCELLED", true, false)),
            ..Facts::default()
        });
        assert_eq!(p.outcome, Outcome::LateChargeRefunded, "{p:?}");
        // Its refund already requested: the payment was voided, nothing charged.
        let p = outcome(&Facts {
            saga: Some(view("CANCELLED", true, true)),
            payment: Some(payment("VOIDED")),
            ..Facts::default()
        });
        assert_eq!(p.outcome, Outcome::Ignored, "{p:?}");
        // Handled before: a duplicate, whatever the rest says.
        let p = outcome(&Facts {
            saga: Some(view("AUTHORIZING", true, false)),
            caused: Some("oms.payment.events/0@3".into()),
            ..Facts::default()
        });
        assert_eq!(p.outcome, Outcome::Duplicate, "{p:?}");
        assert!(p.detail.contains("oms.payment.events/0@3"), "{p:?}");
        // Charged already: answered again, no second charge.
        let p = outcome(&Facts {
            saga: Some(view("CONFIRMED", true, false)),
            payment: Some(payment("AUTHORIZED")),
            ..Facts::default()
        });
        assert_eq!(p.outcome, Outcome::Ignored, "{p:?}");
        assert!(p.detail.contains("no second charge"), "{p:?}");
    }

    #[test]
    fn poison_and_strange_destinations_are_named() {
        let p = predict(
            Some(b"{not json"),
            "oms.payment.commands",
            &Facts::default(),
            Utc::now(),
        );
        assert_eq!(p.outcome, Outcome::DeadLetter);
        assert!(p.detail.contains("poison.malformed"), "{p:?}");
        let p = predict(
            Some(&authorize()),
            "quarantine",
            &Facts::default(),
            Utc::now(),
        );
        assert_eq!(p.outcome, Outcome::Unknown);
        let p = predict(
            Some(&authorize()),
            "oms.payment.commands",
            &Facts::default(),
            Utc::now(),
        );
        assert_eq!(p.outcome, Outcome::Unknown);
        assert!(p.detail.contains("no saga"), "{p:?}");
    }
}
