//! The transactional outbox and its relay, against real PostgreSQL and Apache Kafka.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use oms_contracts::messages::OrderCancelled;
use oms_contracts::{messages::CancelReason, Envelope, OrderId};
use oms_runtime::config::OutboxWakeup;
use oms_runtime::metrics::Metrics;
use oms_runtime::outbox::{self, Header, OutgoingMessage};
use oms_runtime::relay::{Relay, RelayConfig, RelayStatus};
use oms_tests::{brokers, eventually, fresh_db, fresh_topic, read_topic, Received, TestBroker};
use sqlx::PgPool;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// A message whose `detail` carries `key/seq`, so order and identity can be checked on arrival.
fn numbered(order: OrderId, seq: usize) -> Envelope {
    Envelope::new(
        OrderCancelled {
            order_id: order,
            reason: CancelReason::Timeout,
            detail: Some(format!("{order}/{seq}")),
            customer_id: None,
        },
        "outbox-test",
        order.0,
    )
}

fn seq_of(m: &Received) -> (String, usize) {
    let env = Envelope::decode(m.payload.as_deref().unwrap_or_default()).expect("envelope");
    let oms_contracts::Message::OrderCancelled(c) = env.message else {
        panic!("unexpected message {env:?}");
    };
    let detail = c.detail.expect("detail");
    let (key, seq) = detail.rsplit_once('/').expect("key/seq");
    (key.to_owned(), seq.parse().expect("seq"))
}

fn relay_config(brokers: &str) -> RelayConfig {
    let mut c = RelayConfig::new("outbox-test", brokers);
    c.base_backoff = Duration::from_millis(100);
    c.max_backoff = Duration::from_secs(2);
    c.message_timeout = Duration::from_secs(2);
    c
}

fn spawn_relay(
    pool: &PgPool,
    config: RelayConfig,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let (token, handle, _) = spawn_relay_with_status(pool, config);
    (token, handle)
}

fn spawn_relay_with_status(
    pool: &PgPool,
    config: RelayConfig,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<()>,
    Arc<RelayStatus>,
) {
    let token = CancellationToken::new();
    let relay = Relay::new(pool.clone(), config, Metrics::new(|_| {})).expect("relay");
    let status = relay.status();
    let t = token.clone();
    let handle = tokio::spawn(async move {
        relay.run(t).await.expect("relay run");
    });
    (token, handle, status)
}

async fn pending(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE published_at IS NULL AND failed_at IS NULL",
    )
    .fetch_one(pool)
    .await?)
}

/// Waits (at most 10 s) for a relay to lead on `pool`'s database; the pid of its session.
async fn relay_leader(pool: &PgPool) -> anyhow::Result<i32> {
    eventually(Duration::from_secs(10), "a relay to lead", || async {
        // The leader lock is the one-key form (`objsubid` 1); enqueues take the two-key form.
        Ok(sqlx::query_scalar::<_, i32>(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_optional(pool)
        .await?)
    })
    .await
}

/// What a service does: `envelope` written in a transaction of its own, without a `NOTIFY`.
async fn enqueue_committed(
    pool: &PgPool,
    topics: &oms_contracts::topology::Topics,
    envelope: &Envelope,
) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    outbox::enqueue_envelope(&mut *tx, topics, envelope).await?;
    tx.commit().await?;
    Ok(())
}

/// Waits (at most `secs`) until no outbox row is pending.
async fn all_published(pool: &PgPool, secs: u64, what: &str) -> anyhow::Result<()> {
    eventually(Duration::from_secs(secs), what, || async {
        Ok((pending(pool).await? == 0).then_some(()))
    })
    .await
}

/// Asserts every (key, seq) arrived exactly once and in increasing seq order per key.
fn assert_once_in_order(received: &[Received], expected: usize) {
    let mut seen = HashSet::new();
    let mut last: HashMap<String, usize> = HashMap::new();
    for m in received {
        let (key, seq) = seq_of(m);
        assert_eq!(m.key_str(), key, "message published under the wrong key");
        assert!(
            seen.insert((key.clone(), seq)),
            "{key}/{seq} published twice"
        );
        if let Some(prev) = last.insert(key.clone(), seq) {
            assert!(seq > prev, "{key}: {seq} arrived after {prev}");
        }
    }
    assert_eq!(seen.len(), expected, "wrong number of distinct messages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_rows_are_never_published() -> anyhow::Result<()> {
    let pool = fresh_db("rollback").await?;
    let topic = fresh_topic(&brokers(), "rollback", 1).await?;
    let order = OrderId::new();

    let mut tx = pool.begin().await?;
    for seq in 0..3 {
        outbox::enqueue(&mut *tx, &topic, &order.to_string(), &numbered(order, seq)).await?;
    }
    tx.rollback().await?;
    let mut tx = pool.begin().await?;
    outbox::enqueue(&mut *tx, &topic, &order.to_string(), &numbered(order, 99)).await?;
    tx.commit().await?;

    let (token, handle) = spawn_relay(&pool, relay_config(&brokers()));
    all_published(&pool, 20, "the committed row to be published").await?;
    token.cancel();
    handle.await?;

    let received = read_topic(
        &brokers(),
        &topic,
        1,
        Duration::from_secs(20),
        Duration::from_secs(2),
    )?;
    let seqs: Vec<usize> = received.iter().map(|m| seq_of(m).1).collect();
    assert_eq!(seqs, vec![99], "only the committed row may reach the topic");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&pool)
        .await?;
    assert_eq!(rows, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_are_published_in_commit_order_per_key_with_headers() -> anyhow::Result<()> {
    let pool = fresh_db("order").await?;
    let topic = fresh_topic(&brokers(), "order", 3).await?;
    let (token, handle) = spawn_relay(&pool, relay_config(&brokers()));

    // Eight keys written concurrently, each key's messages in its own sequence of transactions
    // (some holding several rows), while the relay is already running.
    let keys: Vec<OrderId> = (0..8).map(|_| OrderId::new()).collect();
    let per_key = 40;
    let mut writers = Vec::new();
    for order in keys.clone() {
        let pool = pool.clone();
        let topic = topic.clone();
        writers.push(tokio::spawn(async move {
            let mut seq = 0;
            while seq < per_key {
                let mut tx = pool.begin().await?;
                for _ in 0..(1 + seq % 3).min(per_key - seq) {
                    outbox::enqueue(&mut *tx, &topic, &order.to_string(), &numbered(order, seq))
                        .await?;
                    seq += 1;
                }
                tx.commit().await?;
            }
            anyhow::Ok(())
        }));
    }
    for w in writers {
        w.await??;
    }
    let total = keys.len() * per_key;
    all_published(&pool, 30, "all rows to be published").await?;
    token.cancel();
    handle.await?;

    let received = read_topic(
        &brokers(),
        &topic,
        total,
        Duration::from_secs(30),
        Duration::from_secs(2),
    )?;
    assert_once_in_order(&received, total);
    // The envelope's mirror headers travel with every message.
    let first = &received[0];
    let env = Envelope::decode(first.payload.as_deref().unwrap_or_default())?;
    assert_eq!(
        first.header("oms-message-id"),
        Some(env.event_id.to_string())
    );
    assert_eq!(
        first.header("oms-message-type").as_deref(),
        Some("order.cancelled")
    );
    assert_eq!(
        first.header("oms-correlation-id"),
        Some(env.correlation_id.to_string())
    );
    assert!(first
        .header("traceparent")
        .is_some_and(|t| t.starts_with("00-")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_keeps_rows_pending_and_loses_nothing() -> anyhow::Result<()> {
    let mut broker = TestBroker::start().await?;
    let pool = fresh_db("outage").await?;
    let topic = fresh_topic(&broker.brokers(), "outage", 2).await?;
    broker.stop()?;

    // Backoffs of 0.4, 0.8 and 1.6 s: each is 0.4 s longer than the one before, more than this
    // test's sampling of them can be late on a loaded machine.
    let mut config = relay_config(&broker.brokers());
    config.base_backoff = Duration::from_millis(400);
    config.max_backoff = Duration::from_secs(4);
    let (token, handle) = spawn_relay(&pool, config);
    let keys: Vec<OrderId> = (0..5).map(|_| OrderId::new()).collect();
    for seq in 0..10 {
        for order in &keys {
            // Enqueueing does not need the broker.
            let mut tx = pool.begin().await?;
            outbox::enqueue(&mut *tx, &topic, &order.to_string(), &numbered(*order, seq)).await?;
            tx.commit().await?;
        }
    }

    // The first row is retried with a growing delay while the broker is away.
    let first_id: i64 = sqlx::query_scalar("SELECT min(id) FROM outbox")
        .fetch_one(&pool)
        .await?;
    let mut gaps: Vec<(i32, f64)> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (attempts, gap, published): (i32, f64, bool) = sqlx::query_as(
            "SELECT attempts, EXTRACT(EPOCH FROM next_attempt_at - clock_timestamp())::float8, \
                    published_at IS NOT NULL FROM outbox WHERE id = $1",
        )
        .bind(first_id)
        .fetch_one(&pool)
        .await?;
        assert!(!published, "published while the broker is down");
        if gaps.last().is_none_or(|(a, _)| attempts > *a) && attempts > 0 {
            gaps.push((attempts, gap));
        }
        if attempts >= 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no third attempt within 60s: {gaps:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        pending(&pool).await?,
        50,
        "rows must stay pending during the outage"
    );
    let backoffs: Vec<f64> = gaps.iter().map(|(_, g)| *g).collect();
    assert!(
        backoffs.windows(2).all(|w| w[1] > w[0]),
        "next_attempt_at should move further out with each attempt: {gaps:?}"
    );
    // Seen after it was set, a gap is at most the backoff the relay chose: 0.4 s doubled per
    // attempt before it.
    for (attempts, gap) in &gaps {
        let backoff = 0.4 * 2f64.powi(attempts - 1);
        assert!(
            *gap <= backoff + 0.001,
            "attempt {attempts} is due {gap:.3}s out, past its backoff of {backoff}s: {gaps:?}"
        );
    }
    let last_error: Option<String> =
        sqlx::query_scalar("SELECT last_error FROM outbox WHERE id = $1")
            .bind(first_id)
            .fetch_one(&pool)
            .await?;
    assert!(last_error.is_some(), "the failure reason is recorded");

    broker.start_again().await?;
    all_published(&pool, 60, "the backlog to drain after the broker is back").await?;
    token.cancel();
    handle.await?;

    let received = read_topic(
        &broker.brokers(),
        &topic,
        50,
        Duration::from_secs(30),
        Duration::from_secs(2),
    )?;
    assert_once_in_order(&received, 50);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_on_one_outbox_publish_each_row_once() -> anyhow::Result<()> {
    let pool = fresh_db("tworelays").await?;
    let topic = fresh_topic(&brokers(), "tworelays", 3).await?;
    let mut config = relay_config(&brokers());
    config.standby_poll = Duration::from_millis(200);
    let mut relays = vec![
        spawn_relay_with_status(&pool, config.clone()),
        spawn_relay_with_status(&pool, config),
    ];

    let keys: Vec<OrderId> = (0..6).map(|_| OrderId::new()).collect();
    let mut seq = 0;
    for round in 0..2 {
        for _ in 0..25 {
            let mut tx = pool.begin().await?;
            for order in &keys {
                outbox::enqueue(&mut *tx, &topic, &order.to_string(), &numbered(*order, seq))
                    .await?;
            }
            tx.commit().await?;
            seq += 1;
        }
        if round == 0 {
            // Both relays run, one publishes. Stop the leader; the standby must take over.
            all_published(&pool, 20, "the first half to be published").await?;
            // The standby keeps one session between its tries (every 200 ms) instead of
            // opening one per try. A window to count over: ten tries.
            let sessions = || async {
                sqlx::query_scalar::<_, i64>(
                    "SELECT sessions FROM pg_stat_database WHERE datname = current_database()",
                )
                .fetch_one(&pool)
                .await
            };
            let before = sessions().await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let opened = sessions().await? - before;
            assert!(
                opened <= 2,
                "{opened} sessions opened in 2 s of standing by"
            );
            let leaders: Vec<usize> = (0..relays.len())
                .filter(|i| relays[*i].2.is_leader())
                .collect();
            assert_eq!(leaders.len(), 1, "exactly one relay leads");
            let (token, handle, _) = relays.remove(leaders[0]);
            token.cancel();
            handle.await?;
        }
    }
    let total = keys.len() * seq;
    all_published(&pool, 30, "the standby relay to publish the rest").await?;
    assert!(relays[0].2.is_leader(), "the standby took over");
    let (token, handle, _) = relays.remove(0);
    token.cancel();
    handle.await?;

    let received = read_topic(
        &brokers(),
        &topic,
        total,
        Duration::from_secs(30),
        Duration::from_secs(3),
    )?;
    assert_once_in_order(&received, total);
    assert_eq!(received.len(), total, "a row was published more than once");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_rows_are_pruned_after_the_retention() -> anyhow::Result<()> {
    let pool = fresh_db("prune").await?;
    let topic = fresh_topic(&brokers(), "prune", 1).await?;
    let order = OrderId::new();
    for seq in 0..20 {
        outbox::enqueue(&pool, &topic, &order.to_string(), &numbered(order, seq)).await?;
    }
    let mut config = relay_config(&brokers());
    config.retention = Duration::from_millis(300);
    config.prune_interval = Duration::from_millis(200);
    let (token, handle) = spawn_relay(&pool, config);
    eventually(
        Duration::from_secs(30),
        "published rows to be pruned",
        || async {
            let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
                .fetch_one(&pool)
                .await?;
            Ok((rows == 0).then_some(()))
        },
    )
    .await?;
    token.cancel();
    handle.await?;
    let received = read_topic(
        &brokers(),
        &topic,
        20,
        Duration::from_secs(20),
        Duration::from_secs(1),
    )?;
    assert_once_in_order(&received, 20);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_goes_on_while_whole_batches_come_back_up_to_its_rounds() -> anyhow::Result<()> {
    let pool = fresh_db("prune_rounds").await?;
    // 25 rows published an hour ago, 5 just now.
    sqlx::query(
        "INSERT INTO outbox (topic, payload, published_at) \
         SELECT 't', 'x'::bytea, clock_timestamp() - interval '1 hour' FROM generate_series(1, 25) \
         UNION ALL SELECT 't', 'x'::bytea, clock_timestamp() FROM generate_series(1, 5)",
    )
    .execute(&pool)
    .await?;
    let retention = Duration::from_secs(60);
    assert_eq!(outbox::prune_rounds(&pool, retention, 10, 2).await?, 20);
    assert_eq!(outbox::prune_rounds(&pool, retention, 10, 10).await?, 5);
    assert_eq!(outbox::prune_rounds(&pool, retention, 10, 10).await?, 0);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&pool)
        .await?;
    assert_eq!(left, 5, "the recent rows stay");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanently_failing_row_is_set_aside_and_the_rest_flows() -> anyhow::Result<()> {
    let pool = fresh_db("permanent").await?;
    let topic = fresh_topic(&brokers(), "permanent", 1).await?;
    let too_big = OutgoingMessage {
        topic: topic.clone(),
        key: Some(b"big".to_vec()),
        // Above librdkafka's default message.max.bytes (1 MB): refused before it leaves.
        payload: Some(vec![b'x'; 2 * 1024 * 1024]),
        headers: vec![Header::text("oms-message-type", "test.big")],
        message_id: None,
        message_type: None,
    };
    let big_id = outbox::enqueue_raw(&pool, &too_big).await?;
    let order = OrderId::new();
    outbox::enqueue(&pool, &topic, &order.to_string(), &numbered(order, 1)).await?;

    let (token, handle) = spawn_relay(&pool, relay_config(&brokers()));
    let error: String = eventually(
        Duration::from_secs(20),
        "the big row to be marked failed",
        || async {
            let row: (Option<String>, bool) = sqlx::query_as(
                "SELECT last_error, failed_at IS NOT NULL FROM outbox WHERE id = $1",
            )
            .bind(big_id)
            .fetch_one(&pool)
            .await?;
            Ok(match row {
                (Some(e), true) => Some(e),
                _ => None,
            })
        },
    )
    .await?;
    assert!(
        error.to_lowercase().contains("size"),
        "reason should name the size: {error}"
    );
    all_published(&pool, 20, "the good row to be published").await?;
    let backlog = outbox::backlog(&pool).await?;
    assert_eq!((backlog.pending, backlog.failed), (0, 1));
    token.cancel();
    handle.await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_wakes_the_relay_without_waiting_for_a_poll() -> anyhow::Result<()> {
    let pool = fresh_db("notify").await?;
    let topic = fresh_topic(&brokers(), "notify", 1).await?;
    let (prefix, _) = oms_tests::fresh_order_events(&brokers(), "notify", 1).await?;
    let topics = oms_contracts::topology::Topics::new(&prefix);
    let mut config = relay_config(&brokers());
    config.wakeup = OutboxWakeup::Notify;
    // With a one-minute fallback poll, only NOTIFY can make the relay publish within seconds.
    config.fallback_poll = Duration::from_secs(60);
    let (token, handle) = spawn_relay(&pool, config);
    // Let the relay become leader, LISTEN and go idle.
    relay_leader(&pool).await?;
    for seq in 0..3 {
        let order = OrderId::new();
        outbox::enqueue(&pool, &topic, &order.to_string(), &numbered(order, seq)).await?;
        all_published(&pool, 10, "a notified publish").await?;
    }
    // What the services do: rows written without a NOTIFY in the transaction, and one
    // wake-up after the commit. The relay leads in this process, so it is woken in memory.
    for seq in 0..3 {
        let order = OrderId::new();
        let mut tx = pool.begin().await?;
        outbox::enqueue_envelope(&mut *tx, &topics, &numbered(order, seq)).await?;
        outbox::enqueue_envelope(&mut *tx, &topics, &numbered(order, seq + 10)).await?;
        tx.commit().await?;
        assert_eq!(outbox::notify(&pool).await, outbox::Woken::InProcess);
        all_published(&pool, 10, "a publish woken in memory after the commit").await?;
    }
    // A service whose relay leads in another process wakes it with a `pg_notify` after its
    // commit.
    for seq in 0..3 {
        let order = OrderId::new();
        enqueue_committed(&pool, &topics, &numbered(order, seq + 20)).await?;
        outbox::notify_listeners(&pool).await;
        all_published(&pool, 10, "a publish notified after the commit").await?;
    }
    // No relay of another database is woken in memory.
    let elsewhere = fresh_db("notify_elsewhere").await?;
    assert_eq!(outbox::notify(&elsewhere).await, outbox::Woken::Listeners);
    // Rows of one key committed one after another while the earlier ones are in flight: the
    // relay holds a row back until its key's earlier row is acked, and must then pick it up
    // without another notification.
    let order = OrderId::new();
    for seq in 0..20 {
        enqueue_committed(&pool, &topics, &numbered(order, 100 + seq)).await?;
        outbox::notify(&pool).await;
    }
    all_published(&pool, 10, "one key's rows, each after the one before").await?;
    token.cancel();
    handle.await?;
    Ok(())
}

/// After an ack the relay queries again only when its last query may have left rows behind (it
/// ran while rows were in flight or retried rows were pending, or came back full): a row held
/// back behind its key's row in flight must go out when that row is acked, with no wake-up of
/// its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_held_back_behind_its_key_goes_out_when_that_row_is_acked() -> anyhow::Result<()> {
    let pool = fresh_db("held_back").await?;
    let (prefix, _) = oms_tests::fresh_order_events(&brokers(), "held_back", 1).await?;
    let topics = oms_contracts::topology::Topics::new(&prefix);
    let mut config = relay_config(&brokers());
    config.wakeup = OutboxWakeup::Notify;
    config.fallback_poll = Duration::from_secs(60);
    // Each batch stays in flight for a second: long enough to commit the next row behind it.
    config.kafka.set("linger.ms", "1000")?;
    config.message_timeout = Duration::from_secs(10);
    let (token, handle) = spawn_relay(&pool, config);
    let leader = relay_leader(&pool).await?;
    let order = OrderId::new();
    enqueue_committed(&pool, &topics, &numbered(order, 0)).await?;
    let committed: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(&pool)
        .await?;
    assert_eq!(outbox::notify(&pool).await, outbox::Woken::InProcess);
    // The relay has read the first row (and sent it) once its session ran a query after the
    // commit; the row is then in flight for about a second.
    eventually(
        Duration::from_secs(10),
        "the relay to read the first row",
        || async {
            let read: bool = sqlx::query_scalar(
                "SELECT query_start > $2 AND query LIKE 'SELECT o.id%' \
             FROM pg_stat_activity WHERE pid = $1",
            )
            .bind(leader)
            .bind(committed)
            .fetch_optional(&pool)
            .await?
            .unwrap_or(false);
            Ok(read.then_some(()))
        },
    )
    .await?;
    assert_eq!(
        pending(&pool).await?,
        1,
        "the first row is in flight, not yet acked"
    );
    enqueue_committed(&pool, &topics, &numbered(order, 1)).await?;
    outbox::notify(&pool).await;
    // The query this wake-up causes holds the second row back; only the query after the first
    // row's ack can send it (the fallback poll is a minute away).
    all_published(&pool, 10, "the held-back row after its key's ack").await?;
    token.cancel();
    handle.await?;
    Ok(())
}
