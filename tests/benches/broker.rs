//! The local broker on its own: prints figures, asserts nothing (these machines are shared and
//! noisy).
//!
//! For each JVM setting and each consumer setting (`fetch.wait.max.ms`, partitions per topic), a
//! private Apache Kafka node ([`TestBroker`]) serves what the OMS asks of it: the topics of
//! `topics::ALL` and one consumer group per service of the topology, subscribed to the topics it
//! reads, all named as a deployment with its own prefix names them (`Topics`). Measured:
//! - **start**: from the JVM's start until the node answers a metadata request;
//! - then 30 s of the load below, unmeasured, so the JVM has compiled its hot paths;
//! - **idle**: the broker's CPU while the consumers wait for messages that never come, and its
//!   resident memory then;
//! - **hop**: one message at a time (irregular gaps) from an idempotent `acks=all` producer to a
//!   consumer of the order group, send to receive (one hop of the saga, without the services);
//! - **load**: 200 messages/s for 10 s on the order events topic (read by every group that reads
//!   it in the stack): the broker's CPU per message produced, idle cost subtracted, and its
//!   resident memory after.
//!
//! JVM settings come from `OMS_BENCH_JVMS` (`;`-separated option lists, `default` for the
//! node's defaults), consumer settings from `OMS_BENCH_WAITS` (milliseconds) and
//! `OMS_BENCH_PARTITIONS`. `scripts/bench.sh broker` runs it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oms_contracts::topics::ORDER_EVENTS;
use oms_contracts::topology::{Topics, SERVICES};
use oms_contracts::ServiceId;
use oms_tests::{cpu_seconds, unique, TestBroker};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};

fn list(var: &str, default: &str) -> Vec<String> {
    std::env::var(var)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

struct Figures {
    start_s: f64,
    idle_rss_mb: f64,
    loaded_rss_mb: f64,
    idle_cores: f64,
    hop_p50_ms: f64,
    hop_p99_ms: f64,
    cpu_ms_per_message: f64,
}

/// How long the load runs before anything is measured.
const WARM_UP: Duration = Duration::from_secs(30);

/// The service whose consumer group's receipts are timed (a reader of [`ORDER_EVENTS`], where the
/// bench sends).
const TIMED: ServiceId = ServiceId::Order;

/// Consumers of one setting, each on its own thread; received payloads (send sequence numbers)
/// of the [`TIMED`] service's group are timed.
struct Consumers {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Consumers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn start_consumers(
    brokers: &str,
    topics: &Topics,
    wait_ms: u64,
    sent: Arc<Mutex<HashMap<u64, Instant>>>,
    hops: Arc<Mutex<Vec<f64>>>,
) -> anyhow::Result<Consumers> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let assigned = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let groups: Vec<_> = SERVICES.iter().filter(|s| !s.reads().is_empty()).collect();
    for service in &groups {
        let (group, reads) = topics.consumer(service);
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("auto.offset.reset", "latest")
            .set("fetch.wait.max.ms", wait_ms.to_string())
            .set("heartbeat.interval.ms", "1000")
            .create()?;
        let names: Vec<&str> = reads.iter().map(String::as_str).collect();
        consumer.subscribe(&names)?;
        let (stop, sent, hops, assigned) = (
            Arc::clone(&stop),
            Arc::clone(&sent),
            Arc::clone(&hops),
            Arc::clone(&assigned),
        );
        let timed = service.id == TIMED;
        threads.push(std::thread::spawn(move || {
            let mut counted = false;
            while !stop.load(Ordering::Relaxed) {
                let polled = consumer.poll(Duration::from_millis(100));
                if !counted && consumer.assignment().is_ok_and(|a| a.count() > 0) {
                    counted = true;
                    assigned.fetch_add(1, Ordering::Relaxed);
                }
                let Some(Ok(m)) = polled else { continue };
                let received = Instant::now();
                if !timed {
                    continue;
                }
                let seq = m
                    .payload()
                    .and_then(|p| std::str::from_utf8(p).ok())
                    .and_then(|s| s.parse::<u64>().ok());
                if let Some(at) = seq.and_then(|s| sent.lock().ok()?.remove(&s)) {
                    if let Ok(mut h) = hops.lock() {
                        h.push(received.duration_since(at).as_secs_f64() * 1000.0);
                    }
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while assigned.load(Ordering::Relaxed) < groups.len() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "consumer groups not formed in 60s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Consumers { stop, threads })
}

/// The broker's resident memory in MB, from `/proc/<pid>/status`.
fn broker_rss_mb(broker: &TestBroker) -> anyhow::Result<f64> {
    let pid = broker
        .pid()
        .ok_or_else(|| anyhow::anyhow!("the broker does not run"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for pid {pid}"))?;
    Ok(kb / 1024.0)
}

fn broker_cpu(broker: &TestBroker) -> anyhow::Result<f64> {
    broker
        .pid()
        .and_then(cpu_seconds)
        .ok_or_else(|| anyhow::anyhow!("cannot read the broker's CPU time"))
}

/// Sends `rate` messages a second for `window` (sequence numbers from `first`), each on its own
/// task so that a slow answer does not hold the pace back, then waits for every answer.
async fn paced<F, Fut>(rate: u64, window: Duration, first: u64, send: &F) -> anyhow::Result<()>
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let started = Instant::now();
    let mut pending = Vec::new();
    for i in 0..rate * window.as_secs() {
        let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
        pending.push(tokio::spawn(send(first + i)));
    }
    for p in pending {
        p.await??;
    }
    Ok(())
}

async fn measure(jvm: Vec<String>, partitions: i32, wait_ms: u64) -> anyhow::Result<Figures> {
    let started = Instant::now();
    // A broker of its own per setting: nothing left over from the last one.
    let broker = &TestBroker::start_with_jvm(jvm).await?;
    let start_s = started.elapsed().as_secs_f64();
    let brokers = broker.brokers();
    let topics = Topics::new(&format!("b{}.", unique()));
    let names: Vec<String> = oms_contracts::topics::ALL
        .iter()
        .map(|t| topics.name(t))
        .collect();
    oms_kafka::ensure_topics(&brokers, &names, partitions).await?;
    let sent: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let hops: Arc<Mutex<Vec<f64>>> = Arc::default();
    let consumers = start_consumers(
        &brokers,
        &topics,
        wait_ms,
        Arc::clone(&sent),
        Arc::clone(&hops),
    )?;
    let producer: FutureProducer = oms_runtime::kafka::producer_config(&brokers, "bench")
        .set("linger.ms", "0")
        .create()?;
    let order_events = &topics.name(ORDER_EVENTS);
    let send = |seq: u64| {
        let key = format!("order-{}", seq % 97);
        let payload = seq.to_string();
        if let Ok(mut s) = sent.lock() {
            s.insert(seq, Instant::now());
        }
        let producer = producer.clone();
        let topic = order_events.clone();
        async move {
            producer
                .send(
                    FutureRecord::to(&topic).key(&key).payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .map(|_| ())
                .map_err(|(e, _)| anyhow::anyhow!("producing: {e}"))
        }
    };
    // Warm up: metadata, producer id, fetch sessions, then WARM_UP of the load itself, so the
    // JVM's compilers are done with the hot paths before anything is measured (a stack's broker
    // runs for hours; its first seconds are not what it costs).
    for seq in 0..20 {
        send(1_000_000 + seq).await?;
    }
    let rate = 200u64;
    paced(rate, WARM_UP, 3_000_000, &send).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    hops.lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clear();

    // Idle.
    let idle_window = Duration::from_secs(10);
    let before = broker_cpu(broker)?;
    tokio::time::sleep(idle_window).await;
    let idle_cores = (broker_cpu(broker)? - before) / idle_window.as_secs_f64();
    let idle_rss_mb = broker_rss_mb(broker)?;

    // One message at a time, irregular gaps (a fixed pseudo-random sequence).
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    for seq in 0..100 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(40 + seed % 110)).await;
        send(seq).await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut ms = hops
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    anyhow::ensure!(ms.len() >= 90, "only {} of 100 hops seen", ms.len());
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];

    // Load: 200 messages/s for 10 s.
    let window = Duration::from_secs(10);
    let before = broker_cpu(broker)?;
    let started = Instant::now();
    paced(rate, window, 2_000_000, &send).await?;
    let spent = broker_cpu(broker)? - before;
    let elapsed = started.elapsed().as_secs_f64();
    let per_message =
        (spent - idle_cores * elapsed).max(0.0) * 1000.0 / (rate * window.as_secs()) as f64;
    let loaded_rss_mb = broker_rss_mb(broker)?;
    drop(consumers);
    Ok(Figures {
        start_s,
        idle_rss_mb,
        loaded_rss_mb,
        idle_cores,
        hop_p50_ms: pct(0.5),
        hop_p99_ms: pct(0.99),
        cpu_ms_per_message: per_message,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    anyhow::ensure!(
        TIMED.spec().reads().contains(&ORDER_EVENTS),
        "{TIMED} no longer reads {ORDER_EVENTS}: time a group that does"
    );
    let jvms: Vec<String> = std::env::var("OMS_BENCH_JVMS")
        .unwrap_or_else(|_| "default".to_owned())
        .split(';')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    let waits: Vec<u64> = list("OMS_BENCH_WAITS", "20,100,500")
        .iter()
        .map(|w| w.parse())
        .collect::<Result<_, _>>()?;
    let partitions: Vec<i32> = list("OMS_BENCH_PARTITIONS", "1,3")
        .iter()
        .map(|p| p.parse())
        .collect::<Result<_, _>>()?;
    println!(
        "broker: Apache Kafka {}, one consumer group per service, 30 s warm-up at 200 msg/s, then idle 10 s, 100 single hops, 200 msg/s for 10 s",
        oms_kafka::node::KAFKA_VERSION
    );
    println!(
        "{:<44} {:>5} {:>6} {:>7} {:>10} {:>8} {:>8} {:>9} {:>9} {:>9}",
        "jvm",
        "parts",
        "wait",
        "start s",
        "idle cores",
        "idle MB",
        "load MB",
        "hop p50",
        "hop p99",
        "cpu ms/msg"
    );
    for jvm in &jvms {
        let options: Vec<String> = if jvm == "default" {
            oms_kafka::node::DEFAULT_JVM_OPTS
                .iter()
                .map(|s| (*s).to_owned())
                .collect()
        } else {
            jvm.split_whitespace().map(str::to_owned).collect()
        };
        for &p in &partitions {
            for &w in &waits {
                let f = measure(options.clone(), p, w).await?;
                println!(
                    "{:<44} {p:>5} {:>4}ms {:>7.1} {:>10.3} {:>8.0} {:>8.0} {:>9.1} {:>9.1} {:>9.3}",
                    jvm,
                    w,
                    f.start_s,
                    f.idle_cores,
                    f.idle_rss_mb,
                    f.loaded_rss_mb,
                    f.hop_p50_ms,
                    f.hop_p99_ms,
                    f.cpu_ms_per_message
                );
            }
        }
    }
    Ok(())
}
