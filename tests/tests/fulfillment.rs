//! The order's life after confirmation, end to end: six services in-process on the real
//! PostgreSQL and broker. Delivered, refused by the carrier, cancelled before the pick, refused
//! after it, and duplicate or reordered carrier facts that must change nothing.

use std::time::Duration;

use oms_contracts::api::{
    CarrierKnobs, CreateOrder, FulfillmentState, GatewayKnobs, OrderStatus, OrderView,
    RequestedLine, SagaState, ShipmentStatus,
};
use oms_contracts::auth::Role;
use oms_contracts::routes;
use oms_contracts::values::ShippingAddress;
use oms_contracts::Envelope;
use oms_tests::stack::{Answer, Service, Stack, StackOptions};
use oms_tests::{eventually, produce, producer, wait_caught_up};
use serde_json::json;

const SETTLE: Duration = Duration::from_secs(90);

fn order(customer: &str, quantity: u32, country: &str) -> CreateOrder {
    CreateOrder {
        customer_id: Some(customer.into()),
        items: vec![RequestedLine {
            product_id: "mouse-01".into(),
            quantity,
        }],
        payment_token: Some("tok_visa".into()),
        shipping_address: Some(ShippingAddress {
            line1: "Hauptstraße 1".into(),
            city: "Berlin".into(),
            postal_code: "10115".into(),
            country: country.into(),
        }),
    }
}

/// The carrier's fault knobs with only a latency: 20 s holds a shipment before its pick.
fn slow_carrier(latency_ms: u64) -> CarrierKnobs {
    CarrierKnobs {
        latency_ms,
        ..CarrierKnobs::default()
    }
}

async fn kinds(stack: &Stack, order_id: &str) -> anyhow::Result<Vec<String>> {
    let page = stack
        .read_query(routes::LIST_NOTIFICATIONS, &[], &[("orderId", order_id)])
        .await?;
    let mut kinds: Vec<String> = page.items.into_iter().map(|n| n.kind).collect();
    kinds.sort();
    Ok(kinds)
}

async fn cancel(stack: &Stack, order_id: &str, token: &str) -> anyhow::Result<Answer<OrderView>> {
    stack
        .answer(routes::CANCEL_ORDER, &[order_id], &(), Some(token))
        .await
}

/// Inputs of the saga's history with the given name: (applied, note).
async fn steps(stack: &Stack, order_id: &str, input: &str) -> anyhow::Result<Vec<(bool, String)>> {
    let saga = stack.read(routes::GET_SAGA, &[order_id]).await?;
    Ok(saga
        .steps
        .into_iter()
        .flatten()
        .filter(|s| s.input == input)
        .map(|s| (s.applied, s.note))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_confirmed_order_is_picked_shipped_and_delivered_selling_its_stock_at_the_pick(
) -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let before = stack.product("mouse-01").await?;
    let id = stack.place(order("c-ship", 2, "DE")).await?;
    let done = stack.settled(&id, SETTLE).await?;
    assert_eq!(done.status, OrderStatus::Delivered, "{done:?}");
    for (at, when) in [
        ("pickedAt", done.picked_at),
        ("shippedAt", done.shipped_at),
        ("deliveredAt", done.delivered_at),
    ] {
        assert!(when.is_some(), "{at} missing: {done:?}");
    }
    assert_eq!(
        done.shipping_address.as_ref().map(|a| a.country.as_str()),
        Some("DE")
    );
    let tracking = done.tracking_number.clone().unwrap_or_default();
    assert!(tracking.starts_with("SIM"), "{done:?}");

    let shipment = stack.read(routes::GET_SHIPMENT, &[&id]).await?;
    assert_eq!(shipment.status, ShipmentStatus::Delivered);
    assert_eq!(shipment.tracking_number.as_deref(), Some(tracking.as_str()));
    assert_eq!(
        shipment.lines.first().map(|l| l.quantity),
        Some(2),
        "{shipment:?}"
    );
    let listed = stack
        .read_query(
            routes::LIST_SHIPMENTS,
            &[],
            &[("status", "delivered"), ("limit", "1000")],
        )
        .await?;
    assert!(listed.items.iter().any(|s| s.order_id.to_string() == id));

    // Sold at the pick: nothing left reserved for it, two more sold, charged once.
    let reservation = stack.read(routes::GET_RESERVATION, &[&id]).await?;
    assert_eq!(reservation.status, "COMMITTED");
    let after = stack.product("mouse-01").await?;
    assert_eq!(after.sold, before.sold + 2);
    let payment = stack.read(routes::GET_PAYMENT, &[&id]).await?;
    assert_eq!(payment.status, "AUTHORIZED");

    let saga = stack.read(routes::GET_SAGA, &[&id]).await?;
    assert_eq!(saga.state, SagaState::Confirmed);
    assert_eq!(
        saga.fulfillment.as_ref().map(|f| f.state),
        Some(FulfillmentState::Delivered),
        "{saga:?}"
    );
    assert!(
        saga.deadline_at.is_none(),
        "a delivered saga has no deadline"
    );
    let notified = eventually(Duration::from_secs(30), "three notifications", || async {
        let k = kinds(&stack, &id).await?;
        Ok((k.len() >= 3).then_some(k))
    })
    .await?;
    assert_eq!(
        notified,
        ["ORDER_CONFIRMED", "ORDER_DELIVERED", "ORDER_SHIPPED"]
    );
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_carrier_refusal_refunds_the_payment_releases_the_stock_and_cancels() -> anyhow::Result<()>
{
    let stack = Stack::start(StackOptions::default()).await?;
    let before = stack.product("mouse-01").await?;
    let id = stack.place(order("c-far", 1, "XX")).await?;
    let done = stack.settled(&id, SETTLE).await?;
    assert_eq!(done.status, OrderStatus::Cancelled, "{done:?}");
    assert_eq!(done.cancel_reason.as_deref(), Some("FULFILLMENT_FAILED"));
    assert!(
        done.cancel_detail
            .as_deref()
            .is_some_and(|d| d.contains("REGION_NOT_SERVED")),
        "{done:?}"
    );
    assert!(done.picked_at.is_none(), "{done:?}");

    let shipment = stack.read(routes::GET_SHIPMENT, &[&id]).await?;
    assert_eq!(shipment.status, ShipmentStatus::Failed);
    assert_eq!(shipment.fail_reason.as_deref(), Some("REGION_NOT_SERVED"));
    let payment = stack.read(routes::GET_PAYMENT, &[&id]).await?;
    assert_eq!(payment.status, "REFUNDED");
    assert_eq!(payment.refund_reason.as_deref(), Some("FULFILLMENT_FAILED"));
    let reservation = stack.read(routes::GET_RESERVATION, &[&id]).await?;
    assert_eq!(reservation.status, "RELEASED");
    let after = stack.product("mouse-01").await?;
    assert_eq!(after.available, before.available);
    assert_eq!(after.sold, before.sold);
    let notified = eventually(Duration::from_secs(30), "two notifications", || async {
        let k = kinds(&stack, &id).await?;
        Ok((k.len() >= 2).then_some(k))
    })
    .await?;
    assert_eq!(notified, ["ORDER_CANCELLED", "ORDER_CONFIRMED"]);
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_customer_cancels_before_the_pick_and_is_refunded_once() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    // A slow carrier: the pick waits 20 s, the window to cancel in.
    stack.set_carrier_faults(slow_carrier(20_000)).await?;
    let me = stack.token("c-cancel", Role::Customer, 600)?;
    let other = stack.token("c-other", Role::Customer, 600)?;
    let operator = stack.token("ops", Role::Operator, 600)?;
    let before = stack.product("mouse-01").await?;

    let id = stack.place(order("c-cancel", 1, "DE")).await?;
    let confirmed = stack.finished(&id, SETTLE).await?;
    assert_eq!(confirmed.status, OrderStatus::Confirmed, "{confirmed:?}");

    // Not yours: as absent as a missing order. Operators read only.
    let a = cancel(&stack, &id, &other).await?;
    assert_eq!(a.status, 404, "{a:?}");
    let a = cancel(&stack, &id, &operator).await?;
    assert_eq!(a.status, 403, "{a:?}");

    let a = cancel(&stack, &id, &me).await?;
    assert_eq!(a.status, 202, "{a:?}");
    let requested = a.ok()?;
    assert!(requested.cancel_requested_at.is_some(), "{requested:?}");
    let again = cancel(&stack, &id, &me).await?.status;
    assert!(
        again == 202 || again == 200,
        "repeated cancel answered {again}"
    );

    let done = stack.settled(&id, SETTLE).await?;
    assert_eq!(done.status, OrderStatus::Cancelled, "{done:?}");
    assert_eq!(done.cancel_reason.as_deref(), Some("CUSTOMER_CANCELLED"));
    let a = cancel(&stack, &id, &me).await?;
    assert_eq!(a.status, 200, "a cancelled order answers 200: {a:?}");
    assert_eq!(a.ok()?.status, OrderStatus::Cancelled);

    let shipment = stack.read(routes::GET_SHIPMENT, &[&id]).await?;
    assert_eq!(shipment.status, ShipmentStatus::Cancelled);
    assert!(shipment.picked_at.is_none(), "{shipment:?}");
    let payment = stack.read(routes::GET_PAYMENT, &[&id]).await?;
    assert_eq!(payment.status, "REFUNDED");
    assert_eq!(payment.refund_reason.as_deref(), Some("CUSTOMER_CANCELLED"));
    let reservation = stack.read(routes::GET_RESERVATION, &[&id]).await?;
    assert_eq!(reservation.status, "RELEASED");
    assert_eq!(stack.product("mouse-01").await?.sold, before.sold);
    // One request reached the saga, refunded once.
    let requested = steps(&stack, &id, "order.cancel-requested").await?;
    assert_eq!(requested.len(), 1, "{requested:?}");
    let saga = stack.read(routes::GET_SAGA, &[&id]).await?;
    let refunds = saga
        .steps
        .iter()
        .flatten()
        .flat_map(|s| &s.sent)
        .filter(|t| *t == "payment.refund")
        .count();
    assert_eq!(refunds, 1, "{saga:?}");

    // Cancelled while the saga still runs: placement itself is compensated.
    stack
        .set_gateway_faults(GatewayKnobs {
            latency_ms: 3000,
            ..GatewayKnobs::default()
        })
        .await?;
    let early = stack.place(order("c-cancel", 1, "DE")).await?;
    let a = cancel(&stack, &early, &me).await?;
    assert_eq!(a.status, 202, "{a:?}");
    let done = stack.settled(&early, SETTLE).await?;
    assert_eq!(done.status, OrderStatus::Cancelled, "{done:?}");
    assert_eq!(done.cancel_reason.as_deref(), Some("CUSTOMER_CANCELLED"));
    let reservation = stack.read(routes::GET_RESERVATION, &[&early]).await?;
    assert_eq!(reservation.status, "RELEASED");
    stack.set_gateway_faults(GatewayKnobs::default()).await?;
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancellation_after_the_pick_is_refused_and_the_order_is_delivered() -> anyhow::Result<()>
{
    let stack = Stack::start(StackOptions::default()).await?;
    let me = stack.token("c-late", Role::Customer, 600)?;
    let id = stack.place(order("c-late", 1, "DE")).await?;
    let picked = eventually(SETTLE, "the pick", || async {
        let o = stack.read(routes::GET_ORDER, &[&id]).await?;
        Ok(o.picked_at.is_some().then_some(o))
    })
    .await?;
    let a = cancel(&stack, &id, &me).await?;
    assert_eq!(a.status, 409, "{a:?}");
    let problem = a.problem()?;
    let detail = &problem.detail;
    assert!(
        detail.contains("can no longer be cancelled")
            && ["picked", "shipped", "delivered"]
                .iter()
                .any(|w| detail.contains(w)),
        "{problem:?} (order was {picked:?})"
    );
    let done = stack.settled(&id, SETTLE).await?;
    assert_eq!(done.status, OrderStatus::Delivered, "{done:?}");
    assert!(
        done.cancel_requested_at.is_none(),
        "a refused cancel is not recorded: {done:?}"
    );
    let payment = stack.read(routes::GET_PAYMENT, &[&id]).await?;
    assert_eq!(payment.status, "AUTHORIZED");
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_and_reordered_carrier_facts_change_nothing() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let me = stack.token("c-dup", Role::Customer, 600)?;
    let delivered = stack.place(order("c-dup", 1, "DE")).await?;
    let done = stack.settled(&delivered, SETTLE).await?;
    assert_eq!(done.status, OrderStatus::Delivered, "{done:?}");
    let shipment_id = stack
        .read(routes::GET_SHIPMENT, &[&delivered])
        .await?
        .shipment_id;
    // And one cancelled before its pick.
    stack.set_carrier_faults(slow_carrier(20_000)).await?;
    let cancelled = stack.place(order("c-dup", 1, "DE")).await?;
    stack.finished(&cancelled, SETTLE).await?;
    let a = cancel(&stack, &cancelled, &me).await?;
    assert_eq!(a.status, 202, "{a:?}");
    assert_eq!(
        stack.settled(&cancelled, SETTLE).await?.status,
        OrderStatus::Cancelled
    );
    stack.set_carrier_faults(CarrierKnobs::default()).await?;
    let product = stack.product("mouse-01").await?;
    let kinds_before = kinds(&stack, &delivered).await?;

    // Replayed facts, out of order: delivered again, then shipped and picked after it; and a
    // pick of the cancelled order's shipment that never happened.
    let topic = stack
        .topics()
        .name(oms_contracts::topics::FULFILLMENT_EVENTS);
    let p = producer(stack.brokers())?;
    let lines = json!([{"productId": "mouse-01", "quantity": 1,
        "unitPrice": {"amountMinor": 2499, "currency": "EUR"}}]);
    let facts = [
        (
            delivered.as_str(),
            "fulfillment.delivered",
            json!({"orderId": delivered, "shipmentId": shipment_id}),
        ),
        (
            delivered.as_str(),
            "fulfillment.shipped",
            json!({"orderId": delivered, "shipmentId": shipment_id, "trackingNumber": "SIMOLD"}),
        ),
        (
            delivered.as_str(),
            "fulfillment.picked",
            json!({"orderId": delivered, "shipmentId": shipment_id, "lines": lines}),
        ),
        (
            cancelled.as_str(),
            "fulfillment.picked",
            json!({"orderId": cancelled, "shipmentId": shipment_id, "lines": lines}),
        ),
    ];
    for (order_id, kind, payload) in facts {
        let envelope = json!({
            "eventId": uuid::Uuid::now_v7(), "type": kind, "schemaVersion": 1,
            "occurredAt": chrono::Utc::now(), "correlationId": order_id,
            "source": "fulfillment", "payload": payload,
        });
        let bytes = envelope.to_string();
        assert!(Envelope::decode(bytes.as_bytes()).is_ok(), "{bytes}");
        produce(&p, &topic, order_id, bytes.as_bytes(), &[]).await?;
    }
    for group in ["oms-saga", "oms-order", "oms-inventory"] {
        wait_caught_up(
            stack.brokers(),
            &stack.topics().name(group),
            std::slice::from_ref(&topic),
            Duration::from_secs(60),
        )
        .await?;
    }

    let after = stack.read(routes::GET_ORDER, &[&delivered]).await?;
    assert_eq!(after.status, OrderStatus::Delivered);
    assert_eq!(after.tracking_number, done.tracking_number);
    assert_eq!(kinds(&stack, &delivered).await?, kinds_before);
    let late = steps(&stack, &delivered, "fulfillment.shipped").await?;
    assert!(
        late.iter().any(|(applied, _)| !applied),
        "the late shipped was not ignored: {late:?}"
    );
    // The cancelled order stays cancelled and refunded; its stock is not sold by the stale
    // pick (inventory dead-letters it), and the saga asked for the cancellation again.
    let c = stack.read(routes::GET_ORDER, &[&cancelled]).await?;
    assert_eq!(c.status, OrderStatus::Cancelled);
    assert!(c.picked_at.is_none(), "{c:?}");
    let recall = steps(&stack, &cancelled, "fulfillment.picked").await?;
    assert!(
        recall
            .iter()
            .any(|(applied, note)| *applied && note.contains("asked again")),
        "{recall:?}"
    );
    let payment = stack.read(routes::GET_PAYMENT, &[&cancelled]).await?;
    assert_eq!(payment.status, "REFUNDED");
    assert_eq!(stack.product("mouse-01").await?.sold, product.sold);
    let reservation = stack.read(routes::GET_RESERVATION, &[&cancelled]).await?;
    assert_eq!(reservation.status, "RELEASED");
    let shipment = stack.read(routes::GET_SHIPMENT, &[&cancelled]).await?;
    assert_eq!(shipment.status, ShipmentStatus::Cancelled);
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_carrier_wakes_for_a_new_shipment_and_for_each_step_falling_due() -> anyhow::Result<()>
{
    // The worker's own interval is an hour: only the wake-up on a committed request and the
    // sleep until the next known step can move the shipment along in time.
    let stack = Stack::start(StackOptions {
        carrier_interval: Duration::from_secs(3600),
        pick_after: Duration::ZERO,
        ship_after: Duration::from_millis(300),
        deliver_after: Duration::from_millis(300),
        ..StackOptions::default()
    })
    .await?;
    for _ in 0..2 {
        let id = stack.place(order("carol", 1, "DE")).await?;
        let done = stack.settled(&id, SETTLE).await?;
        assert_eq!(done.status, OrderStatus::Delivered, "{done:?}");
        let shipment = stack.read(routes::GET_SHIPMENT, &[&id]).await?;
        assert_eq!(shipment.status, ShipmentStatus::Delivered, "{shipment:?}");
    }
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_service_prunes_its_inbox_past_the_retention() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions {
        inbox_retention: Duration::from_secs(1),
        ..StackOptions::default()
    })
    .await?;
    let id = stack.place(order("dave", 1, "DE")).await?;
    let done = stack.settled(&id, SETTLE).await?;
    assert_eq!(done.status, OrderStatus::Delivered, "{done:?}");
    for service in Service::all() {
        let pool = stack.pool(service).await?;
        let count = || async {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM processed_messages \
                 WHERE processed_at < clock_timestamp() - interval '5 seconds'",
            )
            .fetch_one(&pool)
            .await?;
            Ok::<_, anyhow::Error>(n)
        };
        // The order's messages were settled seconds ago: none is kept much past the second of
        // retention (the pruner looks every second).
        eventually(
            Duration::from_secs(30),
            &format!("the inbox of {service:?} to be pruned"),
            || async { Ok((count().await? == 0).then_some(())) },
        )
        .await?;
    }
    stack.shutdown().await
}
