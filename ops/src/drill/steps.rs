//! A drill's steps: actions (omsctl commands, stock, waiting) and probes, each logged in the
//! run's journal.

use super::plan::{Action, Probe};
use super::report::Activity;
use crate::ctx::Ctx;
use crate::topics;
use oms_contracts::api::{OrderView, SetStock};
use oms_contracts::routes;
use oms_contracts::ServiceId as Svc;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) fn say(line: impl std::fmt::Display) {
    eprintln!("[drill {}] {line}", chrono::Utc::now().format("%H:%M:%S"));
}

/// The run's journal: every activity with its start, end, status and output, in the order they
/// ended (the report's `journal`, as Chaos Toolkit records a run).
pub type Journal = Arc<std::sync::Mutex<Vec<Activity>>>;

pub(super) fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Records one finished activity.
pub(super) fn record(
    journal: &Journal,
    phase: &'static str,
    activity: String,
    start: String,
    result: &Result<(), String>,
    mut output: Vec<String>,
) {
    if let Err(e) = result {
        output.push(e.clone());
    }
    let entry = Activity {
        phase: phase.to_owned(),
        activity,
        start,
        end: now_text(),
        status: if result.is_ok() {
            "succeeded"
        } else {
            "failed"
        }
        .to_owned(),
        output,
    };
    journal
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(entry);
}

/// Runs `action` as an activity of `phase`, recorded in the journal.
pub(super) async fn act_logged(
    ctx: &Ctx,
    journal: &Journal,
    phase: &'static str,
    action: &Action,
) -> Result<(), String> {
    let start = now_text();
    let mut output = Vec::new();
    let result = act(ctx, action, &mut output).await;
    record(journal, phase, action.describe(), start, &result, output);
    result
}

/// Runs probe `p` (named `name`) as an activity of `phase`, recorded in the journal.
pub(super) async fn probe_logged(
    ctx: &Ctx,
    journal: &Journal,
    phase: &'static str,
    name: &str,
    p: &Probe,
) -> Result<(), String> {
    let start = now_text();
    let result = probe(ctx, p).await;
    record(journal, phase, name.to_owned(), start, &result, Vec::new());
    result
}

/// Runs another omsctl command with the same settings; its output goes to the progress lines
/// and to `output`.
pub(super) async fn omsctl(
    ctx: &Ctx,
    args: &[&str],
    output: &mut Vec<String>,
) -> Result<(), String> {
    let mut cmd = ctx.omsctl_command().map_err(|e| e.to_string())?;
    let out = cmd
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .output()
        .await
        .map_err(|e| e.to_string())?;
    for line in String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
    {
        say(format!("  {line}"));
        output.push(line.to_owned());
    }
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`omsctl {}` failed ({})",
            args.join(" "),
            out.status
        ))
    }
}

pub(super) async fn act(
    ctx: &Ctx,
    action: &Action,
    output: &mut Vec<String>,
) -> Result<(), String> {
    say(format!("step: {}", action.describe()));
    match action {
        Action::Stock { product, available } => {
            let stock = SetStock {
                available: *available,
            };
            let params = [product.as_str()];
            let request = crate::client::Request::to(&params).body(&stock);
            match ctx
                .call(routes::SET_STOCK, request)
                .await
                .map_err(|f| f.error.to_string())?
            {
                Ok(_) => Ok(()),
                Err(r) => Err(format!("setting stock of {product}: {}", r.status)),
            }
        }
        Action::WaitReady => {
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                if probe(ctx, &Probe::Ready).await.is_ok() {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err("services not ready after 120s".into());
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        Action::Omsctl(words) => {
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            omsctl(ctx, &words, output).await
        }
        Action::Check(name, p) => {
            let result = probe(ctx, p).await;
            let line = match &result {
                Ok(()) => format!("probe {name}: holds"),
                Err(e) => format!("probe {name}: {e}"),
            };
            say(format!("  {line}"));
            output.push(line);
            result.map_err(|e| format!("probe {name}: {e}"))
        }
    }
}

/// p99 in ms of accepted-to-finished over orders finished in `window` before `now`, with
/// how many there were; `None` when none finished.
pub fn p99_of(
    orders: &[OrderView],
    now: chrono::DateTime<chrono::Utc>,
    window: Duration,
) -> Option<(f64, usize)> {
    let since = now - chrono::TimeDelta::from_std(window).unwrap_or_default();
    let mut ms: Vec<f64> = orders
        .iter()
        .filter_map(|o| {
            let done = o.completed_at?;
            (done >= since).then(|| (done - o.created_at).as_seconds_f64() * 1000.0)
        })
        .collect();
    if ms.is_empty() {
        return None;
    }
    ms.sort_by(f64::total_cmp);
    let at = ((ms.len() as f64 - 1.0) * 0.99).round() as usize;
    ms.get(at).map(|p| (*p, ms.len()))
}

pub(super) async fn probe(ctx: &Ctx, p: &Probe) -> Result<(), String> {
    match p {
        Probe::P99Under(max) => {
            let page = ctx
                .page(routes::LIST_ORDERS, &[("limit", "500".to_owned())])
                .await
                .map_err(|f| f.error.to_string())?;
            let window = super::plan::LATENCY_WINDOW;
            match p99_of(&page.items, chrono::Utc::now(), window) {
                None => Err(format!(
                    "no order finished in the last {}",
                    humantime::format_duration(window)
                )),
                Some((ms, _)) if ms < max.as_secs_f64() * 1000.0 => Ok(()),
                Some((ms, n)) => Err(format!(
                    "p99 {:.0} ms over {n} order(s) finished in the last {}, not under {}",
                    ms,
                    humantime::format_duration(window),
                    humantime::format_duration(*max)
                )),
            }
        }
        Probe::Ready => {
            for svc in Svc::all() {
                for base in ctx.urls_of(svc) {
                    match ctx.read_opt_at(routes::HEALTH_READY.of(svc), base).await {
                        Ok(Some(r)) if r.is_ready() => {}
                        _ => return Err(format!("{} at {base} not ready", svc.name())),
                    }
                }
            }
            Ok(())
        }
        Probe::Replicas(n) => {
            for svc in Svc::all() {
                let have = ctx.urls_of(svc).len();
                if have < *n {
                    return Err(format!(
                        "{} has {have} replica(s), {n} wanted (`omsctl stack up --replicas {n}`)",
                        svc.name()
                    ));
                }
            }
            Box::pin(probe(ctx, &Probe::Ready)).await
        }
        Probe::Brokers(n) => {
            let (servers, props) = (ctx.brokers.servers.clone(), ctx.brokers.props.clone());
            let have = tokio::task::spawn_blocking(move || {
                oms_kafka::node::brokers_answering(&servers, &props, Duration::from_secs(5))
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("the broker does not answer: {e}"))?;
            if have < *n {
                return Err(format!(
                    "{have} broker(s) answer, {n} wanted (`omsctl stack up --broker-nodes {n}`)"
                ));
            }
            Ok(())
        }
        Probe::NoFaults => {
            let f = crate::chaos::active(ctx);
            if f.is_empty() {
                Ok(())
            } else {
                Err(format!("faults in force: {}", f.join(", ")))
            }
        }
        Probe::DlqEmpty => match dlq_total(ctx).await {
            Ok(0) => Ok(()),
            Ok(n) => Err(format!("{n} dead letters")),
            Err(e) => Err(e),
        },
        Probe::Backlog(max) => {
            for svc in Svc::all() {
                let r = ctx
                    .read_opt(routes::HEALTH_READY.of(svc), &[])
                    .await
                    .ok()
                    .flatten();
                let n = r.and_then(|r| r.outbox).map_or(i64::MAX, |b| b.pending);
                if n >= *max {
                    return Err(format!("{} outbox backlog {n}", svc.name()));
                }
            }
            Ok(())
        }
    }
}

/// No consumer lag and no outbox backlog anywhere.
pub(super) async fn quiescent(ctx: &Ctx) -> Result<(), String> {
    probe(ctx, &Probe::Backlog(1)).await?;
    let brokers = ctx.brokers.clone();
    let groups = ctx.consumer_groups();
    let wanted = ctx.saga_topics();
    let rows = tokio::task::spawn_blocking(move || topics::list(&brokers, &wanted, &groups))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|f| f.error.to_string())?;
    let lag: i64 = rows.iter().flat_map(|r| r.lag.values()).sum();
    if lag > 0 {
        // Name who is behind where: a drill that fails here says which consumer to look at.
        let behind: Vec<String> = rows
            .iter()
            .flat_map(|r| {
                r.lag
                    .iter()
                    .filter(|(_, l)| **l > 0)
                    .map(move |(g, l)| format!("{g} on {} {l}", r.topic))
            })
            .collect();
        return Err(format!("consumer lag {lag} ({})", behind.join(", ")));
    }
    Ok(())
}

pub(super) async fn dlq_total(ctx: &Ctx) -> Result<i64, String> {
    let brokers = ctx.brokers.clone();
    let wanted = ctx.dlq_topics();
    let rows = tokio::task::spawn_blocking(move || topics::list(&brokers, &wanted, &[]))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|f| f.error.to_string())?;
    Ok(rows.iter().map(|r| r.messages).sum())
}
