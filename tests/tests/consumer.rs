//! The idempotent consumer loop, against real PostgreSQL and Apache Kafka.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oms_contracts::messages::{CancelReason, OrderCancelled, ReleaseReason, StockReleased};
use oms_contracts::topology::Topics;
use oms_contracts::{Envelope, Message, OrderId};
use oms_runtime::consumer::{ConsumerConfig, ConsumerStats, InboxConsumer};
use oms_runtime::metrics::Metrics;
use oms_runtime::relay::{Relay, RelayConfig};
use oms_runtime::{Handler, HandlerContext, HandlerError};
use oms_tests::{
    brokers, database_url, eventually, fresh_db, fresh_order_events, produce, producer, read_topic,
    CuttableProxy,
};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Records each handled message in `ledger` and emits a follow-up through the outbox, failing
/// on demand: `fail_first[id] = n` fails the first n tries of message `id`; `always_fail` never
/// succeeds.
#[derive(Clone, Default)]
struct Ledger {
    fail_first: Arc<Mutex<HashMap<Uuid, u32>>>,
    always_fail: Arc<Mutex<Vec<Uuid>>>,
}

impl Handler for Ledger {
    async fn handle(
        &self,
        ctx: &mut HandlerContext,
        envelope: &Envelope,
    ) -> Result<(), HandlerError> {
        let Message::OrderCancelled(cancelled) = &envelope.message else {
            return Ok(());
        };
        sqlx::query("INSERT INTO ledger (message_id, order_id, detail) VALUES ($1, $2, $3)")
            .bind(envelope.event_id)
            .bind(cancelled.order_id.0)
            .bind(&cancelled.detail)
            .execute(ctx.tx())
            .await?;
        // Emitted in the same transaction: must vanish when the attempt fails.
        ctx.emit(StockReleased {
            order_id: cancelled.order_id,
            reason: ReleaseReason::Compensation,
        })
        .await?;
        if self
            .always_fail
            .lock()
            .expect("lock")
            .contains(&envelope.event_id)
        {
            return Err(HandlerError::Retry("this message never works".into()));
        }
        let mut fail_first = self.fail_first.lock().expect("lock");
        if let Some(left) = fail_first.get_mut(&envelope.event_id) {
            if *left > 0 {
                *left -= 1;
                return Err(HandlerError::Retry(format!(
                    "flaky dependency ({left} failures left)"
                )));
            }
        }
        Ok(())
    }
}

fn cancelled(order: OrderId) -> Envelope {
    Envelope::new(
        OrderCancelled {
            order_id: order,
            reason: CancelReason::Timeout,
            detail: None,
            customer_id: None,
        },
        "saga",
        order.0,
    )
}

type Running = (
    CancellationToken,
    tokio::task::JoinHandle<()>,
    Arc<ConsumerStats>,
);

struct Harness {
    pool: PgPool,
    topic: String,
    /// The topic prefix `topic` sits behind (it is the contract's `oms.order.events`).
    prefix: String,
    group: String,
}

impl Harness {
    async fn new(name: &str) -> anyhow::Result<Self> {
        let pool = fresh_db(name).await?;
        // `at` numbers rows in the order their transactions inserted them.
        sqlx::query(
            "CREATE TABLE ledger (message_id UUID PRIMARY KEY, order_id UUID NOT NULL, \
             detail TEXT, at BIGSERIAL)",
        )
        .execute(&pool)
        .await?;
        let (prefix, topic) = fresh_order_events(&brokers(), name, 2).await?;
        Ok(Self {
            pool,
            group: format!("{name}-{}", oms_tests::unique()),
            topic,
            prefix,
        })
    }

    fn start(&self, handler: Ledger, max_attempts: u32) -> anyhow::Result<Running> {
        self.start_on(self.pool.clone(), handler, max_attempts)
    }

    /// A member of the harness's group with the runtime's defaults.
    fn start_member(&self) -> anyhow::Result<Running> {
        let mut config =
            ConsumerConfig::new("consumer-test", &self.group, &[&self.topic], &brokers());
        config.topic_names = Topics::new(&self.prefix);
        self.run(config, self.pool.clone(), Ledger::default())
    }

    fn run(
        &self,
        config: ConsumerConfig,
        pool: PgPool,
        handler: Ledger,
    ) -> anyhow::Result<Running> {
        let consumer = InboxConsumer::new(pool, config, handler, Metrics::new(|_| {}))?;
        let stats = consumer.stats();
        let token = CancellationToken::new();
        let t = token.clone();
        let handle = tokio::spawn(async move {
            consumer.run(t).await.expect("consumer run");
        });
        Ok((token, handle, stats))
    }

    /// A consumer using `pool` (which may reach the database through a proxy).
    fn start_on(
        &self,
        pool: PgPool,
        handler: Ledger,
        max_attempts: u32,
    ) -> anyhow::Result<Running> {
        let mut config =
            ConsumerConfig::new("consumer-test", &self.group, &[&self.topic], &brokers());
        config.topic_names = Topics::new(&self.prefix);
        config.max_attempts = max_attempts;
        config.base_backoff = Duration::from_millis(20);
        self.run(config, pool, handler)
    }

    fn start_relay(&self) -> anyhow::Result<(CancellationToken, tokio::task::JoinHandle<()>)> {
        let relay = Relay::new(
            self.pool.clone(),
            RelayConfig::new("consumer-test", &brokers()),
            Metrics::new(|_| {}),
        )?;
        let token = CancellationToken::new();
        let t = token.clone();
        Ok((
            token,
            tokio::spawn(async move { relay.run(t).await.expect("relay") }),
        ))
    }

    async fn ledger_count(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM ledger")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn wait_ledger(&self, n: i64) -> anyhow::Result<()> {
        eventually(
            Duration::from_secs(30),
            &format!("{n} ledger rows"),
            || async { Ok((self.ledger_count().await? >= n).then_some(())) },
        )
        .await
    }

    async fn send(&self, env: &Envelope) -> anyhow::Result<(i32, i64)> {
        let p = producer(&brokers())?;
        let headers: Vec<(&str, String)> = env.headers();
        let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        produce(&p, &self.topic, &env.key(), &env.encode(), &hs).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_delivered_twice_changes_state_once() -> anyhow::Result<()> {
    let h = Harness::new("dup").await?;
    let order = OrderId::new();
    let first = cancelled(order);
    let sentinel = cancelled(OrderId::new());
    h.send(&first).await?;
    h.send(&first).await?;
    h.send(&first).await?;
    h.send(&sentinel).await?;

    let (token, handle, stats) = h.start(Ledger::default(), 3)?;
    h.wait_ledger(2).await?;
    eventually(
        Duration::from_secs(20),
        "both duplicates to be skipped",
        || async { Ok((stats.duplicates.load(Ordering::Relaxed) >= 2).then_some(())) },
    )
    .await?;
    token.cancel();
    handle.await?;

    assert_eq!(
        h.ledger_count().await?,
        2,
        "the duplicate changed state again"
    );
    assert_eq!(stats.handled.load(Ordering::Relaxed), 2);
    assert_eq!(stats.duplicates.load(Ordering::Relaxed), 2);
    let emitted: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&h.pool)
        .await?;
    assert_eq!(emitted, 2, "one follow-up per distinct message");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_goes_to_the_dlq_with_diagnostics_and_the_next_one_is_handled(
) -> anyhow::Result<()> {
    let h = Harness::new("poison").await?;
    let p = producer(&brokers())?;
    let (partition, offset) = produce(
        &p,
        &h.topic,
        "poison-key",
        b"{not json",
        &[("x-origin", "test"), ("x-origin", "repeated")],
    )
    .await?;
    let good = cancelled(OrderId::new());
    h.send(&good).await?;

    let (relay_token, relay) = h.start_relay()?;
    let (token, handle, stats) = h.start(Ledger::default(), 3)?;
    h.wait_ledger(1).await?;

    let dlq = oms_contracts::topics::dlq(&h.topic);
    let records = read_topic(
        &brokers(),
        &dlq,
        1,
        Duration::from_secs(30),
        Duration::from_secs(1),
    )?;
    token.cancel();
    relay_token.cancel();
    handle.await?;
    relay.await?;

    assert_eq!(records.len(), 1, "exactly one dead letter: {records:?}");
    let r = &records[0];
    assert_eq!(
        r.key.as_deref(),
        Some(&b"poison-key"[..]),
        "original key kept"
    );
    assert_eq!(
        r.payload.as_deref(),
        Some(&b"{not json"[..]),
        "original value kept"
    );
    let originals: Vec<String> = r
        .headers
        .iter()
        .filter(|(k, _)| k == "x-origin")
        .filter_map(|(_, v)| v.as_ref().map(|v| String::from_utf8_lossy(v).into_owned()))
        .collect();
    assert_eq!(
        originals,
        ["test", "repeated"],
        "original headers kept in order"
    );
    assert_eq!(r.header("oms-dlq-origin-topic"), Some(h.topic.clone()));
    assert_eq!(
        r.header("oms-dlq-origin-partition"),
        Some(partition.to_string())
    );
    assert_eq!(r.header("oms-dlq-origin-offset"), Some(offset.to_string()));
    assert_eq!(r.header("oms-dlq-consumer-group"), Some(h.group.clone()));
    assert_eq!(
        r.header("oms-dlq-service").as_deref(),
        Some("consumer-test")
    );
    assert_eq!(
        r.header("oms-dlq-error-class").as_deref(),
        Some("poison.malformed")
    );
    assert!(r
        .header("oms-dlq-error-message")
        .is_some_and(|m| m.contains("malformed")));
    assert_eq!(r.header("oms-dlq-attempts").as_deref(), Some("0"));
    let failed_at = r.header("oms-dlq-failed-at").unwrap_or_default();
    assert!(
        chrono_like(&failed_at),
        "failed-at is RFC 3339: {failed_at}"
    );
    assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 1);
    assert_eq!(stats.handled.load(Ordering::Relaxed), 1);
    Ok(())
}

fn chrono_like(s: &str) -> bool {
    s.len() >= 20 && s.as_bytes().get(10) == Some(&b'T') && s.ends_with('Z')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_fails_twice_then_succeeds_is_not_dead_lettered() -> anyhow::Result<()> {
    let h = Harness::new("flaky").await?;
    let flaky = cancelled(OrderId::new());
    let broken = cancelled(OrderId::new());
    let handler = Ledger::default();
    handler
        .fail_first
        .lock()
        .expect("lock")
        .insert(flaky.event_id, 2);
    handler
        .always_fail
        .lock()
        .expect("lock")
        .push(broken.event_id);
    h.send(&flaky).await?;
    h.send(&broken).await?;

    let (token, handle, stats) = h.start(handler, 3)?;
    h.wait_ledger(1).await?;
    eventually(
        Duration::from_secs(30),
        "the broken message to be dead-lettered",
        || async { Ok((stats.dead_lettered.load(Ordering::Relaxed) == 1).then_some(())) },
    )
    .await?;
    token.cancel();
    handle.await?;

    // The flaky one: handled once after two retries, its follow-up emitted once.
    let handled: Vec<Uuid> = sqlx::query_scalar("SELECT message_id FROM ledger")
        .fetch_all(&h.pool)
        .await?;
    assert_eq!(handled, vec![flaky.event_id]);
    assert_eq!(stats.handled.load(Ordering::Relaxed), 1);
    // Two retries for the flaky message, two for the broken one (3 attempts each).
    assert_eq!(stats.retries.load(Ordering::Relaxed), 4);
    let follow_ups: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE message_type = 'inventory.released'")
            .fetch_one(&h.pool)
            .await?;
    assert_eq!(
        follow_ups, 1,
        "failed attempts must not leave emitted messages behind"
    );

    // The broken one: dead-lettered after 3 attempts, through the outbox.
    let (headers, payload): (serde_json::Value, Vec<u8>) =
        sqlx::query_as("SELECT headers, payload FROM outbox WHERE topic = $1")
            .bind(oms_contracts::topics::dlq(&h.topic))
            .fetch_one(&h.pool)
            .await?;
    assert_eq!(payload, broken.encode(), "original value kept");
    let text = headers.to_string();
    assert!(
        text.contains(r#""name":"oms-dlq-attempts","text":"3""#),
        "{text}"
    );
    assert!(
        text.contains(r#""name":"oms-dlq-error-class","text":"handler.exhausted""#),
        "{text}"
    );
    assert!(text.contains("never works"), "{text}");
    // Its id is not in the inbox as handled, so a replay of it would be handled.
    let handled_ids: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM processed_messages WHERE message_id = $1 AND outcome = 'handled'",
    )
    .bind(broken.event_id)
    .fetch_one(&h.pool)
    .await?;
    assert_eq!(handled_ids, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_consumer_resumes_from_its_stored_offset() -> anyhow::Result<()> {
    let h = Harness::new("restart").await?;
    let half = 30;
    for _ in 0..half {
        h.send(&cancelled(OrderId::new())).await?;
    }
    let (token, handle, first) = h.start(Ledger::default(), 3)?;
    h.wait_ledger(half as i64).await?;
    token.cancel();
    handle.await?;
    assert_eq!(first.handled.load(Ordering::Relaxed), half);

    // The stream goes on while no consumer runs.
    for _ in 0..half {
        h.send(&cancelled(OrderId::new())).await?;
    }
    let (token, handle, second) = h.start(Ledger::default(), 3)?;
    h.wait_ledger(2 * half as i64).await?;
    token.cancel();
    handle.await?;

    assert_eq!(h.ledger_count().await?, 2 * half as i64);
    assert_eq!(
        second.handled.load(Ordering::Relaxed),
        half,
        "the restarted consumer handles exactly what came after its stored offset"
    );
    assert_eq!(
        second.duplicates.load(Ordering::Relaxed),
        0,
        "the restarted consumer re-read messages before its stored offset"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_pauses_consumption_instead_of_dead_lettering() -> anyhow::Result<()> {
    let h = Harness::new("dbdown").await?;
    let db: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&h.pool)
        .await?;
    let direct = database_url().options_for(&db)?;
    let proxy =
        CuttableProxy::start(format!("{}:{}", direct.get_host(), direct.get_port())).await?;
    let via_proxy = PgPoolOptions::new()
        .max_connections(3)
        .acquire_timeout(Duration::from_millis(500))
        .connect_with(direct.clone().host("127.0.0.1").port(proxy.port()))
        .await?;

    let (token, handle, stats) = h.start_on(via_proxy, Ledger::default(), 2)?;
    proxy.cut();
    let msg = cancelled(OrderId::new());
    h.send(&msg).await?;
    // Well past max_attempts (2) worth of failures while the database is unreachable...
    eventually(
        Duration::from_secs(60),
        "the consumer to wait out the outage",
        || async { Ok((stats.outage_waits.load(Ordering::Relaxed) >= 5).then_some(())) },
    )
    .await?;
    assert_eq!(
        stats.dead_lettered.load(Ordering::Relaxed),
        0,
        "an outage must not dead-letter"
    );
    assert_eq!(h.ledger_count().await?, 0);

    // ...and once it is back, the same message is handled, with no retry used up.
    proxy.restore();
    h.wait_ledger(1).await?;
    token.cancel();
    handle.await?;
    assert_eq!(stats.handled.load(Ordering::Relaxed), 1);
    assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 0);
    assert_eq!(stats.retries.load(Ordering::Relaxed), 0);
    let dead: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM processed_messages WHERE outcome = 'dead-lettered'",
    )
    .fetch_one(&h.pool)
    .await?;
    assert_eq!(dead, 0);
    Ok(())
}

/// An order-cancelled message numbered `seq` in its detail.
fn numbered(order: OrderId, seq: usize) -> Envelope {
    Envelope::new(
        OrderCancelled {
            order_id: order,
            reason: CancelReason::Timeout,
            detail: Some(seq.to_string()),
            customer_id: None,
        },
        "saga",
        order.0,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_orders_are_settled_in_batches_once_each_and_in_order_per_order() -> anyhow::Result<()>
{
    let h = Harness::new("batches").await?;
    let orders: Vec<OrderId> = (0..20).map(|_| OrderId::new()).collect();
    let p = producer(&brokers())?;
    // Ten messages per order, interleaved across orders, all waiting before the consumer starts
    // so that workers take several at once.
    for seq in 0..10 {
        for order in &orders {
            let env = numbered(*order, seq);
            let headers: Vec<(&str, String)> = env.headers();
            let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            produce(&p, &h.topic, &env.key(), &env.encode(), &hs).await?;
        }
    }
    let (token, handle, stats) = h.start(Ledger::default(), 3)?;
    h.wait_ledger(200).await?;
    token.cancel();
    handle.await?;

    assert_eq!(h.ledger_count().await?, 200, "a message was settled twice");
    assert!(
        stats.batches.load(Ordering::Relaxed) > 0,
        "no transaction settled more than one message"
    );
    // Within each order, messages took effect in the order they were sent.
    let rows: Vec<(uuid::Uuid, String)> =
        sqlx::query_as("SELECT order_id, detail FROM ledger ORDER BY at")
            .fetch_all(&h.pool)
            .await?;
    let mut last: HashMap<uuid::Uuid, usize> = HashMap::new();
    for (order, detail) in rows {
        let seq: usize = detail.parse()?;
        let expected = last.get(&order).map_or(0, |s| s + 1);
        assert_eq!(
            seq, expected,
            "order {order}: message {seq} took effect out of order"
        );
        last.insert(order, seq);
    }
    assert_eq!(last.len(), 20);
    Ok(())
}

/// Members and state of consumer group `group`, as the broker describes it.
fn group_state(group: &str) -> anyhow::Result<(String, usize)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let client: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()?;
    let list = client.fetch_group_list(Some(group), Duration::from_secs(5))?;
    Ok(list
        .groups()
        .iter()
        .find(|g| g.name() == group)
        .map_or((String::new(), 0), |g| {
            (g.state().to_owned(), g.members().len())
        }))
}

/// More members than partitions (replicas of a service over a topic with fewer partitions): one
/// member holds none and stands by; when two leave, the one left takes every partition over and
/// handles what comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spare_member_takes_over_when_the_others_leave() -> anyhow::Result<()> {
    let h = Harness::new("spare").await?;
    let mut members: Vec<Running> = (0..3)
        .map(|_| h.start_member())
        .collect::<anyhow::Result<_>>()?;
    // Two partitions, three members: once the group is stable, one member holds none.
    let stable = |n: usize| {
        let group = h.group.clone();
        move || {
            let group = group.clone();
            async move {
                let (state, members) =
                    tokio::task::spawn_blocking(move || group_state(&group)).await??;
                Ok((state == "Stable" && members == n).then_some(()))
            }
        }
    };
    eventually(
        Duration::from_secs(60),
        "the group stable with three members",
        stable(3),
    )
    .await?;
    h.send(&cancelled(OrderId::new())).await?;
    h.wait_ledger(1).await?;
    // Two leave (cleanly: the group rebalances at once); the one left takes both partitions.
    let spare = members.pop().ok_or_else(|| anyhow::anyhow!("no member"))?;
    for (token, handle, _) in members {
        token.cancel();
        handle.await?;
    }
    eventually(
        Duration::from_secs(60),
        "the group stable with one member",
        stable(1),
    )
    .await?;
    for _ in 0..4 {
        h.send(&cancelled(OrderId::new())).await?;
    }
    h.wait_ledger(5).await?;
    let (token, handle, stats) = spare;
    token.cancel();
    handle.await?;
    assert!(
        stats.handled.load(Ordering::Relaxed) >= 4,
        "the spare handled too little"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_forgets_only_what_is_older_than_its_retention() -> anyhow::Result<()> {
    let h = Harness::new("prune").await?;
    let (old, recent) = (cancelled(OrderId::new()), cancelled(OrderId::new()));
    h.send(&old).await?;
    h.send(&recent).await?;
    let (token, handle, stats) = h.start(Ledger::default(), 3)?;
    h.wait_ledger(2).await?;
    token.cancel();
    handle.await?;
    // One settled two hours ago, one just now.
    sqlx::query(
        "UPDATE processed_messages SET processed_at = clock_timestamp() - interval '2 hours' \
         WHERE message_id = $1",
    )
    .bind(old.event_id)
    .execute(&h.pool)
    .await?;
    let remembered = || async {
        let ids: Vec<Uuid> =
            sqlx::query_scalar("SELECT message_id FROM processed_messages ORDER BY processed_at")
                .fetch_all(&h.pool)
                .await?;
        Ok::<_, anyhow::Error>(ids)
    };
    assert_eq!(remembered().await?, [old.event_id, recent.event_id]);

    let hour = Duration::from_secs(3600);
    assert_eq!(oms_runtime::inbox::prune(&h.pool, hour, 10).await?, 1);
    assert_eq!(remembered().await?, [recent.event_id]);
    assert_eq!(oms_runtime::inbox::prune(&h.pool, hour, 10).await?, 0);

    // The recent one delivered again is still recognised; nothing changes.
    h.send(&recent).await?;
    let sentinel = cancelled(OrderId::new());
    h.send(&sentinel).await?;
    let (token, handle, again) = h.start(Ledger::default(), 3)?;
    h.wait_ledger(3).await?;
    eventually(
        Duration::from_secs(20),
        "the duplicate to be skipped",
        || async { Ok((again.duplicates.load(Ordering::Relaxed) >= 1).then_some(())) },
    )
    .await?;
    token.cancel();
    handle.await?;
    assert_eq!(h.ledger_count().await?, 3, "the duplicate changed state");
    assert_eq!(stats.duplicates.load(Ordering::Relaxed), 0);
    Ok(())
}
