//! Saga latency benchmark: prints figures, asserts nothing (these machines are shared and noisy).
//!
//! 200 orders (10 in flight at a time) through all five services in-process on the local stack's
//! PostgreSQL and broker; latency is the order's `completedAt - createdAt` (accepted to
//! CONFIRMED, both on the order service's clock). Runs with consumers' `fetch.wait.max.ms` at our
//! default (20 ms) and at librdkafka's default (500 ms) side by side.
//! Needs the stack: `scripts/bench.sh saga`.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use oms_tests::stack::{Service, Stack, StackOptions};
use serde_json::json;

const ORDERS: usize = 200;
const IN_FLIGHT: usize = 10;
const PRODUCTS: [&str; 5] = [
    "mouse-01",
    "keyboard-01",
    "hub-01",
    "monitor-27",
    "stand-01",
];

struct Figures {
    p50: f64,
    p99: f64,
    max: f64,
    per_second: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

async fn run(fetch_wait: Duration) -> anyhow::Result<Figures> {
    let stack = Stack::start(StackOptions {
        fetch_wait,
        ..StackOptions::default()
    })
    .await?;
    for p in PRODUCTS {
        stack.set_stock(p, 100_000).await?;
    }
    // Warm up: consumer groups assigned, connections open.
    for _ in 0..5 {
        let id = stack
            .place(json!({"items": [{"productId": "mouse-01", "quantity": 1}]}))
            .await?;
        stack.finished(&id, Duration::from_secs(60)).await?;
    }
    let started = Instant::now();
    let results: Vec<anyhow::Result<f64>> = futures::stream::iter(0..ORDERS)
        .map(|i| {
            let stack = &stack;
            async move {
                let id = stack
                    .place(json!({
                        "customerId": format!("bench-{i}"),
                        "items": [{"productId": PRODUCTS[i % PRODUCTS.len()], "quantity": 1}],
                    }))
                    .await?;
                let done = stack.finished(&id, Duration::from_secs(120)).await?;
                anyhow::ensure!(done["status"] == "CONFIRMED", "{done}");
                let at = |f: &str| -> anyhow::Result<DateTime<Utc>> {
                    Ok(serde_json::from_value(done[f].clone())?)
                };
                Ok((at("completedAt")? - at("createdAt")?).as_seconds_f64() * 1000.0)
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let mut ms: Vec<f64> = results.into_iter().collect::<anyhow::Result<_>>()?;
    ms.sort_by(f64::total_cmp);
    let _ = stack.get(Service::Saga, "/sagas/summary").await?;
    stack.shutdown().await?;
    Ok(Figures {
        p50: percentile(&ms, 0.50),
        p99: percentile(&ms, 0.99),
        max: ms.last().copied().unwrap_or(f64::NAN),
        per_second: ORDERS as f64 / elapsed.as_secs_f64(),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!("saga: {ORDERS} orders, {IN_FLIGHT} in flight, accepted -> CONFIRMED");
    let ours = run(oms_runtime::kafka::DEFAULT_FETCH_WAIT).await?;
    let baseline = run(Duration::from_millis(500)).await?;
    println!(
        "{:<28} {:>9} {:>9} {:>9} {:>10}",
        "consumer fetch wait", "p50 ms", "p99 ms", "max ms", "orders/s"
    );
    for (name, f) in [
        ("20 ms (default)", &ours),
        ("500 ms (librdkafka)", &baseline),
    ] {
        println!(
            "{name:<28} {:>9.1} {:>9.1} {:>9.1} {:>10.1}",
            f.p50, f.p99, f.max, f.per_second
        );
    }
    println!(
        "ratio baseline/default: p50 {:.1}x, p99 {:.1}x",
        baseline.p50 / ours.p50,
        baseline.p99 / ours.p99
    );
    Ok(())
}
