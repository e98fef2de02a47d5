//! Broker failover: a method step that kills or stops one Kafka node of the local stack
//! (`chaos broker kill leader`, `chaos broker stop broker-2`) is watched from the moment the
//! process is gone: how long until every partition of the OMS topics it led has a live leader
//! again (the leader election), when the node answers again, and how long the orders in flight
//! meanwhile took.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::plan::Action;
use crate::ctx::Ctx;
use crate::local::{self, Component, Local};
use crate::topics::{self, Leadership};

/// How long the election, and then the node's return, are waited for.
const WITHIN: Duration = Duration::from_secs(120);

/// How often the cluster's metadata is read.
const EVERY: Duration = Duration::from_millis(100);

/// What one node's loss took to heal.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Failover {
    /// The node lost, e.g. `broker-2`.
    pub node: String,
    /// Partitions of the OMS topics it led when it went.
    pub led_before: usize,
    /// From its death until each of those had a new, live leader (`None`: not within the
    /// watch). Bounded below by the controller's `broker.session.timeout.ms` after a kill: how
    /// long it waits for a silent node's heartbeat before fencing it.
    pub election_seconds: Option<f64>,
    /// When it went (RFC 3339).
    pub down_at: String,
    /// When it answered again (RFC 3339; `None`: not within the watch).
    pub back_at: Option<String>,
    /// Orders in flight while it was down (accepted before it came back, finished after it
    /// went), and the p99 of their accepted-to-finished time; filled in once they finished.
    pub in_flight: usize,
    /// That p99, in ms.
    pub in_flight_p99_ms: Option<f64>,
}

impl Failover {
    /// The election column of the verdict table.
    pub fn election_text(&self) -> String {
        match (self.led_before, self.election_seconds) {
            (0, _) => "led nothing".into(),
            (_, Some(s)) => format!("{s:.2}s"),
            (_, None) => "NO NEW LEADER".into(),
        }
    }

    /// Whether leadership moved off the lost node.
    pub fn elected(&self) -> bool {
        self.led_before == 0 || self.election_seconds.is_some()
    }

    /// The window it was down: from its loss until it answered again (or `now`).
    fn window(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) {
        let parse = |t: &str| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|d| d.to_utc())
                .unwrap_or(now)
        };
        let from = parse(&self.down_at);
        let to = self.back_at.as_deref().map_or(now, parse);
        (from, to)
    }

    /// Fills in the orders in flight while the node was down, from the finished `orders`.
    pub fn measure(&mut self, orders: &[oms_contracts::api::OrderView]) {
        let (from, to) = self.window(chrono::Utc::now());
        let mut ms: Vec<f64> = orders
            .iter()
            .filter_map(|o| {
                let done = o.completed_at?;
                (o.created_at <= to && done >= from)
                    .then(|| (done - o.created_at).as_seconds_f64() * 1000.0)
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        self.in_flight = ms.len();
        self.in_flight_p99_ms =
            (!ms.is_empty()).then(|| ms[((ms.len() as f64 - 1.0) * 0.99).round() as usize]);
    }
}

/// Whether a method step stops or kills one Kafka node (`leader` or `broker-K`): a loss the
/// others can take over from. Stopping the whole broker is an outage, not a failover.
pub fn hits_broker(action: &Action) -> bool {
    let Action::Omsctl(words) = action else {
        return false;
    };
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["chaos", "broker", "kill" | "stop", node, ..] => {
            *node == "leader" || node.starts_with("broker-")
        }
        _ => false,
    }
}

/// What is known just before the step: every node's process and who leads what.
pub struct Before {
    pids: Vec<(Component, u32)>,
    leadership: Vec<Leadership>,
}

/// Every node of the local stack to ask for metadata: the context's list may name one node only,
/// and that may be the node that went.
fn stack_brokers(ctx: &Ctx, local: &Local) -> crate::ctx::Kafka {
    ctx.for_local(local)
        .map_or_else(|_| ctx.brokers.clone(), |here| here.brokers)
}

/// Reads the nodes' processes and the OMS topics' leadership; `None` on a single node, where
/// nothing can take over.
pub async fn before(ctx: &Ctx, local: &Local) -> Option<Before> {
    if local.broker_nodes < 2 {
        return None;
    }
    let pids = local
        .broker_components()
        .into_iter()
        .filter_map(|c| c.pid(local).map(|pid| (c, pid)))
        .collect();
    let brokers = stack_brokers(ctx, local);
    let wanted = ctx.saga_topics();
    let leadership = tokio::task::spawn_blocking(move || topics::leadership(&brokers, &wanted))
        .await
        .ok()
        .and_then(Result::ok)
        .map(|l| l.partitions)
        .unwrap_or_default();
    Some(Before { pids, leadership })
}

/// Watches the failover: waits for one node's process to be gone (the first of several), then
/// times the election of new leaders for what it led and waits for it to answer again.
pub async fn watch(ctx: Arc<Ctx>, local: Arc<Local>, b: Before) -> Option<Failover> {
    let gone_by = Instant::now() + WITHIN;
    let (lost, _) = loop {
        if let Some(hit) = b.pids.iter().find(|(_, pid)| !local::alive(*pid)) {
            break *hit;
        }
        if Instant::now() > gone_by {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let died = Instant::now();
    let Component::Broker(node) = lost else {
        return None;
    };
    let id = i32::try_from(node).unwrap_or(-1);
    let led: Vec<(String, i32)> = b
        .leadership
        .iter()
        .filter(|p| p.leader == id)
        .map(|p| (p.topic.clone(), p.partition))
        .collect();
    let mut report = Failover {
        node: lost.name(&local),
        led_before: led.len(),
        election_seconds: None,
        down_at: chrono::Utc::now().to_rfc3339(),
        back_at: None,
        in_flight: 0,
        in_flight_p99_ms: None,
    };
    let http = reqwest::Client::new();
    let (brokers, wanted) = (stack_brokers(&ctx, &local), ctx.saga_topics());
    while died.elapsed() < WITHIN {
        if report.election_seconds.is_none() && !led.is_empty() {
            let (brokers, wanted) = (brokers.clone(), wanted.clone());
            let now = tokio::task::spawn_blocking(move || topics::leadership(&brokers, &wanted))
                .await
                .ok()
                .and_then(Result::ok);
            if let Some(now) = now {
                let moved = led.iter().all(|(t, p)| {
                    now.partitions
                        .iter()
                        .find(|l| &l.topic == t && l.partition == *p)
                        .is_some_and(|l| l.leader >= 0 && l.leader != id)
                });
                if moved {
                    report.election_seconds = Some(died.elapsed().as_secs_f64());
                }
            }
        }
        if report.back_at.is_none() && lost.pid(&local).is_some() && lost.ready(&local, &http).await
        {
            report.back_at = Some(chrono::Utc::now().to_rfc3339());
        }
        if (led.is_empty() || report.election_seconds.is_some()) && report.back_at.is_some() {
            break;
        }
        tokio::time::sleep(EVERY).await;
    }
    Some(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(created: &str, completed: &str) -> oms_contracts::api::OrderView {
        crate::drill::run::tests::order(created, Some(completed))
    }

    #[test]
    fn only_a_stop_or_kill_of_the_broker_is_watched() {
        let words = |s: &str| Action::Omsctl(s.split_whitespace().map(str::to_owned).collect());
        assert!(hits_broker(&words("chaos broker kill leader --for 30s")));
        assert!(hits_broker(&words("chaos broker stop broker-2")));
        assert!(!hits_broker(&words("chaos broker start")));
        // The whole broker: an outage, nobody to take over.
        assert!(!hits_broker(&words("chaos broker stop --for 5s")));
        assert!(!hits_broker(&words("chaos broker kill broker --for 5s")));
        assert!(!hits_broker(&words("chaos service kill order-2")));
        assert!(!hits_broker(&Action::WaitReady));
    }

    #[test]
    fn orders_overlapping_the_outage_are_the_ones_in_flight() {
        let mut f = Failover {
            node: "broker-2".into(),
            led_before: 14,
            election_seconds: Some(9.5),
            down_at: "2026-12-01T10:00:10Z".into(),
            back_at: Some("2026-12-01T10:00:40Z".into()),
            in_flight: 0,
            in_flight_p99_ms: None,
        };
        f.measure(&[
            // Finished before the loss: not in flight.
            order("2026-12-01T10:00:00Z", "2026-12-01T10:00:05Z"),
            // Accepted before, finished after the loss: in flight, 12 s.
            order("2026-12-01T10:00:08Z", "2026-12-01T10:00:20Z"),
            // Accepted during the outage: in flight, 1 s.
            order("2026-12-01T10:00:30Z", "2026-12-01T10:00:31Z"),
            // Accepted after the node was back: not in flight.
            order("2026-12-01T10:00:50Z", "2026-12-01T10:00:51Z"),
        ]);
        assert_eq!(f.in_flight, 2);
        assert_eq!(f.in_flight_p99_ms, Some(12_000.0));
        assert_eq!(f.election_text(), "9.50s");
        assert!(f.elected());
        f.election_seconds = None;
        assert_eq!(f.election_text(), "NO NEW LEADER");
        assert!(!f.elected());
        f.led_before = 0;
        assert!(f.elected());
    }
}
