//! `omsctl bench`: the load generator, for any stack omsctl can reach.
//!
//! - **Open loop** (`--rate R/s`): orders are sent on a fixed schedule whatever the stack's speed,
//!   so a slow stack shows as latency and backlog, not as a politely lower rate. Accept latency is
//!   measured from the time each request was *due* (coordinated omission corrected).
//! - **Closed loop** (no `--rate`): `--concurrency` customers, each placing an order and waiting
//!   for its outcome before the next: the stack's throughput with that many sagas in flight.
//!
//! Outcomes are learnt from the order events topic (`order.confirmed` / `order.cancelled`), read
//! by partition assignment from its current end, so following thousands of orders costs the
//! services nothing: no status polls. Two latencies are reported: **saga** (HTTP 201 received to
//! the outcome event seen here, on this process's clock) and **decided** (`order.created` to the
//! outcome event, by the envelopes' `occurredAt`, on the services' clocks).
//!
//! Against the local process stack it also reports the CPU time of every component (broker,
//! PostgreSQL, each service, this generator) over the measured window, per order.
//!
//! Pictures: `--plot` draws the run as SVG ([`plot::svg`]: latency by percentile, orders per
//! second), beside a previous report with `--plot-baseline`; `--hdr-log` writes its histograms
//! as an HdrHistogram interval log ([`hdr::write_log`]). [`Pictures`] opens those files before
//! the run, so a path that cannot be written fails at once.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use oms_contracts::api::{CreateOrder, SetStock};
use oms_contracts::routes;
use tokio::sync::{mpsc, oneshot};

use crate::client::Request;
use crate::ctx::Ctx;
use crate::{cpu, Failure};

pub mod hdr;
pub mod plot;
mod report;
mod tally;

pub use hdr::Histograms;
use report::{buckets, latency, CpuFigure};
pub use report::{Report, Second};
use tally::{watch, Note, Tally};

/// Arguments of `omsctl bench`.
#[derive(Debug)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct BenchArgs {
    /// Open loop: orders per second (e.g. 50/s), sent on schedule whatever the stack's speed.
    #[cfg_attr(feature = "clap", arg(long, value_parser = crate::args::rate))]
    pub rate: Option<f64>,
    /// Closed loop (without --rate): customers placing an order and waiting for its outcome
    /// before the next.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 16))]
    pub concurrency: usize,
    /// How long the measured load runs (after the warm-up).
    #[cfg_attr(feature = "clap", arg(long, default_value = "30s", value_parser = crate::args::duration))]
    pub duration: Duration,
    /// Load before the measured window: connections, consumer fetch sessions and caches warm up;
    /// its orders are followed but not counted.
    #[cfg_attr(feature = "clap", arg(long, default_value = "5s", value_parser = crate::args::duration))]
    pub warmup: Duration,
    /// A line PRODUCT[:QTY] to choose from (repeatable); each order takes one at random.
    /// Default: every catalog product, quantity 1.
    #[cfg_attr(feature = "clap", arg(long = "item", value_parser = crate::place::parse_item))]
    pub items: Vec<(String, u32)>,
    /// A payment token to choose from (repeatable) [default: tok_visa].
    #[cfg_attr(feature = "clap", arg(long = "payment-token"))]
    pub tokens: Vec<String>,
    /// How long to wait for the outcomes of the last orders once the load has stopped.
    #[cfg_attr(feature = "clap", arg(long, default_value = "60s", value_parser = crate::args::duration))]
    pub timeout: Duration,
    /// Open loop: HTTP requests in flight at most; a send that falls due while this many are
    /// waiting is skipped and counted.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 1000))]
    pub max_in_flight: usize,
    /// Before the run, set the stock of every product in the mix to this many units (changes
    /// the inventory of the stack).
    #[cfg_attr(feature = "clap", arg(long))]
    pub stock: Option<i64>,
    /// `fetch.wait.max.ms` of the outcome watcher (as the services' --consumer-fetch-wait).
    #[cfg_attr(feature = "clap", arg(long, default_value = "20ms", value_parser = crate::args::duration))]
    pub watch_fetch_wait: Duration,
    /// Follow each order until it is decided (`confirmed`) or through its whole life
    /// (`delivered`: the run also waits for the deliveries, and times CONFIRMED → DELIVERED).
    #[cfg_attr(feature = "clap", arg(long, value_enum, default_value_t = Until::Delivered))]
    pub until: Until,
    /// Also draw the run as an SVG picture in FILE.svg: saga and delivery latency by percentile,
    /// and orders accepted, finished and delivered per second. The file is created before the
    /// run starts.
    #[cfg_attr(feature = "clap", arg(long, value_name = "FILE.svg", value_hint = clap::ValueHint::FilePath))]
    pub plot: Option<PathBuf>,
    /// Draw a previous run's report (`omsctl bench -o json`) in the --plot picture too, as the
    /// baseline (fainter lines of the same colours).
    #[cfg_attr(feature = "clap", arg(long, value_name = "REPORT.json", requires = "plot", value_hint = clap::ValueHint::FilePath))]
    pub plot_baseline: Option<PathBuf>,
    /// Also write the run's latency histograms to FILE as an HdrHistogram interval log (values
    /// in µs), one entry per latency tagged accept, saga, decided and delivery, for the
    /// HdrHistogram tools. The file is created before the run starts.
    #[cfg_attr(feature = "clap", arg(long, value_name = "FILE", value_hint = clap::ValueHint::FilePath))]
    pub hdr_log: Option<PathBuf>,
}

/// A finished run: its report and the histograms behind its latencies.
#[derive(Debug, Clone)]
pub struct Run {
    /// What `omsctl bench` prints.
    pub report: Report,
    /// The latency histograms the report's figures come from (for `--hdr-log`).
    pub histograms: Histograms,
}

/// The files `--plot` and `--hdr-log` write, opened (created) before the run so that a path
/// that cannot be written is an error before any load is sent, and the baseline report read.
#[derive(Debug)]
pub struct Pictures {
    plot: Option<(PathBuf, File)>,
    baseline: Option<(String, Report)>,
    hdr_log: Option<(PathBuf, File)>,
}

/// Creates (truncates) `path` for `flag`; an error is one line naming both.
fn create(flag: &str, path: &Path) -> Result<File, Failure> {
    File::create(path)
        .map_err(|e| Failure::usage(format!("{flag} {}: cannot write it: {e}", path.display())))
}

impl Pictures {
    /// Checks the picture flags of `args`, reads the baseline report and creates the files; no
    /// flag, nothing done.
    pub fn open(args: &BenchArgs) -> Result<Pictures, Failure> {
        if args.plot_baseline.is_some() && args.plot.is_none() {
            return Err(Failure::usage(
                "--plot-baseline draws into --plot: give both",
            ));
        }
        if let Some(plot) = &args.plot {
            let svg = plot
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
            if !svg {
                return Err(Failure::usage(format!(
                    "--plot {}: the picture is SVG, give a FILE.svg",
                    plot.display()
                )));
            }
            if args.hdr_log.as_ref() == Some(plot) {
                return Err(Failure::usage(
                    "--plot and --hdr-log must be different files",
                ));
            }
        }
        let baseline = match &args.plot_baseline {
            None => None,
            Some(path) => {
                let fail = |e: &dyn std::fmt::Display| {
                    Failure::usage(format!("--plot-baseline {}: {e}", path.display()))
                };
                let text = std::fs::read_to_string(path).map_err(|e| fail(&e))?;
                let report: Report = serde_json::from_str(&text)
                    .map_err(|e| fail(&format!("not a report of `omsctl bench -o json` ({e})")))?;
                let label = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| path.display().to_string());
                Some((label, report))
            }
        };
        let plot = match &args.plot {
            Some(path) => Some((path.clone(), create("--plot", path)?)),
            None => None,
        };
        let hdr_log = match &args.hdr_log {
            Some(path) => match create("--hdr-log", path) {
                Ok(file) => Some((path.clone(), file)),
                Err(e) => {
                    Pictures {
                        plot,
                        baseline: None,
                        hdr_log: None,
                    }
                    .discard();
                    return Err(e);
                }
            },
            None => None,
        };
        Ok(Pictures {
            plot,
            baseline,
            hdr_log,
        })
    }

    /// Writes the picture and the log of `run` into the files opened.
    pub fn write(self, run: &Run) -> Result<(), Failure> {
        if let Some((path, mut file)) = self.plot {
            let baseline = self
                .baseline
                .as_ref()
                .map(|(label, report)| plot::Baseline { label, report });
            let svg = plot::svg(&run.report, baseline)
                .map_err(|e| Failure::usage(format!("--plot {}: {e}", path.display())))?;
            file.write_all(svg.as_bytes())
                .and_then(|()| file.flush())
                .map_err(|e| Failure::usage(format!("--plot {}: {e}", path.display())))?;
        }
        if let Some((path, file)) = self.hdr_log {
            let mut out = std::io::BufWriter::new(file);
            hdr::write_log(&mut out, &run.histograms)
                .and_then(|()| Ok(out.flush()?))
                .map_err(|e| Failure::usage(format!("--hdr-log {}: {e}", path.display())))?;
        }
        Ok(())
    }

    /// Removes the files created, for a run that did not happen.
    pub fn discard(self) {
        for (path, file) in [self.plot, self.hdr_log].into_iter().flatten() {
            drop(file);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// How far the bench follows an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Until {
    /// Until its outcome (CONFIRMED or CANCELLED).
    Confirmed,
    /// Until a confirmed order is DELIVERED (or cancelled after all).
    Delivered,
}

/// Open or closed loop.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Open { rate: f64 },
    Closed { concurrency: usize },
}

/// One order to place.
fn body(items: &[(String, u32)], tokens: &[String], i: u64) -> CreateOrder {
    let (product, qty) = &items[fastrand::usize(0..items.len())];
    let token = if tokens.is_empty() {
        "tok_visa"
    } else {
        tokens[fastrand::usize(0..tokens.len())].as_str()
    };
    crate::place::body(
        &[(product.clone(), *qty)],
        Some(&format!("bench-{i}")),
        Some(token),
    )
}

/// Places one order; the note to send about it.
async fn place(
    ctx: &Ctx,
    body: &CreateOrder,
    due: Instant,
    measured: bool,
    waiter: Option<oneshot::Sender<()>>,
) -> Note {
    match crate::place::try_place(ctx, body, None).await {
        Ok(accepted) => Note::Accepted {
            id: accepted.order_id,
            due,
            answered: Instant::now(),
            measured,
            waiter,
        },
        Err(f) => Note::Refused {
            reason: f
                .error
                .to_string()
                .split(" (")
                .next()
                .unwrap_or("unreachable")
                .to_owned(),
            measured,
        },
    }
}

fn check(args: &BenchArgs) -> Result<Mode, Failure> {
    if args.duration.is_zero() {
        return Err(Failure::usage("--duration must be above zero"));
    }
    if args.max_in_flight == 0 {
        return Err(Failure::usage("--max-in-flight must be at least 1"));
    }
    if args.stock.is_some_and(|s| s < 0) {
        return Err(Failure::usage("--stock must not be negative"));
    }
    if args.tokens.iter().any(|t| t.trim().is_empty()) {
        return Err(Failure::usage("--payment-token must not be empty"));
    }
    match args.rate {
        Some(rate) => Ok(Mode::Open { rate }),
        None if args.concurrency == 0 => Err(Failure::usage("--concurrency must be at least 1")),
        None => Ok(Mode::Closed {
            concurrency: args.concurrency,
        }),
    }
}

/// Runs the load `args` describe against `ctx`'s stack and measures it (the picture flags are
/// the front-end's: see [`Pictures`]).
pub async fn measure(ctx: &Ctx, args: &BenchArgs) -> Result<Run, Failure> {
    let mode = check(args)?;
    let items: Vec<(String, u32)> = if args.items.is_empty() {
        crate::place::catalog(ctx)
            .await
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                Failure::usage("inventory unreachable: cannot read the catalog (give --item)")
            })?
            .into_iter()
            .map(|p| (p, 1))
            .collect()
    } else {
        crate::place::check_items(ctx, &args.items).await?;
        args.items.clone()
    };
    if let Some(stock) = args.stock {
        let mut products: Vec<&String> = items.iter().map(|(p, _)| p).collect();
        products.sort();
        products.dedup();
        for p in products {
            let body = SetStock { available: stock };
            ctx.act(routes::SET_STOCK, Request::to(&[p]).body(&body))
                .await?;
        }
    }

    // The watcher is positioned before the first order is sent.
    let (notes_tx, mut notes_rx) = mpsc::unbounded_channel::<Note>();
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let watcher = {
        let brokers = ctx.brokers.clone();
        let topic = ctx.topics.name(oms_contracts::topics::ORDER_EVENTS);
        let notes = notes_tx.clone();
        let stop = Arc::clone(&stop);
        let wait = args.watch_fetch_wait;
        std::thread::Builder::new()
            .name("bench-watcher".into())
            .spawn(move || watch(&brokers, &topic, wait, notes, stop, ready_tx))
            .context("starting the outcome watcher")?
    };
    let ready = tokio::task::spawn_blocking(move || ready_rx.recv())
        .await
        .map_err(anyhow::Error::from)?;
    match ready {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(Failure::usage(e)),
        Err(_) => {
            return Err(Failure::usage(
                "the outcome watcher stopped before it started",
            ))
        }
    }

    let progress = if ctx.interactive() {
        let bar = indicatif::ProgressBar::new((args.warmup + args.duration).as_secs().max(1));
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };

    let started = Instant::now();
    let window_start = SystemTime::now() + args.warmup;
    let measure_from = started + args.warmup;
    let load_end = measure_from + args.duration;
    let load = {
        let ctx = ctx.clone();
        let notes = notes_tx.clone();
        let items = items.clone();
        let tokens = args.tokens.clone();
        let max_in_flight = args.max_in_flight;
        let timeout = args.timeout;
        tokio::spawn(async move {
            match mode {
                Mode::Open { rate } => {
                    open_loop(
                        ctx,
                        notes.clone(),
                        items,
                        tokens,
                        rate,
                        (started, measure_from, load_end),
                        max_in_flight,
                    )
                    .await
                }
                Mode::Closed { concurrency } => {
                    closed_loop(
                        ctx,
                        notes.clone(),
                        items,
                        tokens,
                        concurrency,
                        (measure_from, load_end),
                        timeout,
                    )
                    .await
                }
            }
            let _ = notes.send(Note::LoadDone);
        })
    };
    drop(notes_tx);

    let mut tally = Tally::new(measure_from);
    let mut cpu_start: Option<cpu::Snapshot> = None;
    let mut cpu_end: Option<cpu::Snapshot> = None;
    let mut load_done = false;
    let mut give_up: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            note = notes_rx.recv() => match note {
                Some(Note::LoadDone) => {
                    load_done = true;
                    give_up = Some(Instant::now() + args.timeout);
                }
                Some(n) => tally.note(n),
                None => break,
            },
            _ = tick.tick() => {
                let now = Instant::now();
                if cpu_start.is_none() && now >= measure_from {
                    cpu_start = Some(cpu::Snapshot::take(&ctx.state_dir));
                }
                if cpu_end.is_none() && now >= load_end {
                    cpu_end = Some(cpu::Snapshot::take(&ctx.state_dir));
                }
                progress.set_position(now.duration_since(started).as_secs());
                progress.set_message(format!(
                    "accepted {}, finished {}, in flight {}",
                    tally.accepted, tally.finished, tally.pending.len()
                ));
            }
        }
        let followed = tally.pending.is_empty()
            && (args.until == Until::Confirmed || tally.confirmed_at.is_empty());
        if load_done && (followed || give_up.is_some_and(|g| Instant::now() >= g)) {
            break;
        }
    }
    progress.finish_and_clear();
    let span = Instant::now().saturating_duration_since(measure_from);
    stop.store(true, Ordering::Relaxed);
    let _ = load.await;
    let _ = tokio::task::spawn_blocking(move || watcher.join()).await;
    let cpu_end = cpu_end.unwrap_or_else(|| cpu::Snapshot::take(&ctx.state_dir));

    let unfinished = tally.pending.values().filter(|p| p.measured).count() as u64;
    let undelivered = match args.until {
        Until::Delivered => tally.confirmed_at.len() as u64,
        Until::Confirmed => 0,
    };
    let window = args.duration.as_secs_f64();
    let per_order = |s: f64| (tally.accepted > 0).then(|| s * 1000.0 / tally.accepted as f64);
    let cpu: Vec<CpuFigure> = match &cpu_start {
        Some(start) => cpu_end
            .since(start)
            .into_iter()
            .map(|(component, seconds)| CpuFigure {
                component,
                seconds,
                cores: seconds / window,
                ms_per_order: per_order(seconds),
            })
            .collect(),
        None => Vec::new(),
    };
    let cpu_total: f64 = cpu.iter().map(|c| c.seconds).sum();
    let saga_histogram = buckets(&tally.saga);
    let report = Report {
        mode: match mode {
            Mode::Open { .. } => "open".into(),
            Mode::Closed { .. } => "closed".into(),
        },
        offered_rate: match mode {
            Mode::Open { rate } => Some(rate),
            Mode::Closed { .. } => None,
        },
        concurrency: match mode {
            Mode::Open { .. } => None,
            Mode::Closed { concurrency } => Some(concurrency),
        },
        warmup_seconds: args.warmup.as_secs_f64(),
        duration_seconds: window,
        accepted: tally.accepted,
        achieved_rate: tally.accepted as f64 / window,
        finished: tally.finished,
        finished_rate: tally.finished as f64 / window,
        confirmed: tally.confirmed,
        cancelled: tally.cancelled.clone(),
        unfinished,
        delivered: tally.delivered,
        cancelled_after_confirmation: tally.cancelled_after_confirmation.clone(),
        undelivered,
        refused: tally.refused.clone(),
        skipped: tally.skipped,
        accept_ms: latency(&tally.accept),
        saga_ms: latency(&tally.saga),
        decided_ms: latency(&tally.decided),
        delivered_ms: latency(&tally.delivery),
        saga_histogram,
        cpu_total_cores: (!cpu.is_empty()).then_some(cpu_total / window),
        cpu_ms_per_order: if cpu.is_empty() {
            None
        } else {
            per_order(cpu_total)
        },
        cpu,
        per_second: std::mem::take(&mut tally.per_second),
    };
    let histograms = Histograms {
        accept: tally.accept,
        saga: tally.saga,
        decided: tally.decided,
        delivery: tally.delivery,
        window_start,
        span,
    };
    Ok(Run { report, histograms })
}

#[allow(clippy::too_many_arguments)]
async fn open_loop(
    ctx: Ctx,
    notes: mpsc::UnboundedSender<Note>,
    items: Vec<(String, u32)>,
    tokens: Vec<String>,
    rate: f64,
    (started, measure_from, load_end): (Instant, Instant, Instant),
    max_in_flight: usize,
) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let ctx = Arc::new(ctx);
    for i in 0u64.. {
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        if due >= load_end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        // Reap finished tasks so the set does not grow with the run.
        while tasks.try_join_next().is_some() {}
        if in_flight.load(Ordering::Relaxed) >= max_in_flight {
            let _ = notes.send(Note::Skipped);
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let b = body(&items, &tokens, i);
        let (ctx, notes, in_flight) = (Arc::clone(&ctx), notes.clone(), Arc::clone(&in_flight));
        let measured = due >= measure_from;
        tasks.spawn(async move {
            let note = place(&ctx, &b, due, measured, None).await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
            let _ = notes.send(note);
        });
    }
    while tasks.join_next().await.is_some() {}
}

async fn closed_loop(
    ctx: Ctx,
    notes: mpsc::UnboundedSender<Note>,
    items: Vec<(String, u32)>,
    tokens: Vec<String>,
    concurrency: usize,
    (measure_from, load_end): (Instant, Instant),
    timeout: Duration,
) {
    let ctx = Arc::new(ctx);
    let items = Arc::new(items);
    let tokens = Arc::new(tokens);
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..concurrency {
        let (ctx, notes, items, tokens) = (
            Arc::clone(&ctx),
            notes.clone(),
            Arc::clone(&items),
            Arc::clone(&tokens),
        );
        workers.spawn(async move {
            let mut n: u64 = 0;
            while Instant::now() < load_end {
                let due = Instant::now();
                let (done_tx, done_rx) = oneshot::channel();
                let b = body(&items, &tokens, ((w as u64) << 32) | n);
                n += 1;
                let note = place(&ctx, &b, due, due >= measure_from, Some(done_tx)).await;
                let accepted = matches!(note, Note::Accepted { .. });
                if notes.send(note).is_err() {
                    return;
                }
                if accepted {
                    // An order that never finishes stops this customer; the report shows it.
                    if tokio::time::timeout(timeout, done_rx).await.is_err() {
                        return;
                    }
                } else {
                    // Do not hammer a refusing stack.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "clap")]
    #[test]
    fn bad_arguments_are_refused() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[cfg_attr(feature = "clap", command(flatten))]
            bench: BenchArgs,
        }
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
                .map(|c| c.bench)
        };
        assert!(parse(&["--rate", "0/s"]).is_err());
        assert!(parse(&["--rate", "fast"]).is_err());
        assert!(parse(&["--item", "mouse-01:0"]).is_err());
        assert!(parse(&["--duration", "soon"]).is_err());
        let zero = parse(&["--concurrency", "0"]).expect("parses");
        assert!(check(&zero).is_err());
        let no_time = parse(&["--duration", "0s", "--rate", "5/s"]).expect("parses");
        assert!(check(&no_time).is_err());
        let open = parse(&["--rate", "20/s"]).expect("parses");
        assert_eq!(check(&open).ok(), Some(Mode::Open { rate: 20.0 }));
        let closed = parse(&["--concurrency", "4"]).expect("parses");
        assert_eq!(check(&closed).ok(), Some(Mode::Closed { concurrency: 4 }));
        assert!(parse(&["--plot-baseline", "before.json"]).is_err());
        let pictures = parse(&[
            "--plot",
            "a.svg",
            "--plot-baseline",
            "b.json",
            "--hdr-log",
            "c",
        ])
        .expect("parses");
        assert_eq!(pictures.plot.as_deref(), Some(Path::new("a.svg")));
        assert_eq!(pictures.plot_baseline.as_deref(), Some(Path::new("b.json")));
        assert_eq!(pictures.hdr_log.as_deref(), Some(Path::new("c")));
    }

    fn args(
        plot: Option<PathBuf>,
        baseline: Option<PathBuf>,
        hdr_log: Option<PathBuf>,
    ) -> BenchArgs {
        BenchArgs {
            rate: None,
            concurrency: 4,
            duration: Duration::from_secs(3),
            warmup: Duration::from_secs(1),
            items: Vec::new(),
            tokens: Vec::new(),
            timeout: Duration::from_secs(5),
            max_in_flight: 10,
            stock: None,
            watch_fetch_wait: Duration::from_millis(20),
            until: Until::Delivered,
            plot,
            plot_baseline: baseline,
            hdr_log,
        }
    }

    fn run() -> Run {
        let (mut saga, mut delivery) = (report::histogram(), report::histogram());
        for ms in 1..=200u64 {
            report::record(&mut saga, Duration::from_millis(ms));
            report::record(&mut delivery, Duration::from_millis(ms / 2));
        }
        let report = report::sample(&saga, &delivery, vec![Second::default(); 3]);
        Run {
            report,
            histograms: Histograms {
                accept: report::histogram(),
                saga,
                decided: report::histogram(),
                delivery,
                window_start: SystemTime::now(),
                span: Duration::from_secs(4),
            },
        }
    }

    #[test]
    fn a_picture_path_that_cannot_be_written_fails_before_the_run() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let nowhere = dir.path().join("missing").join("run.svg");
        let e = Pictures::open(&args(Some(nowhere.clone()), None, None)).expect_err("refused");
        let message = e.error.to_string();
        assert_eq!(e.code, 2);
        assert!(
            message.starts_with("--plot ") && message.contains("run.svg"),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");

        // The log's path fails: the picture's file made just before is taken back.
        let svg = dir.path().join("run.svg");
        let log = dir.path().join("missing").join("run.hlog");
        let e = Pictures::open(&args(Some(svg.clone()), None, Some(log))).expect_err("refused");
        assert!(e.error.to_string().starts_with("--hdr-log "), "{}", e.error);
        assert!(!svg.exists());

        let png = dir.path().join("run.png");
        let e = Pictures::open(&args(Some(png.clone()), None, None)).expect_err("refused");
        assert!(e.error.to_string().contains("FILE.svg"), "{}", e.error);
        assert!(!png.exists());

        let not_json = dir.path().join("before.json");
        std::fs::write(&not_json, "accepted 10").expect("written");
        let e =
            Pictures::open(&args(Some(svg.clone()), Some(not_json), None)).expect_err("refused");
        assert!(
            e.error.to_string().starts_with("--plot-baseline "),
            "{}",
            e.error
        );
        assert!(!svg.exists(), "nothing is created for a bad baseline");

        let same = Pictures::open(&args(Some(svg.clone()), None, Some(svg.clone())));
        assert!(same.is_err());
    }

    #[test]
    fn the_pictures_are_written_after_the_run_into_the_files_opened_before() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (svg, log, before) = (
            dir.path().join("run.svg"),
            dir.path().join("run.hlog"),
            dir.path().join("before.json"),
        );
        let run = run();
        std::fs::write(&before, serde_json::to_string(&run.report).expect("json"))
            .expect("written");
        let pictures = Pictures::open(&args(Some(svg.clone()), Some(before), Some(log.clone())))
            .expect("opened");
        assert!(svg.exists() && log.exists(), "created before the run");
        pictures.write(&run).expect("written");
        let picture = std::fs::read_to_string(&svg).expect("the picture");
        assert!(picture.starts_with("<svg") && picture.trim_end().ends_with("</svg>"));
        assert!(picture.contains("baseline before.json"));
        let text = std::fs::read(&log).expect("the log");
        let tags: Vec<String> =
            hdrhistogram::serialization::interval_log::IntervalLogIterator::new(&text)
                .filter_map(|e| match e {
                    Ok(hdrhistogram::serialization::interval_log::LogEntry::Interval(i)) => {
                        i.tag().map(|t| t.as_str().to_owned())
                    }
                    _ => None,
                })
                .collect();
        assert_eq!(tags, ["saga", "delivery"]);

        // A run that did not happen leaves no files.
        let pictures =
            Pictures::open(&args(Some(svg.clone()), None, Some(log.clone()))).expect("opened");
        pictures.discard();
        assert!(!svg.exists() && !log.exists());
    }
}
