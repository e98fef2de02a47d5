//! `omsctl chaos`: fault injection on the target of the context: the local stack's processes,
//! a compose project or a Kubernetes namespace ([`target`] maps each verb to each kind).
//!
//! Every fault that lasts (a stopped broker, a paused service, gateway knobs) is recorded in
//! `<state dir>/chaos.json` before it is applied, with what undoes it. `--for DURATION` keeps
//! omsctl in the foreground for that long and then undoes the fault (Ctrl-C undoes it at once);
//! `chaos reset` undoes every recorded fault, so a fault outlives an omsctl that was killed
//! only until the next reset. One-shot faults (`poison`, `duplicate`) write messages and record
//! nothing.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use oms_contracts::api::{CarrierKnobs, GatewayKnobs};
use oms_contracts::routes::{self, Route};
use serde::de::DeserializeOwned;

use crate::client::Request;
use oms_contracts::headers;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub mod target;

use crate::ctx::Ctx;
use crate::local;
use crate::local::Unit;
use crate::tail::{self, From};
use crate::Failure;
use target::{AnyTarget, Handle, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
/// Stop or start.
pub enum OnOff {
    /// Stop it.
    Stop,
    /// Start it.
    Start,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
/// What `chaos broker` does.
pub enum BrokerAction {
    /// SIGTERM and wait (a clean shutdown: leadership handed over first).
    Stop,
    /// SIGKILL, like a crash or a lost machine.
    Kill,
    /// Start it again and wait until it answers.
    Start,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
/// What `chaos service` does.
pub enum ServiceAction {
    /// SIGKILL, like a crash.
    Kill,
    /// SIGTERM and wait (graceful).
    Stop,
    /// Start it again.
    Start,
    /// Stop then start.
    Restart,
    /// SIGSTOP: alive but frozen.
    Pause,
    /// SIGCONT.
    Resume,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
/// What kind of poison `chaos poison` writes.
pub enum PoisonKind {
    /// Not JSON at all.
    BadJson,
    /// A well-formed envelope of a type nobody defined.
    UnknownType,
    /// A known type whose payload breaks its schema.
    BadSchema,
}

/// `--for DURATION`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct Lasting {
    /// Undo the fault by itself after this long (omsctl waits in the foreground).
    #[cfg_attr(feature = "clap", arg(long = "for", value_parser = crate::args::duration))]
    lasting: Option<Duration>,
}

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
    fn undo_rank(&self) -> u8 {
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

/// A fault in force, as recorded in `chaos.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recorded {
    /// The fault.
    #[serde(flatten)]
    pub fault: Fault,
    /// When it started (RFC 3339).
    pub since: String,
    /// When `--for` undoes it, if given (RFC 3339).
    pub until: Option<String>,
    /// The omsctl that holds it for `--for` and will undo it.
    pub holder: Option<u32>,
}

impl Recorded {
    /// Past its `--for` deadline with nobody left to undo it: the omsctl that held it died.
    pub fn overdue(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        let past = self
            .until
            .as_deref()
            .and_then(|u| chrono::DateTime::parse_from_rfc3339(u).ok())
            .is_some_and(|u| u < now);
        past && !self.holder.is_some_and(local::alive)
    }

    /// As `chaos status` shows it: the record with its target, action and whether it is
    /// overdue.
    pub fn view(&self, now: chrono::DateTime<chrono::Utc>) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        v["target"] = json!(self.fault.target());
        v["action"] = json!(self.fault.action());
        v["overdue"] = json!(self.overdue(now));
        v
    }
}

/// The faults recorded as in force (for dashboards), one line each.
pub fn active(ctx: &Ctx) -> Vec<String> {
    let now = chrono::Utc::now();
    Faults::at(ctx)
        .read()
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            let overdue = if r.overdue(now) { " (OVERDUE)" } else { "" };
            match &r.fault {
                Fault::Payment { .. } => {
                    format!("payment gateway: {}{overdue}", r.fault.action())
                }
                Fault::Carrier { .. } => format!("carrier: {}{overdue}", r.fault.action()),
                f => format!(
                    "{} {} since {}{overdue}",
                    f.target(),
                    f.action(),
                    r.since.get(11..19).unwrap_or(&r.since)
                ),
            }
        })
        .collect()
}

/// The fault file, changed only under an exclusive lock (two omsctl at once never lose a
/// fault) and written atomically (a crash never leaves half a file).
pub struct Faults {
    path: PathBuf,
}

impl Faults {
    /// The faults recorded for `ctx`'s stack.
    pub fn at(ctx: &Ctx) -> Self {
        Self {
            path: ctx.state_dir.join("chaos.json"),
        }
    }

    /// Every fault recorded.
    pub fn read(&self) -> Result<Vec<Recorded>, Failure> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) if text.trim().is_empty() => Ok(Vec::new()),
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                Failure::usage(format!("{} is not a fault list: {e}", self.path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Failure::usage(format!("{}: {e}", self.path.display()))),
        }
    }

    /// Reads, changes and writes the list under the lock; returns what `change` returns.
    fn update<T>(&self, change: impl FnOnce(&mut Vec<Recorded>) -> T) -> Result<T, Failure> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let lock_path = self.path.with_extension("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        lock.lock()
            .with_context(|| format!("locking {}", lock_path.display()))?;
        let mut faults = self.read()?;
        let out = change(&mut faults);
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&faults)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("writing {}", self.path.display()))?;
        drop(lock);
        Ok(out)
    }

    fn record(&self, r: Recorded) -> Result<(), Failure> {
        self.update(|faults| {
            faults.retain(|f| f.fault.target() != r.fault.target());
            faults.push(r);
        })
    }

    /// Forgets the fault on `target`.
    pub fn forget(&self, target: &str) -> Result<(), Failure> {
        self.update(|faults| faults.retain(|f| f.fault.target() != target))
    }
}

/// Now, RFC 3339 to the second.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn until(lasting: &Lasting) -> Option<String> {
    let d = chrono::TimeDelta::from_std(lasting.lasting?).ok()?;
    Some((chrono::Utc::now() + d).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// Records `fault`, applies it, and holds it for `--for` (then undoes it) or leaves it in force
/// until `chaos reset`. A fault that could not be applied is not left recorded.
pub async fn inflict(ctx: &Ctx, mut fault: Fault, lasting: &Lasting) -> Result<(), Failure> {
    let target = target_of(ctx)?;
    let faults = Faults::at(ctx);
    let name = fault.target().to_owned();
    let mut record = Recorded {
        fault: fault.clone(),
        since: now(),
        until: until(lasting),
        holder: lasting.lasting.map(|_| std::process::id()),
    };
    faults.record(record.clone())?;
    if let Err(e) = fault.apply(ctx, &target).await {
        faults.forget(&name)?;
        return Err(e);
    }
    if fault != record.fault {
        // What undoing needs, learnt while applying (a replica count).
        record.fault = fault.clone();
        faults.record(record)?;
    }
    let what = format!("{name} {}", fault.action());
    let Some(d) = lasting.lasting else {
        eprintln!("omsctl: {what}; in force until `omsctl chaos reset`");
        return Ok(());
    };
    eprintln!(
        "omsctl: {what} for {}; Ctrl-C ends it early",
        humantime::format_duration(d)
    );
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = tokio::signal::ctrl_c() => eprintln!("omsctl: interrupted; undoing"),
    }
    fault.undo(ctx, &target).await?;
    faults.forget(&name)?;
    eprintln!("omsctl: {what}: undone");
    Ok(())
}

/// The node a broker fault names: `None` for `broker` (every node), K for `broker-K`, and for
/// `leader` the node leading the most partitions of the OMS topics now.
pub async fn broker_node(
    ctx: &Ctx,
    name: &str,
    action: BrokerAction,
) -> Result<Option<u32>, Failure> {
    match name {
        "broker" => Ok(None),
        "leader" if action == BrokerAction::Start => Err(Failure::usage(
            "`leader` names a running node; start a node by its name (broker-2) or all (broker)",
        )),
        "leader" => {
            // On the local stack, every node it runs: the context's list may name one only,
            // and that one may be the node about to go.
            let brokers = match target_of(ctx)? {
                AnyTarget::Local(local) => ctx.for_local(&local.0)?.brokers,
                _ => ctx.brokers.clone(),
            };
            let wanted = ctx.saga_topics();
            let led =
                tokio::task::spawn_blocking(move || crate::topics::leadership(&brokers, &wanted))
                    .await
                    .map_err(anyhow::Error::from)??;
            let id = crate::topics::busiest_leader(&led.partitions)
                .ok_or_else(|| Failure::verdict("no partition of the OMS topics has a leader"))?;
            let node = u32::try_from(id)
                .map_err(|_| Failure::verdict(format!("node id {id} is not a local node")))?;
            eprintln!("omsctl: broker-{node} leads the most partitions of the OMS topics");
            Ok(Some(node))
        }
        other => match other.strip_prefix("broker-").map(str::parse::<u32>) {
            Some(Ok(k)) if k >= 1 => Ok(Some(k)),
            _ => Err(Failure::usage(format!(
                "{other:?}: expected broker (every node), broker-K (one node) or leader"
            ))),
        },
    }
}

/// The target of the context in use.
pub fn target_of(ctx: &Ctx) -> Result<AnyTarget, Failure> {
    AnyTarget::new(&ctx.context.target, &ctx.state_dir)
}

/// Undoes `fault` now (`chaos broker start`, `service resume`, ...) and forgets it. The fault
/// as recorded is undone when there is one of the same kind on the same target: it knows what
/// undoing needs (the paused pid, the replica count).
pub async fn lift(ctx: &Ctx, fault: Fault) -> Result<(), Failure> {
    let target = target_of(ctx)?;
    let faults = Faults::at(ctx);
    let recorded = faults
        .read()?
        .into_iter()
        .map(|r| r.fault)
        .find(|f| f.target() == fault.target() && f.kind() == fault.kind());
    // `start` after a kill or a stop, `resume` after a pause: the recorded fault's own undo.
    let fault = recorded.unwrap_or(fault);
    fault.undo(ctx, &target).await?;
    faults.forget(&fault.target())
}

/// The route that sets a simulation's knobs.
type Knobs<K> = Route<K, K>;

/// Sets a simulation's knobs on every replica of its service (each holds its own).
async fn set_knobs<K: Serialize + DeserializeOwned + 'static>(
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

/// Puts a simulation's knobs in force as a fault (undone by `reset` or `--for`); knobs that are
/// all off are only set, and the fault forgotten.
pub async fn knob_fault<K: Serialize + DeserializeOwned + 'static>(
    ctx: &Ctx,
    fault: Fault,
    off: bool,
    at: Knobs<K>,
    knobs: &K,
    lasting: &Lasting,
) -> Result<(), Failure> {
    if off {
        set_knobs(ctx, at, knobs).await?;
        return Faults::at(ctx).forget(&fault.target());
    }
    inflict(ctx, fault, lasting).await
}

/// A knob's latency in milliseconds (none: 0).
pub fn millis(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Undoes every recorded fault by its type; the ones it could not undo stay recorded.
pub async fn reset(ctx: &Ctx) -> Result<Undone, Failure> {
    let target = target_of(ctx)?;
    let faults = Faults::at(ctx);
    let mut sorted = faults.read()?;
    sorted.sort_by_key(|r| r.fault.undo_rank());
    let mut done = Vec::new();
    let mut left = Vec::new();
    for r in sorted {
        let label = format!("{} {}", r.fault.target(), r.fault.action());
        match r.fault.undo(ctx, &target).await {
            Ok(()) => {
                faults.forget(&r.fault.target())?;
                done.push(label);
            }
            Err(e) => {
                eprintln!("omsctl: could not undo {label}: {:#}", e.error);
                left.push(label);
            }
        }
    }
    Ok(Undone { undone: done, left })
}

/// What `chaos reset` undid, and what it could not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undone {
    /// Faults undone.
    pub undone: Vec<String>,
    /// Faults still in force.
    pub left: Vec<String>,
}

/// Poison messages written (`chaos poison`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Poisoned {
    /// Topic as deployed.
    pub topic: String,
    /// What kind of poison.
    pub kind: String,
    /// Each message written.
    pub written: Vec<Written>,
}

/// One poison message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    /// Its key (a fresh order id).
    pub key: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// Messages sent again (`chaos duplicate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Duplicated {
    /// Topic as deployed.
    pub topic: String,
    /// How many.
    pub redelivered: usize,
}

fn topic_name(ctx: &Ctx, topic: &str) -> Result<String, Failure> {
    let base = topic.strip_prefix(ctx.topics.prefix()).unwrap_or(topic);
    if !oms_contracts::topics::ALL.contains(&base) {
        return Err(Failure::usage(format!(
            "unknown topic {topic:?} (expected one of {})",
            oms_contracts::topics::ALL.join(", ")
        )));
    }
    Ok(ctx.topics.name(base))
}

/// Writes `count` poison messages of `kind` to `topic`.
pub async fn poison(
    ctx: &Ctx,
    topic: &str,
    count: u32,
    kind: PoisonKind,
) -> Result<Poisoned, Failure> {
    if count == 0 {
        return Err(Failure::usage("--count must be at least 1"));
    }
    let to = topic_name(ctx, topic)?;
    let producer = ctx.producer()?;
    let mut written = Vec::new();
    for i in 0..count {
        let order = uuid::Uuid::now_v7();
        let id = uuid::Uuid::now_v7();
        let (value, ty) = match kind {
            PoisonKind::BadJson => (format!("{{\"eventId\": \"{id}\", this is not json {i}"), "none"),
            PoisonKind::UnknownType => (
                json!({"eventId": id, "type": "order.teleported", "schemaVersion": 1, "occurredAt": now(), "correlationId": order, "source": "omsctl-chaos", "payload": {"orderId": order}}).to_string(),
                "order.teleported",
            ),
            PoisonKind::BadSchema => {
                let ty = oms_contracts::MessageType::ALL
                    .iter()
                    .find(|t| t.topic() == to.strip_prefix(ctx.topics.prefix()).unwrap_or(&to))
                    .map(|t| t.as_str())
                    .unwrap_or("order.created");
                (
                    json!({"eventId": id, "type": ty, "schemaVersion": 1, "occurredAt": now(), "correlationId": order, "source": "omsctl-chaos", "payload": {"orderId": order, "unexpected": true}}).to_string(),
                    ty,
                )
            }
        };
        let key = order.to_string();
        let id_text = id.to_string();
        let hs = OwnedHeaders::new()
            .insert(Header {
                key: headers::MESSAGE_ID,
                value: Some(id_text.as_str()),
            })
            .insert(Header {
                key: headers::MESSAGE_TYPE,
                value: Some(ty),
            });
        let d = producer
            .send(
                FutureRecord::to(&to).key(&key).payload(&value).headers(hs),
                Duration::from_secs(15),
            )
            .await
            .map_err(|(e, _)| Failure::usage(format!("writing to {to}: {e}")))?;
        written.push(Written {
            key,
            partition: d.partition,
            offset: d.offset,
        });
    }
    Ok(Poisoned {
        topic: to,
        kind: format!("{kind:?}"),
        written,
    })
}

/// Sends the messages of `topic` from `from` on again, as they are.
pub async fn duplicate(ctx: &Ctx, topic: &str, from: From) -> Result<Duplicated, Failure> {
    let to = topic_name(ctx, topic)?;
    let brokers = ctx.brokers.clone();
    let t = to.clone();
    let cutoff = match from {
        From::Time(ms) => Some(ms),
        _ => None,
    };
    let all = tokio::task::spawn_blocking(move || {
        tail::scan(&brokers, std::slice::from_ref(&t), |_| true)
    })
    .await
    .map_err(anyhow::Error::from)??;
    // Apply --from per partition.
    let mut by_partition: std::collections::BTreeMap<i32, Vec<&tail::Record>> = Default::default();
    for r in &all {
        by_partition.entry(r.partition).or_default().push(r);
    }
    let mut chosen: Vec<&tail::Record> = Vec::new();
    for (_, mut records) in by_partition {
        records.sort_by_key(|r| r.offset);
        let keep: Vec<&tail::Record> = match &from {
            From::Beginning => records,
            From::End => Vec::new(),
            From::Offset(o) => records.into_iter().filter(|r| r.offset >= *o).collect(),
            From::Last(n) => {
                let skip = records.len().saturating_sub(*n as usize);
                records.into_iter().skip(skip).collect()
            }
            From::Time(_) => records
                .into_iter()
                .filter(|r| r.timestamp_ms >= cutoff)
                .collect(),
        };
        chosen.extend(keep);
    }
    let producer = ctx.producer()?;
    for r in &chosen {
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&to);
        if let Some(hs) = &r.headers {
            record = record.headers(hs.clone());
        }
        if let Some(k) = &r.key {
            record = record.key(k.as_slice());
        }
        if let Some(v) = &r.value {
            record = record.payload(v.as_slice());
        }
        producer
            .send(record, Duration::from_secs(15))
            .await
            .map_err(|(e, _)| Failure::usage(format!("writing to {to}: {e}")))?;
    }
    Ok(Duplicated {
        topic: to,
        redelivered: chosen.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_default()
    }

    fn recorded(until: Option<&str>, holder: Option<u32>) -> Recorded {
        Recorded {
            fault: Fault::Broker {
                node: None,
                killed: false,
            },
            since: "2026-01-01T00:00:00Z".into(),
            until: until.map(str::to_owned),
            holder,
        }
    }

    #[test]
    fn a_fault_past_its_deadline_whose_holder_died_is_overdue() {
        let now = at("2026-01-01T00:10:00Z");
        let dead = Some(u32::MAX - 1);
        let alive = Some(std::process::id());
        assert!(recorded(Some("2026-01-01T00:05:00Z"), dead).overdue(now));
        assert!(recorded(Some("2026-01-01T00:05:00Z"), None).overdue(now));
        // Its holder is still at work (about to undo it).
        assert!(!recorded(Some("2026-01-01T00:05:00Z"), alive).overdue(now));
        // Not yet due, or held until `reset` on purpose.
        assert!(!recorded(Some("2026-01-01T00:15:00Z"), dead).overdue(now));
        assert!(!recorded(None, None).overdue(now));
    }

    #[test]
    fn faults_round_trip_by_type_and_keep_the_old_field_names() {
        let f = Recorded {
            fault: Fault::Service {
                target: "saga".into(),
                action: ServiceFault::Paused,
                pid: Some(42),
                replicas: None,
            },
            since: "2026-01-01T00:00:00Z".into(),
            until: None,
            holder: None,
        };
        let json = serde_json::to_value(&f).unwrap_or_default();
        assert_eq!(json["kind"], "service");
        assert_eq!(json["action"], "paused");
        assert_eq!(json["target"], "saga");
        let back: Recorded = serde_json::from_value(json).unwrap_or_else(|_| recorded(None, None));
        assert_eq!(back, f);
        assert_eq!(back.fault.undo_rank(), 2);
        let node = Fault::Broker {
            node: Some(2),
            killed: true,
        };
        assert!(Fault::Db.undo_rank() < node.undo_rank());
        assert_eq!(
            (node.target().as_str(), node.action().as_str()),
            ("broker-2", "killed")
        );
        // A broker fault recorded before nodes existed reads as the whole broker, stopped.
        let old: Fault = serde_json::from_value(json!({"kind": "broker"})).unwrap_or(Fault::Db);
        assert_eq!(
            old,
            Fault::Broker {
                node: None,
                killed: false
            }
        );
        let knobs = Fault::Payment {
            knobs: GatewayKnobs {
                decline_rate: 1.0,
                ..GatewayKnobs::default()
            },
            previous_knobs: GatewayKnobs::default(),
        };
        assert_eq!(knobs.target(), "gateway");
        assert!(knobs.action().starts_with("knobs "));
    }

    #[test]
    fn two_writers_at_once_lose_no_fault() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let path = dir.path().join("chaos.json");
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let faults = Faults { path };
                    for i in 0..40 {
                        faults
                            .record(Recorded {
                                fault: Fault::Service {
                                    target: format!("s{w}-{i}"),
                                    action: ServiceFault::Killed,
                                    pid: None,
                                    replicas: None,
                                },
                                since: now(),
                                until: None,
                                holder: None,
                            })
                            .map_err(|f| f.error.to_string())?;
                    }
                    Ok::<(), String>(())
                })
            })
            .collect();
        for w in writers {
            assert_eq!(w.join().ok(), Some(Ok(())));
        }
        let all = Faults { path }.read().map(|f| f.len()).ok();
        assert_eq!(all, Some(80));
    }
}
