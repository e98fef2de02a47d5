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

use std::path::{Path, PathBuf};

use oms_contracts::topology::SERVICES;
use serde::{Deserialize, Serialize};

use crate::Failure;
use oms_contracts::ServiceId as Svc;

pub mod binaries;
mod component;
pub mod observability;
mod postgres;
mod process;

pub use component::{stop_all, wait_ready, Component};
pub use process::{alive, frozen, port_open, processes, signal, Signal};

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

/// Stops every component: Prometheus (when it runs), the services in reverse start order, the
/// Kafka nodes together, PostgreSQL last.
pub async fn down(local: &Local) -> Result<(), Failure> {
    observability::stop(local).await?;
    for c in local.service_components().into_iter().rev() {
        c.stop(local).await?;
    }
    stop_all(local, &local.broker_components()).await?;
    Component::Postgres.stop(local).await
}

#[cfg(test)]
mod tests {
    use super::component::*;
    use super::postgres::*;
    use super::process::*;
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
    fn the_open_files_limit_is_raised_to_the_hard_one() {
        use super::process::raised_soft_limit;
        assert_eq!(raised_soft_limit(Some(1024), Some(20_000)), Some(20_000));
        assert_eq!(raised_soft_limit(Some(20_000), Some(20_000)), None);
        assert_eq!(raised_soft_limit(Some(1024), None), Some(1 << 20));
        assert_eq!(raised_soft_limit(None, None), None);
    }

    #[test]
    fn this_process_is_alive_and_a_free_pid_is_not() {
        assert!(alive(std::process::id()));
        assert!(!alive(u32::MAX - 1));
    }
}
