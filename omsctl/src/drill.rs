//! `omsctl drill list | run NAME|FILE [--short] [--report FILE]`: scripted chaos drills with a
//! verdict.
//!
//! A drill is a TOML file (`scripts/drills/*.toml`): a hypothesis, steady-state probes checked
//! before and after, setup steps, a load (orders per second for a duration, item mix, payment
//! tokens, or a burst of concurrent buyers), a method (omsctl commands at given times), rollbacks
//! that always run (Ctrl-C included), and the verification. The run ends with a verdict table
//! and a JSON report: orders created, confirmed, cancelled by reason, lost (accepted but not
//! finished by the deadline), charges without a confirmed order, new dead letters, the
//! invariant checks of `omsctl verify`, time to recover, and the ids of affected orders. Exit 0
//! only when the hypothesis held.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use oms_contracts::api::{OrderAccepted, OrderStatus, OrderView, Readiness};

use crate::ctx::{self, cell, opt, table, Ctx, Svc};
use crate::{topics, verify, Failure};

#[derive(Debug, clap::Subcommand)]
pub enum DrillCommand {
    /// The drills shipped in scripts/drills.
    List,
    /// Run a drill by name or file.
    Run {
        /// A name from `drill list`, or a path to a TOML file.
        drill: String,
        /// The short form (small load, short durations), as CI runs it.
        #[arg(long)]
        short: bool,
        /// Write the JSON report here too.
        #[arg(long)]
        report: Option<PathBuf>,
    },
}

/// A drill file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drill {
    /// Name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// What must hold.
    pub hypothesis: String,
    /// Probes before and after: `services-ready`, `no-faults`, `dlq-empty`, `outbox-backlog<N>`.
    #[serde(default)]
    pub steady_state: Vec<String>,
    /// Steps before the load (same syntax as method actions).
    #[serde(default)]
    pub setup: Vec<String>,
    /// The load.
    pub load: LoadSpec,
    /// Faults and steps at given times.
    #[serde(default)]
    pub method: Vec<StepSpec>,
    /// Always run at the end.
    #[serde(default)]
    pub rollback: Vec<String>,
    /// What is checked.
    pub verify: VerifySpec,
    /// Overrides for the short form.
    #[serde(default)]
    pub short: Option<ShortSpec>,
}

/// The load of a drill.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    /// Orders per second.
    #[serde(default)]
    pub rate: f64,
    /// For how long.
    #[serde(default = "zero")]
    pub duration: String,
    /// Instead of a rate: this many orders at once.
    #[serde(default)]
    pub burst: u32,
    /// Lines to choose from, `PRODUCT:QTY`; each order takes one at random.
    pub items: Vec<String>,
    /// Payment tokens to choose from (default tok_visa).
    #[serde(default)]
    pub tokens: Vec<String>,
    /// Requests in flight at most.
    #[serde(default = "eight")]
    pub concurrency: usize,
}

fn zero() -> String {
    "0s".into()
}

fn eight() -> usize {
    8
}

/// One step of the method.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// When, from the start of the load.
    pub at: String,
    /// What: `chaos …`, `dlq …` (any omsctl command), `stock PRODUCT N` or `wait-ready`.
    pub action: String,
}

/// The verification of a drill.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySpec {
    /// Every accepted order must be finished this long after the load and method are done.
    pub deadline: String,
    /// At most this many lost orders (0 unless the drill says otherwise).
    #[serde(default)]
    pub max_lost: u64,
    /// Exactly this many confirmed, when given.
    #[serde(default)]
    pub confirmed: Option<u64>,
    /// At most this many new dead letters, when given.
    #[serde(default)]
    pub max_dlq: Option<i64>,
    /// At least this many new dead letters, when given (drills that poison on purpose).
    #[serde(default)]
    pub min_dlq: Option<i64>,
    /// At most this many orders refused at the door (HTTP errors), when given.
    #[serde(default)]
    pub max_refused: Option<u64>,
}

/// Short-form overrides.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShortSpec {
    /// Orders per second.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Load duration.
    #[serde(default)]
    pub duration: Option<String>,
    /// Burst size.
    #[serde(default)]
    pub burst: Option<u32>,
    /// A replacement method.
    #[serde(default)]
    pub method: Option<Vec<StepSpec>>,
    /// A replacement deadline.
    #[serde(default)]
    pub deadline: Option<String>,
    /// Replacement expectation of confirmed orders.
    #[serde(default)]
    pub confirmed: Option<u64>,
    /// Replacement minimum of new dead letters.
    #[serde(default)]
    pub min_dlq: Option<i64>,
}

/// Where the shipped drills live: `OMS_ROOT/scripts/drills`, else found upwards.
fn drills_dir() -> Option<PathBuf> {
    let mut starts: Vec<PathBuf> = Vec::new();
    if let Ok(root) = std::env::var("OMS_ROOT") {
        starts.push(PathBuf::from(root));
    }
    if let Ok(cwd) = std::env::current_dir() {
        starts.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        starts.push(exe);
    }
    starts.into_iter().find_map(|s| {
        s.ancestors()
            .map(|d| d.join("scripts/drills"))
            .find(|d| d.is_dir())
    })
}

/// Parses a drill file; errors name the file and line.
pub fn parse(path: &Path, text: &str) -> Result<Drill, Failure> {
    let drill: Drill = toml::from_str(text).map_err(|e| {
        let at = e
            .span()
            .map(|s| {
                let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                format!(" line {line}:")
            })
            .unwrap_or_default();
        Failure::usage(format!(
            "drill file {}:{at} {}",
            path.display(),
            e.message()
        ))
    })?;
    let bad = |what: String| Failure::usage(format!("drill file {}: {what}", path.display()));
    for d in [&drill.load.duration, &drill.verify.deadline] {
        ctx::duration(d).map_err(bad)?;
    }
    for s in drill.method.iter().chain(
        drill
            .short
            .as_ref()
            .and_then(|s| s.method.as_ref())
            .into_iter()
            .flatten(),
    ) {
        ctx::duration(&s.at).map_err(bad)?;
        check_action(&s.action).map_err(bad)?;
    }
    for a in drill.setup.iter().chain(&drill.rollback) {
        check_action(a).map_err(bad)?;
    }
    for p in &drill.steady_state {
        probe_kind(p).map_err(bad)?;
    }
    if drill.load.items.is_empty() {
        return Err(bad("load.items needs at least one PRODUCT:QTY".into()));
    }
    for item in &drill.load.items {
        let ok = match item.split_once(':') {
            Some((p, q)) => !p.is_empty() && q.parse::<u32>().is_ok_and(|q| q >= 1),
            None => !item.is_empty(),
        };
        if !ok {
            return Err(bad(format!(
                "load.items: {item:?} is not PRODUCT[:QTY] with QTY at least 1"
            )));
        }
    }
    if drill.load.burst == 0 && drill.load.rate <= 0.0 {
        return Err(bad("load needs a rate above 0 or a burst".into()));
    }
    Ok(drill)
}

fn check_action(action: &str) -> Result<(), String> {
    let words: Vec<&str> = action.split_whitespace().collect();
    match words.first().copied() {
        Some("chaos") | Some("dlq") | Some("wait-ready") => Ok(()),
        Some("stock") if words.len() == 3 && words[2].parse::<i64>().is_ok() => Ok(()),
        _ => Err(format!(
            "unknown action {action:?} (expected `chaos …`, `dlq …`, `stock PRODUCT N` or `wait-ready`)"
        )),
    }
}

enum Probe {
    Ready,
    NoFaults,
    DlqEmpty,
    Backlog(i64),
}

fn probe_kind(p: &str) -> Result<Probe, String> {
    match p {
        "services-ready" => Ok(Probe::Ready),
        "no-faults" => Ok(Probe::NoFaults),
        "dlq-empty" => Ok(Probe::DlqEmpty),
        other => other
            .strip_prefix("outbox-backlog<")
            .and_then(|n| n.parse().ok())
            .map(Probe::Backlog)
            .ok_or_else(|| {
                format!("unknown probe {other:?} (services-ready, no-faults, dlq-empty, outbox-backlog<N>)")
            }),
    }
}

pub async fn run(ctx: &Ctx, command: DrillCommand) -> Result<(), Failure> {
    match command {
        DrillCommand::List => {
            let dir = drills_dir().ok_or_else(|| {
                Failure::usage("scripts/drills not found: run from the repository or set OMS_ROOT")
            })?;
            let mut rows = Vec::new();
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(|e| Failure::usage(format!("{}: {e}", dir.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            entries.sort();
            for p in entries {
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| Failure::usage(format!("{}: {e}", p.display())))?;
                let d = parse(&p, &text)?;
                rows.push(json!({"name": d.name, "description": d.description, "hypothesis": d.hypothesis, "file": p.display().to_string()}));
            }
            let value = Value::Array(rows.clone());
            ctx.print(&value, || {
                let mut t = table(&["DRILL", "HYPOTHESIS"]);
                for r in &rows {
                    t.add_row([cell(&r["name"]), cell(&r["hypothesis"])]);
                }
                t.to_string()
            })
        }
        DrillCommand::Run {
            drill,
            short,
            report,
        } => {
            let path = if Path::new(&drill).is_file() {
                PathBuf::from(&drill)
            } else {
                drills_dir()
                    .map(|d| d.join(format!("{drill}.toml")))
                    .filter(|p| p.is_file())
                    .ok_or_else(|| {
                        Failure::usage(format!("no drill {drill:?} (see `omsctl drill list`)"))
                    })?
            };
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
            let d = parse(&path, &text)?;
            execute(ctx, d, short, report.as_deref()).await
        }
    }
}

fn say(line: impl std::fmt::Display) {
    eprintln!("[drill {}] {line}", chrono::Utc::now().format("%H:%M:%S"));
}

/// Runs another omsctl command with the same settings; its output goes to the progress lines.
async fn omsctl(ctx: &Ctx, args: &[&str]) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.env("OMS_BROKERS", &ctx.brokers)
        .env("OMS_TOPIC_PREFIX", ctx.topics.prefix())
        .env("OMS_STATE_DIR", &ctx.state_dir);
    for svc in Svc::all() {
        cmd.env(
            format!("OMS_{}_URL", svc.name().to_uppercase()),
            ctx.url(svc),
        );
    }
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

async fn act(ctx: &Ctx, action: &str) -> Result<(), String> {
    let words: Vec<&str> = action.split_whitespace().collect();
    say(format!("step: {action}"));
    match words.as_slice() {
        ["stock", product, n] => {
            let n: i64 = n.parse().map_err(|_| format!("bad stock {n}"))?;
            let url = format!("{}/products/{product}/stock", ctx.url(Svc::Inventory));
            let r = reqwest::Client::new()
                .put(url)
                .json(&json!({"available": n}))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if !r.status().is_success() {
                return Err(format!("setting stock of {product}: {}", r.status()));
            }
            Ok(())
        }
        ["wait-ready"] => {
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
        _ => omsctl(ctx, &words).await,
    }
}

async fn probe(ctx: &Ctx, p: &Probe) -> Result<(), String> {
    match p {
        Probe::Ready => {
            for svc in Svc::all() {
                match ctx.get_opt::<Readiness>(svc, "/health/ready").await {
                    Ok(Some(r)) if r.is_ready() => {}
                    _ => return Err(format!("{} not ready", svc.name())),
                }
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
                let r: Option<Readiness> = ctx.get_opt(svc, "/health/ready").await.ok().flatten();
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
async fn quiescent(ctx: &Ctx) -> Result<(), String> {
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
        return Err(format!("consumer lag {lag}"));
    }
    Ok(())
}

async fn dlq_total(ctx: &Ctx) -> Result<i64, String> {
    let brokers = ctx.brokers.clone();
    let wanted = ctx.dlq_topics();
    let rows = tokio::task::spawn_blocking(move || topics::list(&brokers, &wanted, &[]))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|f| f.error.to_string())?;
    Ok(rows.iter().map(|r| r.messages).sum())
}

/// How long after `since` every order in `ids` was finished (polled every 250 ms, for at most
/// ten minutes).
async fn recovery(ctx: Arc<Ctx>, ids: Vec<String>, since: Instant) -> Option<Duration> {
    let mut open = ids;
    while since.elapsed() < Duration::from_secs(600) {
        let mut still = Vec::new();
        for id in open {
            match ctx
                .get_opt::<OrderView>(Svc::Order, &format!("/orders/{id}"))
                .await
            {
                Ok(Some(o)) if o.status != OrderStatus::Pending => {}
                _ => still.push(id),
            }
        }
        if still.is_empty() {
            return Some(since.elapsed());
        }
        open = still;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

/// When the load and method ended, the steps that failed, and the recovery watcher.
type MethodDone = (
    Instant,
    Vec<String>,
    tokio::task::JoinHandle<Option<Duration>>,
);

/// What the load did.
#[derive(Default)]
struct Placed {
    ids: Vec<String>,
    refused: BTreeMap<String, u64>,
}

async fn load(
    ctx: Arc<Ctx>,
    spec: LoadSpec,
    rate: f64,
    duration: Duration,
    burst: u32,
    placed: Arc<Mutex<Placed>>,
) {
    let count = if burst > 0 {
        burst as usize
    } else {
        (rate * duration.as_secs_f64()).round() as usize
    };
    let started = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(if burst > 0 {
        burst as usize
    } else {
        spec.concurrency.max(1)
    }));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        if burst == 0 {
            let due = started + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let Ok(permit) = Arc::clone(&gate).acquire_owned().await else {
            break;
        };
        let item = spec.items[fastrand::usize(0..spec.items.len())].clone();
        let token = if spec.tokens.is_empty() {
            "tok_visa".to_owned()
        } else {
            spec.tokens[fastrand::usize(0..spec.tokens.len())].clone()
        };
        let (product, qty) = item.split_once(':').unwrap_or((item.as_str(), "1"));
        let body = crate::order::body(
            &[(product.to_owned(), qty.parse::<u32>().unwrap_or(1))],
            Some(&format!("drill-{i}")),
            Some(&token),
        );
        let ctx = Arc::clone(&ctx);
        let placed = Arc::clone(&placed);
        tasks.spawn(async move {
            let result = ctx.post(Svc::Order, "/orders", &body, &[]).await;
            let mut p = placed.lock().await;
            match result {
                Ok((s, v)) if s.is_success() => match OrderAccepted::deserialize(&v) {
                    Ok(a) => p.ids.push(a.order_id.to_string()),
                    Err(e) => {
                        *p.refused
                            .entry(format!("unreadable answer: {e}"))
                            .or_default() += 1
                    }
                },
                Ok((s, _)) => *p.refused.entry(format!("HTTP {}", s.as_u16())).or_default() += 1,
                Err(_) => {
                    *p.refused
                        .entry("order service unreachable".into())
                        .or_default() += 1
                }
            }
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
}

async fn rollback(ctx: &Ctx, d: &Drill) {
    for a in &d.rollback {
        if let Err(e) = act(ctx, a).await {
            say(format!("rollback {a:?} failed: {e}"));
        }
    }
}

async fn execute(ctx: &Ctx, d: Drill, short: bool, report: Option<&Path>) -> Result<(), Failure> {
    let started_at = chrono::Utc::now();
    let s = d.short.clone().filter(|_| short);
    let rate = s.as_ref().and_then(|s| s.rate).unwrap_or(d.load.rate);
    let duration = ctx::duration(
        s.as_ref()
            .and_then(|s| s.duration.clone())
            .as_deref()
            .unwrap_or(&d.load.duration),
    )
    .map_err(Failure::usage)?;
    let burst = s.as_ref().and_then(|s| s.burst).unwrap_or(d.load.burst);
    let method = s
        .as_ref()
        .and_then(|s| s.method.clone())
        .unwrap_or_else(|| d.method.clone());
    let deadline = ctx::duration(
        s.as_ref()
            .and_then(|s| s.deadline.clone())
            .as_deref()
            .unwrap_or(&d.verify.deadline),
    )
    .map_err(Failure::usage)?;
    let expect_confirmed = s.as_ref().and_then(|s| s.confirmed).or(d.verify.confirmed);
    let min_dlq = s.as_ref().and_then(|s| s.min_dlq).or(d.verify.min_dlq);
    say(format!(
        "{}{}: {}",
        d.name,
        if short { " (short form)" } else { "" },
        d.hypothesis
    ));

    let probes: Vec<Probe> = d
        .steady_state
        .iter()
        .filter_map(|p| probe_kind(p).ok())
        .collect();
    let mut before = Vec::new();
    for (p, name) in probes.iter().zip(&d.steady_state) {
        if let Err(e) = probe(ctx, p).await {
            before.push(format!("{name}: {e}"));
        }
    }
    if !before.is_empty() {
        return Err(Failure::verdict(format!(
            "steady state not met before the drill: {}",
            before.join("; ")
        )));
    }
    let dlq_before = dlq_total(ctx).await.map_err(Failure::usage)?;

    let ctx_arc = Arc::new(ctx.clone());
    let placed = Arc::new(Mutex::new(Placed::default()));
    let outcome: Result<MethodDone, Failure> = async {
        for a in &d.setup {
            act(ctx, a).await.map_err(Failure::verdict)?;
        }
        say(format!(
            "load: {}",
            if burst > 0 {
                format!("{burst} orders at once")
            } else {
                format!("{rate}/s for {}", humantime::format_duration(duration))
            }
        ));
        let load_task = tokio::spawn(load(
            Arc::clone(&ctx_arc),
            d.load.clone(),
            rate,
            duration,
            burst,
            Arc::clone(&placed),
        ));
        let t0 = Instant::now();
        let mut errors = Vec::new();
        let mut steps: Vec<(Duration, String)> = method
            .iter()
            .filter_map(|m| ctx::duration(&m.at).ok().map(|at| (at, m.action.clone())))
            .collect();
        steps.sort_by_key(|(at, _)| *at);
        for (at, action) in steps {
            tokio::select! {
                _ = tokio::time::sleep_until((t0 + at).into()) => {}
                _ = tokio::signal::ctrl_c() => return Err(Failure::verdict("interrupted")),
            }
            if let Err(e) = act(ctx, &action).await {
                say(format!("step failed: {e}"));
                errors.push(e);
            }
        }
        // Recovery is timed from here (the last fault undone): until every order accepted so
        // far has finished, measured while the load may still run.
        let faults_over = Instant::now();
        let backlog = placed.lock().await.ids.clone();
        let watcher = tokio::spawn(recovery(Arc::clone(&ctx_arc), backlog, faults_over));
        tokio::select! {
            _ = load_task => {}
            _ = tokio::signal::ctrl_c() => return Err(Failure::verdict("interrupted")),
        }
        say("load and method done; waiting for every order to finish");
        Ok((Instant::now(), errors, watcher))
    }
    .await;

    let (method_done, step_errors, watcher) = match outcome {
        Ok(o) => o,
        Err(e) => {
            rollback(ctx, &d).await;
            return Err(e);
        }
    };

    let ids = placed.lock().await.ids.clone();
    let refused = placed.lock().await.refused.clone();
    let end = method_done + deadline;
    let mut finished: BTreeMap<String, OrderView> = BTreeMap::new();
    let mut recovered_at: Option<Instant> = None;
    loop {
        let open: Vec<String> = ids
            .iter()
            .filter(|id| !finished.contains_key(*id))
            .cloned()
            .collect();
        for id in &open {
            if let Ok(Some(o)) = ctx
                .get_opt::<OrderView>(Svc::Order, &format!("/orders/{id}"))
                .await
            {
                if o.status != OrderStatus::Pending {
                    finished.insert(id.clone(), o);
                }
            }
        }
        if finished.len() == ids.len() {
            recovered_at = Some(Instant::now());
            break;
        }
        if Instant::now() > end {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let lost: Vec<&String> = ids
        .iter()
        .filter(|id| !finished.contains_key(*id))
        .collect();
    let mut confirmed = 0u64;
    let mut cancelled: BTreeMap<String, u64> = BTreeMap::new();
    for o in finished.values() {
        if o.status == OrderStatus::Confirmed {
            confirmed += 1;
        } else {
            *cancelled.entry(opt(o.cancel_reason.as_ref())).or_default() += 1;
        }
    }
    let mut after = Vec::new();
    for (p, name) in probes.iter().zip(&d.steady_state) {
        // The steady state must come back; give it until the deadline.
        let mut last = Err(String::new());
        while Instant::now() <= end + Duration::from_secs(5) {
            last = probe(ctx, p).await;
            if last.is_ok() || matches!(p, Probe::DlqEmpty) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if let Err(e) = last {
            after.push(format!("{name}: {e}"));
        }
    }
    // Let every consumer and outbox drain (a late charge and its refund, say) before judging.
    let quiet_by = Instant::now().max(end) + Duration::from_secs(5);
    loop {
        let drained = quiescent(ctx).await;
        if drained.is_ok() || Instant::now() > quiet_by {
            if let Err(e) = drained {
                say(format!("not quiescent by the deadline: {e}"));
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let dlq_new = dlq_total(ctx).await.map_err(Failure::usage)? - dlq_before;
    let since = (chrono::Utc::now() - started_at)
        .to_std()
        .unwrap_or_default()
        + Duration::from_secs(5);
    let inv = verify::evaluate(
        ctx,
        &verify::VerifyArgs {
            since: Some(since),
            deadline: Duration::from_secs(3600),
            settle: Duration::ZERO,
        },
    )
    .await?;
    let failed_checks: Vec<String> = inv
        .failed()
        .map(|c| {
            let first: Vec<&str> = c.failures.iter().take(3).map(String::as_str).collect();
            format!("{}: {}", c.id.title(), first.join("; "))
        })
        .collect();
    let charged_unconfirmed = inv
        .check(verify::CheckId::NoChargeWithoutOrder)
        .map_or(0, |c| c.failures.len());
    // The watcher gives up at the same deadline; without it, fall back to the final wait.
    let recover_secs = match watcher.await {
        Ok(Some(d)) => Some(d.as_secs_f64()),
        _ => recovered_at.map(|t| t.saturating_duration_since(method_done).as_secs_f64()),
    };

    let mut why = Vec::new();
    if lost.len() as u64 > d.verify.max_lost {
        why.push(format!(
            "{} order(s) lost (not finished {} after the load)",
            lost.len(),
            humantime::format_duration(deadline)
        ));
    }
    if !failed_checks.is_empty() {
        why.push(format!("invariants failed: {}", failed_checks.join(" | ")));
    }
    if !after.is_empty() {
        why.push(format!("steady state not back: {}", after.join("; ")));
    }
    if let Some(n) = expect_confirmed {
        if confirmed != n {
            why.push(format!("{confirmed} confirmed, expected exactly {n}"));
        }
    }
    if let Some(max) = d.verify.max_dlq {
        if dlq_new > max {
            why.push(format!(
                "{dlq_new} new dead letters, at most {max} expected"
            ));
        }
    }
    if let Some(min) = min_dlq {
        if dlq_new < min {
            why.push(format!(
                "{dlq_new} new dead letters, at least {min} expected"
            ));
        }
    }
    if let Some(max) = d.verify.max_refused {
        let n: u64 = refused.values().sum();
        if n > max {
            why.push(format!(
                "{n} order(s) refused at the door, at most {max} expected"
            ));
        }
    }
    if !step_errors.is_empty() {
        why.push(format!("method steps failed: {}", step_errors.join("; ")));
    }
    // Rollbacks always run, after the verification (they may restore what the drill measured).
    rollback(ctx, &d).await;
    let held = why.is_empty();
    let affected: Vec<&String> = lost
        .iter()
        .copied()
        .chain(
            finished
                .iter()
                .filter(|(_, o)| o.status == OrderStatus::Cancelled)
                .map(|(id, _)| id),
        )
        .take(50)
        .collect();
    let doc = json!({
        "drill": d.name,
        "short": short,
        "hypothesis": d.hypothesis,
        "held": held,
        "why": why,
        "startedAt": started_at.to_rfc3339(),
        "orders": {
            "created": ids.len(),
            "refused": refused,
            "confirmed": confirmed,
            "cancelled": cancelled,
            "lost": lost.len(),
        },
        "chargedWithoutConfirmedOrder": charged_unconfirmed,
        "duplicates": {"doubleCharges": charged_unconfirmed, "note": "one payment per order by key; a second charge would show as a payment without a confirmed order"},
        "dlqNew": dlq_new,
        "invariants": inv.to_json(),
        "timeToRecoverSeconds": recover_secs,
        "lostOrders": lost,
        "affectedOrders": affected,
    });
    if let Some(path) = report {
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
            .map_err(|e| Failure::usage(format!("writing {}: {e}", path.display())))?;
    }
    ctx.print(&doc, || {
        let mut t = table(&["VERDICT TABLE", ""]);
        t.add_row([
            "drill".to_string(),
            format!("{}{}", d.name, if short { " (short)" } else { "" }),
        ]);
        t.add_row(["orders created".to_string(), ids.len().to_string()]);
        t.add_row([
            "refused at the door".to_string(),
            refused.values().sum::<u64>().to_string(),
        ]);
        t.add_row(["confirmed".to_string(), confirmed.to_string()]);
        for (r, n) in &cancelled {
            t.add_row([format!("cancelled {r}"), n.to_string()]);
        }
        t.add_row(["LOST".to_string(), lost.len().to_string()]);
        t.add_row([
            "charged without confirmed order".to_string(),
            charged_unconfirmed.to_string(),
        ]);
        t.add_row(["new dead letters".to_string(), dlq_new.to_string()]);
        t.add_row([
            "invariants".to_string(),
            if failed_checks.is_empty() {
                "all PASS".into()
            } else {
                failed_checks.join("\n")
            },
        ]);
        t.add_row([
            "time to recover".to_string(),
            recover_secs
                .map(|s| format!("{s:.1}s"))
                .unwrap_or_else(|| "not recovered".into()),
        ]);
        t.add_row([
            "VERDICT".to_string(),
            if held {
                "HYPOTHESIS HELD".into()
            } else {
                format!("FAILED: {}", why.join("; "))
            },
        ]);
        t.to_string()
    })?;
    if held {
        Ok(())
    } else {
        Err(Failure::verdict(format!(
            "drill {} failed: {}",
            d.name,
            why.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_faulty_drill_file_names_the_line() {
        let text = "name = \"x\"\ndescription = \"d\"\nhypothesis = \"h\"\n[load]\nrate = 1\nitems = [\"mouse-01:1\"]\nspeed = 3\n[verify]\ndeadline = \"10s\"\n";
        let e = parse(Path::new("x.toml"), text).expect_err("unknown field accepted");
        let msg = e.error.to_string();
        assert!(msg.contains("line 7") && msg.contains("speed"), "{msg}");
        let bad_action = "name = \"x\"\ndescription = \"d\"\nhypothesis = \"h\"\n[load]\nrate = 1\nitems = [\"mouse-01:1\"]\n[[method]]\nat = \"1s\"\naction = \"explode\"\n[verify]\ndeadline = \"10s\"\n";
        let e = parse(Path::new("x.toml"), bad_action).expect_err("bad action accepted");
        assert!(
            e.error.to_string().contains("unknown action \"explode\""),
            "{}",
            e.error
        );
        let bad_duration = bad_action
            .replace("explode", "chaos broker stop")
            .replace("\"1s\"", "\"soon\"");
        assert!(parse(Path::new("x.toml"), &bad_duration).is_err());
    }

    #[test]
    fn every_shipped_drill_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/drills");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("scripts/drills exists") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("readable");
            if let Err(e) = parse(&path, &text) {
                panic!("{}: {}", path.display(), e.error);
            }
            n += 1;
        }
        assert_eq!(n, 8, "eight drills ship");
    }
}
