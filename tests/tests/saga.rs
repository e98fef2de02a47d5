//! The order saga end to end: all five services in-process on the real PostgreSQL and broker.

use std::time::Duration;

use anyhow::Context;
use oms_contracts::api::{
    CancelSaga, CreateOrder, NotificationView, OrderAccepted, OrderStatus, OrderView, Page,
    PaymentView, Problem, ProductView, RequestedLine, SagaState, SagaStep, SagaView, ShipmentView,
    PROBLEM_VALIDATION,
};
use oms_contracts::auth::Role;
use oms_contracts::routes;
use oms_contracts::values::Money;
use oms_contracts::Envelope;
use oms_tests::stack::{Service, Stack, StackOptions};
use oms_tests::{eventually, wait_caught_up, Received};
use serde_json::json;

const FINISH: Duration = Duration::from_secs(90);

fn order(product: &str, quantity: u32, token: &str) -> CreateOrder {
    CreateOrder {
        customer_id: Some("c-test".into()),
        items: vec![RequestedLine {
            product_id: product.into(),
            quantity,
        }],
        payment_token: Some(token.into()),
        shipping_address: None,
    }
}

/// A product's stock: (available, reserved, sold).
fn stock(p: &ProductView) -> (i32, i32, i32) {
    (p.available, p.reserved, p.sold)
}

async fn notifications(stack: &Stack, order_id: &str) -> anyhow::Result<Vec<NotificationView>> {
    let page = stack
        .read_query(routes::LIST_NOTIFICATIONS, &[], &[("orderId", order_id)])
        .await?;
    Ok(page.items)
}

/// Waits for the order's notification of `kind`, then checks that there is exactly one, and no
/// notification of the placement's other outcome.
async fn one_notification(
    stack: &Stack,
    order_id: &str,
    kind: &str,
) -> anyhow::Result<NotificationView> {
    let other = if kind == "ORDER_CONFIRMED" {
        "ORDER_CANCELLED"
    } else {
        "ORDER_CONFIRMED"
    };
    let n = eventually(Duration::from_secs(30), "the notification", || async {
        let items = notifications(stack, order_id).await?;
        Ok(items.iter().any(|n| n.kind == kind).then_some(items))
    })
    .await?;
    let of = |k: &str| n.iter().filter(|x| x.kind == k).count();
    assert_eq!(of(kind), 1, "{n:?}");
    assert_eq!(of(other), 0, "{n:?}");
    n.into_iter()
        .find(|x| x.kind == kind)
        .context("the notification went away")
}

/// The states a saga went through, oldest first.
fn path_of(saga: &SagaView) -> Vec<&str> {
    saga.steps.iter().flatten().map(|s| s.to.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn happy_path_confirms_sells_the_stock_charges_once_and_notifies_once() -> anyhow::Result<()>
{
    let stack = Stack::start(StackOptions::default()).await?;
    let before = stack.product("mouse-01").await?;

    let id = stack.place(order("mouse-01", 2, "tok_visa")).await?;
    let done = stack.finished(&id, FINISH).await?;
    assert!(done.status.is_placed(), "{done:?}");
    assert_eq!(
        done.total,
        Some(Money::from_parts(4998, "EUR")?),
        "{done:?}"
    );
    let first_line = done.lines.as_deref().and_then(<[_]>::first);
    assert_eq!(
        first_line.map(|l| l.unit_price.amount_minor),
        Some(2499),
        "{done:?}"
    );
    assert!(done.payment_id.is_some(), "{done:?}");

    // Stock moved from reserved to sold once the confirmation reached inventory.
    let after = eventually(Duration::from_secs(30), "stock to be sold", || async {
        let p = stack.product("mouse-01").await?;
        Ok((p.sold == 2).then_some(p))
    })
    .await?;
    assert_eq!(after.available, before.available - 2);
    assert_eq!(after.reserved, 0);
    let reservation = stack.read(routes::GET_RESERVATION, &[&id]).await?;
    assert_eq!(reservation.status, "COMMITTED");

    let payment = stack.read(routes::GET_PAYMENT, &[&id]).await?;
    assert_eq!(payment.status, "AUTHORIZED");
    assert_eq!(payment.amount.amount_minor, 4998);
    assert_eq!(Some(payment.payment_id), done.payment_id);

    one_notification(&stack, &id, "ORDER_CONFIRMED").await?;

    let saga = stack.read(routes::GET_SAGA, &[&id]).await?;
    assert_eq!(saga.state, SagaState::Confirmed);
    let path = path_of(&saga);
    assert_eq!(
        path.get(..3),
        Some(&["RESERVING", "AUTHORIZING", "CONFIRMED"][..]),
        "{path:?}"
    );
    // Then fulfillment: picked, shipped, delivered.
    let delivered = stack.settled(&id, FINISH).await?;
    assert_eq!(delivered.status, OrderStatus::Delivered, "{delivered:?}");
    let saga = stack.read(routes::GET_SAGA, &[&id]).await?;
    assert_eq!(
        path_of(&saga),
        [
            "RESERVING",
            "AUTHORIZING",
            "CONFIRMED",
            "PICKED",
            "SHIPPED",
            "DELIVERED"
        ]
    );
    // What the saga shows as it is on the wire (its type would drop a member it does not
    // know): the payment token is not in it.
    let (status, text) = stack
        .call_raw(routes::GET_SAGA.spec, &[&id], &(), None)
        .await?;
    assert_eq!(status, 200, "{text}");
    assert!(
        !text.contains("paymentToken") && !text.contains("tok_visa"),
        "token shown: {text}"
    );
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
    assert_eq!(done.status, OrderStatus::Cancelled, "{done:?}");
    assert_eq!(done.cancel_reason.as_deref(), Some("OUT_OF_STOCK"));
    assert!(
        done.cancel_detail
            .as_deref()
            .is_some_and(|d| d.contains("monitor-27")),
        "{done:?}"
    );
    let payment = stack.answer(routes::GET_PAYMENT, &[&id], &(), None).await?;
    assert_eq!(
        payment.status, 404,
        "a payment exists for an out-of-stock order: {payment:?}"
    );
    let after = stack.product("monitor-27").await?;
    assert_eq!(stock(&after), stock(&before), "stock moved");
    let n = one_notification(&stack, &id, "ORDER_CANCELLED").await?;
    assert_eq!(n.reason.as_deref(), Some("OUT_OF_STOCK"));

    let id = stack.place(order("no-such-thing", 1, "tok_visa")).await?;
    let done = stack.finished(&id, FINISH).await?;
    assert_eq!(
        done.cancel_reason.as_deref(),
        Some("UNKNOWN_PRODUCT"),
        "{done:?}"
    );
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
    assert_eq!(done.status, OrderStatus::Cancelled, "{done:?}");
    assert_eq!(done.cancel_reason.as_deref(), Some("PAYMENT_DECLINED"));
    assert_eq!(
        done.cancel_detail.as_deref(),
        Some("payment declined: CARD_DECLINED")
    );

    let after = stack.product("hub-01").await?;
    assert_eq!(
        stock(&after),
        stock(&before),
        "stock not back where it started"
    );
    let reservation = stack.read(routes::GET_RESERVATION, &[&id]).await?;
    assert_eq!(reservation.status, "RELEASED");
    let payment = stack.read(routes::GET_PAYMENT, &[&id]).await?;
    assert_eq!(payment.status, "DECLINED");
    assert_eq!(payment.decline_reason.as_deref(), Some("CARD_DECLINED"));

    let id = stack
        .place(order("hub-01", 1, "tok_insufficientFunds"))
        .await?;
    let done = stack.finished(&id, FINISH).await?;
    assert_eq!(
        done.cancel_detail.as_deref(),
        Some("payment declined: INSUFFICIENT_FUNDS")
    );
    one_notification(&stack, &id, "ORDER_CANCELLED").await?;
    stack.shutdown().await
}

/// Waits until the order's payment is no longer AUTHORIZED, and checks it was refunded or voided.
async fn charge_undone(stack: &Stack, id: &str) -> anyhow::Result<()> {
    let payment = eventually(FINISH, "the late charge to be undone", || async {
        let answer = stack.answer(routes::GET_PAYMENT, &[id], &(), None).await?;
        Ok(answer.body.ok().filter(|p| p.status != "AUTHORIZED"))
    })
    .await?;
    assert!(
        payment.status == "REFUNDED" || payment.status == "VOIDED",
        "{payment:?}"
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
    eventually(
        Duration::from_secs(30),
        "the saga in AUTHORIZING",
        || async {
            let saga = saga_of(&stack, &id).await?;
            Ok((saga.state == SagaState::Authorizing).then_some(()))
        },
    )
    .await?;

    // What the saga asked the gateway to authorize: the total of the reservation.
    let saga = saga_of(&stack, &id).await?;
    let asked = saga
        .total
        .context("no total while authorizing")?
        .amount_minor;
    assert!(asked > 1, "{saga:?}");
    let authorization = |amount_minor: i64| {
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
    let right_amount = authorization(asked);
    oms_tests::produce(&p, &order_events, &id, right_amount.as_bytes(), &[]).await?;
    // Someone who may write the payment events hands it a 1-cent authorization.
    let payment_events = stack.topics().name(oms_contracts::topics::PAYMENT_EVENTS);
    let one_cent = authorization(1);
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
    let saga = saga_of(&stack, &id).await?;
    assert_eq!(saga.state, SagaState::Authorizing, "{saga:?}");
    let placed = stack.read(routes::GET_ORDER, &[&id]).await?;
    assert_eq!(placed.status, OrderStatus::Pending, "{placed:?}");

    // The real answer still confirms it, at the order's own total.
    stack.start_service(Service::Payment).await?;
    let done = stack.finished(&id, FINISH).await?;
    assert_eq!(done.status, OrderStatus::Confirmed, "{done:?}");
    assert_eq!(done.total.map(|t| t.amount_minor), Some(asked), "{done:?}");
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_payment_down_the_saga_times_out_releases_stock_and_the_late_charge_is_undone(
) -> anyhow::Result<()> {
    let mut stack = with_payment_down(Duration::from_secs(3)).await?;
    let before = stack.product("stand-01").await?;

    let id = stack.place(order("stand-01", 4, "tok_visa")).await?;
    let done = stack.finished(&id, FINISH).await?;
    assert_eq!(done.status, OrderStatus::Cancelled, "{done:?}");
    assert_eq!(done.cancel_reason.as_deref(), Some("TIMEOUT"));
    let after = stack.product("stand-01").await?;
    assert_eq!(after.available, before.available, "stock not released");
    assert_eq!(after.reserved, 0);
    let saga = saga_of(&stack, &id).await?;
    assert!(saga.refund_requested, "{saga:?}");

    // Payment comes back: the queued authorize charges, the queued void refunds it.
    stack.start_service(Service::Payment).await?;
    charge_undone(&stack, &id).await?;
    let order_now = stack.read(routes::GET_ORDER, &[&id]).await?;
    assert_eq!(order_now.status, OrderStatus::Cancelled);
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
    assert_eq!(done.cancel_reason.as_deref(), Some("TIMEOUT"), "{done:?}");
    assert!(
        done.cancel_detail
            .as_deref()
            .is_some_and(|d| d.contains("expired")),
        "{done:?}"
    );
    let reservation = stack.read(routes::GET_RESERVATION, &[&id]).await?;
    assert_eq!(reservation.status, "EXPIRED");
    assert_eq!(
        stack.product("keyboard-01").await?.available,
        before.available
    );
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotency_keys_replay_refuse_mismatches_and_survive_a_race() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let body = order("mouse-01", 1, "tok_visa");

    let a = stack.post_order(&body, Some("key-1")).await?;
    assert_eq!(a.status, 201, "{a:?}");
    let b = stack.post_order(&body, Some("key-1")).await?;
    assert_eq!(b.status, 200, "{b:?}");
    assert_eq!(a.ok()?, b.ok()?, "the replay is not the first response");
    let c = stack
        .post_order(&order("mouse-01", 2, "tok_visa"), Some("key-1"))
        .await?;
    assert_eq!(c.status, 409, "{c:?}");
    assert_eq!(c.problem()?.status, 409);

    // A key is its caller's own: Bob's key, reused by Alice with her own order, is her order,
    // not a conflict with his; each replays only their own.
    let url = format!("{}/orders", stack.url(Service::Order)?);
    let post_as = |customer: &'static str| {
        let token = stack.token(customer, Role::Customer, 600);
        let (http, url) = (stack.http.clone(), url.clone());
        async move {
            let body = CreateOrder {
                customer_id: Some(customer.into()),
                ..order("mouse-01", 1, "tok_visa")
            };
            let r = http
                .post(&url)
                .bearer_auth(token?)
                .header("Idempotency-Key", "shared-key")
                .json(&body)
                .send()
                .await?;
            let status = r.status().as_u16();
            let text = r.text().await?;
            let accepted: OrderAccepted = serde_json::from_str(&text)
                .with_context(|| format!("{customer}'s order: {status} {text}"))?;
            anyhow::Ok((status, accepted))
        }
    };
    let (bob, bobs) = post_as("c-bob").await?;
    assert_eq!(bob, 201, "{bobs:?}");
    let (alice, alices) = post_as("c-alice").await?;
    assert_eq!(alice, 201, "Alice met Bob's key: {alices:?}");
    assert_ne!(alices.order_id, bobs.order_id);
    let (again, bobs_again) = post_as("c-bob").await?;
    assert_eq!((again, bobs_again.order_id), (200, bobs.order_id));

    // Ten at once with one fresh key: one order, no 500.
    let race = CreateOrder {
        customer_id: Some("c-race".into()),
        payment_token: None,
        ..order("hub-01", 1, "tok_visa")
    };
    let answers =
        futures::future::join_all((0..10).map(|_| stack.post_order(&race, Some("key-race")))).await;
    let mut ids = std::collections::BTreeSet::new();
    let mut created = 0;
    for answer in answers {
        let answer = answer?;
        assert!(answer.status == 201 || answer.status == 200, "{answer:?}");
        created += usize::from(answer.status == 201);
        ids.insert(answer.ok()?.order_id);
    }
    assert_eq!((created, ids.len()), (1, 1), "{ids:?}");
    let listed = stack
        .read_query(routes::LIST_ORDERS, &[], &[("customerId", "c-race")])
        .await?;
    assert_eq!(listed.items.len(), 1, "{listed:?}");
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
            let text = r.text().await?;
            let problem: Problem = serde_json::from_str(&text)
                .with_context(|| format!("not a problem: {status} {text}"))?;
            anyhow::Ok((status, problem))
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
        assert_eq!(status, 400, "{body}: {e:?}");
        assert_eq!(e.status, 400);
        assert_eq!(e.title, "Validation failed");
        assert!(e.errors.contains_key(field), "{body}: {e:?}");
        assert_eq!(e.kind, PROBLEM_VALIDATION);
        assert!(e.detail.contains(field), "{e:?}");
    }
    let huge = format!(
        "{{\"customerId\": \"{}\", \"items\": []}}",
        "x".repeat(100 * 1024)
    );
    let (status, e) = send(huge, "application/json").await?;
    assert_eq!((status, e.status), (413, 413), "{e:?}");
    let (status, e) = send("items=1".into(), "application/x-www-form-urlencoded").await?;
    assert_eq!((status, e.status), (415, 415), "{e:?}");
    let (status, e) = stack
        .http
        .post(&url)
        .header("content-type", "application/json")
        .header("Idempotency-Key", "")
        .body(serde_json::to_string(&order("mouse-01", 1, "tok_visa"))?)
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))?;
    assert_eq!(status, 400, "{e:?}");

    let listed = stack.read(routes::LIST_ORDERS, &[]).await?;
    assert!(
        listed.items.is_empty(),
        "a rejected request created an order: {listed:?}"
    );

    let missing = uuid::Uuid::now_v7().to_string();
    let a = stack
        .answer(routes::GET_ORDER, &[&missing], &(), None)
        .await?;
    assert_eq!(a.status, 404, "{a:?}");
    assert_eq!(a.problem()?.status, 404);
    let a = stack
        .answer(routes::GET_ORDER, &["not-a-uuid"], &(), None)
        .await?;
    assert_eq!(a.status, 400, "{a:?}");
    let a = stack
        .answer_query(routes::LIST_ORDERS, &[], &[("status", "LOST")])
        .await?;
    assert_eq!(a.status, 400, "{a:?}");
    let a = stack
        .answer_query(routes::LIST_SAGAS, &[], &[("state", "LOST")])
        .await?;
    assert_eq!(a.status, 400, "{a:?}");

    // Paging: newest first, the cursor continues where the page ended.
    let mut placed = Vec::new();
    for _ in 0..3 {
        placed.push(stack.place(order("stand-01", 1, "tok_visa")).await?);
    }
    let page1 = stack
        .read_query(routes::LIST_ORDERS, &[], &[("limit", "2")])
        .await?;
    let cursor = page1
        .next_cursor
        .with_context(|| format!("a full page names the next: {page1:?}"))?
        .to_string();
    let page2 = stack
        .read_query(
            routes::LIST_ORDERS,
            &[],
            &[("limit", "2"), ("cursor", &cursor)],
        )
        .await?;
    let seen: Vec<String> = page1
        .items
        .iter()
        .chain(&page2.items)
        .map(|o| o.order_id.to_string())
        .collect();
    placed.reverse();
    assert_eq!(seen, placed);
    assert!(page2.next_cursor.is_none(), "{page2:?}");

    // Payments page the same way (by order id, newest first), so a reader can see them all.
    for id in &placed {
        stack.finished(id, FINISH).await?;
    }
    let page1 = stack
        .read_query(routes::LIST_PAYMENTS, &[], &[("limit", "2")])
        .await?;
    let cursor = page1
        .next_cursor
        .with_context(|| format!("a full page names the next: {page1:?}"))?
        .to_string();
    let page2 = stack
        .read_query(
            routes::LIST_PAYMENTS,
            &[],
            &[("limit", "2"), ("cursor", &cursor)],
        )
        .await?;
    let paid: Vec<String> = page1
        .items
        .iter()
        .chain(&page2.items)
        .map(|p| p.order_id.to_string())
        .collect();
    assert_eq!(paid, placed);
    assert!(page2.next_cursor.is_none(), "{page2:?}");
    let a = stack
        .answer_query(routes::LIST_PAYMENTS, &[], &[("cursor", "not-a-uuid")])
        .await?;
    assert_eq!(a.status, 400, "{a:?}");
    stack.shutdown().await
}

/// Everything the services hold that a duplicate must not change.
#[derive(Debug, PartialEq)]
struct Snapshot {
    orders: Page<OrderView>,
    products: Page<ProductView>,
    payments: Page<PaymentView>,
    notifications: Page<NotificationView>,
    sagas: Page<SagaView>,
    shipments: Page<ShipmentView>,
}

async fn snapshot(stack: &Stack) -> anyhow::Result<Snapshot> {
    let all = [("limit", "1000")];
    Ok(Snapshot {
        orders: stack.read_query(routes::LIST_ORDERS, &[], &all).await?,
        products: stack.read(routes::LIST_PRODUCTS, &[]).await?,
        payments: stack.read_query(routes::LIST_PAYMENTS, &[], &all).await?,
        notifications: stack
            .read_query(routes::LIST_NOTIFICATIONS, &[], &all)
            .await?,
        sagas: stack.read_query(routes::LIST_SAGAS, &[], &all).await?,
        shipments: stack.read_query(routes::LIST_SHIPMENTS, &[], &all).await?,
    })
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
            let envelope = Envelope::decode(m.payload.as_deref().unwrap_or_default())
                .with_context(|| format!("a message on {topic}"))?;
            if seen.insert(envelope.event_id) {
                originals.push((topic.clone(), m, envelope));
            }
        }
    }
    let mut renamed = 0;
    for (topic, m, mut envelope) in originals {
        let mut copy = m.clone();
        envelope.event_id = uuid::Uuid::now_v7();
        copy.payload = Some(envelope.encode());
        for (name, value) in copy.headers.iter_mut() {
            if name == oms_contracts::headers::MESSAGE_ID {
                *value = Some(envelope.event_id.to_string().into_bytes());
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
                .place(CreateOrder {
                    customer_id: Some(format!("buyer-{i}")),
                    payment_token: None,
                    ..order("keyboard-01", 1, "tok_visa")
                })
                .await
        }
    }))
    .await;
    let ids: Vec<String> = placed.into_iter().collect::<anyhow::Result<_>>()?;
    let mut confirmed = 0;
    for id in &ids {
        let done = stack.finished(id, FINISH).await?;
        if done.status.is_placed() {
            confirmed += 1;
        } else {
            assert_eq!(
                done.cancel_reason.as_deref(),
                Some("OUT_OF_STOCK"),
                "{done:?}"
            );
        }
    }
    assert_eq!(confirmed, 10);
    let p = eventually(Duration::from_secs(30), "all ten sold", || async {
        let p = stack.product("keyboard-01").await?;
        Ok((p.sold == 10).then_some(p))
    })
    .await?;
    assert_eq!((p.available, p.reserved), (0, 0));
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
                .json(&CreateOrder {
                    customer_id: Some("burst".into()),
                    payment_token: None,
                    ..order("mouse-01", 1, "tok_visa")
                })
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
        .read_query(
            routes::LIST_ORDERS,
            &[],
            &[("customerId", "burst"), ("limit", "100")],
        )
        .await?;
    assert_eq!(page.items.len(), 3, "{page:?}");
    // The next window is served.
    eventually(
        Duration::from_secs(10),
        "a request after the window",
        || async { Ok((send().await?.0 == 201).then_some(())) },
    )
    .await?;
    stack.shutdown().await
}

async fn saga_of(stack: &Stack, id: &str) -> anyhow::Result<SagaView> {
    stack.read(routes::GET_SAGA, &[id]).await
}

async fn in_state(stack: &Stack, id: &str, state: SagaState) -> anyhow::Result<SagaView> {
    eventually(FINISH, &format!("the saga to be {state}"), || async {
        let saga = saga_of(stack, id).await?;
        Ok((saga.state == state).then_some(saga))
    })
    .await
}

fn steps_with<'a>(saga: &'a SagaView, input: &str) -> Vec<&'a SagaStep> {
    saga.steps
        .iter()
        .flatten()
        .filter(|s| s.input == input)
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
    in_state(&stack, &retried, SagaState::Authorizing).await?;
    in_state(&stack, &cancelled, SagaState::Authorizing).await?;

    // Retry: the authorization is asked again, recorded as a step by the caller.
    let answer = stack
        .answer(routes::RETRY_SAGA, &[&retried], &(), None)
        .await?;
    assert_eq!(answer.status, 200, "{answer:?}");
    let action = answer.ok()?;
    assert!(action.applied, "{action:?}");
    assert_eq!(action.sent, ["payment.authorize"]);
    assert_eq!(action.saga.state, SagaState::Authorizing);

    // Cancel: the payment voided and the stock released; asking again changes nothing.
    let cancel = CancelSaga {
        reason: "customer called".into(),
    };
    let answer = stack
        .answer(routes::CANCEL_SAGA, &[&cancelled], &cancel, None)
        .await?;
    assert_eq!(answer.status, 200, "{answer:?}");
    let action = answer.ok()?;
    assert!(action.applied, "{action:?}");
    assert_eq!(action.sent, ["payment.refund", "inventory.release"]);
    let done = stack.finished(&cancelled, FINISH).await?;
    assert_eq!(done.status, OrderStatus::Cancelled, "{done:?}");
    assert_eq!(
        done.cancel_reason.as_deref(),
        Some("OPERATOR_CANCELLED"),
        "{done:?}"
    );
    let again = stack
        .answer(routes::CANCEL_SAGA, &[&cancelled], &cancel, None)
        .await?;
    assert_eq!(again.status, 200, "{again:?}");
    let again = again.ok()?;
    assert!(!again.applied, "{again:?}");
    assert!(again.sent.is_empty(), "{again:?}");

    // Bad requests change nothing; each is refused with a problem. The bodies are JSON as it
    // is: the malformed ones have no typed form.
    let customer = stack.token("c-test", Role::Customer, 600)?;
    let missing = uuid::Uuid::now_v7().to_string();
    let (retry, cancel_route) = (routes::RETRY_SAGA.spec, routes::CANCEL_SAGA.spec);
    for (route, id, body, token, want) in [
        (
            cancel_route,
            retried.as_str(),
            json!({"reason": " "}),
            None,
            400,
        ),
        (
            cancel_route,
            retried.as_str(),
            json!({"reason": "x", "why": 1}),
            None,
            400,
        ),
        (cancel_route, retried.as_str(), json!({}), None, 400),
        (retry, "not-a-uuid", json!({}), None, 400),
        (retry, missing.as_str(), json!({}), None, 404),
        (
            cancel_route,
            retried.as_str(),
            serde_json::to_value(&cancel)?,
            Some(customer.as_str()),
            403,
        ),
    ] {
        let (status, text) = stack.call_raw(route, &[id], &body, token).await?;
        assert_eq!(status, want, "{route} {id} {body}: {text}");
        let problem: Problem =
            serde_json::from_str(&text).with_context(|| format!("not a problem body: {text}"))?;
        assert_eq!(problem.status, want, "{problem:?}");
    }
    assert_eq!(
        saga_of(&stack, &retried).await?.state,
        SagaState::Authorizing
    );

    // Payment back: both authorizations of the retried order are answered with one charge;
    // the cancelled order's late charge is undone.
    stack.start_service(Service::Payment).await?;
    let done = stack.finished(&retried, FINISH).await?;
    assert!(done.status.is_placed(), "{done:?}");
    charge_undone(&stack, &cancelled).await?;
    let saga = saga_of(&stack, &retried).await?;
    let retries = steps_with(&saga, "operator.retry");
    assert_eq!(retries.len(), 1, "{saga:?}");
    assert!(retries[0].note.contains("tests"), "{saga:?}");
    let saga = saga_of(&stack, &cancelled).await?;
    let cancels = steps_with(&saga, "operator.cancel");
    assert_eq!(
        cancels.iter().map(|s| s.applied).collect::<Vec<_>>(),
        [true, false],
        "{saga:?}"
    );
    // Finished sagas: retry is a conflict, and so is cancelling a confirmed order.
    stack.settled(&retried, FINISH).await?;
    for route in [retry, cancel_route] {
        let (status, text) = stack.call_raw(route, &[&retried], &cancel, None).await?;
        assert_eq!(status, 409, "{route}: {text}");
    }
    let after = stack.product("stand-01").await?;
    assert_eq!(
        after.available,
        before.available - 1,
        "only the confirmed order keeps its stock: {after:?}"
    );
    stack.shutdown().await
}

/// An order held in AUTHORIZING (payment stopped) through a broker outage longer than its
/// payment deadline: `budget` decides whether the outage may cancel it.
async fn through_a_broker_outage(budget: Duration) -> anyhow::Result<(OrderView, SagaView)> {
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
    in_state(&stack, &id, SagaState::Authorizing).await?;
    broker.stop()?;
    // The payment deadline passes while the broker is away.
    eventually(FINISH, "the payment deadline to pass", || async {
        let saga = saga_of(&stack, &id).await?;
        Ok((saga.stuck || saga.state != SagaState::Authorizing).then_some(()))
    })
    .await?;
    broker.start_again().await?;
    stack.start_service(Service::Payment).await?;
    let done = stack.finished(&id, FINISH).await?;
    let saga = saga_of(&stack, &id).await?;
    stack.shutdown().await?;
    Ok((done, saga))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_outage_within_the_budget_cancels_no_order_and_without_one_it_does(
) -> anyhow::Result<()> {
    let (order, saga) = through_a_broker_outage(Duration::from_secs(120)).await?;
    assert!(order.status.is_placed(), "{order:?}");
    let extended = steps_with(&saga, "outage");
    assert_eq!(extended.len(), 1, "{saga:?}");
    assert!(extended[0].note.contains("deadline extended"), "{saga:?}");
    // The same outage with the budget off: the deadline stands.
    let (order, saga) = through_a_broker_outage(Duration::ZERO).await?;
    assert_eq!(order.status, OrderStatus::Cancelled, "{order:?}");
    assert_eq!(order.cancel_reason.as_deref(), Some("TIMEOUT"), "{order:?}");
    assert!(steps_with(&saga, "outage").is_empty(), "{saga:?}");
    Ok(())
}
