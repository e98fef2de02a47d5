//! Takeover after one replica of a service dies: how long until a surviving replica leads the
//! outbox relay, and until the service's consumer group holds every partition with live
//! members only. A method step that kills or stops one replica (`chaos service kill order-2`) is
//! watched from the moment the process is gone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use oms_contracts::routes;
use serde::Serialize;

use super::plan::Action;
use crate::ctx::Ctx;
use crate::local::{self, Component, Local, Unit};
use crate::topics;
use oms_contracts::ServiceId as Svc;

/// How long a takeover is waited for.
const WITHIN: Duration = Duration::from_secs(60);

/// How often the survivors and the group are asked.
const EVERY: Duration = Duration::from_millis(100);

/// What a replica's death took to heal.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Takeover {
    /// The replica killed, e.g. `order-2`.
    pub replica: String,
    /// Its service.
    pub service: String,
    /// Whether it led the relay when it died.
    pub was_relay_leader: bool,
    /// From its death until a survivor led the relay (`None`: no leader within a minute, or
    /// none was needed because the leader lived; see `was_relay_leader`).
    pub relay_seconds: Option<f64>,
    /// From its death until the consumer group was stable with live members only, holding
    /// every partition (`None`: not within a minute).
    pub group_seconds: Option<f64>,
    /// Group members before the kill.
    pub members_before: usize,
}

impl Takeover {
    /// The relay column of the verdict table.
    pub fn relay_text(&self) -> String {
        match (self.was_relay_leader, self.relay_seconds) {
            (false, _) => "leader lived".into(),
            (true, Some(s)) => format!("{s:.2}s"),
            (true, None) => "NO LEADER".into(),
        }
    }

    /// The group column of the verdict table.
    pub fn group_text(&self) -> String {
        self.group_seconds
            .map_or_else(|| "NOT HEALED".into(), |s| format!("{s:.2}s"))
    }

    /// Whether both took over within the minute.
    pub fn healed(&self) -> bool {
        (!self.was_relay_leader || self.relay_seconds.is_some()) && self.group_seconds.is_some()
    }
}

/// The replica a method step kills or stops, when it names one.
pub fn victim(action: &Action) -> Option<Unit> {
    let Action::Omsctl(words) = action else {
        return None;
    };
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["chaos", "service", "kill" | "stop", name, ..] => {
            Unit::parse(name).ok().filter(|u| u.replica.is_some())
        }
        _ => None,
    }
}

/// What is known just before the kill.
pub struct Before {
    unit: Unit,
    pid: Option<u32>,
    was_leader: bool,
    members: usize,
    partitions: Vec<(String, i32)>,
}

/// Reads what the watch compares against: the replica's pid, whether it leads the relay, the
/// group's members and the partitions of the topics the service reads.
pub async fn before(ctx: &Ctx, local: &Local, unit: Unit) -> Before {
    let replica = unit.replica.unwrap_or(1);
    let pid = Component::Service(unit.svc, replica).pid(local);
    let base = local
        .urls(unit.svc)
        .get(usize::try_from(replica).unwrap_or(1).saturating_sub(1))
        .cloned()
        .unwrap_or_default();
    let was_leader = matches!(
        ctx.read_opt_at(routes::HEALTH_READY.of(unit.svc), &base).await,
        Ok(Some(r)) if r.relay_leader
    );
    let (group, reads) = ctx.topics.consumer(unit.svc.spec());
    let brokers = ctx.brokers.clone();
    let (members, partitions) = tokio::task::spawn_blocking(move || {
        let members = topics::describe_group(&brokers, &group)
            .map(|g| g.members.len())
            .unwrap_or(0);
        let partitions: Vec<(String, i32)> = topics::list(&brokers, &reads, &[])
            .map(|rows| {
                rows.into_iter()
                    .flat_map(|r| {
                        (0..i32::try_from(r.partitions).unwrap_or(0))
                            .map(move |p| (r.topic.clone(), p))
                    })
                    .collect()
            })
            .unwrap_or_default();
        (members, partitions)
    })
    .await
    .unwrap_or_default();
    Before {
        unit,
        pid,
        was_leader,
        members,
        partitions,
    }
}

/// Watches the takeover: waits for the replica's process to be gone, then times the relay and
/// the group. The relay has taken over when another replica reports it leads; the group when it
/// is stable with exactly as many members as replicas run and every partition is assigned. The
/// group's part is bounded below by the consumers' `session.timeout.ms` (10 s): that is how long
/// the coordinator waits before it gives a silent member's partitions away.
pub async fn watch(ctx: Arc<Ctx>, local: Arc<Local>, b: Before) -> Takeover {
    let svc: Svc = b.unit.svc;
    let replica = b.unit.replica.unwrap_or(1);
    let mut report = Takeover {
        replica: b.unit.to_string(),
        service: svc.name().to_owned(),
        was_relay_leader: b.was_leader,
        relay_seconds: None,
        group_seconds: None,
        members_before: b.members,
    };
    let gone_by = Instant::now() + WITHIN;
    if let Some(pid) = b.pid {
        while local::alive(pid) && Instant::now() < gone_by {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let died = Instant::now();
    let survivors: Vec<String> = local
        .urls(svc)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i + 1 != usize::try_from(replica).unwrap_or(0))
        .map(|(_, u)| u)
        .collect();
    let (group, _) = ctx.topics.consumer(svc.spec());
    while died.elapsed() < WITHIN {
        if b.was_leader && report.relay_seconds.is_none() {
            for base in &survivors {
                if let Ok(Some(r)) = ctx.read_opt_at(routes::HEALTH_READY.of(svc), base).await {
                    if r.relay_leader {
                        report.relay_seconds = Some(died.elapsed().as_secs_f64());
                        break;
                    }
                }
            }
        }
        if report.group_seconds.is_none() {
            let every = Unit { svc, replica: None };
            let running = Component::of(every, &local)
                .unwrap_or_default()
                .into_iter()
                .filter(|c| c.pid(&local).is_some())
                .count();
            let brokers = ctx.brokers.clone();
            let name = group.clone();
            let view = tokio::task::spawn_blocking(move || topics::describe_group(&brokers, &name))
                .await
                .ok()
                .and_then(Result::ok);
            if let Some(g) = view {
                // A member whose assignment the description leaves empty (a client that
                // does not publish it) is judged by membership alone.
                let assigned = g.assigned();
                let covered =
                    assigned.is_empty() || b.partitions.iter().all(|p| assigned.contains(p));
                if g.state == "Stable" && g.members.len() == running && running > 0 && covered {
                    report.group_seconds = Some(died.elapsed().as_secs_f64());
                }
            }
        }
        if report.group_seconds.is_some() && (!b.was_leader || report.relay_seconds.is_some()) {
            break;
        }
        tokio::time::sleep(EVERY).await;
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_kill_or_stop_of_one_replica_is_watched() {
        let words = |s: &str| Action::Omsctl(s.split_whitespace().map(str::to_owned).collect());
        let hit = victim(&words("chaos service kill order-2 --for 20s"));
        assert_eq!(hit.map(|u| u.to_string()), Some("order-2".to_owned()));
        assert!(victim(&words("chaos service stop saga-1")).is_some());
        assert!(victim(&words("chaos service kill order --for 3s")).is_none());
        assert!(victim(&words("chaos service pause order-2")).is_none());
        assert!(victim(&words("chaos broker stop --for 5s")).is_none());
        assert!(victim(&Action::WaitReady).is_none());
    }

    #[test]
    fn the_table_says_what_took_over() {
        let mut t = Takeover {
            replica: "order-1".into(),
            service: "order".into(),
            was_relay_leader: true,
            relay_seconds: Some(1.234),
            group_seconds: None,
            members_before: 2,
        };
        assert_eq!(t.relay_text(), "1.23s");
        assert_eq!(t.group_text(), "NOT HEALED");
        assert!(!t.healed());
        t.group_seconds = Some(10.5);
        assert!(t.healed());
        t.was_relay_leader = false;
        t.relay_seconds = None;
        assert_eq!(t.relay_text(), "leader lived");
        assert!(t.healed());
        t.was_relay_leader = true;
        assert_eq!(t.relay_text(), "NO LEADER");
        assert!(!t.healed());
    }
}
