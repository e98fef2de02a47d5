//! The faults chaos can put in force, and how each is applied and undone on a target.

use super::target::{AnyTarget, Handle, Target};
use crate::client::Request;
use crate::ctx::Ctx;
use crate::local::Unit;
use crate::Failure;
use oms_contracts::api::{CarrierKnobs, GatewayKnobs};
use oms_contracts::routes::{self, Route};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A fault that lasts until it is undone, with what undoing it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Fault {
    /// The broker, or one of its nodes, is down.
    #[serde(rename_all = "camelCase")]
    Broker {
        /// The node (1-based), or every node when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<u32>,
        /// Killed (SIGKILL) rather than stopped.
        #[serde(default)]
        killed: bool,
    },
    /// PostgreSQL is stopped.
    Db,
    /// A service is down or frozen.
    #[serde(rename_all = "camelCase")]
    Service {
        /// Which service.
        target: String,
        /// killed, stopped or paused.
        action: ServiceFault,
        /// The process paused (a paused service is resumed, not restarted).
        pid: Option<u32>,
        /// The replicas a Kubernetes Deployment had before it was scaled to zero.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replicas: Option<u32>,
    },
    /// The payment gateway's fault knobs are set.
    #[serde(rename_all = "camelCase")]
    Payment {
        /// The knobs set.
        knobs: GatewayKnobs,
        /// The knobs to restore.
        previous_knobs: GatewayKnobs,
    },
    /// The simulated carrier's fault knobs are set.
    #[serde(rename_all = "camelCase")]
    Carrier {
        /// The knobs set.
        knobs: CarrierKnobs,
        /// The knobs to restore.
        previous_knobs: CarrierKnobs,
    },
}

/// How a service was hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceFault {
    /// SIGKILL.
    Killed,
    /// Stopped gracefully.
    Stopped,
    /// SIGSTOP.
    Paused,
}

impl Fault {
    /// What it hits: `broker` (every node), `broker-K`, `db`, a service name, `gateway` or
    /// `carrier`. One fault per target.
    pub fn target(&self) -> String {
        match self {
            Fault::Broker { node: None, .. } => "broker".into(),
            Fault::Broker { node: Some(k), .. } => format!("broker-{k}"),
            Fault::Db => "db".into(),
            Fault::Service { target, .. } => target.clone(),
            Fault::Payment { .. } => "gateway".into(),
            Fault::Carrier { .. } => "carrier".into(),
        }
    }

    /// Its kind as recorded: `broker`, `db`, `service`, `payment` or `carrier`.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Broker { .. } => "broker",
            Fault::Db => "db",
            Fault::Service { .. } => "service",
            Fault::Payment { .. } => "payment",
            Fault::Carrier { .. } => "carrier",
        }
    }

    /// What was done, in a word or two.
    pub fn action(&self) -> String {
        match self {
            Fault::Broker { killed: true, .. } => "killed".into(),
            Fault::Broker { .. } | Fault::Db => "stopped".into(),
            Fault::Service { action, .. } => match action {
                ServiceFault::Killed => "killed",
                ServiceFault::Stopped => "stopped",
                ServiceFault::Paused => "paused",
            }
            .into(),
            Fault::Payment { knobs, .. } => {
                format!("knobs {}", serde_json::to_string(knobs).unwrap_or_default())
            }
            Fault::Carrier { knobs, .. } => {
                format!("knobs {}", serde_json::to_string(knobs).unwrap_or_default())
            }
        }
    }

    /// Undo order of `reset`: infrastructure first, so services come back to a database and a
    /// broker.
    pub(super) fn undo_rank(&self) -> u8 {
        match self {
            Fault::Db => 0,
            Fault::Broker { .. } => 1,
            Fault::Service { .. } => 2,
            Fault::Payment { .. } | Fault::Carrier { .. } => 3,
        }
    }

    fn unit(&self) -> Result<Unit, Failure> {
        Unit::parse(&self.target())
    }

    /// Puts the fault in force on `target`; a service fault learns what undoing it needs.
    pub async fn apply(&mut self, ctx: &Ctx, target: &AnyTarget) -> Result<(), Failure> {
        match self {
            Fault::Broker { node, killed } => target.stop_broker(*node, *killed).await,
            Fault::Db => target.stop_db().await,
            Fault::Service {
                target: name,
                action,
                pid,
                replicas,
            } => {
                let handle = target.hit(Unit::parse(name)?, *action).await?;
                *pid = handle.pid.or(*pid);
                *replicas = handle.replicas;
                Ok(())
            }
            Fault::Payment { knobs, .. } => set_knobs(ctx, routes::SET_GATEWAY_FAULTS, knobs).await,
            Fault::Carrier { knobs, .. } => set_knobs(ctx, routes::SET_CARRIER_FAULTS, knobs).await,
        }
    }

    /// Takes it back: starts what was stopped (waiting until it is ready), resumes what was
    /// paused, restores the knobs.
    pub async fn undo(&self, ctx: &Ctx, target: &AnyTarget) -> Result<(), Failure> {
        match self {
            Fault::Broker { node, .. } => target.start_broker(*node).await,
            Fault::Db => target.start_db().await,
            Fault::Service {
                action,
                pid,
                replicas,
                ..
            } => {
                let handle = Handle {
                    pid: *pid,
                    replicas: *replicas,
                };
                target.heal(self.unit()?, *action, handle).await
            }
            Fault::Payment { previous_knobs, .. } => {
                set_knobs(ctx, routes::SET_GATEWAY_FAULTS, previous_knobs).await
            }
            Fault::Carrier { previous_knobs, .. } => {
                set_knobs(ctx, routes::SET_CARRIER_FAULTS, previous_knobs).await
            }
        }
    }
}

/// The route that sets a simulation's knobs.
pub(super) type Knobs<K> = Route<K, K>;

/// Sets a simulation's knobs on every replica of its service (each holds its own).
pub(super) async fn set_knobs<K: Serialize + DeserializeOwned + 'static>(
    ctx: &Ctx,
    route: Knobs<K>,
    knobs: &K,
) -> Result<(), Failure> {
    let svc = route.spec.service;
    let bases = ctx.urls_of(svc);
    if bases.is_empty() {
        return Err(Failure::usage(format!(
            "no URL of the {} service",
            svc.name()
        )));
    }
    for base in bases {
        ctx.act(route, Request::to(&[]).body(knobs).replica(base))
            .await?;
    }
    Ok(())
}
