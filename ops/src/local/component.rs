//! The components of the local stack (PostgreSQL, each Kafka node, each service replica):
//! starting them detached, stopping them, and waiting until they are ready.

use std::time::{Duration, Instant};

use tokio::process::Command;

use crate::Failure;
use oms_contracts::ServiceId as Svc;

use super::postgres::{pg_start, pg_stop, postmaster};
use super::process::{alive, pid_file, port_open, signal, spawn_detached, tail, wait_for, Signal};
use super::{say, Local, Unit};

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

/// The `OMS_KAFKA_*` variables among `names` that set who a client is (`security.*`, `sasl.*`,
/// `ssl.*`); tuning such as `OMS_KAFKA_LINGER_MS` passes through.
pub fn security_vars(
    names: impl IntoIterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
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

/// The Kafka users of a secured stack: the operator (omsctl) and one per service.
pub fn kafka_users() -> Vec<String> {
    oms_kafka::node::security::Plan::for_topology(&oms_contracts::Topics::default()).users
}

/// Starts Kafka node `node` unless it runs: its files written and its storage formatted on the
/// first start ([`oms_kafka::node::Cluster::prepare`]). Returns once the process runs; it is
/// ready when [`wait_ready`] says so (a node of three cannot be before a majority runs).
pub async fn broker_start(local: &Local, node: u32) -> Result<(), Failure> {
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

pub async fn service_start(local: &Local, svc: Svc, replica: u32) -> Result<(), Failure> {
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
