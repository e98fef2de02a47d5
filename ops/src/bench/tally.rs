//! What the generator learns (notes from the senders and the outcome watcher) and the
//! collector's tallies of it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use oms_contracts::{Envelope, Message};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::report::{histogram, record, Second};

/// Seconds the throughput series follows at most (a run past it counts in its last second).
const MAX_SECONDS: usize = 1 << 20;

/// What the generator learns, in one stream to one owner (the collector).
pub(super) enum Note {
    Accepted {
        id: Uuid,
        /// When the request was due (open loop) or sent (closed loop).
        due: Instant,
        answered: Instant,
        measured: bool,
        waiter: Option<oneshot::Sender<()>>,
    },
    Refused {
        reason: String,
        measured: bool,
    },
    Skipped,
    Created {
        id: Uuid,
        at: DateTime<Utc>,
    },
    Finished {
        id: Uuid,
        outcome: String,
        at: DateTime<Utc>,
        seen: Instant,
    },
    Delivered {
        id: Uuid,
        seen: Instant,
    },
    LoadDone,
}

/// What was seen of an order we have no accept for (yet).
#[derive(Default)]
pub(super) struct Early {
    pub(super) created: Option<DateTime<Utc>>,
    pub(super) outcome: Option<(String, DateTime<Utc>)>,
    pub(super) delivered: Option<Instant>,
}

pub(super) struct Pending {
    pub(super) answered: Instant,
    pub(super) measured: bool,
    pub(super) waiter: Option<oneshot::Sender<()>>,
}

/// The collector's tallies.
pub(super) struct Tally {
    pub(super) accept: Histogram<u64>,
    pub(super) saga: Histogram<u64>,
    pub(super) decided: Histogram<u64>,
    pub(super) delivery: Histogram<u64>,
    pub(super) delivered: u64,
    pub(super) cancelled_after_confirmation: BTreeMap<String, u64>,
    /// Measured orders confirmed and not yet delivered: when their confirmation was seen.
    pub(super) confirmed_at: HashMap<Uuid, Instant>,
    pub(super) accepted: u64,
    pub(super) finished: u64,
    pub(super) confirmed: u64,
    pub(super) cancelled: BTreeMap<String, u64>,
    pub(super) refused: BTreeMap<String, u64>,
    pub(super) skipped: u64,
    pub(super) pending: HashMap<Uuid, Pending>,
    /// Outcomes and creations seen before (or without) an accept we know of: other clients'
    /// orders, or a reply that lost the race with the saga. Forgotten after a minute.
    pub(super) early: HashMap<Uuid, Early>,
    pub(super) early_order: VecDeque<(Instant, Uuid)>,
    pub(super) created_at: HashMap<Uuid, DateTime<Utc>>,
    /// Where the measured window starts: second 0 of `per_second`.
    pub(super) window_start: Instant,
    /// Measured orders accepted, finished and delivered, per second since `window_start`.
    pub(super) per_second: Vec<Second>,
}

impl Tally {
    pub(super) fn new(window_start: Instant) -> Self {
        Self {
            accept: histogram(),
            saga: histogram(),
            decided: histogram(),
            delivery: histogram(),
            delivered: 0,
            cancelled_after_confirmation: BTreeMap::new(),
            confirmed_at: HashMap::new(),
            accepted: 0,
            finished: 0,
            confirmed: 0,
            cancelled: BTreeMap::new(),
            refused: BTreeMap::new(),
            skipped: 0,
            pending: HashMap::new(),
            early: HashMap::new(),
            early_order: VecDeque::new(),
            created_at: HashMap::new(),
            window_start,
            per_second: Vec::new(),
        }
    }

    /// The throughput bucket of an event seen at `at`.
    pub(super) fn second(&mut self, at: Instant) -> &mut Second {
        let i = usize::try_from(at.saturating_duration_since(self.window_start).as_secs())
            .unwrap_or(usize::MAX)
            .min(MAX_SECONDS - 1);
        if self.per_second.len() <= i {
            self.per_second.resize(i + 1, Second::default());
        }
        &mut self.per_second[i]
    }

    pub(super) fn forget_old(&mut self, now: Instant) {
        while let Some((at, id)) = self.early_order.front().copied() {
            if now.duration_since(at) < Duration::from_secs(60) {
                break;
            }
            self.early_order.pop_front();
            self.early.remove(&id);
        }
    }

    pub(super) fn early_entry(&mut self, id: Uuid, now: Instant) -> &mut Early {
        if !self.early.contains_key(&id) {
            self.early_order.push_back((now, id));
        }
        self.early.entry(id).or_default()
    }

    pub(super) fn finish(
        &mut self,
        id: Uuid,
        pending: Pending,
        outcome: &str,
        at: DateTime<Utc>,
        seen: Instant,
    ) {
        if pending.measured {
            self.finished += 1;
            self.second(seen).finished += 1;
            record(
                &mut self.saga,
                seen.saturating_duration_since(pending.answered),
            );
            if let Some(created) = self.created_at.get(&id) {
                if let Ok(d) = (at - *created).to_std() {
                    record(&mut self.decided, d);
                }
            }
            match outcome.strip_prefix("CANCELLED ") {
                Some(reason) => *self.cancelled.entry(reason.to_owned()).or_default() += 1,
                None => {
                    self.confirmed += 1;
                    self.confirmed_at.insert(id, seen);
                }
            }
        }
        self.created_at.remove(&id);
        if let Some(w) = pending.waiter {
            let _ = w.send(());
        }
    }

    pub(super) fn note(&mut self, note: Note) {
        let now = Instant::now();
        self.forget_old(now);
        match note {
            Note::Accepted {
                id,
                due,
                answered,
                measured,
                waiter,
            } => {
                if measured {
                    self.accepted += 1;
                    self.second(answered).accepted += 1;
                    record(&mut self.accept, answered.saturating_duration_since(due));
                }
                let pending = Pending {
                    answered,
                    measured,
                    waiter,
                };
                match self.early.remove(&id) {
                    Some(early) => {
                        if let Some(c) = early.created {
                            self.created_at.insert(id, c);
                        }
                        match early.outcome {
                            // The outcome beat the HTTP reply: the saga took no measurable time
                            // after the reply, so it counts as seen at the reply.
                            Some((o, at)) => {
                                self.finish(id, pending, &o, at, answered);
                                if let Some(seen) = early.delivered {
                                    self.deliver(id, seen.max(answered));
                                }
                            }
                            None => {
                                self.pending.insert(id, pending);
                            }
                        }
                    }
                    None => {
                        self.pending.insert(id, pending);
                    }
                }
            }
            Note::Refused { reason, measured } => {
                if measured {
                    *self.refused.entry(reason).or_default() += 1;
                }
            }
            Note::Skipped => self.skipped += 1,
            Note::Created { id, at } => {
                if self.pending.contains_key(&id) {
                    self.created_at.insert(id, at);
                } else {
                    self.early_entry(id, now).created = Some(at);
                }
            }
            Note::Finished {
                id,
                outcome,
                at,
                seen,
            } => match self.pending.remove(&id) {
                Some(p) => self.finish(id, p, &outcome, at, seen),
                None => match (
                    self.confirmed_at.contains_key(&id),
                    outcome.strip_prefix("CANCELLED "),
                ) {
                    // Confirmed, then cancelled after all (the carrier refused it).
                    (true, Some(reason)) => {
                        self.confirmed_at.remove(&id);
                        *self
                            .cancelled_after_confirmation
                            .entry(reason.to_owned())
                            .or_default() += 1;
                    }
                    // A redelivered confirmation changes nothing.
                    (true, None) => {}
                    (false, _) => self.early_entry(id, now).outcome = Some((outcome, at)),
                },
            },
            Note::Delivered { id, seen } => {
                if self.confirmed_at.contains_key(&id) {
                    self.deliver(id, seen);
                } else if !self.pending.contains_key(&id) {
                    self.early_entry(id, now).delivered = Some(seen);
                }
            }
            Note::LoadDone => {}
        }
    }

    /// A measured, confirmed order was seen DELIVERED at `seen`.
    pub(super) fn deliver(&mut self, id: Uuid, seen: Instant) {
        if let Some(confirmed) = self.confirmed_at.remove(&id) {
            self.delivered += 1;
            self.second(seen).delivered += 1;
            record(
                &mut self.delivery,
                seen.saturating_duration_since(confirmed),
            );
        }
    }
}

/// Reads the order events topic from its current end and turns creations and outcomes into notes.
/// Blocking: runs on its own thread until `stop`.
pub(super) fn watch(
    brokers: &crate::ctx::Kafka,
    topic: &str,
    fetch_wait: Duration,
    notes: mpsc::UnboundedSender<Note>,
    stop: Arc<AtomicBool>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let consumer: BaseConsumer = match brokers
        .config()
        .set("group.id", "omsctl-bench")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set(
            "fetch.wait.max.ms",
            fetch_wait.as_millis().clamp(1, 300_000).to_string(),
        )
        .set_log_level(rdkafka::config::RDKafkaLogLevel::Emerg)
        .create()
    {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(format!("creating the Kafka client: {e}")));
            return;
        }
    };
    // Start at each partition's end as it is now: every order placed from here on is seen.
    let start = || -> Result<TopicPartitionList, String> {
        let timeout = Duration::from_secs(5);
        let meta = consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| format!("broker unreachable at {brokers}: {e}"))?;
        let partitions: Vec<i32> = meta
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(format!("no topic {topic:?} on {brokers}"));
        }
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            let (_, high) = oms_kafka::watermarks(&consumer, topic, p, timeout)
                .map_err(|e| format!("watermarks of {topic}/{p}: {e}"))?;
            tpl.add_partition_offset(topic, p, Offset::Offset(high))
                .map_err(|e| e.to_string())?;
        }
        Ok(tpl)
    };
    match start().and_then(|tpl| consumer.assign(&tpl).map_err(|e| e.to_string())) {
        Ok(()) => {
            let _ = ready.send(Ok(()));
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    }
    while !stop.load(Ordering::Relaxed) {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let seen = Instant::now();
        let Ok(envelope) = Envelope::decode(m.payload().unwrap_or_default()) else {
            continue;
        };
        let note = match &envelope.message {
            Message::OrderCreated(c) => Note::Created {
                id: c.order_id.0,
                at: envelope.occurred_at,
            },
            Message::OrderConfirmed(c) => Note::Finished {
                id: c.order_id.0,
                outcome: "CONFIRMED".into(),
                at: envelope.occurred_at,
                seen,
            },
            Message::OrderCancelled(c) => Note::Finished {
                id: c.order_id.0,
                outcome: format!(
                    "CANCELLED {}",
                    serde_json::to_value(c.reason)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_else(|| "UNKNOWN".into())
                ),
                at: envelope.occurred_at,
                seen,
            },
            Message::OrderDelivered(d) => Note::Delivered {
                id: d.order_id.0,
                seen,
            },
            _ => continue,
        };
        if notes.send(note).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::report::{buckets, latency};
    use super::*;

    fn accepted(id: Uuid, at: Instant, measured: bool) -> Note {
        Note::Accepted {
            id,
            due: at,
            answered: at,
            measured,
            waiter: None,
        }
    }

    #[test]
    fn an_outcome_is_matched_to_its_order_whichever_arrives_first() {
        let mut t = Tally::new(Instant::now());
        let now = Instant::now();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        t.note(accepted(a, now, true));
        t.note(Note::Finished {
            id: a,
            outcome: "CONFIRMED".into(),
            at: Utc::now(),
            seen: now + Duration::from_millis(40),
        });
        // b's outcome beats its HTTP reply.
        t.note(Note::Finished {
            id: b,
            outcome: "CANCELLED OUT_OF_STOCK".into(),
            at: Utc::now(),
            seen: now,
        });
        assert_eq!(t.finished, 1);
        t.note(accepted(b, now, true));
        assert_eq!((t.accepted, t.finished, t.confirmed), (2, 2, 1));
        assert_eq!(t.cancelled.get("OUT_OF_STOCK"), Some(&1));
        assert!(t.pending.is_empty());
        let saga = latency(&t.saga).expect("two samples");
        assert!(saga.max >= 39.0 && saga.max <= 41.0, "{saga:?}");
    }

    #[test]
    fn a_confirmed_order_is_followed_to_its_delivery_or_a_late_cancellation() {
        let mut t = Tally::new(Instant::now());
        let now = Instant::now();
        let (a, b, warm) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        for (id, measured) in [(a, true), (b, true), (warm, false)] {
            t.note(accepted(id, now, measured));
            t.note(Note::Finished {
                id,
                outcome: "CONFIRMED".into(),
                at: Utc::now(),
                seen: now + Duration::from_millis(10),
            });
        }
        assert_eq!(t.confirmed_at.len(), 2, "only measured orders are followed");
        t.note(Note::Delivered {
            id: a,
            seen: now + Duration::from_millis(35),
        });
        t.note(Note::Delivered {
            id: warm,
            seen: now + Duration::from_millis(35),
        });
        t.note(Note::Finished {
            id: b,
            outcome: "CANCELLED FULFILLMENT_FAILED".into(),
            at: Utc::now(),
            seen: now + Duration::from_millis(50),
        });
        assert_eq!(t.delivered, 1);
        assert!(t.confirmed_at.is_empty(), "{:?}", t.confirmed_at);
        assert_eq!(
            t.cancelled_after_confirmation.get("FULFILLMENT_FAILED"),
            Some(&1)
        );
        let delivery = latency(&t.delivery).expect("one delivery timed");
        assert!((delivery.p50 - 25.0).abs() < 0.1, "{delivery:?}");
        assert_eq!(t.cancelled.get("FULFILLMENT_FAILED"), None);
    }

    #[test]
    fn warm_up_orders_are_followed_but_not_counted() {
        let mut t = Tally::new(Instant::now());
        let now = Instant::now();
        let id = Uuid::now_v7();
        t.note(accepted(id, now, false));
        assert_eq!(t.pending.len(), 1);
        t.note(Note::Finished {
            id,
            outcome: "CONFIRMED".into(),
            at: Utc::now(),
            seen: now,
        });
        assert_eq!((t.accepted, t.finished, t.confirmed), (0, 0, 0));
        assert!(t.pending.is_empty() && t.saga.is_empty());
    }

    #[test]
    fn decided_latency_comes_from_the_envelopes() {
        let mut t = Tally::new(Instant::now());
        let now = Instant::now();
        let id = Uuid::now_v7();
        let created = Utc::now();
        t.note(accepted(id, now, true));
        t.note(Note::Created { id, at: created });
        t.note(Note::Finished {
            id,
            outcome: "CONFIRMED".into(),
            at: created + chrono::Duration::milliseconds(25),
            seen: now,
        });
        let decided = latency(&t.decided).expect("one sample");
        assert!((decided.p50 - 25.0).abs() < 0.1, "{decided:?}");
    }

    #[test]
    fn throughput_is_counted_per_second_of_the_window() {
        let start = Instant::now();
        let mut t = Tally::new(start);
        let at = |ms: u64| start + Duration::from_millis(ms);
        let (a, b, warm) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        t.note(accepted(a, at(500), true));
        t.note(accepted(b, at(1200), true));
        t.note(accepted(warm, at(1300), false));
        for (id, seen) in [(a, 1500), (b, 3100), (warm, 3200)] {
            t.note(Note::Finished {
                id,
                outcome: "CONFIRMED".into(),
                at: Utc::now(),
                seen: at(seen),
            });
        }
        t.note(Note::Delivered {
            id: a,
            seen: at(3500),
        });
        t.note(Note::Delivered {
            id: warm,
            seen: at(4500),
        });
        let s = |accepted, finished, delivered| Second {
            accepted,
            finished,
            delivered,
        };
        // The warm-up order counts nowhere; second 2 saw nothing.
        assert_eq!(
            t.per_second,
            [s(1, 0, 0), s(1, 1, 0), s(0, 0, 0), s(0, 1, 1)]
        );
    }

    #[test]
    fn strangers_outcomes_are_forgotten() {
        let mut t = Tally::new(Instant::now());
        let long_ago = Instant::now();
        let stranger = Uuid::now_v7();
        t.note(Note::Finished {
            id: stranger,
            outcome: "CONFIRMED".into(),
            at: Utc::now(),
            seen: long_ago,
        });
        assert_eq!(t.early.len(), 1);
        t.forget_old(long_ago + Duration::from_secs(61));
        assert!(t.early.is_empty() && t.early_order.is_empty());
    }

    #[test]
    fn buckets_cover_every_sample() {
        let mut h = histogram();
        for ms in [5u64, 7, 9, 12, 40, 41, 200] {
            record(&mut h, Duration::from_millis(ms));
        }
        let b = buckets(&h);
        assert!(b.len() <= 10);
        assert_eq!(b.iter().map(|(_, n)| n).sum::<u64>(), 7);
        assert!(b.last().is_some_and(|(upper, _)| *upper >= 200.0));
    }
}
