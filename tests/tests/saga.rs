//! The order saga end to end: all five services in-process on the real PostgreSQL and broker.

use std::time::Duration;

use oms_contracts::auth::Role;
use oms_tests::stack::{Service, Stack, StackOptions};
use oms_tests::{eventually, placed, wait_caught_up, Received};
use serde_json::{json, Value};

const FINISH: Duration = Duration::from_secs(90);

fn order(product: &str, quantity: u32, token: &str) -> Value {
    json!({
        "customerId": "c-test",
        "items": [{"productId": product, "quantity": quantity}],
        "paymentToken": token,
    })
}

async fn notifications(stack: &Stack, order_id: &str) -> anyhow::Result<Vec<Value>> {
    let list = stack
        .get(
            Service::Notification,
            &format!("/notifications?orderId={order_id}"),
        )
        .await?;
    Ok(list["items"].as_array().cloned().unwrap_or_default())
}

/// Waits for the order's notification of `kind`, then checks that there is exactly one, and no
/// notification of the placement's other outcome.
async fn one_notification(stack: &Stack, order_id: &str, kind: &str) -> anyhow::Result<Value> {
    let other = if kind == "ORDER_CONFIRMED" {
        "ORDER_CANCELLED"
    } else {
        "ORDER_CONFIRMED"
    };
    let n = eventually(Duration::from_secs(30), "the notification", || async {
        let items = notifications(stack, order_id).await?;
        Ok(items.iter().any(|n| n["kind"] == kind).then_some(items))
    })
    .await?;
    let of = |k: &str| n.iter().filter(|x| x["kind"] == k).count();
    assert_eq!(of(kind), 1, "{n:?}");
    assert_eq!(of(other), 0, "{n:?}");
    Ok(n.iter()
        .find(|x| x["kind"] == kind)
        .cloned()
        .unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn happy_path_confirms_sells_the_stock_charges_once_and_notifies_once() -> anyhow::Result<()>
{
    let stack = Stack::start(StackOptions::default()).await?;
    let before = stack.product("mouse-01").await?;

    let id = stack.place(order("mouse-01", 2, "tok_visa")).await?;
    let done = stack.finished(&id, FINISH).await?;
    assert!(placed(&done), "{done}");
    assert_eq!(
        done["total"],
        json!({"amountMinor": 4998, "currency": "EUR"})
    );
    assert_eq!(done["lines"][0]["unitPrice"]["amountMinor"], 2499);
    assert!(done["paymentId"].is_string());

    // Stock moved from reserved to sold once the confirmation reached inventory.
    let after = eventually(Duration::from_secs(30), "stock to be sold", || async {
        let p = stack.product("mouse-01").await?;
        Ok((p["sold"] == 2).then_some(p))
    })
    .await?;
    assert_eq!(
        after["available"],
        before["available"].as_i64().unwrap_or(0) - 2
    );
    assert_eq!(after["reserved"], 0);
    let reservation = stack
        .get(Service::Inventory, &format!("/reservations/{id}"))
        .await?;
    assert_eq!(reservation["status"], "COMMITTED");

    let payment = stack
        .get(Service::Payment, &format!("/payments/{id}"))
        .await?;
    assert_eq!(payment["status"], "AUTHORIZED");
    assert_eq!(payment["amount"]["amountMinor"], 4998);
    assert_eq!(payment["paymentId"], done["paymentId"]);

    one_notification(&stack, &id, "ORDER_CONFIRMED").await?;

    let saga = stack.get(Service::Saga, &format!("/sagas/{id}")).await?;
    assert_eq!(saga["state"], "CONFIRMED");
    let path: Vec<&str> = saga["steps"]
        .as_array()
        .map(|s| s.iter().filter_map(|s| s["to"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(path[..3], ["RESERVING", "AUTHORIZING", "CONFIRMED"]);
    // Then fulfillment: picked, shipped, delivered.
    let delivered = stack.settled(&id, FINISH).await?;
    assert_eq!(delivered["status"], "DELIVERED", "{delivered}");
    let saga = stack.get(Service::Saga, &format!("/sagas/{id}")).await?;
    let path: Vec<&str> = saga["steps"]
        .as_array()
        .map(|s| s.iter().filter_map(|s| s["to"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        path,
        [
            "RESERVING",
            "AUTHORIZING",
            "CONFIRMED",
            "PICKED",
            "SHIPPED",
            "DELIVERED"
        ]
    );
    assert!(saga.get("paymentToken").is_none(), "token shown: {saga}");
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn out_of_stock_and_unknown_products_cancel_without_charging_or_moving_stock(
) -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    stack.set_stock("monitor-27", 1).await?;
    let before = stack.product("monitor-27").await?;

    let id = stack.place(order("monitor-27", 2, "tok_visa")).await?;
    let done = stack.finished(&id, FINISH).await?;
    assert_eq!(done["status"], "CANCELLED", "{done}");
    assert_eq!(done["cancelReason"], "OUT_OF_STOCK");
    assert!(done["cancelDetail"]
        .as_str()
        .is_some_and(|d| d.contains("monitor-27")));
    let (status, _) = stack
        .get_status(Service::Payment, &format!("/payments/{id}"))
        .await?;
    assert_eq!(status, 404, "a payment exists for an out-of-stock order");
    let after = stack.product("monitor-27").await?;
    for field in ["available", "reserved", "sold"] {
        assert_eq!(after[field], before[field], "{field} moved");
    }
    let n = one_notification(&stack, &id, "ORDER_CANCELLED").await?;
    assert_eq!(n["reason"], "OUT_OF_STOCK");

    let id = stack.place(order("no-such-thing", 1, "tok_visa")).await?;
    let done = stack.finished(&id, FINISH).await?;
    assert_eq!(done["cancelReason"], "UNKNOWN_PRODUCT", "{done}");
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_declined_card_releases_the_reservation_and_cancels() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let before = stack.product("hub-01").await?;

    let id = stack
        .place(order("hub-01", 3, "tok_chargeDeclined"))
        .await?;
    let done = stack.finished(&id, FINISH).await?;
    assert_eq!(done["status"], "CANCELLED", "{done}");
    assert_eq!(done["cancelReason"], "PAYMENT_DECLINED");
    assert_eq!(done["cancelDetail"], "payment declined: CARD_DECLINED");

    let after = stack.product("hub-01").await?;
    for field in ["available", "reserved", "sold"] {
        assert_eq!(
            after[field], before[field],
            "{field} not back where it started"
        );
    }
    let reservation = stack
        .get(Service::Inventory, &format!("/reservations/{id}"))
        .await?;
    assert_eq!(reservation["status"], "RELEASED");
    let payment = stack
        .get(Service::Payment, &format!("/payments/{id}"))
        .await?;
    assert_eq!(payment["status"], "DECLINED");
    assert_eq!(payment["declineReason"], "CARD_DECLINED");

    let id = stack
        .place(order("hub-01", 1, "tok_insufficientFunds"))
        .await?;
    let done = stack.finished(&id, FINISH).await?;
    assert_eq!(done["cancelDetail"], "payment declined: INSUFFICIENT_FUNDS");
    one_notification(&stack, &id, "ORDER_CANCELLED").await?;
    stack.shutdown().await
}

/// Waits until the order's payment is no longer AUTHORIZED, and checks it was refunded or voided.
async fn charge_undone(stack: &Stack, id: &str) -> anyhow::Result<()> {
    let payment = eventually(FINISH, "the late charge to be undone", || async {
        let (status, p) = stack
            .get_status(Service::Payment, &format!("/payments/{id}"))
            .await?;
        Ok((status == 200 && p["status"] != "AUTHORIZED").then_some(p))
    })
    .await?;
    assert!(
        payment["status"] == "REFUNDED" || payment["status"] == "VOIDED",
        "{payment}"
    );
    Ok(())
}

/// A stack whose saga waits `payment_timeout` for the payment service, which is stopped.
async fn with_payment_down(payment_timeout: Duration) -> anyhow::Result<Stack> {
    let mut stack = Stack::start(StackOptions {
        payment_timeout,
        ..StackOptions::default()
    })
    .await?;
    stack.stop_service(Service::Payment).await?;
    Ok(stack)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_authorizations_are_dead_lettered_and_confirm_nothing() -> anyhow::Result<()> {
    // The payment service is stopped: the order waits in AUTHORIZING for an answer.
    let mut stack = with_payment_down(Duration::from_secs(120)).await?;
    let id = stack.place(order("mouse-01", 2, "tok_visa")).await?;
    let saga_url = format!("/sagas/{id}");
    eventually(
        Duration::from_secs(30),
        "the saga in AUTHORIZING",
        || async {
            let saga = stack.get(Service::Saga, &saga_url).await?;
            Ok((saga["state"] == "AUTHORIZING").then_some(()))
        },
    )
    .await?;

    // What the saga asked the gateway to authorize: the total of the reservation.
    let asked = stack.get(Service::Saga, &saga_url).await?["total"]["amountMinor"].clone();
    assert!(asked.as_i64().is_some_and(|a| a > 1), "{asked}");
    let authorization = |amount_minor: &serde_json::Value| {
        json!({
            "eventId": uuid::Uuid::now_v7(), "type": "payment.authorized", "schemaVersion": 1,
            "occurredAt": chrono::Utc::now(), "correlationId": id, "source": "payment",
            "payload": {"orderId": id, "paymentId": uuid::Uuid::now_v7(),
                "amount": {"amountMinor": amount_minor, "currency": "EUR"}},
        })
        .to_string()
    };
    let p = oms_tests::producer(stack.brokers())?;
    // Someone who may write the order events (the order service's user, say) hands the saga an
    // authorization of the right amount there: a type its topic does not carry.
    let order_events = stack.topics().name(oms_contracts::topics::ORDER_EVENTS);
    let right_amount = authorization(&asked);
    oms_tests::produce(&p, &order_events, &id, right_amount.as_bytes(), &[]).await?;
    // Someone who may write the payment events hands it a 1-cent authorization.
    let payment_events = stack.topics().name(oms_contracts::topics::PAYMENT_EVENTS);
    let one_cent = authorization(&json!(1));
    oms_tests::produce(&p, &payment_events, &id, one_cent.as_bytes(), &[]).await?;

    // The saga dead-letters both, saying what disagrees, and the order stays where it was.
    for (topic, says) in [
        (
            &order_events,
            vec![
                "payment.authorized read from oms.order.events",
                "belongs on oms.payment.events",
            ],
        ),
        (&payment_events, vec!["0.01 EUR", "does not match"]),
    ] {
        let dlq = oms_contracts::topics::dlq(topic);
        let brokers = stack.brokers().to_owned();
        let dead = tokio::task::spawn_blocking(move || {
            oms_tests::read_topic(
                &brokers,
                &dlq,
                1,
                Duration::from_secs(60),
                Duration::from_millis(200),
            )
        })
        .await??;
        let reason = dead
            .iter()
            .find(|m| m.key_str() == id)
            .and_then(|m| m.header(oms_contracts::headers::dlq::ERROR_MESSAGE))
            .unwrap_or_default();
        assert!(
            says.iter().all(|s| reason.contains(s)),
            "{reason:?} in the dead letters of {topic}: {:?}",
            dead.iter().map(Received::key_str).collect::<Vec<_>>()
        );
    }
    let saga = stack.get(Service::Saga, &saga_url).await?;
    assert_eq!(saga["state"], "AUTHORIZING", "{saga}");
    let placed = stack.get(Service::Order, &format!("/orders/{id}")).await?;
    assert_eq!(placed["status"], "PENDING", "{placed}");

    // The real answer still confirms it, at the order's own total.
    stack.start_service(Service::Payment).await?;
    let done = stack.finished(&id, FINISH).await?;
    assert_eq!(done["status"], "CONFIRMED", "{done}");
    assert_eq!(done["total"]["amountMinor"], asked, "{done}");
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_payment_down_the_saga_times_out_releases_stock_and_the_late_charge_is_undone(
) -> anyhow::Result<()> {
    let mut stack = with_payment_down(Duration::from_secs(3)).await?;
    let before = stack.product("stand-01").await?;

    let id = stack.place(order("stand-01", 4, "tok_visa")).await?;
    let done = stack.finished(&id, FINISH).await?;
    assert_eq!(done["status"], "CANCELLED", "{done}");
    assert_eq!(done["cancelReason"], "TIMEOUT");
    let after = stack.product("stand-01").await?;
    assert_eq!(
        after["available"], before["available"],
        "stock not released"
    );
    assert_eq!(after["reserved"], 0);
    let saga = stack.get(Service::Saga, &format!("/sagas/{id}")).await?;
    assert_eq!(saga["refundRequested"], true, "{saga}");

    // Payment comes back: the queued authorize charges, the queued void refunds it.
    stack.start_service(Service::Payment).await?;
    charge_undone(&stack, &id).await?;
    let order_now = stack.get(Service::Order, &format!("/orders/{id}")).await?;
    assert_eq!(order_now["status"], "CANCELLED");
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_reservation_is_reported_and_the_order_times_out() -> anyhow::Result<()> {
    let mut stack = Stack::start(StackOptions {
        reservation_ttl: Duration::from_secs(2),
        ..StackOptions::default()
    })
    .await?;
    stack.stop_service(Service::Payment).await?;
    let before = stack.product("keyboard-01").await?;
    let id = stack.place(order("keyboard-01", 1, "tok_visa")).await?;
    let done = stack.finished(&id, FINISH).await?;
    assert_eq!(done["cancelReason"], "TIMEOUT", "{done}");
    assert!(done["cancelDetail"]
        .as_str()
        .is_some_and(|d| d.contains("expired")));
    let reservation = stack
        .get(Service::Inventory, &format!("/reservations/{id}"))
        .await?;
    assert_eq!(reservation["status"], "EXPIRED");
    assert_eq!(
        stack.product("keyboard-01").await?["available"],
        before["available"]
    );
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotency_keys_replay_refuse_mismatches_and_survive_a_race() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let body = order("mouse-01", 1, "tok_visa");

    let (first, a) = stack.post_order(&body, Some("key-1")).await?;
    assert_eq!(first, 201, "{a}");
    let (again, b) = stack.post_order(&body, Some("key-1")).await?;
    assert_eq!(again, 200, "{b}");
    assert_eq!(a, b, "the replay is not the first response");
    let (clash, c) = stack
        .post_order(&order("mouse-01", 2, "tok_visa"), Some("key-1"))
        .await?;
    assert_eq!(clash, 409, "{c}");
    assert_eq!(c["status"], 409);

    // A key is its caller's own: Bob's key, reused by Alice with her own order, is her order,
    // not a conflict with his; each replays only their own.
    let url = format!("{}/orders", stack.url(Service::Order)?);
    let post_as = |customer: &'static str| {
        let token = stack.token(customer, Role::Customer, 600);
        let (http, url) = (stack.http.clone(), url.clone());
        async move {
            let r = http
                .post(&url)
                .bearer_auth(token?)
                .header("Idempotency-Key", "shared-key")
                .json(&json!({"customerId": customer,
                    "items": [{"productId": "mouse-01", "quantity": 1}], "paymentToken": "tok_visa"}))
                .send()
                .await?;
            let status = r.status().as_u16();
            anyhow::Ok((status, r.json::<Value>().await?))
        }
    };
    let (bob, bobs) = post_as("c-bob").await?;
    assert_eq!(bob, 201, "{bobs}");
    let (alice, alices) = post_as("c-alice").await?;
    assert_eq!(alice, 201, "Alice met Bob's key: {alices}");
    assert_ne!(alices["orderId"], bobs["orderId"]);
    let (again, bobs_again) = post_as("c-bob").await?;
    assert_eq!((again, &bobs_again["orderId"]), (200, &bobs["orderId"]));

    // Ten at once with one fresh key: one order, no 500.
    let race = json!({"customerId": "c-race", "items": [{"productId": "hub-01", "quantity": 1}]});
    let answers =
        futures::future::join_all((0..10).map(|_| stack.post_order(&race, Some("key-race")))).await;
    let mut ids = std::collections::BTreeSet::new();
    let mut created = 0;
    for answer in answers {
        let (status, body) = answer?;
        assert!(status == 201 || status == 200, "{status} {body}");
        created += usize::from(status == 201);
        ids.insert(body["orderId"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!((created, ids.len()), (1, 1), "{ids:?}");
    let listed = stack
        .get(Service::Order, "/orders?customerId=c-race")
        .await?;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_get_the_error_body_and_change_nothing() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let url = format!("{}/orders", stack.url(Service::Order)?);
    let send = |body: String, ct: &'static str| {
        let http = stack.http.clone();
        let url = url.clone();
        async move {
            let r = http
                .post(&url)
                .header("content-type", ct)
                .body(body)
                .send()
                .await?;
            let status = r.status().as_u16();
            anyhow::Ok((status, r.json::<Value>().await?))
        }
    };
    for (body, field) in [
        ("{\"items\": []}", "items"),
        (
            "{\"items\": [{\"productId\": \"mouse-01\", \"quantity\": 0}]}",
            "items[0].quantity",
        ),
        (
            "{\"items\": [{\"productId\": \"mouse-01\", \"quantity\": 1}], \"foo\": 1}",
            "foo",
        ),
        (
            "{\"items\": [{\"productId\": \"mouse-01\", \"quantity\": \"1\"}]}",
            "items[0].quantity",
        ),
        ("{\"items\": [", "body"),
    ] {
        let (status, e) = send(body.to_owned(), "application/json").await?;
        assert_eq!(status, 400, "{body}: {e}");
        assert_eq!(e["status"], 400);
        assert_eq!(e["title"], "Validation failed");
        assert!(e["errors"][field].is_string(), "{body}: {e}");
        assert_eq!(e["type"], "urn:oms:problem:validation");
        assert!(
            e["detail"].as_str().is_some_and(|d| d.contains(field)),
            "{e}"
        );
    }
    let huge = format!(
        "{{\"customerId\": \"{}\", \"items\": []}}",
        "x".repeat(100 * 1024)
    );
    let (status, e) = send(huge, "application/json").await?;
    assert_eq!(status, 413, "{e}");
    let (status, _) = send("items=1".into(), "application/x-www-form-urlencoded").await?;
    assert_eq!(status, 415);
    let (status, e) = stack
        .http
        .post(&url)
        .header("content-type", "application/json")
        .header("Idempotency-Key", "")
        .body(order("mouse-01", 1, "tok_visa").to_string())
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))?;
    assert_eq!(status, 400, "{e:?}");

    let listed = stack.get(Service::Order, "/orders").await?;
    assert_eq!(
        listed["items"],
        json!([]),
        "a rejected request created an order"
    );

    let (status, e) = stack
        .get_status(Service::Order, &format!("/orders/{}", uuid::Uuid::now_v7()))
        .await?;
    assert_eq!((status, e["status"].clone()), (404, json!(404)));
    let (status, e) = stack
        .get_status(Service::Order, "/orders/not-a-uuid")
        .await?;
    assert_eq!(status, 400, "{e}");
    let (status, _) = stack
        .get_status(Service::Order, "/orders?status=LOST")
        .await?;
    assert_eq!(status, 400);
    let (status, _) = stack.get_status(Service::Saga, "/sagas?state=LOST").await?;
    assert_eq!(status, 400);

    // Paging: newest first, the cursor continues where the page ended.
    let mut placed = Vec::new();
    for _ in 0..3 {
        placed.push(stack.place(order("stand-01", 1, "tok_visa")).await?);
    }
    let page1 = stack.get(Service::Order, "/orders?limit=2").await?;
    let cursor = page1["nextCursor"].as_str().unwrap_or_default().to_owned();
    let page2 = stack
        .get(Service::Order, &format!("/orders?limit=2&cursor={cursor}"))
        .await?;
    let seen: Vec<&str> = page1["items"]
        .as_array()
        .into_iter()
        .chain(page2["items"].as_array())
        .flatten()
        .filter_map(|o| o["orderId"].as_str())
        .collect();
    placed.reverse();
    assert_eq!(seen, placed);
    assert!(page2["nextCursor"].is_null());

    // Payments page the same way (by order id, newest first), so a reader can see them all.
    for id in &placed {
        stack.finished(id, FINISH).await?;
    }
    let page1 = stack.get(Service::Payment, "/payments?limit=2").await?;
    let cursor = page1["nextCursor"].as_str().unwrap_or_default().to_owned();
    assert!(!cursor.is_empty(), "a full page names the next: {page1}");
    let page2 = stack
        .get(
            Service::Payment,
            &format!("/payments?limit=2&cursor={cursor}"),
        )
        .await?;
    let paid: Vec<&str> = page1["items"]
        .as_array()
        .into_iter()
        .chain(page2["items"].as_array())
        .flatten()
        .filter_map(|p| p["orderId"].as_str())
        .collect();
    assert_eq!(paid, placed);
    assert!(page2["nextCursor"].is_null());
    let (status, _) = stack
        .get_status(Service::Payment, "/payments?cursor=not-a-uuid")
        .await?;
    assert_eq!(status, 400);
    stack.shutdown().await
}

/// Everything the services hold that a duplicate must not change.
async fn snapshot(stack: &Stack) -> anyhow::Result<Value> {
    Ok(json!({
        "orders": stack.get(Service::Order, "/orders?limit=1000").await?,
        "products": stack.get(Service::Inventory, "/products").await?,
        "payments": stack.get(Service::Payment, "/payments?limit=1000").await?,
        "notifications": stack.get(Service::Notification, "/notifications?limit=1000").await?,
        "sagas": stack.get(Service::Saga, "/sagas?limit=1000").await?,
        "shipments": stack.get(Service::Fulfillment, "/shipments?limit=1000").await?,
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_message_delivered_twice_changes_nothing() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let ids = [
        stack.place(order("mouse-01", 1, "tok_visa")).await?,
        stack
            .place(order("hub-01", 2, "tok_chargeDeclined"))
            .await?,
        stack.place(order("monitor-27", 999, "tok_visa")).await?,
    ];
    for id in &ids {
        stack.settled(id, FINISH).await?;
    }
    let topics = stack.topics();
    let all: Vec<String> = oms_contracts::topics::ALL
        .iter()
        .map(|t| topics.name(t))
        .collect();
    // Every consumer group, with the topics it reads, from the topology.
    let consumers: Vec<(String, Vec<String>)> = oms_contracts::topology::SERVICES
        .iter()
        .map(|spec| topics.consumer(spec))
        .collect();
    // Every consumer group has handled everything on the topics it reads.
    let caught_up = || async {
        for (group, reads) in &consumers {
            wait_caught_up(stack.brokers(), group, reads, FINISH).await?;
        }
        anyhow::Ok(())
    };
    caught_up().await?;
    let before = snapshot(&stack).await?;

    // Replay every topic from the start: same keys, values and headers.
    let producer = oms_tests::producer(stack.brokers())?;
    let mut replayed = 0;
    for topic in &all {
        let expected = oms_tests::topic_size(stack.brokers(), topic)?;
        let messages = oms_tests::read_topic(
            stack.brokers(),
            topic,
            expected,
            Duration::from_secs(30),
            Duration::ZERO,
        )?;
        assert_eq!(messages.len(), expected, "could not read all of {topic}");
        for m in &messages {
            oms_tests::produce_again(&producer, topic, m).await?;
            replayed += 1;
        }
    }
    // confirmed and delivered: 12 messages, declined: 8, out of stock: 4.
    assert_eq!(replayed, 24, "messages on the topics");
    caught_up().await?;
    let after = snapshot(&stack).await?;
    assert_eq!(before, after, "a duplicate delivery changed state");

    // Again with fresh message ids, so the inbox cannot recognise them: the handlers themselves
    // must see that each command or event was already acted on.
    let mut originals = Vec::new();
    for topic in &all {
        let expected = oms_tests::topic_size(stack.brokers(), topic)?;
        let messages = oms_tests::read_topic(
            stack.brokers(),
            topic,
            expected,
            Duration::from_secs(30),
            Duration::ZERO,
        )?;
        // Each message once (the copies from the first replay carry the originals' ids). All
        // are read before any is sent: answers to the re-sent commands are not originals.
        let mut seen = std::collections::HashSet::new();
        for m in messages {
            let envelope: Value = serde_json::from_slice(m.payload.as_deref().unwrap_or(b"{}"))?;
            if seen.insert(envelope["eventId"].to_string()) {
                originals.push((topic.clone(), m, envelope));
            }
        }
    }
    let mut renamed = 0;
    for (topic, m, mut envelope) in originals {
        let mut copy = m.clone();
        let fresh = uuid::Uuid::now_v7().to_string();
        envelope["eventId"] = json!(fresh);
        copy.payload = Some(serde_json::to_vec(&envelope)?);
        for (name, value) in copy.headers.iter_mut() {
            if name == oms_contracts::headers::MESSAGE_ID {
                *value = Some(fresh.clone().into_bytes());
            }
        }
        oms_tests::produce_again(&producer, &topic, &copy).await?;
        renamed += 1;
    }
    assert_eq!(renamed, 24);
    // Re-sent commands are answered again (new messages); wait until nothing new appears.
    let mut sizes = Vec::new();
    loop {
        caught_up().await?;
        let now: Vec<usize> = all
            .iter()
            .map(|t| oms_tests::topic_size(stack.brokers(), t))
            .collect::<anyhow::Result<_>>()?;
        if now == sizes {
            break;
        }
        sizes = now;
    }
    let after = snapshot(&stack).await?;
    assert_eq!(before, after, "a re-sent command or event changed state");
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_buyers_for_ten_items_confirm_exactly_ten() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    stack.set_stock("keyboard-01", 10).await?;
    let placed = futures::future::join_all((0..50).map(|i| {
        let stack = &stack;
        async move {
            stack
                .place(json!({
                    "customerId": format!("buyer-{i}"),
                    "items": [{"productId": "keyboard-01", "quantity": 1}],
                }))
                .await
        }
    }))
    .await;
    let ids: Vec<String> = placed.into_iter().collect::<anyhow::Result<_>>()?;
    let mut confirmed = 0;
    for id in &ids {
        let done = stack.finished(id, FINISH).await?;
        match done["status"].as_str() {
            Some("CONFIRMED" | "SHIPPED" | "DELIVERED") => confirmed += 1,
            _ => assert_eq!(done["cancelReason"], "OUT_OF_STOCK", "{done}"),
        }
    }
    assert_eq!(confirmed, 10);
    let p = eventually(Duration::from_secs(30), "all ten sold", || async {
        let p = stack.product("keyboard-01").await?;
        Ok((p["sold"] == 10).then_some(p))
    })
    .await?;
    assert_eq!(
        (p["available"].clone(), p["reserved"].clone()),
        (json!(0), json!(0))
    );
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_over_the_rate_limit_is_refused_with_retry_after_and_creates_nothing(
) -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions {
        order_rate_limit: Some(oms_order::RateLimit {
            per_second: 1,
            burst: 3,
        }),
        ..StackOptions::default()
    })
    .await?;
    let url = format!("{}/orders", stack.url(Service::Order)?);
    let send = || {
        let http = stack.http.clone();
        let url = url.clone();
        async move {
            let r = http
                .post(&url)
                .json(&json!({"customerId": "burst", "items": [{"productId": "mouse-01", "quantity": 1}]}))
                .send()
                .await?;
            let status = r.status().as_u16();
            let retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let content_type = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            Ok::<_, anyhow::Error>((status, retry_after, content_type))
        }
    };
    let answers = futures::future::join_all((0..10).map(|_| send())).await;
    let mut accepted = 0;
    let mut limited = 0;
    for a in answers {
        match a? {
            (201, _, _) => accepted += 1,
            (429, Some(secs), Some(ct)) => {
                assert!((1..=5).contains(&secs), "Retry-After {secs}");
                assert_eq!(ct, "application/problem+json");
                limited += 1;
            }
            other => anyhow::bail!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(
        (accepted, limited),
        (3, 7),
        "the burst of 3 passes, the rest is refused"
    );
    // Refused requests created nothing.
    let page = stack
        .get(Service::Order, "/orders?customerId=burst&limit=100")
        .await?;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(3));
    // The next window is served.
    eventually(
        Duration::from_secs(10),
        "a request after the window",
        || async { Ok((send().await?.0 == 201).then_some(())) },
    )
    .await?;
    stack.shutdown().await
}

async fn saga_of(stack: &Stack, id: &str) -> anyhow::Result<Value> {
    stack.get(Service::Saga, &format!("/sagas/{id}")).await
}

async fn in_state(stack: &Stack, id: &str, state: &str) -> anyhow::Result<Value> {
    eventually(FINISH, &format!("the saga to be {state}"), || async {
        let saga = saga_of(stack, id).await?;
        Ok((saga["state"] == state).then_some(saga))
    })
    .await
}

fn steps_with(saga: &Value, input: &str) -> Vec<Value> {
    saga["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["input"] == input)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operators_retry_a_stuck_step_and_cancel_with_compensation_recorded_as_steps(
) -> anyhow::Result<()> {
    let mut stack = Stack::start(StackOptions::default()).await?;
    let before = stack.product("stand-01").await?;
    stack.stop_service(Service::Payment).await?;
    let retried = stack.place(order("stand-01", 1, "tok_visa")).await?;
    let cancelled = stack.place(order("stand-01", 2, "tok_visa")).await?;
    in_state(&stack, &retried, "AUTHORIZING").await?;
    in_state(&stack, &cancelled, "AUTHORIZING").await?;

    // Retry: the authorization is asked again, recorded as a step by the caller.
    let (status, answer) = stack
        .post_json(
            Service::Saga,
            &format!("/sagas/{retried}/retry"),
            &json!({}),
            None,
        )
        .await?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["applied"], true);
    assert_eq!(answer["sent"], json!(["payment.authorize"]));
    assert_eq!(answer["saga"]["state"], "AUTHORIZING");

    // Cancel: the payment voided and the stock released; asking again changes nothing.
    let cancel = json!({"reason": "customer called"});
    let path = format!("/sagas/{cancelled}/cancel");
    let (status, answer) = stack.post_json(Service::Saga, &path, &cancel, None).await?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["applied"], true);
    assert_eq!(
        answer["sent"],
        json!(["payment.refund", "inventory.release"])
    );
    let done = stack.finished(&cancelled, FINISH).await?;
    assert_eq!(done["status"], "CANCELLED", "{done}");
    assert_eq!(done["cancelReason"], "OPERATOR_CANCELLED", "{done}");
    let (status, again) = stack.post_json(Service::Saga, &path, &cancel, None).await?;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["applied"], false, "{again}");
    assert_eq!(again["sent"], json!([]));

    // Bad requests change nothing.
    let customer = stack.token("c-test", oms_contracts::auth::Role::Customer, 600)?;
    for (path, body, token, want) in [
        (
            format!("/sagas/{retried}/cancel"),
            json!({"reason": " "}),
            None,
            400,
        ),
        (
            format!("/sagas/{retried}/cancel"),
            json!({"reason": "x", "why": 1}),
            None,
            400,
        ),
        (format!("/sagas/{retried}/cancel"), json!({}), None, 400),
        ("/sagas/not-a-uuid/retry".to_owned(), json!({}), None, 400),
        (
            format!("/sagas/{}/retry", uuid::Uuid::now_v7()),
            json!({}),
            None,
            404,
        ),
        (
            format!("/sagas/{retried}/cancel"),
            cancel.clone(),
            Some(customer.as_str()),
            403,
        ),
    ] {
        let (status, body) = stack.post_json(Service::Saga, &path, &body, token).await?;
        assert_eq!(status, want, "{path}: {body}");
        assert!(body["title"].is_string(), "not a problem body: {body}");
    }
    assert_eq!(saga_of(&stack, &retried).await?["state"], "AUTHORIZING");

    // Payment back: both authorizations of the retried order are answered with one charge;
    // the cancelled order's late charge is undone.
    stack.start_service(Service::Payment).await?;
    let done = stack.finished(&retried, FINISH).await?;
    assert!(placed(&done), "{done}");
    charge_undone(&stack, &cancelled).await?;
    let saga = saga_of(&stack, &retried).await?;
    let retries = steps_with(&saga, "operator.retry");
    assert_eq!(retries.len(), 1, "{saga}");
    assert!(
        retries[0]["note"]
            .as_str()
            .is_some_and(|n| n.contains("tests")),
        "{saga}"
    );
    let saga = saga_of(&stack, &cancelled).await?;
    let cancels = steps_with(&saga, "operator.cancel");
    assert_eq!(cancels.len(), 2, "{saga}");
    assert_eq!(
        cancels
            .iter()
            .map(|s| s["applied"].clone())
            .collect::<Vec<_>>(),
        vec![json!(true), json!(false)]
    );
    // Finished sagas: retry is a conflict, and so is cancelling a confirmed order.
    stack.settled(&retried, FINISH).await?;
    for path in [
        format!("/sagas/{retried}/retry"),
        format!("/sagas/{retried}/cancel"),
    ] {
        let (status, body) = stack.post_json(Service::Saga, &path, &cancel, None).await?;
        assert_eq!(status, 409, "{path}: {body}");
    }
    let after = stack.product("stand-01").await?;
    assert_eq!(
        after["available"].as_i64(),
        before["available"].as_i64().map(|a| a - 1),
        "only the confirmed order keeps its stock: {after}"
    );
    stack.shutdown().await
}

/// An order held in AUTHORIZING (payment stopped) through a broker outage longer than its
/// payment deadline: `budget` decides whether the outage may cancel it.
async fn through_a_broker_outage(budget: Duration) -> anyhow::Result<Value> {
    let mut broker = oms_tests::TestBroker::start().await?;
    let mut stack = Stack::start(StackOptions {
        payment_timeout: Duration::from_secs(5),
        outage_budget: budget,
        outage_grace: Duration::from_secs(30),
        brokers: Some(broker.brokers()),
        ..StackOptions::default()
    })
    .await?;
    stack.stop_service(Service::Payment).await?;
    let id = stack.place(order("stand-01", 1, "tok_visa")).await?;
    in_state(&stack, &id, "AUTHORIZING").await?;
    broker.stop()?;
    // The payment deadline passes while the broker is away.
    eventually(FINISH, "the payment deadline to pass", || async {
        let saga = saga_of(&stack, &id).await?;
        Ok((saga["stuck"] == true || saga["state"] != "AUTHORIZING").then_some(()))
    })
    .await?;
    broker.start_again().await?;
    stack.start_service(Service::Payment).await?;
    let done = stack.finished(&id, FINISH).await?;
    let saga = saga_of(&stack, &id).await?;
    stack.shutdown().await?;
    Ok(json!({"order": done, "saga": saga}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_outage_within_the_budget_cancels_no_order_and_without_one_it_does(
) -> anyhow::Result<()> {
    let held = through_a_broker_outage(Duration::from_secs(120)).await?;
    assert!(placed(&held["order"]), "{held}");
    let extended = steps_with(&held["saga"], "outage");
    assert_eq!(extended.len(), 1, "{held}");
    assert!(
        extended[0]["note"]
            .as_str()
            .is_some_and(|n| n.contains("deadline extended")),
        "{held}"
    );
    // The same outage with the budget off: the deadline stands.
    let timed_out = through_a_broker_outage(Duration::ZERO).await?;
    assert_eq!(timed_out["order"]["status"], "CANCELLED", "{timed_out}");
    assert_eq!(timed_out["order"]["cancelReason"], "TIMEOUT", "{timed_out}");
    assert!(steps_with(&timed_out["saga"], "outage").is_empty());
    Ok(())
}
