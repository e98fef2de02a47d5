//! Every state × input pair, and a property test over arbitrary message sequences.

use std::collections::BTreeMap;

use chrono::TimeZone;
use proptest::prelude::*;
use serde_json::json;

use super::*;

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + secs, 0)
        .single()
        .unwrap_or_default()
}

fn order() -> OrderId {
    OrderId(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001))
}

fn msg(kind: &str, payload: serde_json::Value) -> Message {
    let mut payload = payload;
    payload["orderId"] = json!(order().0);
    let ty: oms_contracts::MessageType = kind.parse().expect("known type");
    let envelope = json!({
        "eventId": Uuid::nil(), "type": ty.as_str(), "schemaVersion": 1,
        "occurredAt": "2026-11-23T10:00:00Z", "correlationId": order().0,
        "source": "test", "payload": payload,
    });
    oms_contracts::Envelope::decode(envelope.to_string().as_bytes())
        .expect("valid test message")
        .message
}

/// One sample of every message type (two of `inventory.released`, whose reason matters).
fn inputs() -> Vec<(&'static str, Message)> {
    let line = json!([{"productId": "mouse-01", "quantity": 2,
        "unitPrice": {"amountMinor": 2500, "currency": "EUR"}}]);
    let total = json!({"amountMinor": 5000, "currency": "EUR"});
    let pid = Uuid::from_u128(7);
    vec![
        (
            "order.created",
            msg(
                "order.created",
                json!({"customerId": "c-1",
            "items": [{"productId": "mouse-01", "quantity": 2}], "paymentToken": "tok_visa"}),
            ),
        ),
        (
            "order.confirmed",
            msg(
                "order.confirmed",
                json!({"lines": line, "total": total, "paymentId": pid}),
            ),
        ),
        (
            "order.cancelled",
            msg("order.cancelled", json!({"reason": "OUT_OF_STOCK"})),
        ),
        (
            "inventory.reserve",
            msg(
                "inventory.reserve",
                json!({"items": [{"productId": "mouse-01", "quantity": 2}]}),
            ),
        ),
        (
            "inventory.release",
            msg("inventory.release", json!({"reason": "COMPENSATION"})),
        ),
        (
            "inventory.reserved",
            msg(
                "inventory.reserved",
                json!({"lines": line, "total": total,
            "expiresAt": "2026-11-23T10:15:00Z"}),
            ),
        ),
        (
            "inventory.rejected",
            msg(
                "inventory.rejected",
                json!({"reason": "OUT_OF_STOCK", "productIds": ["mouse-01"]}),
            ),
        ),
        (
            "inventory.released/compensation",
            msg("inventory.released", json!({"reason": "COMPENSATION"})),
        ),
        (
            "inventory.released/expired",
            msg("inventory.released", json!({"reason": "EXPIRED"})),
        ),
        (
            "payment.authorize",
            msg(
                "payment.authorize",
                json!({"customerId": "c-1", "amount": total, "paymentToken": "tok_visa"}),
            ),
        ),
        (
            "payment.refund",
            msg("payment.refund", json!({"reason": "TIMEOUT"})),
        ),
        (
            "payment.authorized",
            msg(
                "payment.authorized",
                json!({"paymentId": pid, "amount": total}),
            ),
        ),
        (
            "payment.declined",
            msg("payment.declined", json!({"reason": "CARD_DECLINED"})),
        ),
        (
            "payment.refunded",
            msg(
                "payment.refunded",
                json!({"outcome": "REFUNDED", "amount": total}),
            ),
        ),
    ]
}

fn input(name: &str) -> Message {
    inputs()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, m)| m)
        .unwrap_or_else(|| panic!("no sample {name}"))
}

fn d() -> Deadlines {
    Deadlines {
        reserve: Duration::from_secs(10),
        payment: Duration::from_secs(20),
        release: Duration::from_secs(30),
        fulfillment: Duration::from_secs(40),
    }
}

fn started() -> Saga {
    let Message::OrderCreated(created) = input("order.created") else {
        unreachable!("sample is order.created")
    };
    start(&created, order().0, at(0), &d()).saga
}

fn after(saga: &Saga, names: &[&str]) -> Saga {
    names.iter().fold(saga.clone(), |s, name| {
        let step = if *name == "deadline" {
            transition(&s, Input::DeadlinePassed, at(1), &d())
        } else {
            transition(&s, Input::Message(&input(name)), at(1), &d())
        };
        assert!(step.applied, "{name} in {} was not applied", s.state);
        step.saga
    })
}

/// A saga in each state, reached the usual way.
fn in_each_state() -> Vec<(&'static str, Saga)> {
    let s = started();
    vec![
        ("RESERVING", s.clone()),
        ("AUTHORIZING", after(&s, &["inventory.reserved"])),
        (
            "RELEASING",
            after(&s, &["inventory.reserved", "payment.declined"]),
        ),
        (
            "CONFIRMED",
            after(&s, &["inventory.reserved", "payment.authorized"]),
        ),
        ("CANCELLED", after(&s, &["inventory.rejected"])),
    ]
}

fn types(commands: &[Message]) -> Vec<&'static str> {
    commands.iter().map(|c| c.message_type().as_str()).collect()
}

#[test]
fn every_state_and_input_pair_does_what_the_table_says() {
    // (state, input) -> (next state, messages sent). Pairs not listed are no-ops.
    let table: BTreeMap<(&str, &str), (&str, Vec<&str>)> = [
        (
            ("RESERVING", "inventory.reserved"),
            ("AUTHORIZING", vec!["payment.authorize"]),
        ),
        (
            ("RESERVING", "inventory.rejected"),
            ("CANCELLED", vec!["order.cancelled"]),
        ),
        (
            ("RESERVING", "deadline"),
            ("RELEASING", vec!["inventory.release"]),
        ),
        (
            ("AUTHORIZING", "payment.authorized"),
            ("CONFIRMED", vec!["order.confirmed", "fulfillment.ship"]),
        ),
        (
            ("CONFIRMED", "deadline"),
            ("CONFIRMED", vec!["fulfillment.ship"]),
        ),
        (
            ("AUTHORIZING", "payment.declined"),
            ("RELEASING", vec!["inventory.release"]),
        ),
        (
            ("AUTHORIZING", "inventory.released/expired"),
            ("CANCELLED", vec!["payment.refund", "order.cancelled"]),
        ),
        (
            ("AUTHORIZING", "deadline"),
            ("RELEASING", vec!["payment.refund", "inventory.release"]),
        ),
        (
            ("RELEASING", "inventory.released/compensation"),
            ("CANCELLED", vec!["order.cancelled"]),
        ),
        (
            ("RELEASING", "inventory.released/expired"),
            ("CANCELLED", vec!["order.cancelled"]),
        ),
        (
            ("RELEASING", "deadline"),
            ("RELEASING", vec!["inventory.release"]),
        ),
        (
            ("RELEASING", "payment.authorized"),
            ("RELEASING", vec!["payment.refund"]),
        ),
    ]
    .into_iter()
    .collect();

    let mut checked = 0;
    for (state_name, saga) in in_each_state() {
        assert_eq!(saga.state.as_str(), state_name);
        let mut all: Vec<(&str, Option<Message>)> =
            inputs().into_iter().map(|(n, m)| (n, Some(m))).collect();
        all.push(("deadline", None));
        for (name, message) in &all {
            let input = match message {
                Some(m) => Input::Message(m),
                None => Input::DeadlinePassed,
            };
            let step = transition(&saga, input, at(5), &d());
            match table.get(&(state_name, *name)) {
                Some((to, sent)) => {
                    assert!(step.applied, "{state_name} × {name}: not applied");
                    assert_eq!(step.saga.state.as_str(), *to, "{state_name} × {name}");
                    assert_eq!(types(&step.commands), *sent, "{state_name} × {name}");
                }
                None => {
                    assert!(
                        !step.applied,
                        "{state_name} × {name}: applied ({})",
                        step.note
                    );
                    assert_eq!(step.saga, saga, "{state_name} × {name} changed the saga");
                    assert!(
                        step.commands.is_empty(),
                        "{state_name} × {name} sent messages"
                    );
                    assert!(step.note.contains("ignored") || step.note.contains("already"));
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 5 * 15);
}

#[test]
fn starting_reserves_every_line_with_a_deadline() {
    let Message::OrderCreated(created) = input("order.created") else {
        unreachable!()
    };
    let step = start(&created, order().0, at(0), &d());
    assert_eq!(step.saga.state, SagaState::Reserving);
    assert_eq!(step.saga.deadline_at, Some(at(10)));
    let [Message::InventoryReserve(reserve)] = step.commands.as_slice() else {
        panic!(
            "expected one inventory.reserve, got {:?}",
            types(&step.commands)
        );
    };
    assert_eq!(reserve.items, created.items);
}

#[test]
fn the_payment_request_carries_the_catalog_total_and_the_token() {
    let saga = after(&started(), &["inventory.reserved"]);
    assert_eq!(saga.deadline_at, Some(at(21)));
    let step = transition(
        &started(),
        Input::Message(&input("inventory.reserved")),
        at(1),
        &d(),
    );
    let [Message::PaymentAuthorize(auth)] = step.commands.as_slice() else {
        panic!("expected payment.authorize");
    };
    assert_eq!(auth.amount.amount_minor, 5000);
    assert_eq!(auth.payment_token, "tok_visa");
    assert_eq!(auth.customer_id.as_str(), "c-1");
}

#[test]
fn an_authorization_of_another_amount_or_currency_is_refused_before_it_is_applied() {
    let saga = authorizing();
    let authorized = |amount: serde_json::Value| {
        msg(
            "payment.authorized",
            json!({"paymentId": Uuid::from_u128(7), "amount": amount}),
        )
    };
    let right = authorized(json!({"amountMinor": 5000, "currency": "EUR"}));
    assert_eq!(refusal(&saga, &right), None);
    for wrong in [
        json!({"amountMinor": 1, "currency": "EUR"}),
        json!({"amountMinor": 5000, "currency": "USD"}),
    ] {
        let why = refusal(&saga, &authorized(wrong.clone())).unwrap_or_default();
        assert!(
            why.contains("does not match") && why.contains("50.00 EUR"),
            "{wrong}: {why:?}"
        );
    }
    // Other facts, and an authorization before any payment was asked for, pass through (the
    // transition ignores the latter).
    assert_eq!(refusal(&saga, &input("payment.declined")), None);
    assert_eq!(refusal(&started(), &right), None);
}

#[test]
fn a_declined_payment_cancels_with_its_reason_once_stock_is_back() {
    let saga = after(
        &started(),
        &[
            "inventory.reserved",
            "payment.declined",
            "inventory.released/compensation",
        ],
    );
    assert_eq!(saga.state, SagaState::Cancelled);
    assert_eq!(saga.cancel_reason, Some(CancelReason::PaymentDeclined));
    assert_eq!(
        saga.cancel_detail.as_deref(),
        Some("payment declined: CARD_DECLINED")
    );
    assert!(
        !saga.refund_requested,
        "nothing was charged, nothing to refund"
    );
}

#[test]
fn a_payment_timeout_voids_the_payment_and_a_late_authorization_is_not_refunded_twice() {
    let saga = after(
        &started(),
        &[
            "inventory.reserved",
            "deadline",
            "inventory.released/compensation",
        ],
    );
    assert_eq!(saga.state, SagaState::Cancelled);
    assert_eq!(saga.cancel_reason, Some(CancelReason::Timeout));
    assert!(saga.refund_requested);
    let late = transition(
        &saga,
        Input::Message(&input("payment.authorized")),
        at(9),
        &d(),
    );
    assert!(!late.applied && late.commands.is_empty(), "{}", late.note);
}

#[test]
fn a_late_authorization_after_a_decline_is_refunded_once() {
    let saga = after(
        &started(),
        &[
            "inventory.reserved",
            "payment.declined",
            "inventory.released/compensation",
        ],
    );
    let step = transition(
        &saga,
        Input::Message(&input("payment.authorized")),
        at(9),
        &d(),
    );
    assert_eq!(types(&step.commands), ["payment.refund"]);
    assert_eq!(step.saga.state, SagaState::Cancelled);
    let again = transition(
        &step.saga,
        Input::Message(&input("payment.authorized")),
        at(9),
        &d(),
    );
    assert!(again.commands.is_empty());
}

#[test]
fn states_parse_from_their_names_in_any_case() {
    for state in SagaState::ALL {
        assert_eq!(state.as_str().parse::<SagaState>(), Ok(state));
        assert_eq!(
            state.as_str().to_lowercase().parse::<SagaState>(),
            Ok(state)
        );
    }
    assert!("DONE".parse::<SagaState>().is_err());
}

/// Checks what must hold of any saga, whatever arrived.
fn check_invariants(s: &Saga) -> Result<(), String> {
    let fail = |what: &str| Err(format!("{what}: {s:?}"));
    match s.state {
        SagaState::Confirmed => {
            if s.payment_id.is_none() || s.total.is_none() || s.lines.is_empty() {
                return fail("confirmed without payment, total or lines");
            }
            if s.cancel_reason.is_some() || s.refund_requested {
                return fail("confirmed but cancelling or refunding");
            }
        }
        SagaState::Cancelled | SagaState::Releasing if s.cancel_reason.is_none() => {
            return fail("cancelling without a reason");
        }
        SagaState::Authorizing if s.total.is_none() || !s.payment_requested => {
            return fail("authorizing without a total or a payment request");
        }
        _ => {}
    }
    if s.is_finished() != s.deadline_at.is_none() {
        return fail("deadline set on a finished saga or missing on a running one");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any sequence of messages (duplicated, reordered, late) and deadlines keeps the saga valid,
    /// finishes at most once, and never leaves a charge without a confirmed order or a refund.
    #[test]
    fn no_message_sequence_breaks_the_saga(picks in proptest::collection::vec(0usize..15, 0..40)) {
        let pool = inputs();
        let mut saga = started();
        let mut sent: Vec<&'static str> = vec!["inventory.reserve"];
        let mut charged = false;
        for (i, pick) in picks.iter().enumerate() {
            let message = pool.get(*pick).map(|(_, m)| m.clone());
            let input = match &message {
                Some(m) => Input::Message(m),
                None => Input::DeadlinePassed,
            };
            let now = at(i as i64);
            let step = transition(&saga, input, now, &d());
            if saga.state.is_terminal() {
                prop_assert_eq!(step.saga.state, saga.state, "a finished saga moved");
            }
            if !step.applied {
                prop_assert_eq!(&step.saga, &saga);
                prop_assert!(step.commands.is_empty());
            }
            if matches!(message, Some(Message::PaymentAuthorized(_))) && saga.payment_requested {
                charged = true;
            }
            prop_assert!(check_invariants(&step.saga).is_ok(), "{:?}", check_invariants(&step.saga));
            for c in &step.commands {
                prop_assert_eq!(c.order_id(), order());
                sent.push(c.message_type().as_str());
            }
            saga = step.saga;
        }
        let count = |t: &str| sent.iter().filter(|s| **s == t).count();
        prop_assert!(count("order.confirmed") + count("order.cancelled") <= 1, "finished twice: {:?}", sent);
        prop_assert!(count("payment.authorize") <= 1, "charged twice: {:?}", sent);
        prop_assert!(count("payment.refund") <= 1, "refunded twice: {:?}", sent);
        prop_assert_eq!(count("order.confirmed") == 1, saga.state == SagaState::Confirmed);
        prop_assert_eq!(count("order.cancelled") == 1, saga.state == SagaState::Cancelled);
        if charged {
            prop_assert!(
                saga.state == SagaState::Confirmed || count("payment.refund") == 1,
                "charged without a confirmed order or a refund: {:?} {:?}", saga.state, sent
            );
        }
        if count("payment.refund") == 1 {
            prop_assert!(saga.state != SagaState::Confirmed, "refunded a confirmed order");
        }
    }
}

/// (state, action) -> (next state, messages sent); `None`: a no-op.
type ActionTable =
    BTreeMap<(&'static str, &'static str), Option<(&'static str, Vec<&'static str>)>>;

#[test]
fn operators_retry_the_current_step_and_cancel_what_is_not_finished() {
    let table: ActionTable = [
        (
            ("RESERVING", "retry"),
            Some(("RESERVING", vec!["inventory.reserve"])),
        ),
        (
            ("AUTHORIZING", "retry"),
            Some(("AUTHORIZING", vec!["payment.authorize"])),
        ),
        (
            ("RELEASING", "retry"),
            Some(("RELEASING", vec!["inventory.release"])),
        ),
        (
            ("CONFIRMED", "retry"),
            Some(("CONFIRMED", vec!["fulfillment.ship"])),
        ),
        (("CANCELLED", "retry"), None),
        (
            ("RESERVING", "cancel"),
            Some(("RELEASING", vec!["inventory.release"])),
        ),
        (
            ("AUTHORIZING", "cancel"),
            Some(("RELEASING", vec!["payment.refund", "inventory.release"])),
        ),
        (("RELEASING", "cancel"), None),
        (("CONFIRMED", "cancel"), None),
        (("CANCELLED", "cancel"), None),
    ]
    .into_iter()
    .collect();
    for (state_name, saga) in in_each_state() {
        for action in ["retry", "cancel"] {
            let input = if action == "retry" {
                Input::Retry { who: "ops-1" }
            } else {
                Input::Cancel {
                    who: "ops-1",
                    reason: "customer called",
                }
            };
            let step = transition(&saga, input, at(50), &d());
            match &table[&(state_name, action)] {
                Some((to, sent)) => {
                    assert!(step.applied, "{state_name} × {action}: {}", step.note);
                    assert_eq!(step.saga.state.as_str(), *to, "{state_name} × {action}");
                    assert_eq!(types(&step.commands), *sent, "{state_name} × {action}");
                    assert!(step.note.contains("ops-1"), "{}", step.note);
                    // Every action starts the step's clock again.
                    assert!(
                        step.saga.deadline_at > saga.deadline_at,
                        "{state_name} × {action}"
                    );
                    if action == "cancel" {
                        assert_eq!(
                            step.saga.cancel_reason,
                            Some(CancelReason::OperatorCancelled)
                        );
                        assert!(
                            step.saga
                                .cancel_detail
                                .as_deref()
                                .is_some_and(|d| d.contains("customer called")),
                            "{:?}",
                            step.saga.cancel_detail
                        );
                    }
                }
                None => {
                    assert!(!step.applied, "{state_name} × {action}: {}", step.note);
                    assert_eq!(step.saga, saga);
                    assert!(step.commands.is_empty());
                }
            }
        }
    }
    // Cancelled by an operator, the release confirmed: the order is cancelled with that reason.
    let cancelling = transition(
        &after(&started(), &["inventory.reserved"]),
        Input::Cancel {
            who: "ops-1",
            reason: "fraud",
        },
        at(2),
        &d(),
    )
    .saga;
    let done = transition(
        &cancelling,
        Input::Message(&input("inventory.released/compensation")),
        at(3),
        &d(),
    );
    assert_eq!(done.saga.state, SagaState::Cancelled);
    let Some(Message::OrderCancelled(c)) = done.commands.first() else {
        panic!("no order.cancelled: {:?}", done.commands)
    };
    assert_eq!(c.reason, CancelReason::OperatorCancelled);
    // A late authorization after the operator's cancel is not refunded twice.
    let late = transition(
        &cancelling,
        Input::Message(&input("payment.authorized")),
        at(3),
        &d(),
    );
    assert!(!late.applied, "{}", late.note);
}

fn policy() -> OutagePolicy {
    OutagePolicy {
        budget: Duration::from_secs(60),
        grace: Duration::from_secs(10),
    }
}

fn outage(from: i64, to: Option<i64>) -> Outage {
    Outage {
        start: at(from),
        end: to.map(at),
    }
}

/// Authorizing since `at(1)`, its deadline at `at(21)` (the payment deadline is 20 s).
fn authorizing() -> Saga {
    after(&started(), &["inventory.reserved"])
}

#[test]
fn an_outage_within_the_budget_holds_deadlines_and_gives_the_step_its_time_back() {
    let s = authorizing();
    assert_eq!(s.deadline_at, Some(at(21)));
    // No outage, or one that ended more than the grace before the step began: the deadline
    // stands.
    assert_eq!(due(&s, at(22), &[], &policy(), &d()), Due::TimeOut);
    assert_eq!(
        due(&s, at(22), &[outage(-30, Some(-10))], &policy(), &d()),
        Due::TimeOut
    );
    // One that ended just before the step began (its groups may still be rejoining, its
    // backlog draining): the grace, and nothing more.
    let Due::Extend(after_one) = due(&s, at(22), &[outage(-30, Some(0))], &policy(), &d()) else {
        panic!("a step begun 1 s after an outage got no grace")
    };
    assert_eq!(after_one.saga.deadline_extended_ms, 10_000);
    assert!(
        after_one.note.contains("began within 10s"),
        "{}",
        after_one.note
    );
    assert_eq!(
        due(
            &after_one.saga,
            at(32),
            &[outage(-30, Some(0))],
            &policy(),
            &d()
        ),
        Due::TimeOut,
        "the grace given twice"
    );
    // The broker away now, for less than the budget: nothing expires.
    assert_eq!(
        due(&s, at(22), &[outage(5, None)], &policy(), &d()),
        Due::Hold
    );
    assert!(holding(&[outage(5, None)], at(22), &policy()));
    assert!(!holding(&[outage(5, Some(20))], at(22), &policy()));
    // Back after 15 s: the step gets the 15 s and the grace, once.
    let Due::Extend(step) = due(&s, at(22), &[outage(5, Some(20))], &policy(), &d()) else {
        panic!("not extended")
    };
    assert!(step.applied && step.commands.is_empty());
    assert_eq!(step.saga.deadline_at, Some(at(21 + 25)));
    assert_eq!(step.saga.deadline_extended_ms, 25_000);
    assert_eq!(step.saga.state, SagaState::Authorizing);
    assert!(step.note.contains("15.0s"), "{}", step.note);
    assert_eq!(
        due(&step.saga, at(47), &[outage(5, Some(20))], &policy(), &d()),
        Due::TimeOut,
        "extended twice for one outage"
    );
    // Another outage later in the same step adds its own time (no second grace).
    let Due::Extend(again) = due(
        &step.saga,
        at(47),
        &[outage(5, Some(20)), outage(30, Some(35))],
        &policy(),
        &d(),
    ) else {
        panic!("second outage not given back")
    };
    assert_eq!(again.saga.deadline_extended_ms, 30_000);
    // A new step starts from nothing.
    let next = transition(
        &again.saga,
        Input::Message(&input("payment.authorized")),
        at(48),
        &d(),
    );
    assert_eq!(next.saga.deadline_extended_ms, 0);
}

#[test]
fn an_outage_past_the_budget_is_given_back_only_up_to_it() {
    let s = authorizing();
    // Still down after 100 s: no longer held; the step gets the budget and the grace, then
    // its deadline stands.
    assert!(!holding(&[outage(5, None)], at(105), &policy()));
    let Due::Extend(step) = due(&s, at(105), &[outage(5, None)], &policy(), &d()) else {
        panic!("not extended")
    };
    assert_eq!(step.saga.deadline_extended_ms, 70_000);
    assert_eq!(
        due(
            &step.saga,
            at(200),
            &[outage(5, Some(150))],
            &policy(),
            &d()
        ),
        Due::TimeOut
    );
    // Budget zero: outages change nothing.
    let off = OutagePolicy {
        budget: Duration::ZERO,
        grace: Duration::from_secs(10),
    };
    assert_eq!(
        due(&s, at(22), &[outage(5, None)], &off, &d()),
        Due::TimeOut
    );
    assert!(!holding(&[outage(5, None)], at(22), &off));
    // A finished saga is never held or extended.
    let done = after(&started(), &["inventory.reserved", "payment.authorized"]);
    assert_eq!(
        due(&done, at(22), &[outage(5, Some(20))], &policy(), &d()),
        Due::TimeOut
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// With operators retrying and cancelling among the messages and deadlines, the saga stays
    /// valid, finishes once, refunds at most once and never refunds a confirmed order.
    #[test]
    fn operator_actions_never_break_the_saga(picks in proptest::collection::vec(0usize..18, 0..40)) {
        let pool = inputs();
        let mut saga = started();
        let mut sent: Vec<&'static str> = vec!["inventory.reserve"];
        for (i, pick) in picks.iter().enumerate() {
            let message = pool.get(*pick).map(|(_, m)| m.clone());
            let input = match (&message, *pick) {
                (Some(m), _) => Input::Message(m),
                (None, 15) => Input::DeadlinePassed,
                (None, 16) => Input::Retry { who: "ops" },
                _ => Input::Cancel { who: "ops", reason: "test" },
            };
            let step = transition(&saga, input, at(i as i64), &d());
            if saga.state.is_terminal() {
                prop_assert_eq!(step.saga.state, saga.state, "a finished saga moved");
            }
            if saga.state == SagaState::Confirmed {
                prop_assert!(step.commands.iter().all(|c| c.message_type().as_str() != "payment.refund"));
            }
            prop_assert!(check_invariants(&step.saga).is_ok(), "{:?}", check_invariants(&step.saga));
            sent.extend(step.commands.iter().map(|c| c.message_type().as_str()));
            saga = step.saga;
        }
        let count = |t: &str| sent.iter().filter(|s| **s == t).count();
        prop_assert!(count("order.confirmed") + count("order.cancelled") <= 1, "finished twice: {:?}", sent);
        prop_assert!(count("payment.refund") <= 1, "refunded twice: {:?}", sent);
        if count("payment.refund") == 1 {
            prop_assert!(saga.state != SagaState::Confirmed, "refunded a confirmed order");
        }
    }
}

// --- fulfillment ---------------------------------------------------------------------------------

/// One sample of every input fulfillment may see (named as in the table).
fn fulfillment_inputs() -> Vec<(&'static str, Message)> {
    let sid = Uuid::from_u128(9);
    let lines = json!([{"productId": "mouse-01", "quantity": 2,
        "unitPrice": {"amountMinor": 2500, "currency": "EUR"}}]);
    vec![
        (
            "fulfillment.picked",
            msg(
                "fulfillment.picked",
                json!({"shipmentId": sid, "lines": lines}),
            ),
        ),
        (
            "fulfillment.shipped",
            msg(
                "fulfillment.shipped",
                json!({"shipmentId": sid, "trackingNumber": "SIM1"}),
            ),
        ),
        (
            "fulfillment.delivered",
            msg("fulfillment.delivered", json!({"shipmentId": sid})),
        ),
        (
            "fulfillment.failed",
            msg(
                "fulfillment.failed",
                json!({"shipmentId": sid, "reason": "REGION_NOT_SERVED"}),
            ),
        ),
        (
            "fulfillment.cancelled",
            msg("fulfillment.cancelled", json!({"shipmentId": sid})),
        ),
        (
            "order.cancel-requested",
            msg(
                "order.cancel-requested",
                json!({"customerId": "c-1", "requestedBy": "c-1"}),
            ),
        ),
        ("payment.refunded", input("payment.refunded")),
        (
            "inventory.released/compensation",
            input("inventory.released/compensation"),
        ),
        ("payment.authorized", input("payment.authorized")),
    ]
}

fn f_input(name: &str) -> Message {
    fulfillment_inputs()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, m)| m)
        .unwrap_or_else(|| panic!("no sample {name}"))
}

fn f_after(saga: &Saga, names: &[&str]) -> Saga {
    names.iter().fold(saga.clone(), |s, name| {
        let step = transition(&s, Input::Message(&f_input(name)), at(2), &d());
        assert!(step.applied, "{name} was not applied: {}", step.note);
        step.saga
    })
}

fn f_state(s: &Saga) -> &'static str {
    s.fulfillment.as_ref().map_or("-", |f| f.state.as_str())
}

/// A saga in each fulfillment state, reached the usual way.
fn in_each_fulfillment_state() -> Vec<(&'static str, Saga)> {
    let confirmed = after(&started(), &["inventory.reserved", "payment.authorized"]);
    let cancelling = f_after(&confirmed, &["order.cancel-requested"]);
    let refunding = f_after(&cancelling, &["fulfillment.cancelled"]);
    vec![
        ("SHIPPING", confirmed.clone()),
        ("PICKED", f_after(&confirmed, &["fulfillment.picked"])),
        (
            "SHIPPED",
            f_after(&confirmed, &["fulfillment.picked", "fulfillment.shipped"]),
        ),
        (
            "DELIVERED",
            f_after(
                &confirmed,
                &[
                    "fulfillment.picked",
                    "fulfillment.shipped",
                    "fulfillment.delivered",
                ],
            ),
        ),
        ("CANCELLING", cancelling),
        ("REFUNDING", refunding.clone()),
        (
            "CANCELLED",
            f_after(
                &refunding,
                &["payment.refunded", "inventory.released/compensation"],
            ),
        ),
    ]
}

#[test]
fn every_fulfillment_state_and_input_pair_does_what_the_table_says() {
    // (state, input) -> (next state, messages sent). Pairs not listed are no-ops.
    let table: BTreeMap<(&str, &str), (&str, Vec<&str>)> = [
        (("SHIPPING", "fulfillment.picked"), ("PICKED", vec![])),
        (
            ("SHIPPING", "fulfillment.shipped"),
            ("SHIPPED", vec!["order.shipped"]),
        ),
        (
            ("SHIPPING", "fulfillment.delivered"),
            ("DELIVERED", vec!["order.delivered"]),
        ),
        (
            ("SHIPPING", "fulfillment.failed"),
            ("REFUNDING", vec!["payment.refund", "inventory.release"]),
        ),
        (
            ("SHIPPING", "fulfillment.cancelled"),
            ("REFUNDING", vec!["payment.refund", "inventory.release"]),
        ),
        (
            ("SHIPPING", "order.cancel-requested"),
            ("CANCELLING", vec!["fulfillment.cancel"]),
        ),
        (
            ("SHIPPING", "deadline"),
            ("SHIPPING", vec!["fulfillment.ship"]),
        ),
        (
            ("PICKED", "fulfillment.shipped"),
            ("SHIPPED", vec!["order.shipped"]),
        ),
        (
            ("PICKED", "fulfillment.delivered"),
            ("DELIVERED", vec!["order.delivered"]),
        ),
        (("PICKED", "order.cancel-requested"), ("PICKED", vec![])),
        (("PICKED", "deadline"), ("PICKED", vec!["fulfillment.ship"])),
        (
            ("SHIPPED", "fulfillment.delivered"),
            ("DELIVERED", vec!["order.delivered"]),
        ),
        (("SHIPPED", "order.cancel-requested"), ("SHIPPED", vec![])),
        (
            ("SHIPPED", "deadline"),
            ("SHIPPED", vec!["fulfillment.ship"]),
        ),
        (
            ("DELIVERED", "order.cancel-requested"),
            ("DELIVERED", vec![]),
        ),
        (("CANCELLING", "fulfillment.picked"), ("PICKED", vec![])),
        (
            ("CANCELLING", "fulfillment.shipped"),
            ("SHIPPED", vec!["order.shipped"]),
        ),
        (
            ("CANCELLING", "fulfillment.delivered"),
            ("DELIVERED", vec!["order.delivered"]),
        ),
        (
            ("CANCELLING", "fulfillment.failed"),
            ("REFUNDING", vec!["payment.refund", "inventory.release"]),
        ),
        (
            ("CANCELLING", "fulfillment.cancelled"),
            ("REFUNDING", vec!["payment.refund", "inventory.release"]),
        ),
        (
            ("CANCELLING", "deadline"),
            ("CANCELLING", vec!["fulfillment.cancel"]),
        ),
        (("REFUNDING", "payment.refunded"), ("REFUNDING", vec![])),
        (
            ("REFUNDING", "inventory.released/compensation"),
            ("REFUNDING", vec![]),
        ),
        (
            ("REFUNDING", "deadline"),
            ("REFUNDING", vec!["payment.refund", "inventory.release"]),
        ),
        // Late carrier facts after the cancellation: the cancel is asked again, nothing else.
        (
            ("REFUNDING", "fulfillment.picked"),
            ("REFUNDING", vec!["fulfillment.cancel"]),
        ),
        (
            ("REFUNDING", "fulfillment.shipped"),
            ("REFUNDING", vec!["fulfillment.cancel"]),
        ),
        (
            ("REFUNDING", "fulfillment.delivered"),
            ("REFUNDING", vec!["fulfillment.cancel"]),
        ),
        (
            ("CANCELLED", "fulfillment.picked"),
            ("CANCELLED", vec!["fulfillment.cancel"]),
        ),
        (
            ("CANCELLED", "fulfillment.shipped"),
            ("CANCELLED", vec!["fulfillment.cancel"]),
        ),
        (
            ("CANCELLED", "fulfillment.delivered"),
            ("CANCELLED", vec!["fulfillment.cancel"]),
        ),
    ]
    .into_iter()
    .collect();

    let mut checked = 0;
    for (state_name, saga) in in_each_fulfillment_state() {
        assert_eq!(f_state(&saga), state_name);
        assert_eq!(
            saga.state,
            SagaState::Confirmed,
            "placement stays confirmed"
        );
        let mut all: Vec<(&str, Option<Message>)> = fulfillment_inputs()
            .into_iter()
            .map(|(n, m)| (n, Some(m)))
            .collect();
        all.push(("deadline", None));
        for (name, message) in &all {
            let input = match message {
                Some(m) => Input::Message(m),
                None => Input::DeadlinePassed,
            };
            let step = transition(&saga, input, at(5), &d());
            match table.get(&(state_name, *name)) {
                Some((to, sent)) => {
                    assert!(step.applied, "{state_name} × {name}: {}", step.note);
                    assert_eq!(f_state(&step.saga), *to, "{state_name} × {name}");
                    assert_eq!(types(&step.commands), *sent, "{state_name} × {name}");
                }
                None => {
                    assert!(
                        !step.applied,
                        "{state_name} × {name}: applied ({})",
                        step.note
                    );
                    assert_eq!(step.saga, saga, "{state_name} × {name} changed the saga");
                    assert!(step.commands.is_empty());
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 7 * 10);
}

#[test]
fn a_cancellation_refunds_and_releases_before_the_order_is_cancelled() {
    let saga = in_each_fulfillment_state()
        .into_iter()
        .find(|(n, _)| *n == "CANCELLED")
        .map(|(_, s)| s)
        .expect("a cancelled saga");
    let f = saga.fulfillment.as_ref().expect("fulfillment");
    assert_eq!(f.cancel_reason, Some(CancelReason::CustomerCancelled));
    assert!(f.refunded && f.released && saga.deadline_at.is_none());
    // The last compensation's answer sent the cancellation, with the customer's reason.
    let refunding = in_each_fulfillment_state()
        .into_iter()
        .find(|(n, _)| *n == "REFUNDING")
        .map(|(_, s)| s)
        .expect("a refunding saga");
    let half = f_after(&refunding, &["inventory.released/compensation"]);
    let step = transition(
        &half,
        Input::Message(&f_input("payment.refunded")),
        at(3),
        &d(),
    );
    let [Message::OrderCancelled(c)] = step.commands.as_slice() else {
        panic!("expected order.cancelled, got {:?}", types(&step.commands));
    };
    assert_eq!(c.reason, CancelReason::CustomerCancelled);
    // A carrier failure cancels with its own reason and says why.
    let failed = f_after(
        &after(&started(), &["inventory.reserved", "payment.authorized"]),
        &["fulfillment.failed"],
    );
    let f = failed.fulfillment.as_ref().expect("fulfillment");
    assert_eq!(f.cancel_reason, Some(CancelReason::FulfillmentFailed));
    assert!(f
        .cancel_detail
        .as_deref()
        .is_some_and(|d| d.contains("REGION_NOT_SERVED")));
}

#[test]
fn a_cancellation_that_loses_the_race_to_the_pick_is_refused_and_shipping_goes_on() {
    let confirmed = after(&started(), &["inventory.reserved", "payment.authorized"]);
    let saga = f_after(
        &confirmed,
        &[
            "order.cancel-requested",
            "fulfillment.picked",
            "fulfillment.shipped",
            "fulfillment.delivered",
        ],
    );
    let f = saga.fulfillment.as_ref().expect("fulfillment");
    assert_eq!(f.state, FulfillmentState::Delivered);
    assert!(f.cancel_refused && !f.refund_requested && f.cancel_reason.is_none());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any sequence of fulfillment facts, customer cancellations, compensation answers, late
    /// charges, deadlines and retries (duplicated, reordered, late): never shipped and refunded,
    /// never refunded twice, finished at most once, a late carrier fact after the cancellation
    /// is answered by asking for the cancellation again, and a cancelled order is refunded.
    #[test]
    fn no_fulfillment_sequence_ships_and_refunds(picks in proptest::collection::vec(0usize..11, 0..40)) {
        let pool = fulfillment_inputs();
        let mut saga = after(&started(), &["inventory.reserved", "payment.authorized"]);
        let mut sent: Vec<&'static str> = Vec::new();
        let mut refunds_from_messages = 0;
        for (i, pick) in picks.iter().enumerate() {
            let message = pool.get(*pick).map(|(_, m)| m.clone());
            let input = match (&message, *pick) {
                (Some(m), _) => Input::Message(m),
                (None, 9) => Input::DeadlinePassed,
                _ => Input::Retry { who: "ops" },
            };
            let before = saga.fulfillment.clone().expect("fulfillment");
            let step = transition(&saga, input, at(i as i64), &d());
            prop_assert_eq!(step.saga.state, SagaState::Confirmed);
            if !step.applied {
                prop_assert_eq!(&step.saga, &saga);
                prop_assert!(step.commands.is_empty());
            }
            let types_sent = types(&step.commands);
            if message.is_some() {
                refunds_from_messages += types_sent.iter().filter(|t| **t == "payment.refund").count();
            }
            let late_fact = matches!(
                message,
                Some(Message::FulfillmentPicked(_) | Message::FulfillmentShipped(_) | Message::FulfillmentDelivered(_))
            );
            if late_fact
                && matches!(before.state, FulfillmentState::Refunding | FulfillmentState::Cancelled)
                && !before.recall_requested
            {
                prop_assert_eq!(types_sent.clone(), vec!["fulfillment.cancel"], "a late carrier fact was not compensated");
            }
            prop_assert!(check_invariants(&step.saga).is_ok(), "{:?}", check_invariants(&step.saga));
            sent.extend(types_sent);
            saga = step.saga;
        }
        let count = |t: &str| sent.iter().filter(|s| **s == t).count();
        let announced = count("order.shipped") + count("order.delivered") > 0;
        prop_assert!(!(announced && count("payment.refund") > 0), "shipped and refunded: {:?}", sent);
        prop_assert!(refunds_from_messages <= 1, "refunded twice: {:?}", sent);
        prop_assert!(count("order.delivered") + count("order.cancelled") <= 1, "finished twice: {:?}", sent);
        let f = saga.fulfillment.as_ref().expect("fulfillment");
        if f.state == FulfillmentState::Cancelled {
            prop_assert!(f.refund_requested && f.refunded && f.released);
            prop_assert_eq!(count("order.cancelled"), 1);
        }
        if f.state == FulfillmentState::Delivered {
            prop_assert_eq!(count("order.delivered"), 1);
            prop_assert!(!f.refund_requested);
        }
    }
}
