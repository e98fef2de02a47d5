//! A local Apache Kafka cluster, as the local stack and the tests run it: one or three nodes on
//! loopback, each both KRaft controller and broker, on the machine's JDK with the jars
//! `scripts/deps.sh` installed from Maven Central (`kafka/dist/pom.xml`).
//!
//! This module knows where the jars are, which ports and directories each node has, the files a
//! node starts from (`server.properties`, `log4j2.properties`) and the commands that format its
//! storage and start it. Supervising the processes is the caller's: omsctl runs them detached
//! with pid files, the tests as child processes.
//!
//! Layout of a cluster directory:
//! - `cluster.id`: the KRaft cluster id, made when the first node is formatted;
//! - `node-K/server.properties`, `node-K/log4j2.properties`, `node-K/data/` (log and metadata
//!   directory) for node K (1-based).
//!
//! Ports of node K: the client listener at `base + 10 (K - 1)`, the controller listener 100 above
//! it and the listener the nodes replicate over 200 above it, all on 127.0.0.1.
//!
//! A secured cluster ([`Cluster::secured`], [`security`]) takes clients over SASL_SSL with SCRAM
//! users and ACLs, and its nodes talk to each other over mutual TLS; a plain one is PLAINTEXT
//! throughout.

pub mod security;

pub use security::Security;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::Properties;

/// The Apache Kafka release the local stack and the tests run (`kafka/dist/pom.xml` pins the
/// same; a unit test keeps them equal).
pub const KAFKA_VERSION: &str = "4.4.0";

/// The most nodes a local cluster has.
pub const MAX_NODES: u32 = 3;

/// Environment variable naming the directory whose `libs/` holds the jars (default: the user's
/// cache, where `scripts/deps.sh` puts them).
pub const ENV_HOME: &str = "OMS_BROKER_HOME";

/// Environment variable replacing the JVM options a node starts with ([`DEFAULT_JVM_OPTS`]).
pub const ENV_JVM_OPTS: &str = "OMS_BROKER_JVM_OPTS";

/// JVM options of a node, chosen by measurement on a 2-core box (docs/benchmarks.md, "The
/// broker's JVM"): a heap the OMS's load never fills, the serial collector (no GC threads
/// competing with the services for two cores), and no tiered-compilation limits.
pub const DEFAULT_JVM_OPTS: &[&str] = &[
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
];

/// What went wrong preparing or asking a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The jars are not where they should be.
    #[error("Apache Kafka {KAFKA_VERSION} is not installed in {0} (scripts/deps.sh installs it, or set OMS_BROKER_HOME)")]
    NotInstalled(PathBuf),
    /// Neither `OMS_BROKER_HOME` nor a home or cache directory is known.
    #[error("cannot tell where Apache Kafka is installed: set OMS_BROKER_HOME (or HOME)")]
    NoHome,
    /// A file could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Kafka's storage tool failed.
    #[error("formatting the storage of node {node} failed ({status}): {output}")]
    Format {
        /// The node.
        node: u32,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed (the last lines).
        output: String,
    },
    /// Making or reading the TLS material or users, or applying the security plan, failed.
    #[error("{0}")]
    Tls(String),
    /// A node number outside the cluster.
    #[error("node {node} is not in a cluster of {nodes}")]
    NoSuchNode {
        /// The node asked for.
        node: u32,
        /// Nodes in the cluster.
        nodes: u32,
    },
}

pub(crate) fn io<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> NodeError + 'a {
    move |source| NodeError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The installed jars of [`KAFKA_VERSION`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Install {
    home: PathBuf,
}

impl Install {
    /// Where the jars belong: `OMS_BROKER_HOME`, else `$XDG_CACHE_HOME/oms/kafka-VERSION`, else
    /// `$HOME/.cache/oms/kafka-VERSION` (what `scripts/deps.sh` uses).
    pub fn default_home() -> Result<PathBuf, NodeError> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(home) = var(ENV_HOME) {
            return Ok(PathBuf::from(home));
        }
        let cache = var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .ok_or(NodeError::NoHome)?;
        Ok(cache.join("oms").join(format!("kafka-{KAFKA_VERSION}")))
    }

    /// The installation at [`Install::default_home`], which must hold the broker's jar.
    pub fn locate() -> Result<Self, NodeError> {
        Self::at(Self::default_home()?)
    }

    /// The installation in `home`, which must hold the broker's jar in `libs/`.
    pub fn at(home: PathBuf) -> Result<Self, NodeError> {
        let jar = home
            .join("libs")
            .join(format!("kafka_2.13-{KAFKA_VERSION}.jar"));
        if jar.is_file() {
            Ok(Self { home })
        } else {
            Err(NodeError::NotInstalled(home))
        }
    }

    /// Its directory.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The Java classpath of every jar (a `libs/*` wildcard, which Java expands itself).
    pub fn classpath(&self) -> String {
        format!("{}/*", self.home.join("libs").display())
    }

    /// `java` of `JAVA_HOME` when set, else the one on `PATH`.
    pub fn java() -> PathBuf {
        match std::env::var_os("JAVA_HOME").filter(|v| !v.is_empty()) {
            Some(home) => PathBuf::from(home).join("bin").join("java"),
            None => PathBuf::from("java"),
        }
    }

    /// A `java` command with `jvm_options`, the jars on its classpath, running `main_class`.
    pub fn java_command_with(&self, jvm_options: &[String], main_class: &str) -> Command {
        let mut c = Command::new(Self::java());
        c.args(jvm_options)
            .arg("-cp")
            .arg(self.classpath())
            .arg(main_class);
        c
    }
}

/// The ports of one node on 127.0.0.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// Where clients connect.
    pub client: u16,
    /// The KRaft controller listener.
    pub controller: u16,
    /// The listener the nodes replicate over.
    pub internal: u16,
}

/// How far above its first client port a cluster of [`MAX_NODES`] reaches (the last node's
/// internal listener): a base port above `u16::MAX - PORT_SPAN` leaves no room.
pub const PORT_SPAN: u16 = 200 + 10 * (MAX_NODES as u16 - 1);

impl Ports {
    /// Node `node`'s ports in a cluster whose first client port is `base`.
    pub fn of_node(base: u16, node: u32) -> Self {
        let step = u16::try_from(node.saturating_sub(1))
            .unwrap_or(u16::MAX)
            .saturating_mul(10);
        let client = base.saturating_add(step);
        Self {
            client,
            controller: client.saturating_add(100),
            internal: client.saturating_add(200),
        }
    }
}

/// A local cluster: its nodes' ports, its directory, whether it is secured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    dir: PathBuf,
    ports: Vec<Ports>,
    secure: bool,
}

impl Cluster {
    /// `nodes` nodes (1 to [`MAX_NODES`]) on the ports [`Ports::of_node`] gives from `base`.
    pub fn local(dir: &Path, base: u16, nodes: u32) -> Self {
        let nodes = nodes.clamp(1, MAX_NODES);
        Self::with_ports(dir, (1..=nodes).map(|k| Ports::of_node(base, k)).collect())
    }

    /// One node per entry of `ports` (node 1 first): the tests' private brokers on free ports.
    pub fn with_ports(dir: &Path, ports: Vec<Ports>) -> Self {
        Self {
            dir: dir.to_path_buf(),
            ports,
            secure: false,
        }
    }

    /// This cluster with its client listener secured (SASL_SSL, SCRAM, ACLs) and mutual TLS
    /// between its nodes, the material in `security/` ([`Security::ensure`] makes it).
    pub fn secured(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Whether it is secured.
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// Its TLS material and users (whether or not it is secured).
    pub fn security(&self) -> Security {
        Security::at(&self.dir.join("security"))
    }

    /// Where node `node` answers a metadata request for a readiness check, and with which
    /// client properties: its client listener on a plain cluster; on a secured one its own
    /// listener with the nodes' certificate (which works before any SCRAM user exists).
    pub fn probe(&self, node: u32) -> Result<(String, Properties), NodeError> {
        let ports = self.ports(node)?;
        Ok(if self.secure {
            (
                format!("127.0.0.1:{}", ports.internal),
                self.security().node_identity(),
            )
        } else {
            (format!("127.0.0.1:{}", ports.client), Properties::new())
        })
    }

    /// How many nodes it has.
    pub fn nodes(&self) -> u32 {
        u32::try_from(self.ports.len()).unwrap_or(u32::MAX)
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Node `node`'s ports.
    pub fn ports(&self, node: u32) -> Result<Ports, NodeError> {
        node.checked_sub(1)
            .and_then(|i| self.ports.get(i as usize))
            .copied()
            .ok_or(NodeError::NoSuchNode {
                node,
                nodes: self.nodes(),
            })
    }

    /// Node `node`'s directory (configuration and data).
    pub fn node_dir(&self, node: u32) -> PathBuf {
        self.dir.join(format!("node-{node}"))
    }

    /// The bootstrap list of every node's client listener.
    pub fn bootstrap(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("127.0.0.1:{}", p.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Replicas of each topic: every node (so one node's loss loses nothing).
    pub fn replication(&self) -> i32 {
        i32::try_from(self.nodes()).unwrap_or(1)
    }

    /// Replicas that must have a write before it is acknowledged to an `acks=all` producer:
    /// two of three, so one node may die without stopping writes; one on a single node.
    pub fn min_insync(&self) -> i32 {
        self.replication().min(2)
    }

    fn voters(&self) -> String {
        self.ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}@127.0.0.1:{}", i + 1, p.controller))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The `server.properties` of node `node`.
    pub fn server_properties(&self, node: u32) -> Result<String, NodeError> {
        let ports = self.ports(node)?;
        let data = self.node_dir(node).join("data");
        let rf = self.replication();
        let isr = self.min_insync();
        let mut p = String::new();
        let mut line = |k: &str, v: String| {
            p.push_str(k);
            p.push('=');
            p.push_str(&v);
            p.push('\n');
        };
        line("process.roles", "broker,controller".into());
        line("node.id", node.to_string());
        line("controller.quorum.voters", self.voters());
        line(
            "listeners",
            format!(
                "CLIENT://127.0.0.1:{},CONTROLLER://127.0.0.1:{},INTERNAL://127.0.0.1:{}",
                ports.client, ports.controller, ports.internal
            ),
        );
        line(
            "advertised.listeners",
            format!(
                "CLIENT://127.0.0.1:{},INTERNAL://127.0.0.1:{}",
                ports.client, ports.internal
            ),
        );
        if self.secure {
            for (k, v) in self.security().server_lines() {
                line(k, v);
            }
        } else {
            line(
                "listener.security.protocol.map",
                "CLIENT:PLAINTEXT,CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT".into(),
            );
        }
        line("controller.listener.names", "CONTROLLER".into());
        line("inter.broker.listener.name", "INTERNAL".into());
        line("log.dirs", data.display().to_string());
        // Topics: the OMS creates its own with the contracts' partition count (3, also the
        // default here for anyone else's); each replicated on every node, two of three in sync
        // for a write, never an out-of-sync leader.
        line("auto.create.topics.enable", "false".into());
        line("num.partitions", "3".into());
        line("default.replication.factor", rf.to_string());
        line("min.insync.replicas", isr.to_string());
        line("unclean.leader.election.enable", "false".into());
        line("offsets.topic.replication.factor", rf.to_string());
        line("transaction.state.log.replication.factor", rf.to_string());
        line("transaction.state.log.min.isr", isr.to_string());
        line(
            "share.coordinator.state.topic.replication.factor",
            rf.to_string(),
        );
        line("share.coordinator.state.topic.min.isr", isr.to_string());
        // A consumer joining an empty group gets its partitions at once (tests and restarts
        // start groups all the time).
        line("group.initial.rebalance.delay.ms", "0".into());
        // Consumer groups of KIP-848's protocol (`OMS_CONSUMER_GROUP_PROTOCOL=consumer`): a
        // silent member's partitions move after 10 s, as with the classic protocol's session
        // timeout, and a member learns a new assignment within a second (the broker's defaults
        // are 45 s and 5 s, for large fleets).
        line("group.consumer.min.session.timeout.ms", "6000".into());
        line("group.consumer.session.timeout.ms", "10000".into());
        line("group.consumer.min.heartbeat.interval.ms", "1000".into());
        line("group.consumer.heartbeat.interval.ms", "1000".into());
        Ok(p)
    }

    /// Writes node `node`'s files and formats its storage unless it is formatted; the cluster
    /// id is made on the first format and kept in `cluster.id`. Returns whether it formatted.
    pub fn prepare(&self, node: u32, install: &Install) -> Result<bool, NodeError> {
        let dir = self.node_dir(node);
        std::fs::create_dir_all(dir.join("data")).map_err(io("creating", &dir))?;
        let props = dir.join("server.properties");
        write_file(&props, &self.server_properties(node)?)?;
        write_file(&dir.join("log4j2.properties"), LOG4J2)?;
        if dir.join("data").join("meta.properties").is_file() {
            return Ok(false);
        }
        let id = self.cluster_id()?;
        let log4j = format!(
            "-Dlog4j2.configurationFile={}",
            dir.join("log4j2.properties").display()
        );
        let mut format = install.java_command_with(&[log4j], "kafka.tools.StorageTool");
        format
            .arg("format")
            .args(["--cluster-id", &id, "--config"])
            .arg(&props)
            .arg("--ignore-formatted");
        let out = format
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(io("running the storage tool of", &install.home))?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout);
            let tail: Vec<&str> = text.lines().rev().take(10).collect();
            return Err(NodeError::Format {
                node,
                status: out.status,
                output: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            });
        }
        Ok(true)
    }

    /// The cluster id, made (16 random bytes, base64url) and kept on first use.
    fn cluster_id(&self) -> Result<String, NodeError> {
        let path = self.dir.join("cluster.id");
        match std::fs::read_to_string(&path) {
            Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("reading", &path)(e)),
        }
        use base64::Engine as _;
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(uuid::Uuid::now_v7().into_bytes());
        write_file(&path, &id)?;
        Ok(id)
    }

    /// The command that runs node `node` in the foreground (after [`Cluster::prepare`]), its
    /// log on standard output, with the JVM options of [`jvm_options`].
    pub fn command(&self, node: u32, install: &Install) -> Command {
        self.command_with(node, install, &jvm_options())
    }

    /// [`Cluster::command`] with these JVM options (the broker benchmark compares some).
    pub fn command_with(&self, node: u32, install: &Install, jvm_options: &[String]) -> Command {
        let dir = self.node_dir(node);
        let mut opts = jvm_options.to_vec();
        opts.push(format!(
            "-Dlog4j2.configurationFile={}",
            dir.join("log4j2.properties").display()
        ));
        let mut c = install.java_command_with(&opts, "kafka.Kafka");
        c.arg(dir.join("server.properties"));
        c
    }
}

/// The JVM options a node starts with: `OMS_BROKER_JVM_OPTS` (split at white space) when set,
/// else [`DEFAULT_JVM_OPTS`].
pub fn jvm_options() -> Vec<String> {
    match std::env::var(ENV_JVM_OPTS) {
        Ok(v) if !v.trim().is_empty() => v.split_whitespace().map(str::to_owned).collect(),
        _ => DEFAULT_JVM_OPTS.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// log4j2 configuration of a node: everything to standard output (the caller's log file),
/// Kafka's chatty request and state-change loggers at WARN.
const LOG4J2: &str = "\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = INFO
";

fn write_file(path: &Path, text: &str) -> Result<(), NodeError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io("writing", &tmp))?;
    f.write_all(text.as_bytes()).map_err(io("writing", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io("writing", path))
}

/// How many brokers answer a metadata request at `bootstrap` within `timeout` (blocking): a
/// node is ready once the cluster it belongs to answers at all (any count above zero).
pub fn brokers_answering(
    bootstrap: &str,
    props: &Properties,
    timeout: Duration,
) -> Result<usize, rdkafka::error::KafkaError> {
    let consumer: BaseConsumer = crate::client_config(bootstrap, props)
        .set_log_level(RDKafkaLogLevel::Emerg)
        .create()?;
    let meta = consumer.fetch_metadata(None, timeout)?;
    Ok(meta.brokers().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> std::collections::BTreeMap<String, String> {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn the_pinned_version_is_the_poms() {
        let pom = include_str!("../../dist/pom.xml");
        assert!(
            pom.contains(&format!("<kafka.version>{KAFKA_VERSION}</kafka.version>")),
            "kafka/dist/pom.xml pins another Kafka than KAFKA_VERSION {KAFKA_VERSION}"
        );
        let sums = include_str!("../../dist/jars.sha256");
        assert!(sums.contains(&format!("kafka_2.13-{KAFKA_VERSION}.jar")));
        // compose.yaml deploys the same release.
        let compose = include_str!("../../../compose.yaml");
        assert!(
            compose.contains(&format!("image: apache/kafka:{KAFKA_VERSION}\n")),
            "compose.yaml runs another Kafka than KAFKA_VERSION {KAFKA_VERSION}"
        );
    }

    #[test]
    fn nodes_get_their_own_ports_and_one_quorum() {
        let c = Cluster::local(Path::new("/s/broker"), 19092, 3);
        assert_eq!(c.nodes(), 3);
        assert_eq!(
            c.ports(2).ok(),
            Some(Ports {
                client: 19102,
                controller: 19202,
                internal: 19302
            })
        );
        assert!(c.ports(4).is_err() && c.ports(0).is_err());
        assert_eq!(
            c.bootstrap(),
            "127.0.0.1:19092,127.0.0.1:19102,127.0.0.1:19112"
        );
        let p = keys(&c.server_properties(3).expect("node 3"));
        assert_eq!(p["node.id"], "3");
        assert_eq!(
            p["controller.quorum.voters"],
            "1@127.0.0.1:19192,2@127.0.0.1:19202,3@127.0.0.1:19212"
        );
        assert_eq!(
            p["listeners"],
            "CLIENT://127.0.0.1:19112,CONTROLLER://127.0.0.1:19212,INTERNAL://127.0.0.1:19312"
        );
        assert_eq!(p["log.dirs"], "/s/broker/node-3/data");
        assert_eq!(p["default.replication.factor"], "3");
        assert_eq!(p["min.insync.replicas"], "2");
        assert_eq!(p["offsets.topic.replication.factor"], "3");
        assert_eq!(p["unclean.leader.election.enable"], "false");
        // No two nodes of the dev stack (19092) and the test stack (19093) share a port.
        let dev = Cluster::local(Path::new("/d"), 19092, 3);
        let test = Cluster::local(Path::new("/t"), 19093, 3);
        let mut all: Vec<u16> = (1..=3)
            .flat_map(|k| [dev.ports(k), test.ports(k)])
            .flatten()
            .flat_map(|p| [p.client, p.controller, p.internal])
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
    }

    #[test]
    fn a_secured_node_takes_scram_clients_and_trusts_its_peers_by_certificate() {
        let c = Cluster::local(Path::new("/s"), 19092, 3).secured(true);
        let p = keys(&c.server_properties(1).expect("node 1"));
        assert_eq!(
            p["listener.security.protocol.map"],
            "CLIENT:SASL_SSL,CONTROLLER:SSL,INTERNAL:SSL"
        );
        assert_eq!(p["listener.name.internal.ssl.client.auth"], "required");
        assert_eq!(p["listener.name.controller.ssl.client.auth"], "required");
        assert_eq!(p["super.users"], "User:CN=oms-broker;User:omsctl");
        assert_eq!(p["allow.everyone.if.no.acl.found"], "false");
        assert_eq!(p["ssl.truststore.location"], "/s/security/ca.pem");
        let (address, props) = c.probe(2).expect("probe");
        assert_eq!(address, "127.0.0.1:19302");
        assert!(props
            .iter()
            .any(|(k, v)| k == "security.protocol" && v == "SSL"));
        let plain = Cluster::local(Path::new("/s"), 19092, 1);
        assert_eq!(
            plain.probe(1).expect("probe").0,
            "127.0.0.1:19092",
            "a plain node is probed where clients connect"
        );
        assert!(!keys(&plain.server_properties(1).expect("node 1")).contains_key("super.users"));
    }

    #[test]
    fn a_single_node_replicates_to_itself_only() {
        let c = Cluster::local(Path::new("/s"), 19092, 1);
        let p = keys(&c.server_properties(1).expect("node 1"));
        assert_eq!(p["default.replication.factor"], "1");
        assert_eq!(p["min.insync.replicas"], "1");
        assert_eq!(p["transaction.state.log.min.isr"], "1");
        assert_eq!(p["controller.quorum.voters"], "1@127.0.0.1:19192");
        assert_eq!(c.bootstrap(), "127.0.0.1:19092");
        assert_eq!(Cluster::local(Path::new("/s"), 19092, 7).nodes(), MAX_NODES);
    }

    #[test]
    fn a_missing_install_says_how_to_get_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = Install::at(dir.path().to_path_buf()).expect_err("empty");
        assert!(err.to_string().contains("scripts/deps.sh"), "{err}");
        let libs = dir.path().join("libs");
        std::fs::create_dir_all(&libs).expect("libs");
        std::fs::write(libs.join(format!("kafka_2.13-{KAFKA_VERSION}.jar")), b"").expect("jar");
        let install = Install::at(dir.path().to_path_buf()).expect("installed");
        assert_eq!(install.classpath(), format!("{}/*", libs.display()));
    }
}
