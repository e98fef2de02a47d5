//! Where a fault lands: the [`Target`] trait, with one implementation per kind of context.
//!
//! | fault | local (pids) | compose (`docker compose -p P`) | kubernetes (`kubectl -n NS`) |
//! | --- | --- | --- | --- |
//! | broker stop / start | SIGTERM / start every Kafka node (or one: `broker-2`) | `stop kafka` / `up -d --no-deps --wait kafka` | delete the Strimzi broker pods / wait for the `Kafka` to be Ready |
//! | broker kill | SIGKILL every node (or one) | `kill kafka` | delete the broker pods at once (`--grace-period=0`) |
//! | db stop / start | `pg_ctl stop` / start | `stop postgres` / `up -d --no-deps --wait postgres` | CloudNativePG hibernation on / off, wait for Ready |
//! | service kill | SIGKILL | `kill S` | delete the pods of `oms-S` at once (the Deployment replaces them) |
//! | service stop | SIGTERM | `stop S` | `scale deployment/oms-S --replicas=0` (the count is recorded) |
//! | service pause | SIGSTOP | `pause S` | refused: a container's PID 1 ignores SIGSTOP from inside its namespace |
//! | undo of kill / stop | start, wait ready | `up -d --no-deps --wait S` | scale back to the recorded count, `rollout status` |
//! | undo of pause | SIGCONT | `unpause S` | - |
//! | service restart | stop + start | `restart S` | `rollout restart`, `rollout status` |
//!
//! A service's name hits every replica of it; on the local stack `NAME-K` hits replica K alone
//! (`stack up --replicas N`). Compose and Kubernetes hit the service as a whole: a single
//! replica there is a container or pod, for `docker` and `kubectl` themselves.
//!
//! On Kubernetes, "broker stop" is a restart of every broker pod at once: the Strimzi operator
//! recreates them, so the outage lasts as long as they take to come back (a real stop would fight
//! the operator). Compose and Kubernetes are driven through their CLIs (`docker`, `kubectl` on
//! PATH), so what omsctl does is exactly what an operator would type; the tests record it.

use std::time::Duration;

use crate::context::Target as TargetSpec;
use crate::local::{self, Component, Local, Signal, Unit};
use crate::Failure;
use oms_contracts::ServiceId as Svc;

/// How a service is hit (recorded with the fault).
pub use super::ServiceFault;

/// What undoing a service fault needs, recorded with it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Handle {
    /// The local process that was paused.
    pub pid: Option<u32>,
    /// The replica count a Kubernetes Deployment had before it was scaled to zero.
    pub replicas: Option<u32>,
}

/// Puts faults in force on one kind of target and takes them back. Every undo waits until what
/// it brought back is ready.
#[allow(async_fn_in_trait)]
pub trait Target {
    /// Stops the broker, every node or node `node` (or, where it cannot be held stopped, takes
    /// it down); with `kill`, without a clean shutdown.
    async fn stop_broker(&self, node: Option<u32>, kill: bool) -> Result<(), Failure>;
    /// Brings the broker back (every node, or node `node`).
    async fn start_broker(&self, node: Option<u32>) -> Result<(), Failure>;
    /// Stops PostgreSQL.
    async fn stop_db(&self) -> Result<(), Failure>;
    /// Brings PostgreSQL back.
    async fn start_db(&self) -> Result<(), Failure>;
    /// Hits `unit`; returns what undoing it needs.
    async fn hit(&self, unit: Unit, how: ServiceFault) -> Result<Handle, Failure>;
    /// Undoes `how` on `unit`.
    async fn heal(&self, unit: Unit, how: ServiceFault, handle: Handle) -> Result<(), Failure>;
    /// Stops and starts `unit`.
    async fn restart(&self, unit: Unit) -> Result<(), Failure>;
}

/// The target of a context.
pub enum AnyTarget {
    /// Local pids.
    Local(LocalTarget),
    /// docker compose.
    Compose(Cli),
    /// kubectl.
    Kubernetes(Kube),
}

impl AnyTarget {
    /// The target `spec` describes; a local one needs the stack in `state_dir`.
    pub fn new(spec: &TargetSpec, state_dir: &std::path::Path) -> Result<Self, Failure> {
        Ok(match spec {
            TargetSpec::Local => AnyTarget::Local(LocalTarget(Local::open(state_dir)?)),
            TargetSpec::Compose { project, file } => {
                let mut base = vec!["compose".to_owned(), "-p".to_owned(), project.clone()];
                if let Some(f) = file {
                    base.push("-f".into());
                    base.push(f.display().to_string());
                }
                AnyTarget::Compose(Cli::new("docker", base))
            }
            TargetSpec::Kubernetes {
                namespace,
                kube_context,
                kafka_cluster,
                postgres_cluster,
            } => {
                let mut base = Vec::new();
                if let Some(c) = kube_context {
                    base.push("--context".to_owned());
                    base.push(c.clone());
                }
                base.push("-n".into());
                base.push(namespace.clone());
                AnyTarget::Kubernetes(Kube {
                    cli: Cli::new("kubectl", base),
                    kafka_cluster: kafka_cluster.clone(),
                    postgres_cluster: postgres_cluster.clone(),
                })
            }
        })
    }

    /// Whether `unit` runs (every replica it names), where that can be told without asking a
    /// remote API. One replica is a thing of the local stack only.
    pub fn check_running(&self, unit: Unit) -> Result<(), Failure> {
        match self {
            AnyTarget::Local(l) => {
                for c in Component::of(unit, &l.0)? {
                    if c.pid(&l.0).is_none() {
                        return Err(Failure::usage(format!("{} is not running", c.name(&l.0))));
                    }
                }
                Ok(())
            }
            _ => whole(unit).map(|_| ()),
        }
    }
}

macro_rules! delegate {
    ($self:ident, $t:ident => $e:expr) => {
        match $self {
            AnyTarget::Local($t) => $e,
            AnyTarget::Compose($t) => $e,
            AnyTarget::Kubernetes($t) => $e,
        }
    };
}

impl Target for AnyTarget {
    async fn stop_broker(&self, node: Option<u32>, kill: bool) -> Result<(), Failure> {
        delegate!(self, t => t.stop_broker(node, kill).await)
    }
    async fn start_broker(&self, node: Option<u32>) -> Result<(), Failure> {
        delegate!(self, t => t.start_broker(node).await)
    }
    async fn stop_db(&self) -> Result<(), Failure> {
        delegate!(self, t => t.stop_db().await)
    }
    async fn start_db(&self) -> Result<(), Failure> {
        delegate!(self, t => t.start_db().await)
    }
    async fn hit(&self, unit: Unit, how: ServiceFault) -> Result<Handle, Failure> {
        delegate!(self, t => t.hit(unit, how).await)
    }
    async fn heal(&self, unit: Unit, how: ServiceFault, handle: Handle) -> Result<(), Failure> {
        delegate!(self, t => t.heal(unit, how, handle).await)
    }
    async fn restart(&self, unit: Unit) -> Result<(), Failure> {
        delegate!(self, t => t.restart(unit).await)
    }
}

/// The local process stack.
pub struct LocalTarget(pub Local);

impl LocalTarget {
    /// The Kafka nodes a broker fault hits: every one, or node `node` (which must exist).
    fn nodes(&self, node: Option<u32>) -> Result<Vec<Component>, Failure> {
        match node {
            None => Ok(self.0.broker_components()),
            Some(k) => Component::named(&format!("broker-{k}"), &self.0),
        }
    }
}

/// Refuses one broker node where the target hits the broker as a whole.
fn whole_broker(node: Option<u32>) -> Result<(), Failure> {
    match node {
        None => Ok(()),
        Some(k) => Err(Failure::usage(format!(
            "broker-{k}: one broker node can be hit on the local stack only; here name the broker"
        ))),
    }
}

impl Target for LocalTarget {
    async fn stop_broker(&self, node: Option<u32>, kill: bool) -> Result<(), Failure> {
        let nodes = self.nodes(node)?;
        if !kill {
            return local::stop_all(&self.0, &nodes).await;
        }
        for c in &nodes {
            if let Some(pid) = c.pid(&self.0) {
                local::signal(pid, Signal::Kill)?;
                local::say(format!("killed {} (pid {pid})", c.name(&self.0)));
            }
        }
        Ok(())
    }
    async fn start_broker(&self, node: Option<u32>) -> Result<(), Failure> {
        let nodes = self.nodes(node)?;
        for c in &nodes {
            c.start(&self.0).await?;
        }
        local::wait_ready(&self.0, &nodes, Duration::from_secs(120)).await
    }
    async fn stop_db(&self) -> Result<(), Failure> {
        Component::Postgres.stop(&self.0).await
    }
    async fn start_db(&self) -> Result<(), Failure> {
        Component::Postgres.start(&self.0).await
    }
    async fn hit(&self, unit: Unit, how: ServiceFault) -> Result<Handle, Failure> {
        let hit = Component::of(unit, &self.0)?;
        let mut pid = None;
        for c in hit {
            pid = pid.or(c.pid(&self.0));
            match how {
                ServiceFault::Killed => c.signal(&self.0, Signal::Kill).map(|_| ())?,
                ServiceFault::Stopped => c.stop(&self.0).await?,
                ServiceFault::Paused => c.signal(&self.0, Signal::Stop).map(|_| ())?,
            }
        }
        Ok(Handle {
            pid,
            replicas: None,
        })
    }
    async fn heal(&self, unit: Unit, how: ServiceFault, _: Handle) -> Result<(), Failure> {
        let hit = Component::of(unit, &self.0)?;
        let mut started = Vec::new();
        for c in hit {
            match (how, c.pid(&self.0)) {
                // A paused process is resumed (the very one: a frozen process keeps its pid).
                (ServiceFault::Paused, Some(now)) if local::frozen(now) => {
                    local::signal(now, Signal::Cont)?;
                }
                (_, Some(_)) => {}
                (_, None) => {
                    c.start(&self.0).await?;
                    started.push(c);
                }
            }
        }
        local::wait_ready(&self.0, &started, Duration::from_secs(120)).await
    }
    async fn restart(&self, unit: Unit) -> Result<(), Failure> {
        for c in Component::of(unit, &self.0)? {
            c.stop(&self.0).await?;
        }
        self.heal(unit, ServiceFault::Stopped, Handle::default())
            .await
    }
}

/// The service `unit` names, refused when it names one replica: compose and Kubernetes hit a
/// service as a whole.
fn whole(unit: Unit) -> Result<Svc, Failure> {
    match unit.replica {
        None => Ok(unit.svc),
        Some(_) => Err(Failure::usage(format!(
            "{unit}: one replica can be hit on the local stack only; here name the service ({})",
            unit.svc.name()
        ))),
    }
}

/// A command-line tool run with fixed leading arguments (`docker compose -p oms`, `kubectl -n
/// oms`).
pub struct Cli {
    program: String,
    base: Vec<String>,
}

impl Cli {
    fn new(program: &str, base: Vec<String>) -> Self {
        Self {
            program: program.to_owned(),
            base,
        }
    }

    /// The command line, as the operator would type it.
    fn line(&self, args: &[&str]) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.base.iter().map(String::as_str))
            .chain(args.iter().copied())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs it with `args`; its standard output, or an error with the line and its stderr.
    async fn run(&self, args: &[&str]) -> Result<String, Failure> {
        let line = self.line(args);
        local::say(format!("running {line}"));
        let out = tokio::process::Command::new(&self.program)
            .args(&self.base)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| {
                Failure::usage(format!(
                    "cannot run {} (is it installed and on PATH?): {e}",
                    self.program
                ))
            })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let why = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            return Err(Failure::usage(format!(
                "`{line}` failed ({}){}",
                out.status,
                if why.is_empty() {
                    String::new()
                } else {
                    format!(": {}", why.trim())
                }
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

/// The compose service of the broker and of PostgreSQL in compose.yaml.
const COMPOSE_BROKER: &str = "kafka";
const COMPOSE_DB: &str = "postgres";

impl Cli {
    /// `up -d --no-deps --wait S`: starts a stopped or killed container and waits for its
    /// healthcheck.
    async fn compose_up(&self, service: &str) -> Result<(), Failure> {
        self.run(&["up", "-d", "--no-deps", "--wait", service])
            .await
            .map(|_| ())
    }
}

impl Target for Cli {
    async fn stop_broker(&self, node: Option<u32>, kill: bool) -> Result<(), Failure> {
        whole_broker(node)?;
        let verb = if kill { "kill" } else { "stop" };
        self.run(&[verb, COMPOSE_BROKER]).await.map(|_| ())
    }
    async fn start_broker(&self, node: Option<u32>) -> Result<(), Failure> {
        whole_broker(node)?;
        self.compose_up(COMPOSE_BROKER).await
    }
    async fn stop_db(&self) -> Result<(), Failure> {
        self.run(&["stop", COMPOSE_DB]).await.map(|_| ())
    }
    async fn start_db(&self) -> Result<(), Failure> {
        self.compose_up(COMPOSE_DB).await
    }
    async fn hit(&self, unit: Unit, how: ServiceFault) -> Result<Handle, Failure> {
        let svc = whole(unit)?;
        let verb = match how {
            ServiceFault::Killed => "kill",
            ServiceFault::Stopped => "stop",
            ServiceFault::Paused => "pause",
        };
        self.run(&[verb, svc.name()]).await?;
        Ok(Handle::default())
    }
    async fn heal(&self, unit: Unit, how: ServiceFault, _: Handle) -> Result<(), Failure> {
        let svc = whole(unit)?;
        match how {
            ServiceFault::Paused => self.run(&["unpause", svc.name()]).await.map(|_| ()),
            ServiceFault::Killed | ServiceFault::Stopped => self.compose_up(svc.name()).await,
        }
    }
    async fn restart(&self, unit: Unit) -> Result<(), Failure> {
        let svc = whole(unit)?;
        self.run(&["restart", svc.name()]).await?;
        self.compose_up(svc.name()).await
    }
}

/// A Kubernetes namespace with deploy/kubernetes applied.
pub struct Kube {
    cli: Cli,
    kafka_cluster: String,
    postgres_cluster: String,
}

/// How long a Kubernetes undo waits for what it brought back.
const KUBE_WAIT: &str = "--timeout=300s";

/// The Deployment of a service in deploy/kubernetes.
fn deployment(svc: Svc) -> String {
    format!("deployment/oms-{}", svc.name())
}

impl Kube {
    fn cnpg_cluster(&self) -> String {
        format!("cluster.postgresql.cnpg.io/{}", self.postgres_cluster)
    }

    async fn rollout_status(&self, svc: Svc) -> Result<(), Failure> {
        self.cli
            .run(&["rollout", "status", &deployment(svc), KUBE_WAIT])
            .await
            .map(|_| ())
    }
}

impl Target for Kube {
    async fn stop_broker(&self, node: Option<u32>, kill: bool) -> Result<(), Failure> {
        whole_broker(node)?;
        let selector = format!(
            "strimzi.io/cluster={},strimzi.io/broker-role=true",
            self.kafka_cluster
        );
        let mut args = vec!["delete", "pod", "-l", &selector, "--wait=false"];
        if kill {
            args.push("--grace-period=0");
        }
        self.cli.run(&args).await.map(|_| ())
    }
    async fn start_broker(&self, node: Option<u32>) -> Result<(), Failure> {
        whole_broker(node)?;
        let kafka = format!("kafka.kafka.strimzi.io/{}", self.kafka_cluster);
        self.cli
            .run(&["wait", &kafka, "--for=condition=Ready", KUBE_WAIT])
            .await
            .map(|_| ())
    }
    async fn stop_db(&self) -> Result<(), Failure> {
        self.cli
            .run(&[
                "annotate",
                &self.cnpg_cluster(),
                "cnpg.io/hibernation=on",
                "--overwrite",
            ])
            .await
            .map(|_| ())
    }
    async fn start_db(&self) -> Result<(), Failure> {
        let cluster = self.cnpg_cluster();
        self.cli
            .run(&[
                "annotate",
                &cluster,
                "cnpg.io/hibernation=off",
                "--overwrite",
            ])
            .await?;
        self.cli
            .run(&["wait", &cluster, "--for=condition=Ready", KUBE_WAIT])
            .await
            .map(|_| ())
    }
    async fn hit(&self, unit: Unit, how: ServiceFault) -> Result<Handle, Failure> {
        let svc = whole(unit)?;
        let selector = format!("app.kubernetes.io/name=oms-{}", svc.name());
        match how {
            ServiceFault::Killed => {
                self.cli
                    .run(&[
                        "delete",
                        "pod",
                        "-l",
                        &selector,
                        "--grace-period=0",
                        "--force",
                        "--wait=false",
                    ])
                    .await?;
                Ok(Handle::default())
            }
            ServiceFault::Stopped => {
                let now = self
                    .cli
                    .run(&["get", &deployment(svc), "-o", "jsonpath={.spec.replicas}"])
                    .await?;
                let replicas: u32 = now.parse().map_err(|_| {
                    Failure::usage(format!(
                        "{} has no replica count ({now:?})",
                        deployment(svc)
                    ))
                })?;
                self.cli
                    .run(&["scale", &deployment(svc), "--replicas=0"])
                    .await?;
                Ok(Handle {
                    pid: None,
                    replicas: Some(replicas),
                })
            }
            ServiceFault::Paused => Err(Failure::usage(
                "pause is not available on a kubernetes target (a container's PID 1 ignores SIGSTOP sent from inside its namespace); use stop or kill",
            )),
        }
    }
    async fn heal(&self, unit: Unit, how: ServiceFault, handle: Handle) -> Result<(), Failure> {
        let svc = whole(unit)?;
        if how == ServiceFault::Stopped {
            // A stop recorded without its count (an older record) comes back with one replica.
            let replicas = format!("--replicas={}", handle.replicas.unwrap_or(1).max(1));
            self.cli
                .run(&["scale", &deployment(svc), &replicas])
                .await?;
        }
        self.rollout_status(svc).await
    }
    async fn restart(&self, unit: Unit) -> Result<(), Failure> {
        let svc = whole(unit)?;
        self.cli
            .run(&["rollout", "restart", &deployment(svc)])
            .await?;
        self.rollout_status(svc).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_carry_the_project_or_namespace_first() {
        let compose = AnyTarget::new(
            &TargetSpec::Compose {
                project: "oms".into(),
                file: Some("/srv/compose.yaml".into()),
            },
            std::path::Path::new("/nonexistent"),
        )
        .expect("valid");
        let AnyTarget::Compose(cli) = compose else {
            panic!("not compose")
        };
        assert_eq!(
            cli.line(&["stop", "kafka"]),
            "docker compose -p oms -f /srv/compose.yaml stop kafka"
        );
        let kube = AnyTarget::new(
            &TargetSpec::Kubernetes {
                namespace: "shop".into(),
                kube_context: Some("prod".into()),
                kafka_cluster: "k".into(),
                postgres_cluster: "p".into(),
            },
            std::path::Path::new("/nonexistent"),
        )
        .expect("valid");
        let AnyTarget::Kubernetes(k) = kube else {
            panic!("not kubernetes")
        };
        assert_eq!(
            k.cli.line(&["get", "pods"]),
            "kubectl --context prod -n shop get pods"
        );
        assert_eq!(k.cnpg_cluster(), "cluster.postgresql.cnpg.io/p");
    }

    #[tokio::test]
    async fn one_replica_is_refused_off_the_local_stack_before_anything_runs() {
        let compose = AnyTarget::new(
            &TargetSpec::Compose {
                project: "oms".into(),
                file: None,
            },
            std::path::Path::new("/nonexistent"),
        )
        .expect("valid");
        let replica = Unit::parse("order-2").expect("a replica");
        // `docker` is not even looked for: the refusal comes first.
        let err = compose
            .hit(replica, ServiceFault::Killed)
            .await
            .err()
            .map(|f| f.error.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("order-2") && e.contains("local stack only")),
            "{err:?}"
        );
        assert!(compose.check_running(replica).is_err());
        assert!(compose
            .check_running(Unit::parse("order").expect("a service"))
            .is_ok());
    }
}
