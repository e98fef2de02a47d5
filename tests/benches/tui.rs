//! `omsctl tui` responsiveness: prints figures, asserts nothing (these machines are shared and
//! noisy).
//!
//! The release `omsctl tui` runs in tmux against the six services (in-process, release build);
//! the time from a key press (`tmux send-keys`) to the screen showing the switched view
//! (`tmux capture-pane`, polled every 5 ms, so figures include up to ~5 ms of polling) is
//! measured 30 times. Side by side: an empty database and no load (baseline), then 10,000 sagas
//! in the saga database with orders flowing as fast as the stack takes them.
//! Needs the stack, tmux and a release omsctl: `scripts/bench.sh tui`.

use std::process::Command;
use std::time::{Duration, Instant};

use oms_tests::stack::{Service, Stack, StackOptions};
use oms_tests::unique;
use serde_json::json;

const PRESSES: usize = 30;

fn tmux(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("tmux").args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "tmux {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn wait_for(session: &str, needle: &str, within: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        if tmux(&["capture-pane", "-p", "-t", session])?.contains(needle) {
            return Ok(start.elapsed());
        }
        anyhow::ensure!(
            start.elapsed() < within,
            "{needle:?} not on screen after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn measure(stack: &Stack) -> anyhow::Result<Vec<f64>> {
    let bin = std::env::var("OMS_OMSCTL_BIN").unwrap_or_else(|_| "target/release/omsctl".into());
    let dir = tempfile::tempdir()?;
    let mut env = stack.omsctl_env()?;
    env.push(("OMS_STATE_DIR".to_owned(), dir.path().display().to_string()));
    let env: Vec<String> = env.into_iter().map(|(k, v)| format!("{k}='{v}'")).collect();
    let session = format!("bench-tui-{}", unique());
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "160",
        "-y",
        "45",
        &format!("env {} {bin} tui", env.join(" ")),
    ])?;
    let result = async {
        wait_for(&session, "sagas by state", Duration::from_secs(30)).await?;
        wait_for(&session, "LIVE", Duration::from_secs(30)).await?;
        let mut ms = Vec::new();
        for i in 0..PRESSES {
            let (key, needle) = if i % 2 == 0 {
                ("2", "recent sagas")
            } else {
                ("1", "sagas by state")
            };
            tmux(&["send-keys", "-t", &session, key])?;
            ms.push(
                wait_for(&session, needle, Duration::from_secs(10))
                    .await?
                    .as_secs_f64()
                    * 1000.0,
            );
            tokio::time::sleep(Duration::from_millis(137)).await;
        }
        anyhow::Ok(ms)
    }
    .await;
    let _ = tmux(&["kill-session", "-t", &session]);
    let mut ms = result?;
    ms.sort_by(f64::total_cmp);
    Ok(ms)
}

fn line(name: &str, ms: &[f64]) -> (f64, f64) {
    let pct = |p: f64| {
        ms.get(((ms.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "{name:<44} {:>8.1} {:>8.1} {:>8.1}",
        pct(0.5),
        pct(0.99),
        ms.last().copied().unwrap_or(f64::NAN)
    );
    (pct(0.5), pct(0.99))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!(
        "tui: key press to switched view on screen, {PRESSES} presses (ms, includes ≤5 ms polling)"
    );
    println!("{:<44} {:>8} {:>8} {:>8}", "setting", "p50", "p99", "max");

    let quiet = Stack::start(StackOptions::default()).await?;
    let base = measure(&quiet).await?;
    let (b50, b99) = line("empty database, no orders (baseline)", &base);
    quiet.shutdown().await?;

    let busy = Stack::start(StackOptions::default()).await?;
    for p in [
        "mouse-01",
        "keyboard-01",
        "hub-01",
        "monitor-27",
        "stand-01",
    ] {
        busy.set_stock(p, 1_000_000).await?;
    }
    let saga_db = busy.pool(Service::Saga).await?;
    sqlx::query(
        "WITH seed AS (SELECT gen_random_uuid() AS id, g FROM generate_series(1, 10000) g) \
         INSERT INTO sagas (order_id, state, customer_id, deadline_at, data, created_at, updated_at) \
         SELECT id, 'CONFIRMED', 'seed', NULL, jsonb_build_object( \
           'orderId', id, 'correlationId', id, 'state', 'CONFIRMED', 'customerId', 'seed', \
           'paymentToken', 'tok_visa', 'items', jsonb_build_array(jsonb_build_object('productId', 'mouse-01', 'quantity', 1)), \
           'lines', '[]'::jsonb, 'total', NULL, 'paymentId', NULL, 'cancelReason', NULL, 'cancelDetail', NULL, \
           'paymentRequested', true, 'refundRequested', false, 'deadlineAt', NULL), \
           now() - make_interval(secs => g), now() - make_interval(secs => g) FROM seed",
    )
    .execute(&saga_db)
    .await?;
    let load = {
        let http = busy.http.clone();
        let url = format!("{}/orders", busy.url(Service::Order)?);
        tokio::spawn(async move {
            let one = || {
                let http = http.clone();
                let url = url.clone();
                async move {
                    let _ = http
                        .post(&url)
                        .json(&json!({"items": [{"productId": "mouse-01", "quantity": 1}]}))
                        .send()
                        .await;
                }
            };
            loop {
                futures::future::join_all((0..8).map(|_| one())).await;
            }
        })
    };
    let started = Instant::now();
    let before = busy.get(Service::Saga, "/sagas/summary").await?;
    let loaded = measure(&busy).await?;
    let after = busy.get(Service::Saga, "/sagas/summary").await?;
    load.abort();
    let total = |v: &serde_json::Value| -> i64 {
        v["byState"]
            .as_object()
            .map(|m| m.values().filter_map(|n| n.as_i64()).sum())
            .unwrap_or(0)
    };
    let rate = (total(&after) - total(&before)) as f64 / started.elapsed().as_secs_f64();
    let (l50, l99) = line(
        &format!("10,000 sagas, {rate:.0} orders/s accepted"),
        &loaded,
    );
    println!(
        "ratio loaded/baseline: p50 {:.2}x, p99 {:.2}x",
        l50 / b50,
        l99 / b99
    );
    busy.shutdown().await?;
    Ok(())
}
