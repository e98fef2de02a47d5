//! Support for the OMS's end-to-end tests, which run against the real PostgreSQL and Apache Kafka
//! that `scripts/test.sh` starts (`OMS_TEST_DATABASE_URL`, `OMS_TEST_BROKERS`).
//!
//! Every test gets its own database and its own topics, so tests run in parallel without seeing
//! each other. Tests that stop the broker start a private one with [`TestBroker`].

pub mod otlp;
pub mod stack;

use std::future::Future;
use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use oms_kafka::node::security::Plan;
use oms_kafka::node::{Cluster, Install, Ports};
use oms_runtime::config::DatabaseUrl;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use sqlx::PgPool;
use uuid::Uuid;

/// The test cluster's server URL.
pub fn database_url() -> DatabaseUrl {
    let url = std::env::var("OMS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://oms:oms@127.0.0.1:55433/postgres".into());
    match url.parse() {
        Ok(u) => u,
        Err(e) => panic!("OMS_TEST_DATABASE_URL is not a PostgreSQL URL: {e}"),
    }
}

/// The shared test broker.
pub fn brokers() -> String {
    std::env::var("OMS_TEST_BROKERS").unwrap_or_else(|_| "127.0.0.1:19093".into())
}

/// A short unique suffix.
pub fn unique() -> String {
    Uuid::now_v7().simple().to_string()[20..].to_owned()
}

/// A fresh, migrated database of its own.
pub async fn fresh_db(prefix: &str) -> anyhow::Result<PgPool> {
    let name = format!("t_{prefix}_{}", unique());
    oms_runtime::db::connect(&database_url(), &name, 10, None)
        .await
        .with_context(|| {
            format!("connecting to the test cluster (is scripts/test.sh running it?) for {name}")
        })
}

/// Creates uniquely named topics (`<prefix>.<unique>`) and their DLQs on `brokers`.
pub async fn fresh_topic(brokers: &str, prefix: &str, partitions: i32) -> anyhow::Result<String> {
    let topic = format!("test.{prefix}.{}", unique());
    oms_kafka::ensure_topics(
        brokers,
        &[topic.clone(), oms_contracts::topics::dlq(&topic)],
        partitions,
    )
    .await?;
    Ok(topic)
}

/// A fresh `oms.order.events` behind a unique topic prefix, with its dead-letter topic: where a
/// consumer configured with that prefix accepts the saga's order events (it refuses a type off
/// its contract topic). Returns the prefix and the topic.
pub async fn fresh_order_events(
    brokers: &str,
    name: &str,
    partitions: i32,
) -> anyhow::Result<(String, String)> {
    let prefix = format!("test.{name}.{}.", unique());
    let topic = format!("{prefix}{}", oms_contracts::topics::ORDER_EVENTS);
    oms_kafka::ensure_topics(
        brokers,
        &[topic.clone(), oms_contracts::topics::dlq(&topic)],
        partitions,
    )
    .await?;
    Ok((prefix, topic))
}

/// Polls `check` every 50 ms until it returns `Some`, or fails after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + within;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() >= deadline {
            match last_error {
                Some(e) => {
                    bail!("timed out after {within:?} waiting for {what}; last error: {e:#}")
                }
                None => bail!("timed out after {within:?} waiting for {what}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One message as read back from Kafka.
#[derive(Debug, Clone)]
pub struct Received {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub payload: Option<Vec<u8>>,
    /// Headers in order; absent values as `None`.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Received {
    /// The first header called `name`, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_ref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// The key as text.
    pub fn key_str(&self) -> String {
        String::from_utf8_lossy(self.key.as_deref().unwrap_or_default()).into_owned()
    }
}

/// Reads `topic` from the beginning until `count` messages arrived or `within` passed, then
/// keeps reading for `settle` to catch any extra (duplicate) message. Partition order is kept.
pub fn read_topic(
    brokers: &str,
    topic: &str,
    count: usize,
    within: Duration,
    settle: Duration,
) -> anyhow::Result<Vec<Received>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{}", unique()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[topic])?;
    let mut out = Vec::new();
    let deadline = Instant::now() + within;
    let mut settle_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if settle_until.is_some_and(|t| now >= t) || (settle_until.is_none() && now >= deadline) {
            break;
        }
        if let Some(result) = consumer.poll(Duration::from_millis(100)) {
            let m = result?;
            out.push(Received {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec),
                headers: m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default(),
            });
            if out.len() >= count && settle_until.is_none() {
                settle_until = Some(Instant::now() + settle);
            }
        }
    }
    Ok(out)
}

/// A plain producer for feeding consumers in tests.
pub fn producer(brokers: &str) -> anyhow::Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "10000")
        .create()?)
}

/// Produces raw bytes with headers and waits for the ack.
pub async fn produce(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    payload: &[u8],
    headers: &[(&str, &str)],
) -> anyhow::Result<(i32, i64)> {
    let mut hs = rdkafka::message::OwnedHeaders::new();
    for (k, v) in headers {
        hs = hs.insert(rdkafka::message::Header {
            key: k,
            value: Some(*v),
        });
    }
    let record = FutureRecord::to(topic)
        .key(key)
        .payload(payload)
        .headers(hs);
    producer
        .send(record, Duration::from_secs(10))
        .await
        .map(|d| (d.partition, d.offset))
        .map_err(|(e, _)| anyhow::anyhow!("producing to {topic}: {e}"))
}

/// CPU seconds (user + system) process `pid` has used, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name: utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux the stack runs on.
    Some(ticks as f64 / 100.0)
}

/// A private Apache Kafka node (in a temporary directory, on free ports) that a test may kill and
/// start again; topics, data and committed offsets survive a restart. The same node the local
/// stack runs ([`oms_kafka::node`]), as Testcontainers users expect, without Docker.
pub struct TestBroker {
    dir: tempfile::TempDir,
    cluster: Cluster,
    install: Install,
    jvm_options: Vec<String>,
    child: Option<Child>,
}

/// How long a test broker gets to answer after its start (a JVM on a busy 2-core box).
const BROKER_START: Duration = Duration::from_secs(90);

impl TestBroker {
    /// Starts a node on free ports and waits until it answers a metadata request.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with_jvm(oms_kafka::node::jvm_options()).await
    }

    /// [`TestBroker::start`] with these JVM options.
    pub async fn start_with_jvm(jvm_options: Vec<String>) -> anyhow::Result<Self> {
        Self::launch(jvm_options, false).await
    }

    /// A secured node, as `omsctl stack up --secure` runs it: clients over SASL_SSL with a SCRAM
    /// user each (the operator and one per service, passwords in [`TestBroker::security`]),
    /// ACLs enforced; no ACL exists until [`TestBroker::grant`].
    pub async fn start_secure() -> anyhow::Result<Self> {
        Self::launch(oms_kafka::node::jvm_options(), true).await
    }

    async fn launch(jvm_options: Vec<String>, secure: bool) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        // Held together so that no two are the same; released just before the node binds them.
        let held: Vec<TcpListener> = (0..3)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<_, _>>()?;
        let port = |i: usize| -> anyhow::Result<u16> { Ok(held[i].local_addr()?.port()) };
        let ports = Ports {
            client: port(0)?,
            controller: port(1)?,
            internal: port(2)?,
        };
        let cluster = Cluster::with_ports(dir.path(), vec![ports]).secured(secure);
        let install = Install::locate().context("the test broker needs Apache Kafka")?;
        let prepared = {
            let (cluster, install) = (cluster.clone(), install.clone());
            tokio::task::spawn_blocking(move || {
                if secure {
                    let users = Plan::for_topology(&oms_contracts::Topics::default()).users;
                    cluster.security().ensure(&users)?;
                }
                cluster.prepare(1, &install)
            })
            .await?
        };
        prepared?;
        let mut broker = Self {
            dir,
            cluster,
            install,
            jvm_options,
            child: None,
        };
        drop(held);
        broker.start_again().await?;
        Ok(broker)
    }

    /// The node's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `host:port` of this broker.
    pub fn brokers(&self) -> String {
        self.cluster.bootstrap()
    }

    /// A secured node's users and TLS material.
    pub fn security(&self) -> oms_kafka::node::Security {
        self.cluster.security()
    }

    /// The librdkafka properties of Kafka user `user` of a secured node (none on a plain one).
    pub fn client_properties(&self, user: &str) -> anyhow::Result<oms_kafka::Properties> {
        if !self.cluster.is_secure() {
            return Ok(oms_kafka::Properties::new());
        }
        Ok(self.security().client_properties(user)?)
    }

    /// Applies the OMS's security plan for topics named by `topics` to a secured node (SCRAM
    /// users, the topology's ACLs); returns the ACLs the node then has, as `acl` lines.
    pub async fn grant(&self, topics: &oms_contracts::Topics) -> anyhow::Result<Vec<String>> {
        let (cluster, install) = (self.cluster.clone(), self.install.clone());
        let plan = Plan::for_topology(topics);
        let report = tokio::task::spawn_blocking(move || {
            cluster.security().apply(&cluster, &install, &plan)
        })
        .await??;
        Ok(report
            .lines()
            .filter(|l| l.starts_with("acl "))
            .map(str::to_owned)
            .collect())
    }

    /// Starts the stopped node again on the same ports and storage; returns once it answers.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))?;
        let child = self
            .cluster
            .command_with(1, &self.install, &self.jvm_options)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting the test broker (java)")?;
        self.child = Some(child);
        let (address, props) = self.cluster.probe(1)?;
        let answered = eventually(BROKER_START, "the test broker to answer", || {
            let (address, props) = (address.clone(), props.clone());
            async move {
                let n = tokio::task::spawn_blocking(move || {
                    oms_kafka::node::brokers_answering(&address, &props, Duration::from_secs(2))
                })
                .await??;
                Ok((n > 0).then_some(()))
            }
        })
        .await;
        if let Err(e) = answered {
            let log =
                std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!("{e:#}\n{}", tail.join("\n"));
        }
        Ok(())
    }

    /// Stops the node (SIGKILL, like a crash) and waits until it is gone.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A TCP proxy in front of a server, which a test can cut (closing every connection and refusing
/// new ones) and restore: a database outage for one client without stopping the shared cluster.
pub struct CuttableProxy {
    port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl CuttableProxy {
    /// Proxies a new local port to `target` (`host:port`).
    pub async fn start(target: String) -> anyhow::Result<Self> {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let connections = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (up2, conns2) = (up.clone(), connections.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns2
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(task.abort_handle());
            }
        });
        Ok(Self {
            port,
            up,
            connections,
            accept,
        })
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Cuts every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for c in self
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            c.abort();
        }
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// Waits until consumer group `group` has committed offsets at the end of every partition of
/// `topics`: everything on them was handled.
pub async fn wait_caught_up(
    brokers: &str,
    group: &str,
    topics: &[String],
    within: Duration,
) -> anyhow::Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?;
    let group = group.to_owned();
    let topics = topics.to_vec();
    let consumer = std::sync::Arc::new(consumer);
    eventually(within, &format!("group {group} to catch up"), || {
        let consumer = std::sync::Arc::clone(&consumer);
        let topics = topics.clone();
        async move {
            tokio::task::spawn_blocking(move || -> anyhow::Result<Option<()>> {
                let timeout = Duration::from_secs(5);
                let mut tpl = rdkafka::TopicPartitionList::new();
                let mut ends = Vec::new();
                for topic in &topics {
                    let meta = consumer.fetch_metadata(Some(topic), timeout)?;
                    for t in meta.topics() {
                        for p in t.partitions() {
                            let (_, high) =
                                oms_kafka::watermarks(&*consumer, topic, p.id(), timeout)?;
                            tpl.add_partition(topic, p.id());
                            ends.push((topic.clone(), p.id(), high));
                        }
                    }
                }
                let committed = consumer.committed_offsets(tpl, timeout)?;
                let behind = ends.iter().any(|(topic, partition, high)| {
                    let at = committed
                        .find_partition(topic, *partition)
                        .and_then(|e| e.offset().to_raw())
                        .unwrap_or(-1);
                    *high > 0 && at < *high
                });
                Ok((!behind).then_some(()))
            })
            .await?
        }
    })
    .await
}

/// Deletes `topics` from `brokers` and waits (at most 15 s) for the answer, on a thread and a
/// runtime of its own, so that it can run in a `Drop` inside or outside an async context. What
/// goes wrong is only logged: a test's clean-up must not fail the test.
pub fn delete_topics(brokers: &str, topics: Vec<String>) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let brokers = brokers.to_owned();
    let work = std::thread::spawn(move || -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> =
            oms_kafka::client_config(&brokers, &oms_kafka::Properties::new())
                .set_log_level(rdkafka::config::RDKafkaLogLevel::Emerg)
                .create()?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(15),
                    admin.delete_topics(&names, &options),
                )
                .await
            })??;
        Ok(())
    });
    match work.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("deleting a test's topics: {e:#}"),
        Err(_) => eprintln!("deleting a test's topics: the thread panicked"),
    }
}

/// Messages currently on `topic` (sum over partitions of high minus low watermark).
pub fn topic_size(brokers: &str, topic: &str) -> anyhow::Result<usize> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let timeout = Duration::from_secs(10);
    let meta = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut total = 0i64;
    for t in meta.topics() {
        for p in t.partitions() {
            let (low, high) = oms_kafka::watermarks(&consumer, topic, p.id(), timeout)?;
            total += high - low;
        }
    }
    Ok(usize::try_from(total).unwrap_or(0))
}

/// Produces a message exactly as it was received (key, value and headers, absent parts absent).
pub async fn produce_again(
    producer: &FutureProducer,
    topic: &str,
    message: &Received,
) -> anyhow::Result<()> {
    let mut hs = rdkafka::message::OwnedHeaders::new();
    for (k, v) in &message.headers {
        hs = hs.insert(rdkafka::message::Header {
            key: k,
            value: v.as_deref(),
        });
    }
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(hs);
    if let Some(key) = &message.key {
        record = record.key(key.as_slice());
    }
    if let Some(payload) = &message.payload {
        record = record.payload(payload.as_slice());
    }
    producer
        .send(record, Duration::from_secs(10))
        .await
        .map(|_| ())
        .map_err(|(e, _)| anyhow::anyhow!("producing to {topic}: {e}"))
}
