//! The order's life after confirmation, end to end: six services in-process on the real
//! PostgreSQL and broker. Delivered, refused by the carrier, cancelled before the pick, refused
//! after it, and duplicate or reordered carrier facts that must change nothing.

use std::time::Duration;

use oms_contracts::auth::Role;
use oms_contracts::Envelope;
use oms_tests::stack::{Service, Stack, StackOptions};
use oms_tests::{eventually, produce, producer, wait_caught_up};
use serde_json::{json, Value};

const SETTLE: Duration = Duration::from_secs(90);

fn order(customer: &str, quantity: u32, country: &str) -> Value {
    json!({
        "customerId": customer,
        "items": [{"productId": "mouse-01", "quantity": quantity}],
        "paymentToken": "tok_visa",
        "shippingAddress": {"line1": "Hauptstraße 1", "city": "Berlin", "postalCode": "10115", "country": country},
    })
}

async fn kinds(stack: &Stack, order_id: &str) -> anyhow::Result<Vec<String>> {
    let list = stack
        .get(
            Service::Notification,
            &format!("/notifications?orderId={order_id}"),
        )
        .await?;
    let mut kinds: Vec<String> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["kind"].as_str().map(str::to_owned))
        .collect();
    kinds.sort();
    Ok(kinds)
}

async fn cancel(stack: &Stack, order_id: &str, token: &str) -> anyhow::Result<(u16, Value)> {
    stack
        .post_json(
            Service::Order,
            &format!("/orders/{order_id}/cancel"),
            &json!({}),
            Some(token),
        )
        .await
}

/// Inputs of the saga's history with the given name: (applied, note).
async fn steps(stack: &Stack, order_id: &str, input: &str) -> anyhow::Result<Vec<(bool, String)>> {
    let saga = stack
        .get(Service::Saga, &format!("/sagas/{order_id}"))
        .await?;
    Ok(saga["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["input"] == input)
        .map(|s| {
            (
                s["applied"].as_bool().unwrap_or(false),
                s["note"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_confirmed_order_is_picked_shipped_and_delivered_selling_its_stock_at_the_pick(
) -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let before = stack.product("mouse-01").await?;
    let id = stack.place(order("c-ship", 2, "DE")).await?;
    let done = stack.settled(&id, SETTLE).await?;
    assert_eq!(done["status"], "DELIVERED", "{done}");
    for at in ["pickedAt", "shippedAt", "deliveredAt"] {
        assert!(done[at].is_string(), "{at} missing: {done}");
    }
    assert_eq!(done["shippingAddress"]["country"], "DE");
    let tracking = done["trackingNumber"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(tracking.starts_with("SIM"), "{done}");

    let shipment = stack
        .get(Service::Fulfillment, &format!("/shipments/{id}"))
        .await?;
    assert_eq!(shipment["status"], "DELIVERED");
    assert_eq!(shipment["trackingNumber"], tracking.as_str());
    assert_eq!(shipment["lines"][0]["quantity"], 2);
    let listed = stack
        .get(
            Service::Fulfillment,
            "/shipments?status=delivered&limit=1000",
        )
        .await?;
    assert!(listed["items"]
        .as_array()
        .is_some_and(|l| l.iter().any(|s| s["orderId"] == id.as_str())));

    // Sold at the pick: nothing left reserved for it, two more sold, charged once.
    let reservation = stack
        .get(Service::Inventory, &format!("/reservations/{id}"))
        .await?;
    assert_eq!(reservation["status"], "COMMITTED");
    let after = stack.product("mouse-01").await?;
    assert_eq!(
        after["sold"].as_i64().unwrap_or(0),
        before["sold"].as_i64().unwrap_or(0) + 2
    );
    let payment = stack
        .get(Service::Payment, &format!("/payments/{id}"))
        .await?;
    assert_eq!(payment["status"], "AUTHORIZED");

    let saga = stack.get(Service::Saga, &format!("/sagas/{id}")).await?;
    assert_eq!(saga["state"], "CONFIRMED");
    assert_eq!(saga["fulfillment"]["state"], "DELIVERED");
    assert!(
        saga["deadlineAt"].is_null(),
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
    assert_eq!(done["status"], "CANCELLED", "{done}");
    assert_eq!(done["cancelReason"], "FULFILLMENT_FAILED");
    assert!(done["cancelDetail"]
        .as_str()
        .is_some_and(|d| d.contains("REGION_NOT_SERVED")));
    assert!(done["pickedAt"].is_null());

    let shipment = stack
        .get(Service::Fulfillment, &format!("/shipments/{id}"))
        .await?;
    assert_eq!(shipment["status"], "FAILED");
    assert_eq!(shipment["failReason"], "REGION_NOT_SERVED");
    let payment = stack
        .get(Service::Payment, &format!("/payments/{id}"))
        .await?;
    assert_eq!(payment["status"], "REFUNDED");
    assert_eq!(payment["refundReason"], "FULFILLMENT_FAILED");
    let reservation = stack
        .get(Service::Inventory, &format!("/reservations/{id}"))
        .await?;
    assert_eq!(reservation["status"], "RELEASED");
    let after = stack.product("mouse-01").await?;
    assert_eq!(after["available"], before["available"]);
    assert_eq!(after["sold"], before["sold"]);
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
    stack
        .set_carrier_faults(json!({"latencyMs": 20_000}))
        .await?;
    let me = stack.token("c-cancel", Role::Customer, 600)?;
    let other = stack.token("c-other", Role::Customer, 600)?;
    let operator = stack.token("ops", Role::Operator, 600)?;
    let before = stack.product("mouse-01").await?;

    let id = stack.place(order("c-cancel", 1, "DE")).await?;
    let confirmed = stack.finished(&id, SETTLE).await?;
    assert_eq!(confirmed["status"], "CONFIRMED", "{confirmed}");

    // Not yours: as absent as a missing order. Operators read only.
    assert_eq!(cancel(&stack, &id, &other).await?.0, 404);
    let (code, body) = cancel(&stack, &id, &operator).await?;
    assert_eq!(code, 403, "{body}");

    let (code, body) = cancel(&stack, &id, &me).await?;
    assert_eq!(code, 202, "{body}");
    assert!(body["cancelRequestedAt"].is_string(), "{body}");
    let (again, _) = cancel(&stack, &id, &me).await?;
    assert!(
        again == 202 || again == 200,
        "repeated cancel answered {again}"
    );

    let done = stack.settled(&id, SETTLE).await?;
    assert_eq!(done["status"], "CANCELLED", "{done}");
    assert_eq!(done["cancelReason"], "CUSTOMER_CANCELLED");
    let (code, body) = cancel(&stack, &id, &me).await?;
    assert_eq!(code, 200, "a cancelled order answers 200: {body}");
    assert_eq!(body["status"], "CANCELLED");

    let shipment = stack
        .get(Service::Fulfillment, &format!("/shipments/{id}"))
        .await?;
    assert_eq!(shipment["status"], "CANCELLED");
    assert!(shipment["pickedAt"].is_null());
    let payment = stack
        .get(Service::Payment, &format!("/payments/{id}"))
        .await?;
    assert_eq!(payment["status"], "REFUNDED");
    assert_eq!(payment["refundReason"], "CUSTOMER_CANCELLED");
    let reservation = stack
        .get(Service::Inventory, &format!("/reservations/{id}"))
        .await?;
    assert_eq!(reservation["status"], "RELEASED");
    assert_eq!(stack.product("mouse-01").await?["sold"], before["sold"]);
    // One request reached the saga, refunded once.
    let requested = steps(&stack, &id, "order.cancel-requested").await?;
    assert_eq!(requested.len(), 1, "{requested:?}");
    let saga = stack.get(Service::Saga, &format!("/sagas/{id}")).await?;
    let refunds = saga["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["sent"].as_array().cloned().unwrap_or_default())
        .filter(|t| t == "payment.refund")
        .count();
    assert_eq!(refunds, 1, "{saga}");

    // Cancelled while the saga still runs: placement itself is compensated.
    stack.set_gateway_faults(json!({"latencyMs": 3000})).await?;
    let early = stack.place(order("c-cancel", 1, "DE")).await?;
    let (code, body) = cancel(&stack, &early, &me).await?;
    assert_eq!(code, 202, "{body}");
    let done = stack.settled(&early, SETTLE).await?;
    assert_eq!(done["status"], "CANCELLED", "{done}");
    assert_eq!(done["cancelReason"], "CUSTOMER_CANCELLED");
    let reservation = stack
        .get(Service::Inventory, &format!("/reservations/{early}"))
        .await?;
    assert_eq!(reservation["status"], "RELEASED");
    stack.set_gateway_faults(json!({})).await?;
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancellation_after_the_pick_is_refused_and_the_order_is_delivered() -> anyhow::Result<()>
{
    let stack = Stack::start(StackOptions::default()).await?;
    let me = stack.token("c-late", Role::Customer, 600)?;
    let id = stack.place(order("c-late", 1, "DE")).await?;
    let picked = eventually(SETTLE, "the pick", || async {
        let o = stack.get(Service::Order, &format!("/orders/{id}")).await?;
        Ok(o["pickedAt"].is_string().then_some(o))
    })
    .await?;
    let (code, problem) = cancel(&stack, &id, &me).await?;
    assert_eq!(code, 409, "{problem}");
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("can no longer be cancelled")
            && ["picked", "shipped", "delivered"]
                .iter()
                .any(|w| detail.contains(w)),
        "{problem} (order was {picked})"
    );
    let done = stack.settled(&id, SETTLE).await?;
    assert_eq!(done["status"], "DELIVERED", "{done}");
    assert!(
        done["cancelRequestedAt"].is_null(),
        "a refused cancel is not recorded: {done}"
    );
    let payment = stack
        .get(Service::Payment, &format!("/payments/{id}"))
        .await?;
    assert_eq!(payment["status"], "AUTHORIZED");
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_and_reordered_carrier_facts_change_nothing() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let me = stack.token("c-dup", Role::Customer, 600)?;
    let delivered = stack.place(order("c-dup", 1, "DE")).await?;
    let done = stack.settled(&delivered, SETTLE).await?;
    assert_eq!(done["status"], "DELIVERED", "{done}");
    let shipment_id = stack
        .get(Service::Fulfillment, &format!("/shipments/{delivered}"))
        .await?["shipmentId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // And one cancelled before its pick.
    stack
        .set_carrier_faults(json!({"latencyMs": 20_000}))
        .await?;
    let cancelled = stack.place(order("c-dup", 1, "DE")).await?;
    stack.finished(&cancelled, SETTLE).await?;
    assert_eq!(cancel(&stack, &cancelled, &me).await?.0, 202);
    assert_eq!(
        stack.settled(&cancelled, SETTLE).await?["status"],
        "CANCELLED"
    );
    stack.set_carrier_faults(json!({})).await?;
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
            json!({"shipmentId": shipment_id}),
        ),
        (
            delivered.as_str(),
            "fulfillment.shipped",
            json!({"shipmentId": shipment_id, "trackingNumber": "SIMOLD"}),
        ),
        (
            delivered.as_str(),
            "fulfillment.picked",
            json!({"shipmentId": shipment_id, "lines": lines}),
        ),
        (
            cancelled.as_str(),
            "fulfillment.picked",
            json!({"shipmentId": shipment_id, "lines": lines}),
        ),
    ];
    for (order_id, kind, payload) in facts {
        let mut payload = payload;
        payload["orderId"] = json!(order_id);
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

    let after = stack
        .get(Service::Order, &format!("/orders/{delivered}"))
        .await?;
    assert_eq!(after["status"], "DELIVERED");
    assert_eq!(after["trackingNumber"], done["trackingNumber"]);
    assert_eq!(kinds(&stack, &delivered).await?, kinds_before);
    let late = steps(&stack, &delivered, "fulfillment.shipped").await?;
    assert!(
        late.iter().any(|(applied, _)| !applied),
        "the late shipped was not ignored: {late:?}"
    );
    // The cancelled order stays cancelled and refunded; its stock is not sold by the stale
    // pick (inventory dead-letters it), and the saga asked for the cancellation again.
    let c = stack
        .get(Service::Order, &format!("/orders/{cancelled}"))
        .await?;
    assert_eq!(c["status"], "CANCELLED");
    assert!(c["pickedAt"].is_null(), "{c}");
    let recall = steps(&stack, &cancelled, "fulfillment.picked").await?;
    assert!(
        recall
            .iter()
            .any(|(applied, note)| *applied && note.contains("asked again")),
        "{recall:?}"
    );
    let payment = stack
        .get(Service::Payment, &format!("/payments/{cancelled}"))
        .await?;
    assert_eq!(payment["status"], "REFUNDED");
    assert_eq!(stack.product("mouse-01").await?["sold"], product["sold"]);
    let reservation = stack
        .get(Service::Inventory, &format!("/reservations/{cancelled}"))
        .await?;
    assert_eq!(reservation["status"], "RELEASED");
    let shipment = stack
        .get(Service::Fulfillment, &format!("/shipments/{cancelled}"))
        .await?;
    assert_eq!(shipment["status"], "CANCELLED");
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
        assert_eq!(done["status"], "DELIVERED", "{done}");
        let shipment = stack
            .get(Service::Fulfillment, &format!("/shipments/{id}"))
            .await?;
        assert_eq!(shipment["status"], "DELIVERED", "{shipment}");
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
    assert_eq!(done["status"], "DELIVERED", "{done}");
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
