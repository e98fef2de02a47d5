//! `omsctl tui`: the live dashboard of saga states.
//!
//! The Elm architecture: [`app`] holds the state and the one `update` function, [`view`] draws
//! it. Keys come from an input thread, data from pollers (one request in flight per source:
//! each poller awaits its answer before it sleeps), and effects (a trace, the DLQ, a replay) run
//! as tasks; all of them send actions over one channel. The terminal is restored on exit and on
//! panic; logs go to a file, never to the screen.

pub mod app;
pub mod input;
pub mod update;
pub mod view;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oms_contracts::routes;
use ratatui::crossterm::event::{self, Event, KeyEvent, KeyEventKind};
use tokio::sync::mpsc;

use app::BrokerNode;
use app::{Action, App, Effect, Health, LagReading, SagaRow, Snapshot, View};
use oms_contracts::ServiceId as Svc;
use oms_ops::ctx::Ctx;
use oms_ops::{dlq, topics, Failure};

/// `omsctl tui` arguments.
#[derive(Debug, clap::Args)]
pub struct TuiArgs {
    /// The view to open on [default: dashboard]; Tab and 1-5 switch views as ever.
    #[arg(value_enum)]
    view: Option<StartView>,
    /// How often data is polled.
    #[arg(long, default_value = "1s", value_parser = oms_ops::args::duration)]
    refresh: Duration,
    /// Log file [default: <state dir>/omsctl-tui.log].
    #[arg(long)]
    log_file: Option<PathBuf>,
}

/// The view `omsctl tui VIEW` opens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StartView {
    /// Saga counts, throughput, health, dead letters and faults (the Overview).
    #[value(alias = "overview")]
    Dashboard,
    /// Recent sagas.
    Sagas,
    /// Dead letters.
    Dlq,
    /// A service's log (local stack).
    Logs,
    /// Consumer lag per group and topic, with its trend.
    Lag,
}

impl StartView {
    /// The dashboard's view it names.
    pub fn view(self) -> View {
        match self {
            StartView::Dashboard => View::Overview,
            StartView::Sagas => View::Sagas,
            StartView::Dlq => View::Dlq,
            StartView::Logs => View::Logs,
            StartView::Lag => View::Lag,
        }
    }
}

impl TuiArgs {
    /// The view the dashboard opens on.
    pub fn start_view(&self) -> View {
        self.view.map_or(View::Overview, StartView::view)
    }
}

enum Msg {
    Key(KeyEvent),
    Action(Action),
    Redraw,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Restores the terminal when dropped (normal exit and early returns; panics are covered by the
/// hook `ratatui::init` installs).
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

fn init_log(path: &std::path::Path) -> Result<(), Failure> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).ok();
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Failure::usage(format!("log file {}: {e}", path.display())))?;
    let _ = tracing_subscriber::fmt()
        .with_writer(Mutex::new(file))
        .with_ansi(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .try_init();
    Ok(())
}

pub async fn run(ctx: &Ctx, args: TuiArgs) -> Result<(), Failure> {
    if !std::io::stdout().is_terminal() {
        return Err(Failure::usage(
            "omsctl tui needs a terminal (stdout is not one)",
        ));
    }
    if args.refresh < Duration::from_millis(100) {
        return Err(Failure::usage("--refresh must be at least 100ms"));
    }
    let log = args
        .log_file
        .clone()
        .unwrap_or_else(|| ctx.state_dir.join("omsctl-tui.log"));
    init_log(&log)?;
    tracing::info!(refresh = ?args.refresh, "tui started");

    let ctx = Arc::new(ctx.clone());
    let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
    let kafka: KafkaSlot = Arc::new(Mutex::new(None));
    tokio::spawn(poll_kafka(
        Arc::clone(&ctx),
        Arc::clone(&kafka),
        args.refresh * 3,
    ));
    tokio::spawn(poll_services(
        Arc::clone(&ctx),
        Arc::clone(&kafka),
        tx.clone(),
        args.refresh,
    ));
    let input_tx = tx.clone();
    std::thread::spawn(move || read_keys(input_tx));

    let mut terminal = ratatui::init();
    let _restore = Restore;
    let mut app = App::new(args.refresh);
    let start = args.start_view();
    if start != View::Overview {
        for effect in update::update(&mut app, Action::Show(start)) {
            spawn_effect(Arc::clone(&ctx), tx.clone(), effect);
        }
    }
    loop {
        terminal
            .draw(|f| view::draw(f, &app, now()))
            .map_err(|e| Failure::usage(format!("drawing: {e}")))?;
        let msg = tokio::select! {
            m = rx.recv() => m,
            _ = tokio::time::sleep(Duration::from_millis(500)) => Some(Msg::Redraw),
        };
        let effects = match msg {
            None => break,
            Some(Msg::Redraw) => Vec::new(),
            Some(Msg::Key(k)) => match input::key_action(&app, k) {
                Some(a) => update::update(&mut app, a),
                None => Vec::new(),
            },
            Some(Msg::Action(a)) => update::update(&mut app, a),
        };
        for effect in effects {
            spawn_effect(Arc::clone(&ctx), tx.clone(), effect);
        }
        if app.quit {
            break;
        }
    }
    tracing::info!("tui stopped");
    Ok(())
}

fn read_keys(tx: mpsc::UnboundedSender<Msg>) {
    loop {
        if tx.is_closed() {
            return;
        }
        match event::poll(Duration::from_millis(50)) {
            Ok(true) => match event::read() {
                Ok(Event::Key(k)) if k.kind == KeyEventKind::Press => {
                    if tx.send(Msg::Key(k)).is_err() {
                        return;
                    }
                }
                Ok(Event::Resize(..)) => {
                    let _ = tx.send(Msg::Redraw);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "reading the terminal");
                    return;
                }
            },
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "polling the terminal");
                return;
            }
        }
    }
}

fn spawn_effect(ctx: Arc<Ctx>, tx: mpsc::UnboundedSender<Msg>, effect: Effect) {
    tokio::spawn(async move {
        let action = match effect {
            Effect::LoadDetail(id) => {
                let result = oms_ops::trace::trace(&ctx, &id)
                    .await
                    .map(Box::new)
                    .map_err(|f| f.error.to_string());
                Action::Detail(id, result)
            }
            Effect::LoadDlq => Action::Dlq(dlq::items(&ctx).await.map_err(|f| f.error.to_string())),
            Effect::Replay(id) => {
                let result = dlq::replay_one(&ctx, &id)
                    .await
                    .map_err(|f| f.error.to_string());
                tracing::info!(entry = %id, ?result, "replay from the tui");
                Action::Replayed(result)
            }
            Effect::Run(args) => {
                let result = run_omsctl(&ctx, &args).await;
                tracing::info!(?args, ?result, "command from the tui");
                Action::Ran(result)
            }
            Effect::LoadLogs(service) => {
                let result = log_tail(&ctx, &service, LOG_LINES);
                Action::Logs(service, result)
            }
            Effect::Copy(text) => {
                // OSC 52: the terminal (and tmux with set-clipboard on) puts it on the clipboard.
                use base64::Engine as _;
                use std::io::Write;
                let encoded = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
                let mut out = std::io::stdout().lock();
                let _ = write!(out, "\x1b]52;c;{encoded}\x07");
                let _ = out.flush();
                return;
            }
        };
        let _ = tx.send(Msg::Action(action));
    });
}

/// Lines of a log the Logs view shows.
const LOG_LINES: usize = 200;

/// Runs omsctl with `args` (the same settings) and sums up how it went in one line.
async fn run_omsctl(ctx: &Ctx, args: &[String]) -> Result<String, String> {
    let mut cmd = ctx.omsctl_command().map_err(|e| e.to_string())?;
    let out = cmd
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| e.to_string())?;
    let last = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(str::to_owned)
    };
    if out.status.success() {
        Ok(format!(
            "omsctl {}: {}",
            args.join(" "),
            last(&out.stdout).unwrap_or_else(|| "done".into())
        ))
    } else {
        Err(last(&out.stderr).unwrap_or_else(|| format!("exited with {}", out.status)))
    }
}

/// The last `n` lines of a service's log on the local stack (replica 1).
fn log_tail(ctx: &Ctx, service: &str, n: usize) -> Result<Vec<String>, String> {
    if ctx.context.target != oms_ops::context::Target::Local {
        return Err("logs are shown for the local stack only (kubectl logs / docker compose logs elsewhere)".into());
    }
    let svc: Svc = service
        .parse()
        .map_err(|e: oms_contracts::topology::UnknownService| e.to_string())?;
    let local = oms_ops::local::Local::open(&ctx.state_dir).map_err(|f| f.error.to_string())?;
    let path = local.log_of(svc, 1);
    let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    Ok(lines[lines.len().saturating_sub(n)..].to_vec())
}

/// What the broker says, fetched less often than the services.
#[derive(Debug, Clone)]
struct KafkaInfo {
    dlq_depth: Vec<(String, i64)>,
    lag: LagReading,
    nodes: Vec<BrokerNode>,
}

/// The broker's last answer, or why there was none (`None`: not asked yet).
type KafkaSlot = Arc<Mutex<Option<Result<KafkaInfo, String>>>>;

/// The Kafka nodes as the panel shows them: each node the local stack runs (so a dead one shows
/// as down), else each one the cluster's metadata names; with the partitions of the OMS topics
/// each leads.
fn broker_nodes(ctx: &Ctx, leaders: Option<&topics::Leaders>) -> Vec<BrokerNode> {
    let local = (ctx.context.target == oms_ops::context::Target::Local)
        .then(|| oms_ops::local::Local::open(&ctx.state_dir).ok())
        .flatten()
        .filter(|_| oms_ops::local::Local::is_recorded(&ctx.state_dir));
    let node = |name: String, id: i32| BrokerNode {
        up: leaders.map(|l| l.brokers.contains(&id)),
        leads: leaders.map_or(0, |l| l.led_by(id)),
        name,
    };
    match (local, leaders) {
        (Some(local), _) => local
            .broker_components()
            .into_iter()
            .filter_map(|c| match c {
                oms_ops::local::Component::Broker(k) => {
                    Some(node(c.name(&local), i32::try_from(k).unwrap_or(-1)))
                }
                _ => None,
            })
            .collect(),
        (None, Some(l)) => l
            .brokers
            .iter()
            .map(|id| node(format!("broker {id}"), *id))
            .collect(),
        (None, None) => Vec::new(),
    }
}

async fn poll_kafka(ctx: Arc<Ctx>, out: KafkaSlot, every: Duration) {
    loop {
        let brokers = ctx.brokers.clone();
        let groups = ctx.consumer_groups();
        let asked = groups.clone();
        let wanted = ctx.topics.all_with_dlq();
        let saga_topics = ctx.saga_topics();
        let prefix = ctx.topics.prefix().to_owned();
        // Awaited to the end: never two broker reads at once. The lag view's numbers come from
        // this same read (no read of its own).
        let result = tokio::task::spawn_blocking(move || {
            let rows = topics::list(&brokers, &wanted, &asked)?;
            Ok::<_, oms_ops::Failure>((rows, topics::leadership(&brokers, &saga_topics).ok()))
        })
        .await;
        let info = match result {
            Ok(Ok((rows, leaders))) => {
                let dlq_depth = rows
                    .iter()
                    .filter(|r| oms_contracts::topics::is_dlq(&r.topic))
                    .map(|r| {
                        (
                            r.topic.strip_prefix(&prefix).unwrap_or(&r.topic).to_owned(),
                            r.messages,
                        )
                    })
                    .collect();
                Ok(KafkaInfo {
                    dlq_depth,
                    lag: LagReading {
                        at: now(),
                        groups: update::lag_by_group(&rows, &groups, &prefix),
                    },
                    nodes: broker_nodes(&ctx, leaders.as_ref()),
                })
            }
            Ok(Err(f)) => {
                tracing::warn!(error = %f.error, "broker poll failed");
                Err(format!("{:#}", f.error).replace('\n', " "))
            }
            Err(e) => {
                tracing::warn!(error = %e, "broker poll task failed");
                Err(format!("reading the broker: {e}"))
            }
        };
        if let Ok(mut slot) = out.lock() {
            *slot = Some(info);
        }
        tokio::time::sleep(every).await;
    }
}

/// A read of the dashboard: its answer, else why not (in two seconds at most).
async fn within<T>(
    svc: Svc,
    read: impl std::future::Future<Output = Result<T, Failure>>,
) -> Result<T, String> {
    match tokio::time::timeout(Duration::from_secs(2), read).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(f)) => Err(f.error.to_string()),
        Err(_) => Err(format!("{} timed out", svc.name())),
    }
}

async fn poll_services(
    ctx: Arc<Ctx>,
    kafka: KafkaSlot,
    tx: mpsc::UnboundedSender<Msg>,
    every: Duration,
) {
    loop {
        let snapshot = snapshot(&ctx, &kafka).await;
        if tx
            .send(Msg::Action(Action::Data(Box::new(snapshot))))
            .is_err()
        {
            return;
        }
        tokio::time::sleep(every).await;
    }
}

async fn snapshot(ctx: &Ctx, kafka: &Mutex<Option<Result<KafkaInfo, String>>>) -> Snapshot {
    let newest = [("limit", "200".to_owned())];
    let (summary, sagas, orders, faults) = tokio::join!(
        within(Svc::Saga, ctx.read(routes::SAGA_SUMMARY, &[])),
        within(Svc::Saga, ctx.page(routes::LIST_SAGAS, &newest)),
        within(Svc::Order, ctx.page(routes::LIST_ORDERS, &newest)),
        within(Svc::Payment, ctx.read(routes::GET_GATEWAY_FAULTS, &[])),
    );
    let health = futures::future::join_all(Svc::all().map(|svc| async move {
        // Readiness probes the broker for up to 2 s itself: allow it more than that.
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            ctx.read_opt(routes::HEALTH_READY.of(svc), &[]),
        )
        .await;
        (svc, r)
    }))
    .await;
    let fetched_at = now();
    let mut errors = Vec::new();
    let (kafka, broker_error) = match kafka.lock().ok().and_then(|k| k.clone()) {
        Some(Ok(k)) => (Some(k), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };

    let mut s = Snapshot {
        fetched_at,
        dlq_depth: kafka.as_ref().map(|k| k.dlq_depth.clone()),
        lag: kafka.as_ref().map(|k| k.lag.clone()),
        broker_error,
        brokers: kafka
            .as_ref()
            .map_or_else(|| broker_nodes(ctx, None), |k| k.nodes.clone()),
        ..Snapshot::default()
    };
    match summary {
        Ok(v) => {
            s.by_state = v.by_state.into_iter().collect();
            s.by_fulfillment_state = v.by_fulfillment_state.into_iter().collect();
            s.stuck = v.stuck;
        }
        Err(_) => errors.push("saga".to_owned()),
    }
    if let Ok(page) = sagas {
        s.sagas = page
            .items
            .into_iter()
            .map(|r| SagaRow {
                order_id: r.order_id.to_string(),
                state: r.state.to_string(),
                created_at: r
                    .created_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                age_secs: (fetched_at as i64 - r.created_at.timestamp()).max(0),
                last_step: r.last_step.unwrap_or_default(),
                customer: r.customer_id.to_string(),
                total: oms_ops::render::opt(r.total),
                stuck: r.stuck,
                shipment: r
                    .fulfillment
                    .map(|f| f.state.to_string())
                    .unwrap_or_default(),
            })
            .collect();
    }
    match orders {
        Ok(page) => {
            let mut ms: Vec<f64> = page
                .items
                .iter()
                .filter_map(|o| Some((o.completed_at? - o.created_at).as_seconds_f64() * 1000.0))
                .collect();
            ms.sort_by(f64::total_cmp);
            let pct = |p: f64| {
                ms.get(((ms.len() as f64 - 1.0) * p).round() as usize)
                    .copied()
            };
            s.latency_ms = pct(0.5).zip(pct(0.99));
        }
        Err(_) => errors.push("order".to_owned()),
    }
    // Faults recorded by `omsctl chaos`; the gateway's knobs are read from the service itself.
    s.faults = oms_ops::chaos::active(ctx)
        .into_iter()
        .filter(|f| !f.starts_with("payment gateway"))
        .collect();
    match faults {
        Ok(k) => {
            for (label, value, on) in [
                (
                    "decline rate",
                    k.decline_rate.to_string(),
                    k.decline_rate > 0.0,
                ),
                ("error rate", k.error_rate.to_string(), k.error_rate > 0.0),
                ("latency ms", k.latency_ms.to_string(), k.latency_ms > 0),
            ] {
                if on {
                    s.faults.push(format!("payment gateway: {label} {value}"));
                }
            }
        }
        Err(_) => errors.push("payment".to_owned()),
    }
    for (svc, result) in health {
        let group = ctx.topics.name(svc.spec().group);
        let lag = kafka.as_ref().and_then(|k| {
            k.lag
                .groups
                .iter()
                .find(|g| g.group == group)
                .map(app::GroupLag::total)
        });
        let h = match result {
            Ok(Ok(Some(r))) => Health {
                name: svc.name().to_owned(),
                ready: Some(r.is_ready()),
                backlog: r.outbox.map(|b| b.pending),
                lag,
                error: None,
            },
            Ok(Ok(None)) => Health {
                name: svc.name().to_owned(),
                ready: Some(false),
                backlog: None,
                lag,
                error: Some("no readiness endpoint".into()),
            },
            Ok(Err(f)) => {
                // 503 from /health/ready is "not ready", with its reasons; anything else is down.
                let text = f.error.to_string();
                let down = text.contains("unreachable");
                if down && !errors.contains(&svc.name().to_owned()) {
                    errors.push(svc.name().to_owned());
                }
                Health {
                    name: svc.name().to_owned(),
                    ready: if down { None } else { Some(false) },
                    backlog: None,
                    lag,
                    error: Some(if down { "unreachable".into() } else { text }),
                }
            }
            // No answer in time, but the connection was not refused: alive, not ready.
            Err(_) => Health {
                name: svc.name().to_owned(),
                ready: Some(false),
                backlog: None,
                lag,
                error: Some("readiness check timed out".into()),
            },
        };
        s.services.push(h);
    }
    errors.sort();
    errors.dedup();
    s.errors = errors;
    s
}

/// A journey for the TUI's tests: an order placed at 15:13:20.774731 with this verdict.
#[cfg(test)]
pub fn example_trace(verdict: &str, trace_id: Option<&str>) -> oms_ops::trace::Trace {
    let order: oms_contracts::api::OrderView = match serde_json::from_value(serde_json::json!({
        "orderId": "01a208f8-0186-74f7-9d14-5485ac29c81b",
        "customerId": "alice",
        "status": "CANCELLED",
        "items": [],
        "lines": null,
        "total": null,
        "paymentId": null,
        "cancelReason": "PAYMENT_DECLINED",
        "cancelDetail": null,
        "createdAt": "2026-11-23T15:13:20.774731Z",
        "updatedAt": "2026-11-23T15:13:21Z",
        "completedAt": null,
    })) {
        Ok(o) => o,
        Err(e) => panic!("example order: {e}"),
    };
    oms_ops::trace::Trace {
        trace_id: trace_id.map(str::to_owned),
        trace_url: None,
        order,
        saga: None,
        payment: None,
        reservation: None,
        shipment: None,
        notifications: Vec::new(),
        outbox_pending: Vec::new(),
        messages: Vec::new(),
        timeline: vec![oms_ops::trace::Event {
            at: "2026-11-23T15:13:20.774731Z".into(),
            source: "order".into(),
            what: "POST /orders accepted (PENDING)".into(),
        }],
        verdict: verdict.to_owned(),
    }
}
