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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use oms_contracts::api::{CreateOrder, SetStock};
use oms_contracts::routes;
use oms_contracts::{Envelope, Message};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::client::Request;
use crate::ctx::Ctx;
use crate::render::table;
use crate::{cpu, Failure};

/// Arguments of `omsctl bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Open loop: orders per second (e.g. 50/s), sent on schedule whatever the stack's speed.
    #[arg(long, value_parser = crate::args::rate)]
    rate: Option<f64>,
    /// Closed loop (without --rate): customers placing an order and waiting for its outcome
    /// before the next.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// How long the measured load runs (after the warm-up).
    #[arg(long, default_value = "30s", value_parser = crate::args::duration)]
    duration: Duration,
    /// Load before the measured window: connections, consumer fetch sessions and caches warm up;
    /// its orders are followed but not counted.
    #[arg(long, default_value = "5s", value_parser = crate::args::duration)]
    warmup: Duration,
    /// A line PRODUCT[:QTY] to choose from (repeatable); each order takes one at random.
    /// Default: every catalog product, quantity 1.
    #[arg(long = "item", value_parser = crate::place::parse_item)]
    items: Vec<(String, u32)>,
    /// A payment token to choose from (repeatable) [default: tok_visa].
    #[arg(long = "payment-token")]
    tokens: Vec<String>,
    /// How long to wait for the outcomes of the last orders once the load has stopped.
    #[arg(long, default_value = "60s", value_parser = crate::args::duration)]
    timeout: Duration,
    /// Open loop: HTTP requests in flight at most; a send that falls due while this many are
    /// waiting is skipped and counted.
    #[arg(long, default_value_t = 1000)]
    max_in_flight: usize,
    /// Before the run, set the stock of every product in the mix to this many units (changes
    /// the inventory of the stack).
    #[arg(long)]
    stock: Option<i64>,
    /// `fetch.wait.max.ms` of the outcome watcher (as the services' --consumer-fetch-wait).
    #[arg(long, default_value = "20ms", value_parser = crate::args::duration)]
    watch_fetch_wait: Duration,
    /// Follow each order until it is decided (`confirmed`) or through its whole life
    /// (`delivered`: the run also waits for the deliveries, and times CONFIRMED → DELIVERED).
    #[arg(long, value_enum, default_value_t = Until::Delivered)]
    until: Until,
}

/// How far the bench follows an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
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

/// What the generator learns, in one stream to one owner (the collector).
enum Note {
    Accepted {
        id: Uuid,
        /// When the request was due (open loop) or sent (closed loop).
        due: Instant,
        answered: Instant,
        measured: bool,
        waiter: Option<oneshot::Sender<()>>,
    },
    Refused {
        reason: String,
        measured: bool,
    },
    Skipped,
    Created {
        id: Uuid,
        at: DateTime<Utc>,
    },
    Finished {
        id: Uuid,
        outcome: String,
        at: DateTime<Utc>,
        seen: Instant,
    },
    Delivered {
        id: Uuid,
        seen: Instant,
    },
    LoadDone,
}

/// What was seen of an order we have no accept for (yet).
#[derive(Default)]
struct Early {
    created: Option<DateTime<Utc>>,
    outcome: Option<(String, DateTime<Utc>)>,
    delivered: Option<Instant>,
}

struct Pending {
    answered: Instant,
    measured: bool,
    waiter: Option<oneshot::Sender<()>>,
}

/// Latency figures in milliseconds.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Latency {
    count: u64,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
    mean: f64,
}

fn histogram() -> Histogram<u64> {
    // Microseconds from 1 µs to an hour, three significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds are valid")
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
    h.saturating_record(us);
}

fn latency(h: &Histogram<u64>) -> Option<Latency> {
    if h.is_empty() {
        return None;
    }
    let ms = |us: u64| us as f64 / 1000.0;
    Some(Latency {
        count: h.len(),
        p50: ms(h.value_at_quantile(0.50)),
        p90: ms(h.value_at_quantile(0.90)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
        mean: h.mean() / 1000.0,
    })
}

/// CPU of one component over the measured window.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuFigure {
    component: String,
    seconds: f64,
    /// Seconds of CPU per second of the window (1.0 = one core).
    cores: f64,
    ms_per_order: Option<f64>,
}

/// The whole report (`-o json` prints it as is).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    mode: String,
    offered_rate: Option<f64>,
    concurrency: Option<usize>,
    warmup_seconds: f64,
    duration_seconds: f64,
    accepted: u64,
    achieved_rate: f64,
    finished: u64,
    finished_rate: f64,
    confirmed: u64,
    cancelled: BTreeMap<String, u64>,
    unfinished: u64,
    refused: BTreeMap<String, u64>,
    skipped: u64,
    /// Confirmed orders seen DELIVERED (followed with `--until delivered`).
    delivered: u64,
    /// Confirmed orders cancelled afterwards (a carrier refusal), by reason.
    cancelled_after_confirmation: BTreeMap<String, u64>,
    /// Confirmed orders neither delivered nor cancelled by the end (`--until delivered`).
    undelivered: u64,
    accept_ms: Option<Latency>,
    saga_ms: Option<Latency>,
    decided_ms: Option<Latency>,
    /// CONFIRMED seen → DELIVERED seen.
    delivered_ms: Option<Latency>,
    saga_histogram: Vec<(f64, u64)>,
    cpu: Vec<CpuFigure>,
    cpu_total_cores: Option<f64>,
    cpu_ms_per_order: Option<f64>,
}

/// The collector's tallies.
struct Tally {
    accept: Histogram<u64>,
    saga: Histogram<u64>,
    decided: Histogram<u64>,
    delivery: Histogram<u64>,
    delivered: u64,
    cancelled_after_confirmation: BTreeMap<String, u64>,
    /// Measured orders confirmed and not yet delivered: when their confirmation was seen.
    confirmed_at: HashMap<Uuid, Instant>,
    accepted: u64,
    finished: u64,
    confirmed: u64,
    cancelled: BTreeMap<String, u64>,
    refused: BTreeMap<String, u64>,
    skipped: u64,
    pending: HashMap<Uuid, Pending>,
    /// Outcomes and creations seen before (or without) an accept we know of: other clients'
    /// orders, or a reply that lost the race with the saga. Forgotten after a minute.
    early: HashMap<Uuid, Early>,
    early_order: VecDeque<(Instant, Uuid)>,
    created_at: HashMap<Uuid, DateTime<Utc>>,
}

impl Tally {
    fn new() -> Self {
        Self {
            accept: histogram(),
            saga: histogram(),
            decided: histogram(),
            delivery: histogram(),
            delivered: 0,
            cancelled_after_confirmation: BTreeMap::new(),
            confirmed_at: HashMap::new(),
            accepted: 0,
            finished: 0,
            confirmed: 0,
            cancelled: BTreeMap::new(),
            refused: BTreeMap::new(),
            skipped: 0,
            pending: HashMap::new(),
            early: HashMap::new(),
            early_order: VecDeque::new(),
            created_at: HashMap::new(),
        }
    }

    fn forget_old(&mut self, now: Instant) {
        while let Some((at, id)) = self.early_order.front().copied() {
            if now.duration_since(at) < Duration::from_secs(60) {
                break;
            }
            self.early_order.pop_front();
            self.early.remove(&id);
        }
    }

    fn early_entry(&mut self, id: Uuid, now: Instant) -> &mut Early {
        if !self.early.contains_key(&id) {
            self.early_order.push_back((now, id));
        }
        self.early.entry(id).or_default()
    }

    fn finish(
        &mut self,
        id: Uuid,
        pending: Pending,
        outcome: &str,
        at: DateTime<Utc>,
        seen: Instant,
    ) {
        if pending.measured {
            self.finished += 1;
            record(
                &mut self.saga,
                seen.saturating_duration_since(pending.answered),
            );
            if let Some(created) = self.created_at.get(&id) {
                if let Ok(d) = (at - *created).to_std() {
                    record(&mut self.decided, d);
                }
            }
            match outcome.strip_prefix("CANCELLED ") {
                Some(reason) => *self.cancelled.entry(reason.to_owned()).or_default() += 1,
                None => {
                    self.confirmed += 1;
                    self.confirmed_at.insert(id, seen);
                }
            }
        }
        self.created_at.remove(&id);
        if let Some(w) = pending.waiter {
            let _ = w.send(());
        }
    }

    fn note(&mut self, note: Note) {
        let now = Instant::now();
        self.forget_old(now);
        match note {
            Note::Accepted {
                id,
                due,
                answered,
                measured,
                waiter,
            } => {
                if measured {
                    self.accepted += 1;
                    record(&mut self.accept, answered.saturating_duration_since(due));
                }
                let pending = Pending {
                    answered,
                    measured,
                    waiter,
                };
                match self.early.remove(&id) {
                    Some(early) => {
                        if let Some(c) = early.created {
                            self.created_at.insert(id, c);
                        }
                        match early.outcome {
                            // The outcome beat the HTTP reply: the saga took no measurable time
                            // after the reply, so it counts as seen at the reply.
                            Some((o, at)) => {
                                self.finish(id, pending, &o, at, answered);
                                if let Some(seen) = early.delivered {
                                    self.deliver(id, seen.max(answered));
                                }
                            }
                            None => {
                                self.pending.insert(id, pending);
                            }
                        }
                    }
                    None => {
                        self.pending.insert(id, pending);
                    }
                }
            }
            Note::Refused { reason, measured } => {
                if measured {
                    *self.refused.entry(reason).or_default() += 1;
                }
            }
            Note::Skipped => self.skipped += 1,
            Note::Created { id, at } => {
                if self.pending.contains_key(&id) {
                    self.created_at.insert(id, at);
                } else {
                    self.early_entry(id, now).created = Some(at);
                }
            }
            Note::Finished {
                id,
                outcome,
                at,
                seen,
            } => match self.pending.remove(&id) {
                Some(p) => self.finish(id, p, &outcome, at, seen),
                None => match (
                    self.confirmed_at.contains_key(&id),
                    outcome.strip_prefix("CANCELLED "),
                ) {
                    // Confirmed, then cancelled after all (the carrier refused it).
                    (true, Some(reason)) => {
                        self.confirmed_at.remove(&id);
                        *self
                            .cancelled_after_confirmation
                            .entry(reason.to_owned())
                            .or_default() += 1;
                    }
                    // A redelivered confirmation changes nothing.
                    (true, None) => {}
                    (false, _) => self.early_entry(id, now).outcome = Some((outcome, at)),
                },
            },
            Note::Delivered { id, seen } => {
                if self.confirmed_at.contains_key(&id) {
                    self.deliver(id, seen);
                } else if !self.pending.contains_key(&id) {
                    self.early_entry(id, now).delivered = Some(seen);
                }
            }
            Note::LoadDone => {}
        }
    }

    /// A measured, confirmed order was seen DELIVERED at `seen`.
    fn deliver(&mut self, id: Uuid, seen: Instant) {
        if let Some(confirmed) = self.confirmed_at.remove(&id) {
            self.delivered += 1;
            record(
                &mut self.delivery,
                seen.saturating_duration_since(confirmed),
            );
        }
    }
}

/// Reads the order events topic from its current end and turns creations and outcomes into notes.
/// Blocking: runs on its own thread until `stop`.
fn watch(
    brokers: &crate::ctx::Kafka,
    topic: &str,
    fetch_wait: Duration,
    notes: mpsc::UnboundedSender<Note>,
    stop: Arc<AtomicBool>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let consumer: BaseConsumer = match brokers
        .config()
        .set("group.id", "omsctl-bench")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set(
            "fetch.wait.max.ms",
            fetch_wait.as_millis().clamp(1, 300_000).to_string(),
        )
        .set_log_level(rdkafka::config::RDKafkaLogLevel::Emerg)
        .create()
    {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(format!("creating the Kafka client: {e}")));
            return;
        }
    };
    // Start at each partition's end as it is now: every order placed from here on is seen.
    let start = || -> Result<TopicPartitionList, String> {
        let timeout = Duration::from_secs(5);
        let meta = consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| format!("broker unreachable at {brokers}: {e}"))?;
        let partitions: Vec<i32> = meta
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(format!("no topic {topic:?} on {brokers}"));
        }
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            let (_, high) = oms_kafka::watermarks(&consumer, topic, p, timeout)
                .map_err(|e| format!("watermarks of {topic}/{p}: {e}"))?;
            tpl.add_partition_offset(topic, p, Offset::Offset(high))
                .map_err(|e| e.to_string())?;
        }
        Ok(tpl)
    };
    match start().and_then(|tpl| consumer.assign(&tpl).map_err(|e| e.to_string())) {
        Ok(()) => {
            let _ = ready.send(Ok(()));
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    }
    while !stop.load(Ordering::Relaxed) {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let seen = Instant::now();
        let Ok(envelope) = Envelope::decode(m.payload().unwrap_or_default()) else {
            continue;
        };
        let note = match &envelope.message {
            Message::OrderCreated(c) => Note::Created {
                id: c.order_id.0,
                at: envelope.occurred_at,
            },
            Message::OrderConfirmed(c) => Note::Finished {
                id: c.order_id.0,
                outcome: "CONFIRMED".into(),
                at: envelope.occurred_at,
                seen,
            },
            Message::OrderCancelled(c) => Note::Finished {
                id: c.order_id.0,
                outcome: format!(
                    "CANCELLED {}",
                    serde_json::to_value(c.reason)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_else(|| "UNKNOWN".into())
                ),
                at: envelope.occurred_at,
                seen,
            },
            Message::OrderDelivered(d) => Note::Delivered {
                id: d.order_id.0,
                seen,
            },
            _ => continue,
        };
        if notes.send(note).is_err() {
            return;
        }
    }
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

/// Runs `omsctl bench`.
pub async fn run(ctx: &Ctx, args: BenchArgs) -> Result<(), Failure> {
    let mode = check(&args)?;
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

    let mut tally = Tally::new();
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
    };
    let doc = serde_json::to_value(&report).context("encoding the report")?;
    ctx.print(&doc, || render(&report))?;
    let refused: u64 = report.refused.values().sum();
    if unfinished > 0 || refused > 0 || undelivered > 0 {
        return Err(Failure::verdict(format!(
            "{unfinished} accepted order(s) without an outcome and {undelivered} confirmed \
             order(s) not delivered after {}, {refused} refused",
            humantime::format_duration(args.timeout)
        )));
    }
    Ok(())
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

/// The saga latency distribution as (upper bound in ms, orders) over ten bars, oha-style.
fn buckets(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let (lo, hi) = (h.min(), h.max().max(h.min() + 1));
    let step = (hi - lo).div_ceil(10).max(1);
    let mut out = Vec::new();
    let mut from = lo;
    for _ in 0..10 {
        let to = from + step;
        let n = h.count_between(from, to.saturating_sub(1));
        out.push((to as f64 / 1000.0, n));
        from = to;
        if from > hi {
            break;
        }
    }
    out
}

fn fmt_latency(l: &Option<Latency>) -> [String; 6] {
    match l {
        Some(l) => [l.p50, l.p90, l.p99, l.p999, l.max, l.mean].map(|v| format!("{v:.1}")),
        None => std::array::from_fn(|_| "-".to_owned()),
    }
}

fn render(r: &Report) -> String {
    let mut out = String::new();
    let mut summary = table(&["SUMMARY", ""]);
    let mode = match (r.offered_rate, r.concurrency) {
        (Some(rate), _) => format!("open loop, {rate:.1} orders/s offered"),
        (_, Some(c)) => format!("closed loop, {c} customers"),
        _ => "-".into(),
    };
    summary.add_row(["mode".to_owned(), mode]);
    summary.add_row([
        "measured".to_owned(),
        format!(
            "{:.0}s after a {:.0}s warm-up",
            r.duration_seconds, r.warmup_seconds
        ),
    ]);
    summary.add_row([
        "accepted".to_owned(),
        format!("{} ({:.1}/s)", r.accepted, r.achieved_rate),
    ]);
    summary.add_row([
        "finished".to_owned(),
        format!("{} ({:.1}/s)", r.finished, r.finished_rate),
    ]);
    summary.add_row(["confirmed".to_owned(), r.confirmed.to_string()]);
    for (reason, n) in &r.cancelled {
        summary.add_row([format!("cancelled {reason}"), n.to_string()]);
    }
    summary.add_row(["unfinished".to_owned(), r.unfinished.to_string()]);
    if r.delivered > 0 || r.undelivered > 0 {
        summary.add_row(["delivered".to_owned(), r.delivered.to_string()]);
        for (reason, n) in &r.cancelled_after_confirmation {
            summary.add_row([
                format!("cancelled after confirmation {reason}"),
                n.to_string(),
            ]);
        }
        summary.add_row(["undelivered".to_owned(), r.undelivered.to_string()]);
    }
    for (reason, n) in &r.refused {
        summary.add_row([format!("refused: {reason}"), n.to_string()]);
    }
    if r.skipped > 0 {
        summary.add_row([
            "skipped (generator at --max-in-flight)".to_owned(),
            r.skipped.to_string(),
        ]);
    }
    out.push_str(&summary.to_string());
    out.push('\n');

    let mut lat = table(&["LATENCY (ms)", "p50", "p90", "p99", "p99.9", "max", "mean"]);
    for (name, l) in [
        ("accept (POST /orders)", &r.accept_ms),
        ("saga (accepted → outcome seen)", &r.saga_ms),
        ("decided (created → outcome event)", &r.decided_ms),
        ("delivery (CONFIRMED → DELIVERED seen)", &r.delivered_ms),
    ] {
        let [a, b, c, d, e, f] = fmt_latency(l);
        lat.add_row([name.to_owned(), a, b, c, d, e, f]);
    }
    out.push_str(&lat.to_string());
    out.push('\n');

    if !r.saga_histogram.is_empty() {
        out.push_str("saga latency distribution:\n");
        let most = r.saga_histogram.iter().map(|(_, n)| *n).max().unwrap_or(1);
        for (upper, n) in &r.saga_histogram {
            let width = if most == 0 {
                0
            } else {
                (*n as f64 / most as f64 * 40.0).round() as usize
            };
            out.push_str(&format!(
                "  ≤ {upper:>9.1} ms [{n:>6}] {}\n",
                "■".repeat(width)
            ));
        }
    }

    if r.cpu.is_empty() {
        out.push_str("CPU: not measured (no local process stack in the state directory)");
    } else {
        let mut cpu = table(&["CPU (measured window)", "seconds", "cores", "ms/order"]);
        for c in &r.cpu {
            cpu.add_row([
                c.component.clone(),
                format!("{:.2}", c.seconds),
                format!("{:.3}", c.cores),
                c.ms_per_order
                    .map(|m| format!("{m:.2}"))
                    .unwrap_or_else(|| "-".into()),
            ]);
        }
        cpu.add_row([
            "total".to_owned(),
            format!("{:.2}", r.cpu.iter().map(|c| c.seconds).sum::<f64>()),
            r.cpu_total_cores
                .map(|c| format!("{c:.3}"))
                .unwrap_or_default(),
            r.cpu_ms_per_order
                .map(|m| format!("{m:.2}"))
                .unwrap_or_else(|| "-".into()),
        ]);
        out.push_str(&cpu.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(id: Uuid, at: Instant, measured: bool) -> Note {
        Note::Accepted {
            id,
            due: at,
            answered: at,
            measured,
            waiter: None,
        }
    }

    #[test]
    fn an_outcome_is_matched_to_its_order_whichever_arrives_first() {
        let mut t = Tally::new();
        let now = Instant::now();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        t.note(accepted(a, now, true));
        t.note(Note::Finished {
            id: a,
            outcome: "CONFIRMED".into(),
            at: Utc::now(),
            seen: now + Duration::from_millis(40),
        });
        // b's outcome beats its HTTP reply.
        t.note(Note::Finished {
            id: b,
            outcome: "CANCELLED OUT_OF_STOCK".into(),
            at: Utc::now(),
            seen: now,
        });
        assert_eq!(t.finished, 1);
        t.note(accepted(b, now, true));
        assert_eq!((t.accepted, t.finished, t.confirmed), (2, 2, 1));
        assert_eq!(t.cancelled.get("OUT_OF_STOCK"), Some(&1));
        assert!(t.pending.is_empty());
        let saga = latency(&t.saga).expect("two samples");
        assert!(saga.max >= 39.0 && saga.max <= 41.0, "{saga:?}");
    }

    #[test]
    fn a_confirmed_order_is_followed_to_its_delivery_or_a_late_cancellation() {
        let mut t = Tally::new();
        let now = Instant::now();
        let (a, b, warm) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        for (id, measured) in [(a, true), (b, true), (warm, false)] {
            t.note(accepted(id, now, measured));
            t.note(Note::Finished {
                id,
                outcome: "CONFIRMED".into(),
                at: Utc::now(),
                seen: now + Duration::from_millis(10),
            });
        }
        assert_eq!(t.confirmed_at.len(), 2, "only measured orders are followed");
        t.note(Note::Delivered {
            id: a,
            seen: now + Duration::from_millis(35),
        });
        t.note(Note::Delivered {
            id: warm,
            seen: now + Duration::from_millis(35),
        });
        t.note(Note::Finished {
            id: b,
            outcome: "CANCELLED FULFILLMENT_FAILED".into(),
            at: Utc::now(),
            seen: now + Duration::from_millis(50),
        });
        assert_eq!(t.delivered, 1);
        assert!(t.confirmed_at.is_empty(), "{:?}", t.confirmed_at);
        assert_eq!(
            t.cancelled_after_confirmation.get("FULFILLMENT_FAILED"),
            Some(&1)
        );
        let delivery = latency(&t.delivery).expect("one delivery timed");
        assert!((delivery.p50 - 25.0).abs() < 0.1, "{delivery:?}");
        assert_eq!(t.cancelled.get("FULFILLMENT_FAILED"), None);
    }

    #[test]
    fn warm_up_orders_are_followed_but_not_counted() {
        let mut t = Tally::new();
        let now = Instant::now();
        let id = Uuid::now_v7();
        t.note(accepted(id, now, false));
        assert_eq!(t.pending.len(), 1);
        t.note(Note::Finished {
            id,
            outcome: "CONFIRMED".into(),
            at: Utc::now(),
            seen: now,
        });
        assert_eq!((t.accepted, t.finished, t.confirmed), (0, 0, 0));
        assert!(t.pending.is_empty() && t.saga.is_empty());
    }

    #[test]
    fn decided_latency_comes_from_the_envelopes() {
        let mut t = Tally::new();
        let now = Instant::now();
        let id = Uuid::now_v7();
        let created = Utc::now();
        t.note(accepted(id, now, true));
        t.note(Note::Created { id, at: created });
        t.note(Note::Finished {
            id,
            outcome: "CONFIRMED".into(),
            at: created + chrono::Duration::milliseconds(25),
            seen: now,
        });
        let decided = latency(&t.decided).expect("one sample");
        assert!((decided.p50 - 25.0).abs() < 0.1, "{decided:?}");
    }

    #[test]
    fn strangers_outcomes_are_forgotten() {
        let mut t = Tally::new();
        let long_ago = Instant::now();
        let stranger = Uuid::now_v7();
        t.note(Note::Finished {
            id: stranger,
            outcome: "CONFIRMED".into(),
            at: Utc::now(),
            seen: long_ago,
        });
        assert_eq!(t.early.len(), 1);
        t.forget_old(long_ago + Duration::from_secs(61));
        assert!(t.early.is_empty() && t.early_order.is_empty());
    }

    #[test]
    fn buckets_cover_every_sample() {
        let mut h = histogram();
        for ms in [5u64, 7, 9, 12, 40, 41, 200] {
            record(&mut h, Duration::from_millis(ms));
        }
        let b = buckets(&h);
        assert!(b.len() <= 10);
        assert_eq!(b.iter().map(|(_, n)| n).sum::<u64>(), 7);
        assert!(b.last().is_some_and(|(upper, _)| *upper >= 200.0));
    }

    #[test]
    fn bad_arguments_are_refused() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
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
    }
}
