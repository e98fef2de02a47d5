//! Relay benchmark: prints figures, asserts nothing (these machines are shared and noisy).
//!
//! 1. Backlog drain: 10,000 rows already in the outbox, time until the relay has published all.
//! 2. Wake-up latency: single rows enqueued at irregular intervals into an idle relay; latency is
//!    `published_at - created_at` of each row (enqueue to broker ack, both on the database clock).
//!
//! Both run for `notify` (LISTEN/NOTIFY) and `poll:500ms` (the polling design of comparable
//! projects) side by side. Needs the stack: `scripts/bench.sh relay`.

use std::time::{Duration, Instant};

use oms_contracts::messages::{CancelReason, OrderCancelled};
use oms_contracts::{Envelope, OrderId};
use oms_runtime::config::OutboxWakeup;
use oms_runtime::metrics::Metrics;
use oms_runtime::outbox;
use oms_runtime::relay::{Relay, RelayConfig};
use oms_tests::{brokers, fresh_db, fresh_topic};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

const BACKLOG: usize = 10_000;
const KEYS: usize = 100;
const LATENCY_SAMPLES: usize = 100;

fn message(order: OrderId) -> Envelope {
    Envelope::new(
        OrderCancelled {
            order_id: order,
            reason: CancelReason::Timeout,
            detail: None,
            customer_id: None,
        },
        "bench",
        order.0,
    )
}

async fn pending(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE published_at IS NULL AND failed_at IS NULL",
    )
    .fetch_one(pool)
    .await?)
}

fn start(
    pool: &PgPool,
    wakeup: OutboxWakeup,
) -> anyhow::Result<(CancellationToken, tokio::task::JoinHandle<()>)> {
    let mut config = RelayConfig::new("bench", &brokers());
    config.wakeup = wakeup;
    let relay = Relay::new(pool.clone(), config, Metrics::new(|_| {}))?;
    let token = CancellationToken::new();
    let t = token.clone();
    Ok((
        token,
        tokio::spawn(async move {
            if let Err(e) = relay.run(t).await {
                eprintln!("relay failed: {e}");
            }
        }),
    ))
}

async fn drain(wakeup: OutboxWakeup) -> anyhow::Result<f64> {
    let pool = fresh_db("bench_drain").await?;
    let topic = fresh_topic(&brokers(), "bench", 3).await?;
    let keys: Vec<OrderId> = (0..KEYS).map(|_| OrderId::new()).collect();
    for chunk in 0..BACKLOG / 100 {
        let mut tx = pool.begin().await?;
        for i in 0..100 {
            let order = keys[(chunk * 100 + i) % KEYS];
            outbox::enqueue(&mut *tx, &topic, &order.to_string(), &message(order)).await?;
        }
        tx.commit().await?;
    }
    let started = Instant::now();
    let (token, handle) = start(&pool, wakeup)?;
    let deadline = started + Duration::from_secs(300);
    while pending(&pool).await? > 0 {
        anyhow::ensure!(Instant::now() < deadline, "backlog not drained in 300s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    token.cancel();
    handle.await?;
    Ok(BACKLOG as f64 / elapsed)
}

async fn latency(wakeup: OutboxWakeup) -> anyhow::Result<(f64, f64, f64)> {
    let pool = fresh_db("bench_latency").await?;
    let topic = fresh_topic(&brokers(), "bench", 3).await?;
    let (token, handle) = start(&pool, wakeup)?;
    // Warm up: the first delivery also connects the producer.
    let order = OrderId::new();
    outbox::enqueue(&pool, &topic, &order.to_string(), &message(order)).await?;
    while pending(&pool).await? > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sqlx::query("DELETE FROM outbox").execute(&pool).await?;

    // Irregular gaps (a fixed pseudo-random sequence) so polls and enqueues do not line up.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..LATENCY_SAMPLES {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let gap = 20 + seed % 130;
        tokio::time::sleep(Duration::from_millis(gap)).await;
        let order = OrderId::new();
        outbox::enqueue(&pool, &topic, &order.to_string(), &message(order)).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while pending(&pool).await? > 0 {
        anyhow::ensure!(Instant::now() < deadline, "rows not published in 60s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    token.cancel();
    handle.await?;
    let mut ms: Vec<f64> = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM published_at - created_at)::float8 * 1000 FROM outbox",
    )
    .fetch_all(&pool)
    .await?;
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];
    Ok((
        pct(0.5),
        pct(0.99),
        ms.iter().sum::<f64>() / ms.len() as f64,
    ))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; nothing else is accepted.
    let notify = OutboxWakeup::Notify;
    let poll = OutboxWakeup::Poll(Duration::from_millis(500));

    println!("outbox relay benchmark (broker {}, {BACKLOG}-row backlog, {LATENCY_SAMPLES} latency samples)", brokers());
    let drain_notify = drain(notify).await?;
    let drain_poll = drain(poll).await?;
    let (n50, n99, nmean) = latency(notify).await?;
    let (p50, p99, pmean) = latency(poll).await?;

    println!();
    println!(
        "{:<34} {:>14} {:>14} {:>10}",
        "", "notify", "poll:500ms", "ratio"
    );
    println!(
        "{:<34} {:>14.0} {:>14.0} {:>9.2}x",
        "backlog drain (messages/s)",
        drain_notify,
        drain_poll,
        drain_notify / drain_poll
    );
    println!(
        "{:<34} {:>14.1} {:>14.1} {:>9.1}x",
        "enqueue -> ack p50 (ms)",
        n50,
        p50,
        p50 / n50
    );
    println!(
        "{:<34} {:>14.1} {:>14.1} {:>9.1}x",
        "enqueue -> ack p99 (ms)",
        n99,
        p99,
        p99 / n99
    );
    println!(
        "{:<34} {:>14.1} {:>14.1} {:>9.1}x",
        "enqueue -> ack mean (ms)",
        nmean,
        pmean,
        pmean / nmean
    );
    Ok(())
}
