//! `omsctl chaos`: fault injection on the target of the context: the local stack's processes,
//! a compose project or a Kubernetes namespace ([`target`] maps each verb to each kind).
//!
//! Every fault that lasts (a stopped broker, a paused service, gateway knobs) is recorded in
//! `<state dir>/chaos.json` before it is applied, with what undoes it. `--for DURATION` keeps
//! omsctl in the foreground for that long and then undoes the fault (Ctrl-C undoes it at once);
//! `chaos reset` undoes every recorded fault, so a fault outlives an omsctl that was killed
//! only until the next reset. One-shot faults (`poison`, `duplicate`) write messages and record
//! nothing.

use std::time::Duration;

mod fault;
mod inject;
mod messages;
mod record;
pub mod target;

pub use fault::{Fault, ServiceFault};
pub use inject::{broker_node, inflict, knob_fault, lift, millis, reset, target_of, Undone};
pub use messages::{duplicate, poison, Duplicated, Poisoned, Written};
pub use record::{active, now, Faults, Recorded};

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

#[cfg(test)]
mod tests {
    use super::*;
    use oms_contracts::api::GatewayKnobs;
    use serde_json::json;

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
