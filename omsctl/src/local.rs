//! The local process stack as a component model: a private PostgreSQL cluster, Apache Kafka (one
//! node, or three with `stack up --broker-nodes 3`) and the services of the topology, each started
//! detached with a pid file and a log under the state directory (chaos needs a killed service to
//! stay dead, and the stack outlives omsctl).
//!
//! Layout of the state directory:
//! - `stack.json`: ports and binary directory of the stack, written by `stack up`; every later
//!   command (status, chaos restarts) reads it, so it works from any directory.
//! - `postgres/data`, `postgres/postgres.log`, `postgres/run` (the socket directory).
//! - `broker/broker.pid`, `broker/broker.log` (node 1), `broker/broker-K.pid`,
//!   `broker/broker-K.log` (node K of several); `broker/cluster.id` and `broker/node-K/` (its
//!   `server.properties` and data), laid out by [`oms_kafka::node`].
//! - `services/NAME.pid`, `services/NAME.log` (replica 1), `services/NAME-K.pid`,
//!   `services/NAME-K.log` (replica K of `stack up --replicas N`).
//!
//! Replicas: replica K of a service listens on the service's port + 100 x (K - 1) and shares the
//! service's database and consumer group with the others; the outbox relay elects its leader
//! through an advisory lock, the consumer group spreads the partitions.
//!
//! Brokers: node K of the Kafka cluster takes clients on the broker port + 10 x (K - 1) (its
//! controller and replication listeners are 100 and 200 above that); every node is a KRaft
//! controller and a broker.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use oms_contracts::topology::SERVICES;
use serde::{Deserialize, Serialize};
use tokio::process::Command;

use crate::Failure;
use oms_contracts::ServiceId as Svc;

/// The PostgreSQL role of the local cluster.
pub const PG_USER: &str = "oms";

/// The file in the state directory holding the local cluster's password (random, made with the
/// cluster, mode 0600).
const PG_PASSWORD_FILE: &str = "pg-password";

/// The password of a cluster made before the password file existed (it was fixed).
const LEGACY_PG_PASSWORD: &str = "oms";

/// Prints a progress line of the stack to stderr.
pub fn say(text: impl std::fmt::Display) {
    eprintln!("\x1b[1m[oms]\x1b[0m {text}");
}

/// What `stack up` recorded about the running stack.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Local {
    /// PostgreSQL port on 127.0.0.1.
    pub pg_port: u16,
    /// Client port of the first broker node on 127.0.0.1.
    pub broker_port: u16,
    /// Kafka nodes (1 unless `stack up --broker-nodes 3`).
    #[serde(default = "one_replica")]
    pub broker_nodes: u32,
    /// Whether Kafka takes clients over SASL_SSL with a SCRAM user each and ACLs from the
    /// topology (`stack up --secure`), instead of PLAINTEXT.
    #[serde(default)]
    pub secure: bool,
    /// Directory of the `oms-*` service binaries.
    pub bin_dir: PathBuf,
    /// Each service's HTTP port (of its first replica), by name.
    pub service_ports: std::collections::BTreeMap<String, u16>,
    /// Instances of each service (1 unless `stack up --replicas N`).
    #[serde(default = "one_replica")]
    pub replicas: u32,
    #[serde(skip)]
    state_dir: PathBuf,
}

fn one_replica() -> u32 {
    1
}

/// The most replicas of a service `stack up` runs (ports are 100 apart).
pub const MAX_REPLICAS: u32 = 9;

/// How far apart the ports of two replicas of a service are.
const REPLICA_PORT_STEP: u16 = 100;

fn env_port(name: &str, default: u16) -> Result<u16, Failure> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map_err(|_| Failure::usage(format!("{name}={v:?} is not a port number"))),
        Err(_) => Ok(default),
    }
}

/// The first client port of the Kafka cluster (`OMS_BROKER_PORT`), with room above it for every
/// node's listeners.
fn broker_port() -> Result<u16, Failure> {
    let port = env_port("OMS_BROKER_PORT", 19092)?;
    match port.checked_add(oms_kafka::node::PORT_SPAN) {
        Some(_) => Ok(port),
        None => Err(Failure::usage(format!(
            "OMS_BROKER_PORT={port} leaves no room for the Kafka nodes' other listeners (at most {})",
            u16::MAX - oms_kafka::node::PORT_SPAN
        ))),
    }
}

impl Local {
    /// The stack under `state_dir`: as recorded by `stack up` when it ran, else from the
    /// environment (`OMS_PG_PORT`, `OMS_BROKER_PORT`, `OMS_<NAME>_PORT`, `OMS_BIN_DIR`) and the
    /// defaults (55432, 19092, the topology's ports, the directory of this omsctl binary).
    pub fn open(state_dir: &Path) -> Result<Self, Failure> {
        if let Some(mut recorded) = Self::recorded(state_dir)? {
            recorded.state_dir = state_dir.to_path_buf();
            return Ok(recorded);
        }
        Self::from_env(state_dir, None)
    }

    /// Whether `stack up` recorded a stack in `state_dir`.
    pub fn is_recorded(state_dir: &Path) -> bool {
        state_dir.join("stack.json").is_file()
    }

    fn recorded(state_dir: &Path) -> Result<Option<Self>, Failure> {
        let path = state_dir.join("stack.json");
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| Failure::usage(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Failure::usage(format!("{}: {e}", path.display()))),
        }
    }

    /// The stack as the environment describes it (what `stack up` records).
    pub fn from_env(state_dir: &Path, bin_dir: Option<PathBuf>) -> Result<Self, Failure> {
        let bin_dir = match bin_dir.or_else(|| std::env::var_os("OMS_BIN_DIR").map(PathBuf::from)) {
            Some(d) => d,
            None => std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(Path::to_path_buf))
                .ok_or_else(|| {
                    Failure::usage("cannot tell where omsctl runs from; set --bin-dir")
                })?,
        };
        let mut service_ports = std::collections::BTreeMap::new();
        for s in SERVICES {
            let var = format!("OMS_{}_PORT", s.name.to_uppercase());
            service_ports.insert(s.name.to_owned(), env_port(&var, s.port)?);
        }
        Ok(Self {
            pg_port: env_port("OMS_PG_PORT", 55432)?,
            broker_port: broker_port()?,
            broker_nodes: 1,
            secure: false,
            bin_dir,
            service_ports,
            replicas: 1,
            state_dir: state_dir.to_path_buf(),
        })
    }

    /// Records this stack in its state directory.
    pub fn record(&self) -> Result<(), Failure> {
        std::fs::create_dir_all(&self.state_dir)?;
        let path = self.state_dir.join("stack.json");
        let tmp = self.state_dir.join("stack.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// A service's HTTP port (its first replica's).
    pub fn port(&self, svc: Svc) -> u16 {
        self.service_ports
            .get(svc.name())
            .copied()
            .unwrap_or(svc.spec().port)
    }

    /// The HTTP port of replica `replica` (1-based) of a service.
    pub fn replica_port(&self, svc: Svc, replica: u32) -> u16 {
        let step = u16::try_from(replica.saturating_sub(1))
            .unwrap_or(u16::MAX)
            .saturating_mul(REPLICA_PORT_STEP);
        self.port(svc).saturating_add(step)
    }

    /// The base URL of every replica of a service, first replica first.
    pub fn urls(&self, svc: Svc) -> Vec<String> {
        (1..=self.replicas.max(1))
            .map(|r| format!("http://127.0.0.1:{}", self.replica_port(svc, r)))
            .collect()
    }

    /// Every process of the services: each replica of each service, in start order.
    pub fn service_components(&self) -> Vec<Component> {
        Svc::all()
            .flat_map(|s| (1..=self.replicas.max(1)).map(move |r| Component::Service(s, r)))
            .collect()
    }

    /// The PostgreSQL URL the services get.
    pub fn database_url(&self) -> String {
        format!(
            "postgres://{PG_USER}:{}@127.0.0.1:{}/postgres",
            self.pg_password(),
            self.pg_port
        )
    }

    /// The cluster's password: the state directory's (hex, so it needs no escaping in a URL),
    /// else the fixed one of a cluster made before there was one.
    fn pg_password(&self) -> String {
        std::fs::read_to_string(self.state_dir.join(PG_PASSWORD_FILE))
            .map(|s| s.trim().to_owned())
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .unwrap_or_else(|| LEGACY_PG_PASSWORD.to_owned())
    }

    /// The Kafka cluster: its nodes' ports and files.
    pub fn cluster(&self) -> oms_kafka::node::Cluster {
        oms_kafka::node::Cluster::local(&self.broker_dir(), self.broker_port, self.broker_nodes)
            .secured(self.secure)
    }

    /// The librdkafka properties omsctl reaches a secured stack's Kafka with (its operator
    /// user); none for a plain one.
    pub fn operator_properties(&self) -> Result<oms_kafka::Properties, Failure> {
        if !self.secure {
            return Ok(oms_kafka::Properties::new());
        }
        self.cluster()
            .security()
            .client_properties(oms_kafka::node::security::OPERATOR)
            .map_err(|e| Failure::usage(format!("{e} (run `omsctl stack up --secure`)")))
    }

    /// The brokers' bootstrap list (every node's client listener).
    pub fn brokers(&self) -> String {
        self.cluster().bootstrap()
    }

    /// Every node of the Kafka cluster, in start order.
    pub fn broker_components(&self) -> Vec<Component> {
        (1..=self.broker_nodes.max(1))
            .map(Component::Broker)
            .collect()
    }

    fn pg_dir(&self) -> PathBuf {
        self.state_dir.join("postgres")
    }

    /// PostgreSQL's directory as the `postgres` user must name it: the link followed, since that
    /// user may not be able to pass through the state directory.
    fn pg_home(&self) -> PathBuf {
        let dir = self.pg_dir();
        std::fs::canonicalize(&dir).unwrap_or(dir)
    }

    fn broker_dir(&self) -> PathBuf {
        self.state_dir.join("broker")
    }

    fn service_dir(&self) -> PathBuf {
        self.state_dir.join("services")
    }

    /// The log file of replica `replica` of a service.
    pub fn log_of(&self, svc: Svc, replica: u32) -> PathBuf {
        self.service_dir().join(format!(
            "{}.log",
            Component::Service(svc, replica).file_stem()
        ))
    }

    fn pid_path(&self, svc: Svc, replica: u32) -> PathBuf {
        self.service_dir().join(format!(
            "{}.pid",
            Component::Service(svc, replica).file_stem()
        ))
    }

    /// The log file of Kafka node `node`.
    pub fn broker_log(&self, node: u32) -> PathBuf {
        self.broker_dir()
            .join(format!("{}.log", Component::Broker(node).file_stem()))
    }

    fn broker_pid_path(&self, node: u32) -> PathBuf {
        self.broker_dir()
            .join(format!("{}.pid", Component::Broker(node).file_stem()))
    }
}

/// One part of the local stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// The PostgreSQL cluster (one database per service).
    Postgres,
    /// Node K (1-based) of the Kafka cluster.
    Broker(u32),
    /// Replica K (1-based) of a service of the topology.
    Service(Svc, u32),
}

/// A signal omsctl sends to a component's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Ask it to stop.
    Term,
    /// Kill it outright (a crash).
    Kill,
    /// Freeze it (a hang).
    Stop,
    /// Thaw it.
    Cont,
}

impl Signal {
    fn flag(self) -> &'static str {
        match self {
            Signal::Term => "-TERM",
            Signal::Kill => "-KILL",
            Signal::Stop => "-STOP",
            Signal::Cont => "-CONT",
        }
    }
}

/// Sends `signal` to process `pid`.
pub fn signal(pid: u32, signal: Signal) -> Result<(), Failure> {
    let sig = signal.flag();
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .map_err(|e| Failure::usage(format!("kill {sig} {pid}: {e}")))?;
    if !status.success() {
        return Err(Failure::verdict(format!(
            "kill {sig} {pid} failed ({status})"
        )));
    }
    Ok(())
}

/// The state letter of a process (`R`, `S`, `T`, `Z`, ...), when it exists.
fn process_state(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state follows the parenthesised command name, which may contain spaces.
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().next().map(str::to_owned)
}

/// Whether a process exists and is not a zombie (a killed service nobody reaped yet).
pub fn alive(pid: u32) -> bool {
    process_state(pid).is_some_and(|s| s != "Z")
}

/// Whether a process is stopped by a signal (SIGSTOP: a paused service).
pub fn frozen(pid: u32) -> bool {
    process_state(pid).is_some_and(|s| s == "T")
}

/// The ids of every process on the machine (from `/proc`).
pub fn processes() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
}

fn pid_file(path: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(path).ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    alive(pid).then_some(pid)
}

fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(300),
    )
    .is_ok()
}

/// Polls `ready` every 200 ms until it holds or `within` has passed.
async fn wait_for(within: Duration, mut ready: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if ready().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Component {
    /// Every component, in start order: PostgreSQL, each Kafka node, then each replica of each
    /// service.
    pub fn all(local: &Local) -> Vec<Component> {
        let mut all = vec![Component::Postgres];
        all.extend(local.broker_components());
        all.extend(local.service_components());
        all
    }

    /// The name its files carry: `postgres`, `broker` for the first Kafka node, `broker-K` for
    /// node K, a service's for its first replica, `NAME-K` for replica K.
    pub fn file_stem(self) -> String {
        match self {
            Component::Postgres => "postgres".into(),
            Component::Broker(1) => "broker".into(),
            Component::Broker(k) => format!("broker-{k}"),
            Component::Service(s, 1) => s.name().into(),
            Component::Service(s, r) => format!("{}-{r}", s.name()),
        }
    }

    /// Its name as reported on `local`: `postgres`, `broker` (one node) or `broker-K` (node K of
    /// several), a service's (one replica) or `NAME-K` (replica K of several).
    pub fn name(self, local: &Local) -> String {
        match self {
            Component::Service(s, r) if local.replicas > 1 => format!("{}-{r}", s.name()),
            Component::Broker(k) if local.broker_nodes > 1 => format!("broker-{k}"),
            other => other.file_stem(),
        }
    }

    /// The components `name` stands for on `local`: `postgres` (or `db`), `broker` (every
    /// Kafka node), `broker-K` (node K), every replica of a service (its name), or one replica
    /// (`NAME-K`).
    pub fn named(name: &str, local: &Local) -> Result<Vec<Self>, Failure> {
        match name {
            "postgres" | "db" => return Ok(vec![Component::Postgres]),
            "broker" => return Ok(local.broker_components()),
            _ => {}
        }
        if let Some(k) = name.strip_prefix("broker-") {
            return match k.parse::<u32>() {
                Ok(k) if (1..=local.broker_nodes.max(1)).contains(&k) => {
                    Ok(vec![Component::Broker(k)])
                }
                _ => Err(Failure::usage(format!(
                    "{name:?}: the stack runs {} Kafka node(s), broker-1 to broker-{}",
                    local.broker_nodes.max(1),
                    local.broker_nodes.max(1)
                ))),
            };
        }
        Self::of(Unit::parse(name)?, local)
    }

    /// The processes `unit` stands for on `local`: every replica of its service, or the one
    /// replica it names (which must run there).
    pub fn of(unit: Unit, local: &Local) -> Result<Vec<Self>, Failure> {
        let Unit { svc, replica } = unit;
        match replica {
            None => Ok((1..=local.replicas.max(1))
                .map(|r| Component::Service(svc, r))
                .collect()),
            Some(r) if r <= local.replicas.max(1) => Ok(vec![Component::Service(svc, r)]),
            Some(r) => Err(Failure::usage(format!(
                "{unit}: the stack runs {} replica(s) of {}, not {r}",
                local.replicas.max(1),
                svc.name()
            ))),
        }
    }

    /// Its port on 127.0.0.1.
    pub fn port(self, local: &Local) -> u16 {
        match self {
            Component::Postgres => local.pg_port,
            Component::Broker(k) => oms_kafka::node::Ports::of_node(local.broker_port, k).client,
            Component::Service(s, r) => local.replica_port(s, r),
        }
    }

    /// Its process, when it runs.
    pub fn pid(self, local: &Local) -> Option<u32> {
        match self {
            Component::Postgres => postmaster(&local.pg_dir().join("data")),
            Component::Broker(k) => pid_file(&local.broker_pid_path(k)),
            Component::Service(s, r) => pid_file(&local.pid_path(s, r)),
        }
    }

    /// Whether it answers: PostgreSQL accepts connections on its port, a Kafka node answers a
    /// metadata request, a service answers `/health/ready` with 200.
    pub async fn ready(self, local: &Local, http: &reqwest::Client) -> bool {
        match self {
            Component::Service(..) => {
                let url = format!("http://127.0.0.1:{}/health/ready", self.port(local));
                matches!(http.get(url).send().await, Ok(r) if r.status().is_success())
            }
            Component::Broker(k) => {
                let Ok((address, props)) = local.cluster().probe(k) else {
                    return false;
                };
                tokio::task::spawn_blocking(move || {
                    oms_kafka::node::brokers_answering(&address, &props, Duration::from_secs(2))
                        .is_ok_and(|n| n > 0)
                })
                .await
                .unwrap_or(false)
            }
            other => {
                let port = other.port(local);
                tokio::task::spawn_blocking(move || port_open(port))
                    .await
                    .unwrap_or(false)
            }
        }
    }

    /// Starts it unless it runs. PostgreSQL is ready when this returns; a Kafka node or a
    /// service is once [`wait_ready`] says so.
    pub async fn start(self, local: &Local) -> Result<(), Failure> {
        match self {
            Component::Postgres => pg_start(local).await,
            Component::Broker(k) => broker_start(local, k).await,
            Component::Service(s, r) => service_start(local, s, r).await,
        }
    }

    /// Stops it (politely, then by force) unless it is stopped.
    pub async fn stop(self, local: &Local) -> Result<(), Failure> {
        stop_all(local, &[self]).await
    }

    /// How long it may take to stop after SIGTERM before it is killed: a Kafka node hands its
    /// partitions' leadership over first.
    fn grace(self) -> Duration {
        match self {
            Component::Broker(_) => Duration::from_secs(30),
            _ => Duration::from_secs(10),
        }
    }

    /// Sends `sig` to its process; a usage error when it does not run.
    pub fn signal(self, local: &Local, sig: Signal) -> Result<u32, Failure> {
        let pid = self
            .pid(local)
            .ok_or_else(|| Failure::usage(format!("{} is not running", self.name(local))))?;
        signal(pid, sig)?;
        Ok(pid)
    }
}

/// Stops `components` (politely, then by force), those that run: every process is asked at once
/// and then waited for, so the nodes of a Kafka cluster go down together instead of the last ones
/// waiting for a quorum that left. PostgreSQL stops last, with `pg_ctl`.
pub async fn stop_all(local: &Local, components: &[Component]) -> Result<(), Failure> {
    let mut asked = Vec::new();
    for &c in components {
        if c == Component::Postgres {
            continue;
        }
        let Some(pid) = c.pid(local) else {
            continue;
        };
        say(format!("stopping {} (pid {pid})", c.name(local)));
        // A frozen process cannot act on TERM: thaw it first.
        let _ = signal(pid, Signal::Cont);
        let _ = signal(pid, Signal::Term);
        asked.push((c, pid));
    }
    for (c, pid) in asked {
        if !wait_for(c.grace(), async || !alive(pid)).await {
            say(format!(
                "{} did not stop in {}s; killing it",
                c.name(local),
                c.grace().as_secs()
            ));
            let _ = signal(pid, Signal::Kill);
            wait_for(Duration::from_secs(5), async || !alive(pid)).await;
        }
        let file = match c {
            Component::Service(s, r) => local.pid_path(s, r),
            Component::Broker(k) => local.broker_pid_path(k),
            Component::Postgres => continue,
        };
        let _ = std::fs::remove_file(file);
    }
    if components.contains(&Component::Postgres) {
        pg_stop(local).await?;
    }
    Ok(())
}

/// The postmaster of the cluster in `data`: from `postmaster.pid` when readable, else the
/// `postgres` process whose data directory it is (the data directory may belong to another
/// user).
fn postmaster(data: &Path) -> Option<u32> {
    if let Some(pid) = pid_file(&data.join("postmaster.pid")) {
        return Some(pid);
    }
    let data = std::fs::canonicalize(data).ok()?;
    let data = data.to_string_lossy();
    for pid in processes() {
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_postgres = args.first().is_some_and(|a| a.ends_with("/postgres"));
        let has_data = args
            .windows(2)
            .any(|w| w[0] == "-D" && w[1].trim_end_matches('/') == data);
        if is_postgres && has_data && alive(pid) {
            return Some(pid);
        }
    }
    None
}

// --- PostgreSQL -------------------------------------------------------------------------------

/// Directory holding initdb, pg_ctl and postgres (the newest installed major version).
fn pg_bin() -> Result<PathBuf, Failure> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, d)| d).ok_or_else(|| {
        Failure::usage(
            "PostgreSQL server binaries not found under /usr/lib/postgresql; run scripts/deps.sh",
        )
    })
}

/// Who may own the PostgreSQL directory: this process's user, and `postgres` when we are root.
fn pg_dir_owners() -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let mut owners: Vec<u32> = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .into_iter()
        .collect();
    if is_root() {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        owners.extend(
            passwd
                .lines()
                .filter_map(|l| l.strip_prefix("postgres:"))
                .filter_map(|rest| rest.split(':').nth(1)?.parse::<u32>().ok()),
        );
    }
    owners
}

/// An existing PostgreSQL directory (or the link to it the state directory holds) is used only
/// when it is a directory owned by one of `owners` that nobody else may write: a directory or
/// link someone else prepared (a planted link in a shared /var/tmp, say) is refused, not
/// `chown`ed or written through.
fn check_pg_dir(dir: &Path, owners: &[u32]) -> Result<(), Failure> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |why: String| {
        Err(Failure::usage(format!(
            "{}: {why}; refusing to keep PostgreSQL's data there (`omsctl stack wipe` starts afresh)",
            dir.display()
        )))
    };
    let target = std::fs::canonicalize(dir)
        .map_err(|e| Failure::usage(format!("{}: {e}", dir.display())))?;
    let link = std::fs::symlink_metadata(dir)?;
    if link.file_type().is_symlink() && !owners.contains(&link.uid()) {
        return refuse(format!("a link owned by uid {}", link.uid()));
    }
    let meta = std::fs::metadata(&target)?;
    if !meta.is_dir() {
        return refuse(format!("{} is not a directory", target.display()));
    }
    if !owners.contains(&meta.uid()) {
        return refuse(format!(
            "{} is owned by uid {}, not by this user or postgres",
            target.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return refuse(format!(
            "{} may be written by others (mode {:o})",
            target.display(),
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// `program args` as the user that runs PostgreSQL: `postgres` when we are root (initdb refuses
/// root), else ourselves.
fn as_pg_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

async fn run_quiet(mut c: Command, what: &str) -> Result<std::process::Output, Failure> {
    c.stdin(Stdio::null());
    c.output()
        .await
        .map_err(|e| Failure::usage(format!("{what}: {e}")))
}

async fn checked(c: Command, what: &str) -> Result<(), Failure> {
    let out = run_quiet(c, what).await?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Failure::verdict(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// As root, the cluster belongs to the `postgres` system user, which must be able to reach the
/// data directory. When the state directory sits where it cannot (say under /root), the data
/// lives in a directory of a random name made anew in /var/tmp (never one that was there), and
/// the state directory links to it. An existing directory is used only if it is ours
/// ([`check_pg_dir`]).
async fn prepare_pg_dir(local: &Local) -> Result<(), Failure> {
    let dir = local.pg_dir();
    std::fs::create_dir_all(local.state_dir())?;
    if std::fs::symlink_metadata(&dir).is_ok() {
        return check_pg_dir(&dir, &pg_dir_owners());
    }
    if !is_root() {
        std::fs::create_dir_all(&dir)?;
        return Ok(());
    }
    let mut useradd = Command::new("sh");
    useradd.args([
        "-c",
        "id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /usr/sbin/nologin postgres",
    ]);
    checked(useradd, "creating the postgres system user").await?;
    std::fs::create_dir_all(&dir)?;
    let mut chown = Command::new("chown");
    chown.arg("postgres:").arg(&dir);
    checked(chown, "chown of the PostgreSQL directory").await?;
    let mut probe = Command::new("runuser");
    probe.args(["-u", "postgres", "--", "test", "-w"]).arg(&dir);
    if run_quiet(probe, "runuser").await?.status.success() {
        return Ok(());
    }
    std::fs::remove_dir(&dir)?;
    // mkdtemp: a new directory (0700) of an unpredictable name, or an error; never a path
    // someone prepared.
    let elsewhere = tempfile::Builder::new()
        .prefix("oms-postgres-")
        .tempdir_in("/var/tmp")
        .map_err(|e| Failure::usage(format!("cannot make a directory in /var/tmp: {e}")))?
        .keep();
    let mut chown = Command::new("chown");
    chown.arg("postgres:").arg(&elsewhere);
    checked(chown, "chown of the PostgreSQL directory").await?;
    std::os::unix::fs::symlink(&elsewhere, &dir)?;
    say(format!(
        "postgres cannot reach {}; its data lives in {} (linked)",
        local.state_dir().display(),
        elsewhere.display()
    ));
    Ok(())
}

async fn pg_running(bin: &Path, data: &Path) -> Result<bool, Failure> {
    let mut status = as_pg_user(&bin.join("pg_ctl"));
    status.arg("-D").arg(data).arg("status");
    Ok(run_quiet(status, "pg_ctl status").await?.status.success())
}

async fn pg_start(local: &Local) -> Result<(), Failure> {
    let bin = pg_bin()?;
    prepare_pg_dir(local).await?;
    let dir = local.pg_home();
    let data = dir.join("data");
    if !data.join("PG_VERSION").exists() {
        say(format!(
            "initialising a PostgreSQL cluster in {}",
            data.display()
        ));
        // A password of its own, kept in the state directory (0600) for the services' URL.
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes).map_err(|e| Failure::usage(format!("no randomness: {e}")))?;
        let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        crate::auth::write_atomically(
            &local.state_dir().join(PG_PASSWORD_FILE),
            password.as_bytes(),
            0o600,
        )?;
        let pwfile = dir.join(".pwfile");
        let mut write = as_pg_user(Path::new("sh"));
        write.args(["-c", "umask 077; printf '%s\\n' \"$1\" > \"$2\"", "sh"]);
        write.arg(&password).arg(&pwfile);
        checked(write, "writing the initdb password file").await?;
        let mut initdb = as_pg_user(&bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .arg(format!("--username={PG_USER}"))
            .arg(format!("--pwfile={}", pwfile.display()))
            .args([
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ]);
        let result = checked(initdb, "initdb").await;
        let _ = std::fs::remove_file(&pwfile);
        result?;
    }
    // Local connections are trusted (`pg_ctl -w` and the owner's own tools use the socket), so
    // the socket's directory is the owner's alone: nobody else reaches the server without the
    // password. A cluster made before this had it open to all.
    let mut socket_dir = as_pg_user(Path::new("sh"));
    socket_dir
        .args(["-c", "mkdir -p \"$1\" && chmod 700 \"$1\"", "sh"])
        .arg(dir.join("run"));
    checked(socket_dir, "making the socket directory private").await?;
    if pg_running(&bin, &data).await? {
        say(format!(
            "PostgreSQL already running on 127.0.0.1:{}",
            local.pg_port
        ));
        return Ok(());
    }
    say(format!(
        "starting PostgreSQL on 127.0.0.1:{}",
        local.pg_port
    ));
    let log = dir.join("postgres.log");
    let mut start = as_pg_user(&bin.join("pg_ctl"));
    start
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(&log)
        .args(["-w", "-t", "60", "-o"])
        .arg(format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=400{}",
            local.pg_port,
            dir.join("run").display(),
            pg_options()?
        ))
        .arg("start");
    checked(start, "starting PostgreSQL")
        .await
        .map_err(|f| Failure::verdict(format!("{}\n{}", f.error, tail(&log, 20))))
}

/// Extra server settings from `OMS_PG_OPTIONS` (e.g. `-c shared_preload_libraries=pg_stat_statements`
/// for a profile), with a leading space; empty when unset. pg_ctl hands them to a shell, so only
/// plain settings are taken.
fn pg_options() -> Result<String, Failure> {
    let Ok(options) = std::env::var("OMS_PG_OPTIONS") else {
        return Ok(String::new());
    };
    check_pg_options(&options)
        .map(|()| format!(" {}", options.trim()))
        .map_err(Failure::usage)
}

fn check_pg_options(options: &str) -> Result<(), String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || " _-=.,:/".contains(c);
    match options.chars().find(|c| !plain(*c)) {
        None => Ok(()),
        Some(c) => Err(format!(
            "OMS_PG_OPTIONS may hold only settings such as `-c name=value` (letters, digits, \
             spaces and _-=.,:/), not {c:?}"
        )),
    }
}

async fn pg_stop(local: &Local) -> Result<(), Failure> {
    let Ok(bin) = pg_bin() else {
        return Ok(());
    };
    let data = local.pg_home().join("data");
    if !data.join("PG_VERSION").exists() || !pg_running(&bin, &data).await? {
        return Ok(());
    }
    say("stopping PostgreSQL");
    let mut stop = as_pg_user(&bin.join("pg_ctl"));
    stop.arg("-D").arg(&data).args(["-m", "fast", "-w", "stop"]);
    checked(stop, "stopping PostgreSQL").await
}

// --- broker and services ------------------------------------------------------------------------

/// The `OMS_KAFKA_*` variables among `names` that set who a client is (`security.*`, `sasl.*`,
/// `ssl.*`); tuning such as `OMS_KAFKA_LINGER_MS` passes through.
fn security_vars(names: impl IntoIterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    names
        .into_iter()
        .filter(|n| {
            n.to_str()
                .and_then(|n| n.strip_prefix(oms_kafka::properties::ENV_PREFIX))
                .is_some_and(|p| {
                    ["SECURITY_", "SASL_", "SSL_"]
                        .iter()
                        .any(|s| p.starts_with(s))
                })
        })
        .collect()
}

/// Starts `program` detached: its own process group (a Ctrl-C in the terminal does not reach
/// it), stdin closed, output appended to `log`, its pid written to `pid_path`. It outlives
/// omsctl.
fn spawn_detached(mut command: Command, log: &Path, pid_path: &Path) -> Result<u32, Failure> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    // Logs name customers and orders: the owner and its group read them, nobody else.
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(log)?;
    out.set_permissions(std::fs::Permissions::from_mode(0o640))?;
    let err = out.try_clone()?;
    command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .kill_on_drop(false);
    let child = command
        .spawn()
        .map_err(|e| Failure::usage(format!("starting {}: {e}", log.display())))?;
    let pid = child
        .id()
        .ok_or_else(|| Failure::verdict("the started process exited at once"))?;
    std::fs::write(pid_path, pid.to_string())?;
    Ok(pid)
}

/// The Kafka users of a secured stack: the operator (omsctl) and one per service.
pub fn kafka_users() -> Vec<String> {
    oms_kafka::node::security::Plan::for_topology(&oms_contracts::Topics::default()).users
}

/// Starts Kafka node `node` unless it runs: its files written and its storage formatted on the
/// first start ([`oms_kafka::node::Cluster::prepare`]). Returns once the process runs; it is
/// ready when [`wait_ready`] says so (a node of three cannot be before a majority runs).
async fn broker_start(local: &Local, node: u32) -> Result<(), Failure> {
    let me = Component::Broker(node);
    let label = me.name(local);
    let port = me.port(local);
    if let Some(pid) = me.pid(local) {
        say(format!(
            "{label} already running on 127.0.0.1:{port} (pid {pid})"
        ));
        return Ok(());
    }
    let cluster = local.cluster();
    let ports = cluster
        .ports(node)
        .map_err(|e| Failure::usage(e.to_string()))?;
    for p in [ports.client, ports.controller, ports.internal] {
        if port_open(p) {
            return Err(Failure::usage(format!(
                "port {p} ({label}) is taken by another process; set OMS_BROKER_PORT"
            )));
        }
    }
    let install = oms_kafka::node::Install::locate().map_err(|e| Failure::usage(e.to_string()))?;
    let formatted = tokio::task::spawn_blocking({
        let cluster = cluster.clone();
        let install = install.clone();
        move || {
            if cluster.is_secure() {
                cluster.security().ensure(&kafka_users())?;
            }
            cluster.prepare(node, &install)
        }
    })
    .await
    .map_err(anyhow::Error::from)?
    .map_err(|e| Failure::verdict(e.to_string()))?;
    if formatted {
        say(format!(
            "formatted the storage of {label} in {}",
            cluster.node_dir(node).display()
        ));
    }
    let log = local.broker_log(node);
    let pid = spawn_detached(
        Command::from(cluster.command(node, &install)),
        &log,
        &local.broker_pid_path(node),
    )?;
    say(format!(
        "started {label} (Apache Kafka {}) on 127.0.0.1:{port} (pid {pid}, log {})",
        oms_kafka::node::KAFKA_VERSION,
        log.display()
    ));
    Ok(())
}

async fn service_start(local: &Local, svc: Svc, replica: u32) -> Result<(), Failure> {
    let dir = local.service_dir();
    std::fs::create_dir_all(&dir)?;
    let me = Component::Service(svc, replica);
    let port = me.port(local);
    let name = svc.name();
    let label = me.name(local);
    if let Some(pid) = me.pid(local) {
        say(format!(
            "{label} already running on 127.0.0.1:{port} (pid {pid})"
        ));
        return Ok(());
    }
    if port_open(port) {
        return Err(Failure::usage(format!(
            "port {port} ({label}) is taken by another process; set OMS_{}_PORT",
            name.to_uppercase()
        )));
    }
    let binary = local.bin_dir.join(format!("oms-{name}"));
    if !binary.is_file() {
        return Err(Failure::usage(format!(
            "{} not found: build the services (scripts/stack.sh up builds them) or pass --bin-dir",
            binary.display()
        )));
    }
    // The services check tokens with the public half of the stack's issuer key (made on first
    // start); the private half stays in the state directory, with omsctl.
    let jwks = crate::auth::ensure_issuer(local.state_dir())?;
    let mut c = Command::new(&binary);
    for name in ["OMS_JWT_SECRET_FILE", "OMS_JWT_PUBLIC_KEY_FILE"] {
        c.env_remove(name);
    }
    // The caller's Kafka identity stays with the caller: a service of a plain stack must not
    // inherit a secured stack's file, nor one of a secured stack someone else's user.
    for name in security_vars(std::env::vars_os().map(|(k, _)| k)) {
        c.env_remove(name);
    }
    c.env_remove(oms_kafka::properties::ENV_FILE);
    if local.secure {
        // Its own Kafka user: SASL_SSL, SCRAM, only the ACLs its row of the topology grants.
        let file = local
            .cluster()
            .security()
            .user_file(&svc.spec().kafka_user());
        c.env(oms_kafka::properties::ENV_FILE, file);
    }
    c.env("OMS_JWT_JWKS_FILE", jwks)
        .env("OMS_DATABASE_URL", local.database_url())
        .env("OMS_BROKERS", local.brokers())
        .env(
            format!("OMS_{}_LISTEN", name.to_uppercase()),
            format!("127.0.0.1:{port}"),
        );
    let log = local.log_of(svc, replica);
    let pid = spawn_detached(c, &log, &local.pid_path(svc, replica))?;
    say(format!(
        "started {label} on 127.0.0.1:{port} (pid {pid}, log {})",
        log.display()
    ));
    Ok(())
}

/// Waits until each of `components` (Kafka nodes, replicas of services) answers ready, failing
/// early when one exits.
pub async fn wait_ready(
    local: &Local,
    components: &[Component],
    within: Duration,
) -> Result<(), Failure> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(anyhow::Error::from)?;
    let deadline = Instant::now() + within;
    for c in components {
        let log = match *c {
            Component::Service(svc, replica) => local.log_of(svc, replica),
            Component::Broker(node) => local.broker_log(node),
            Component::Postgres => continue,
        };
        let label = c.name(local);
        loop {
            if c.ready(local, &http).await {
                say(format!("{label} ready"));
                break;
            }
            if c.pid(local).is_none() {
                return Err(Failure::verdict(format!(
                    "{label} exited during start-up (log: {})\n{}",
                    log.display(),
                    tail(&log, 20)
                )));
            }
            if Instant::now() >= deadline {
                return Err(Failure::verdict(format!(
                    "{label} not ready after {}s (log: {})",
                    within.as_secs(),
                    log.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(())
}

/// A service, or one replica of it, as named on the command line: `order` or `order-2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit {
    /// The service.
    pub svc: Svc,
    /// One replica (1-based), or every replica when `None`.
    pub replica: Option<u32>,
}

impl Unit {
    /// Parses `NAME` or `NAME-K`.
    pub fn parse(name: &str) -> Result<Self, Failure> {
        if let Ok(svc) = name.parse::<Svc>() {
            return Ok(Self { svc, replica: None });
        }
        let unknown = || {
            Failure::usage(format!(
                "unknown component {name:?}; expected postgres, broker, one of {} or a replica such as order-2",
                Svc::names()
            ))
        };
        let (svc, k) = name.rsplit_once('-').ok_or_else(unknown)?;
        let svc: Svc = svc.parse().map_err(|_| unknown())?;
        match k.parse::<u32>() {
            Ok(k) if (1..=MAX_REPLICAS).contains(&k) => Ok(Self {
                svc,
                replica: Some(k),
            }),
            _ => Err(Failure::usage(format!(
                "{name:?}: a replica is numbered 1 to {MAX_REPLICAS}"
            ))),
        }
    }
}

impl std::fmt::Display for Unit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.replica {
            None => f.write_str(self.svc.name()),
            Some(k) => write!(f, "{}-{k}", self.svc.name()),
        }
    }
}

/// Deletes the state directory (and PostgreSQL's data when it lives elsewhere).
pub fn wipe(local: &Local) -> Result<(), Failure> {
    let pg = local.pg_dir();
    if let Ok(target) = std::fs::read_link(&pg) {
        let _ = std::fs::remove_dir_all(target);
    }
    match std::fs::remove_dir_all(local.state_dir()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_directory_someone_else_prepared_is_refused() {
        use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().expect("tempdir");
        let me = std::fs::metadata(dir.path()).expect("meta").uid();
        let mine = dir.path().join("mine");
        std::fs::create_dir(&mine).expect("mkdir");
        std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        assert!(check_pg_dir(&mine, &[me]).is_ok());
        // Anyone may write it: refused.
        let open = dir.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let e = check_pg_dir(&open, &[me])
            .err()
            .map(|f| f.error.to_string());
        assert!(e.is_some_and(|e| e.contains("written by others")));
        // A link to it: refused the same; a link to a file: refused.
        let link = dir.path().join("link");
        symlink(&open, &link).expect("symlink");
        assert!(check_pg_dir(&link, &[me]).is_err());
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").expect("write");
        let to_file = dir.path().join("to-file");
        symlink(&file, &to_file).expect("symlink");
        let e = check_pg_dir(&to_file, &[me])
            .err()
            .map(|f| f.error.to_string());
        assert!(e.is_some_and(|e| e.contains("not a directory")));
        // Owned by someone else (here: not among the owners given).
        let e = check_pg_dir(&mine, &[me.wrapping_add(1)])
            .err()
            .map(|f| f.error.to_string());
        assert!(
            e.as_ref().is_some_and(|e| e.contains("is owned by uid")),
            "{e:?}"
        );
    }

    #[test]
    fn a_service_sheds_the_callers_kafka_identity_but_not_its_tuning() {
        let names = [
            "OMS_KAFKA_SASL_USERNAME",
            "OMS_KAFKA_SECURITY_PROTOCOL",
            "OMS_KAFKA_SSL_CA_LOCATION",
            "OMS_KAFKA_LINGER_MS",
            "OMS_KAFKA_PROPERTIES_FILE",
            "OMS_BROKERS",
        ]
        .map(std::ffi::OsString::from);
        assert_eq!(
            security_vars(names),
            [
                "OMS_KAFKA_SASL_USERNAME",
                "OMS_KAFKA_SECURITY_PROTOCOL",
                "OMS_KAFKA_SSL_CA_LOCATION"
            ]
            .map(std::ffi::OsString::from)
        );
    }

    #[test]
    fn components_are_named_and_ordered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut local = Local::from_env(dir.path(), Some(PathBuf::from("/x"))).expect("local");
        let all = Component::all(&local);
        assert_eq!(all[0], Component::Postgres);
        assert_eq!(all[1], Component::Broker(1));
        assert_eq!(all.len(), 2 + SERVICES.len());
        assert_eq!(Component::Broker(1).name(&local), "broker");
        assert_eq!(
            Component::named("broker", &local).ok(),
            Some(vec![Component::Broker(1)])
        );
        assert!(Component::named("broker-2", &local).is_err());
        assert_eq!(
            Component::named("db", &local).ok(),
            Some(vec![Component::Postgres])
        );
        assert_eq!(
            Component::named("saga", &local).ok(),
            Some(vec![Component::Service(Svc::Saga, 1)])
        );
        assert_eq!(Component::Service(Svc::Saga, 1).name(&local), "saga");
        let err = Component::named("brokr", &local)
            .err()
            .map(|f| f.error.to_string());
        assert!(err.is_some_and(|e| e.contains("brokr") && e.contains("postgres, broker")));
        assert!(Component::named("saga-2", &local).is_err());

        local.replicas = 3;
        local.broker_nodes = 3;
        assert_eq!(Component::all(&local).len(), 1 + 3 + 3 * SERVICES.len());
        assert_eq!(
            Component::named("broker", &local).ok(),
            Some((1..=3).map(Component::Broker).collect())
        );
        assert_eq!(
            Component::named("broker-2", &local).ok(),
            Some(vec![Component::Broker(2)])
        );
        let err = Component::named("broker-4", &local)
            .err()
            .map(|f| f.error.to_string());
        assert!(err.is_some_and(|e| e.contains("3 Kafka node(s)")));
        assert_eq!(Component::Broker(1).name(&local), "broker-1");
        assert_eq!(Component::Broker(1).file_stem(), "broker");
        assert_eq!(Component::Broker(3).port(&local), local.broker_port + 20);
        assert_eq!(
            local.brokers(),
            format!(
                "127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}",
                local.broker_port,
                local.broker_port + 10,
                local.broker_port + 20
            )
        );
        assert_eq!(
            Component::named("order", &local).ok(),
            Some((1..=3).map(|r| Component::Service(Svc::Order, r)).collect())
        );
        assert_eq!(
            Component::named("order-2", &local).ok(),
            Some(vec![Component::Service(Svc::Order, 2)])
        );
        let third = Component::Service(Svc::Order, 3);
        assert_eq!(third.name(&local), "order-3");
        assert_eq!(Component::Service(Svc::Order, 1).name(&local), "order-1");
        assert_eq!(third.port(&local), local.port(Svc::Order) + 200);
        assert_eq!(third.file_stem(), "order-3");
        assert_eq!(Component::Service(Svc::Order, 1).file_stem(), "order");
        assert_eq!(local.urls(Svc::Order).len(), 3);
        let err = Component::named("order-4", &local)
            .err()
            .map(|f| f.error.to_string());
        assert!(err.is_some_and(|e| e.contains("3 replica(s)")));
        for bad in ["order-0", "order-x", "order-", "orders-2", "order-10"] {
            assert!(Unit::parse(bad).is_err(), "{bad} parsed");
        }
        let unit = Unit::parse("payment-2").expect("a replica");
        assert_eq!(unit.to_string(), "payment-2");
    }

    #[test]
    fn postgres_options_are_plain_settings_only() {
        assert!(check_pg_options("-c shared_preload_libraries=pg_stat_statements").is_ok());
        assert!(check_pg_options("-c work_mem=8MB -c log_min_duration_statement=5").is_ok());
        for bad in [
            "-c x=1; rm -rf /",
            "$(id)",
            "-c a='b'",
            "`id`",
            "a|b",
            "a&b",
        ] {
            assert!(check_pg_options(bad).is_err(), "{bad} taken");
        }
    }

    #[test]
    fn the_stack_record_round_trips_and_a_broken_one_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let local =
            Local::from_env(dir.path(), Some(PathBuf::from("/opt/oms/bin"))).expect("from env");
        local.record().expect("record");
        let back = Local::open(dir.path()).expect("open");
        assert_eq!(back, local);
        std::fs::write(dir.path().join("stack.json"), "{").expect("write");
        assert!(Local::open(dir.path()).is_err());
    }

    #[test]
    fn this_process_is_alive_and_a_free_pid_is_not() {
        assert!(alive(std::process::id()));
        assert!(!alive(u32::MAX - 1));
    }
}
