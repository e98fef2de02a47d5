//! Putting faults in force (for a while, or until `reset`) and taking them back.

use super::target::AnyTarget;
use crate::ctx::Ctx;
use crate::Failure;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::Duration;

use super::fault::{set_knobs, Fault, Knobs};
use super::record::{now, Faults, Recorded};
use super::{BrokerAction, Lasting};

pub(super) fn until(lasting: &Lasting) -> Option<String> {
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
