//! What `stack status` and `stack services` report.

use serde::{Deserialize, Serialize};

use crate::ctx::Ctx;
use crate::local::{Component, Local};
use crate::{topics, Failure};

/// A service of the topology, as deployed (`stack services`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRow {
    /// Its name.
    pub name: String,
    /// Its port on the local stack.
    pub default_port: u16,
    /// Its consumer group.
    pub group: String,
    /// The topics it reads.
    pub reads: Vec<String>,
    /// The topics it writes.
    pub writes: Vec<String>,
}

/// Whether the stack is ready, component by component (`stack status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackStatus {
    /// Every component is ready.
    pub ready: bool,
    /// PostgreSQL, each broker, each service replica.
    pub components: Vec<ComponentStatus>,
}

/// One component of the stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// Its name (`order-2` for a second replica).
    pub component: String,
    /// The service, for a service replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The replica number, for a service replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<u32>,
    /// Its process, when omsctl started it.
    pub pid: Option<u32>,
    /// Where it listens.
    pub address: String,
    /// It answers and is ready.
    pub ready: bool,
    /// Whether its relay leads (services).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_leader: Option<bool>,
    /// Its outbox rows not yet published (services).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox_backlog: Option<i64>,
    /// Its consumer group's lag (services, when the broker answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_lag: Option<i64>,
    /// Why it is not ready, when it did not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ComponentStatus {
    /// PostgreSQL or a broker.
    pub fn infra(name: &str, pid: Option<u32>, address: String, ready: bool) -> Self {
        ComponentStatus {
            component: name.to_owned(),
            service: None,
            replica: None,
            pid,
            address,
            ready,
            relay_leader: None,
            outbox_backlog: None,
            consumer_lag: None,
            error: None,
        }
    }
}

/// The services of the topology as deployed under `ctx`'s prefix.
pub fn services(ctx: &Ctx) -> Vec<ServiceRow> {
    oms_contracts::topology::SERVICES
        .iter()
        .map(|s| ServiceRow {
            name: s.name.to_owned(),
            default_port: s.port,
            group: ctx.topics.name(s.group),
            reads: s.reads().iter().map(|t| ctx.topics.name(t)).collect(),
            writes: s.writes().iter().map(|t| ctx.topics.name(t)).collect(),
        })
        .collect()
}

/// Whether every component of the stack is ready: PostgreSQL and each Kafka node (of a stack
/// omsctl brought up; else the brokers), each service replica with its relay, outbox backlog
/// and consumer lag.
pub async fn status(ctx: &Ctx) -> Result<StackStatus, Failure> {
    let brokers = ctx.brokers.clone();
    let groups = ctx.consumer_groups();
    let wanted = ctx.saga_topics();
    let lag_rows = tokio::task::spawn_blocking(move || topics::list(&brokers, &wanted, &groups))
        .await
        .map_err(anyhow::Error::from)?;
    let broker_ok = lag_rows.is_ok();
    let lag_rows = lag_rows.unwrap_or_default();
    let local = Local::open(&ctx.state_dir)?;
    let mut components = Vec::new();
    // PostgreSQL is omsctl's to report only on a stack it brought up; a remote stack's
    // databases are behind its services (their readiness covers them).
    if Local::is_recorded(&ctx.state_dir) {
        let http = reqwest::Client::new();
        components.push(ComponentStatus::infra(
            "postgres",
            Component::Postgres.pid(&local),
            format!("127.0.0.1:{}", local.pg_port),
            Component::Postgres.ready(&local, &http).await,
        ));
    }
    if Local::is_recorded(&ctx.state_dir) {
        // Each Kafka node of the stack, ready when it answers a metadata request itself.
        let http = reqwest::Client::new();
        for node in local.broker_components() {
            components.push(ComponentStatus::infra(
                &node.name(&local),
                node.pid(&local),
                format!("127.0.0.1:{}", node.port(&local)),
                node.ready(&local, &http).await,
            ));
        }
    } else {
        components.push(ComponentStatus::infra(
            "broker",
            None,
            ctx.brokers.servers.clone(),
            broker_ok,
        ));
    }
    if let Some(pid) = crate::local::observability::pid(&local) {
        let port = crate::local::observability::port()?;
        components.push(ComponentStatus::infra(
            "prometheus",
            Some(pid),
            format!("127.0.0.1:{port}"),
            tokio::task::spawn_blocking(move || crate::local::port_open(port))
                .await
                .unwrap_or(false),
        ));
    }
    for r in ctx.replicas() {
        let svc = r.svc;
        let group = ctx.topics.name(svc.spec().group);
        let lag: i64 = lag_rows.iter().filter_map(|l| l.lag.get(&group)).sum();
        let ready = ctx
            .read_opt_at(oms_contracts::routes::HEALTH_READY.of(svc), r.base)
            .await;
        let (is_ready, backlog, leader, detail) = match &ready {
            Ok(Some(h)) => (
                h.is_ready(),
                h.outbox.map(|b| b.pending),
                Some(h.relay_leader),
                None,
            ),
            Ok(None) => (false, None, None, Some("no /health/ready".to_owned())),
            Err(f) => (false, None, None, Some(f.error.to_string())),
        };
        components.push(ComponentStatus {
            component: r.name,
            service: Some(svc.name().to_owned()),
            replica: Some(r.replica),
            pid: Component::Service(svc, r.replica).pid(&local),
            address: r.base.to_owned(),
            ready: is_ready,
            relay_leader: leader,
            outbox_backlog: backlog,
            consumer_lag: broker_ok.then_some(lag),
            error: detail,
        });
    }
    Ok(StackStatus {
        ready: components.iter().all(|c| c.ready),
        components,
    })
}
