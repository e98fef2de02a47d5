//! The replay audit: every replay is recorded in the topic `oms.dlq.audit` (durable, shared by
//! every operator): a `started` record (or `resumed`, under the audit id it resumes) before
//! anything is sent, a `sent` record after each delivery, a `finished` record at the end. Read
//! back, the records say how often each entry was sent and which replays were cut short.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};

use super::edit::Edit;
use super::entry::{normalize_id, read};
use crate::ctx::Ctx;
use crate::Failure;

/// The audit topic (before the prefix).
pub const AUDIT_TOPIC: &str = "oms.dlq.audit";

/// One record of the audit topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// The replay it belongs to (a resumed run writes under the id it resumes).
    pub audit_id: String,
    /// Who ran it (`user@host`).
    #[serde(default)]
    pub who: String,
    /// Whether `--force` was given.
    #[serde(default)]
    pub force: bool,
    /// What happened.
    #[serde(flatten)]
    pub phase: Phase,
}

/// The phase of a replay a record tells.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "camelCase")]
pub enum Phase {
    /// About to send `entries`.
    Started {
        /// When.
        #[serde(default)]
        at: String,
        /// Entry ids, in order.
        #[serde(default)]
        entries: Vec<String>,
        /// Where each entry goes (topic as deployed).
        #[serde(default)]
        targets: BTreeMap<String, String>,
        /// The edits made before sending, per entry.
        #[serde(default)]
        edits: BTreeMap<String, Edit>,
    },
    /// A later run goes on with what a replay left unsent.
    Resumed {
        /// When.
        #[serde(default)]
        at: String,
        /// The entries it sends.
        #[serde(default)]
        entries: Vec<String>,
    },
    /// One entry delivered.
    Sent {
        /// Entry id.
        entry: String,
        /// Where it went (`topic/partition@offset`).
        to: String,
        /// When.
        #[serde(default)]
        at: String,
    },
    /// The run is over.
    Finished {
        /// When.
        #[serde(default)]
        at: String,
        /// The entries it set out to send.
        #[serde(default)]
        entries: Vec<String>,
        /// Per entry, how it went.
        #[serde(default)]
        results: Vec<SendResult>,
        /// `N replayed, M failed`.
        #[serde(default)]
        summary: String,
    },
}

/// How sending one entry went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendResult {
    /// Entry id.
    pub id: String,
    /// Whether the broker took it.
    pub ok: bool,
    /// Destination topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Partition it landed in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    /// Its offset there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// `topic/partition@offset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether a replay ran to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplayState {
    /// Its `finished` record was written.
    Finished,
    /// Cut short (or still running).
    Partial,
}

impl std::fmt::Display for ReplayState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReplayState::Finished => "finished",
            ReplayState::Partial => "partial",
        })
    }
}

/// One entry a replay sent, and where it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// Entry id.
    pub id: String,
    /// `topic/partition@offset`.
    pub at: String,
}

/// One replay as its audit records tell it (`dlq audit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Replay {
    /// Its id.
    pub audit_id: String,
    /// Who ran it.
    pub who: String,
    /// When it started.
    pub started_at: String,
    /// When it finished (none: cut short, or still running).
    pub finished_at: Option<String>,
    /// Finished or partial.
    pub state: ReplayState,
    /// The entries it set out to replay, in order.
    #[serde(rename = "entries")]
    pub planned: Vec<String>,
    /// The entries it sent, with where they went.
    pub sent: Vec<Sent>,
    /// Its finished record's per-entry results, if it finished.
    pub results: Vec<SendResult>,
    /// Edits made before sending, per entry.
    pub edits: BTreeMap<String, Edit>,
    /// Where each entry was to go (topic as deployed), per entry.
    #[serde(skip)]
    pub targets: BTreeMap<String, String>,
    /// Resumed by these later runs.
    pub resumed_by: Vec<String>,
}

impl Replay {
    fn new(record: &AuditRecord, started_at: &str) -> Self {
        Replay {
            audit_id: record.audit_id.clone(),
            who: record.who.clone(),
            started_at: started_at.to_owned(),
            finished_at: None,
            state: ReplayState::Partial,
            planned: Vec::new(),
            sent: Vec::new(),
            results: Vec::new(),
            edits: BTreeMap::new(),
            targets: BTreeMap::new(),
            resumed_by: Vec::new(),
        }
    }

    /// Planned entries never sent.
    pub fn unsent(&self) -> Vec<String> {
        self.planned
            .iter()
            .filter(|e| !self.sent.iter().any(|s| s.id == **e))
            .cloned()
            .collect()
    }
}

/// When a record says it happened.
fn at(phase: &Phase) -> &str {
    match phase {
        Phase::Started { at, .. }
        | Phase::Resumed { at, .. }
        | Phase::Sent { at, .. }
        | Phase::Finished { at, .. } => at,
    }
}

/// Folds audit records (oldest first) into replays, oldest first. `normalize` turns an entry id
/// into today's notation. A record of a resumed run adds its sends to the replay it resumes;
/// its own finished record finishes both.
pub fn replays(records: &[AuditRecord], normalize: impl Fn(&str) -> String) -> Vec<Replay> {
    let mut out: Vec<Replay> = Vec::new();
    let ids = |list: &[String]| -> Vec<String> { list.iter().map(|e| normalize(e)).collect() };
    for r in records {
        let index = match out.iter().position(|a| a.audit_id == r.audit_id) {
            Some(i) => i,
            None => {
                out.push(Replay::new(r, at(&r.phase)));
                out.len() - 1
            }
        };
        let a = &mut out[index];
        match &r.phase {
            Phase::Started {
                entries,
                targets,
                edits,
                ..
            } => {
                if a.planned.is_empty() {
                    a.planned = ids(entries);
                }
                for (k, v) in targets {
                    a.targets.insert(normalize(k), v.clone());
                }
                for (k, v) in edits {
                    a.edits.insert(normalize(k), v.clone());
                }
            }
            Phase::Resumed { .. } => a.resumed_by.push(r.who.clone()),
            Phase::Sent { entry, to, .. } => a.sent.push(Sent {
                id: normalize(entry),
                at: to.clone(),
            }),
            Phase::Finished {
                at,
                entries,
                results,
                ..
            } => {
                a.finished_at = Some(at.clone());
                a.state = ReplayState::Finished;
                // Audits written before per-entry records: the results say what was sent.
                for res in results.iter().filter(|res| res.ok) {
                    let id = normalize(&res.id);
                    if !a.sent.iter().any(|s| s.id == id) {
                        let at = format!(
                            "{}/{}@{}",
                            res.topic.as_deref().unwrap_or_default(),
                            res.partition.unwrap_or_default(),
                            res.offset.unwrap_or_default()
                        );
                        a.sent.push(Sent { id, at });
                    }
                }
                a.results.extend(results.iter().cloned());
                if a.planned.is_empty() {
                    a.planned = ids(entries);
                }
            }
        }
    }
    out
}

/// How many times each entry was sent, over every replay.
pub fn sent_counts(replays: &[Replay]) -> BTreeMap<String, u32> {
    let mut counts = BTreeMap::new();
    for r in replays {
        for s in &r.sent {
            *counts.entry(s.id.clone()).or_insert(0) += 1;
        }
    }
    counts
}

/// The entries sent at least once by a replay, in today's notation.
pub fn replayed_ids(records: &[AuditRecord]) -> BTreeSet<String> {
    sent_counts(&replays(records, normalize_id))
        .into_keys()
        .collect()
}

/// Audit records, oldest first (a record this version cannot read is passed over).
pub async fn records(ctx: &Ctx) -> Result<Vec<AuditRecord>, Failure> {
    let topic = ctx.topics.name(AUDIT_TOPIC);
    oms_kafka::ensure_topics_with(
        &ctx.brokers.servers,
        &ctx.brokers.props,
        std::slice::from_ref(&topic),
        1,
    )
    .await
    .map_err(|e| Failure::usage(format!("broker {}: {e}", ctx.brokers)))?;
    Ok(read(ctx, vec![topic])
        .await?
        .iter()
        .filter_map(|r| r.value.as_deref())
        .filter_map(|v| serde_json::from_slice(v).ok())
        .collect())
}

/// The replays the audit tells of, oldest first.
pub async fn history(ctx: &Ctx) -> Result<Vec<Replay>, Failure> {
    Ok(replays(&records(ctx).await?, normalize_id))
}

/// Who runs omsctl: `user@host`.
pub fn who() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host}")
}

/// Appends `record` to the audit topic, keyed by its audit id.
pub async fn write(
    ctx: &Ctx,
    producer: &FutureProducer,
    record: &AuditRecord,
) -> Result<(), Failure> {
    let topic = ctx.topics.name(AUDIT_TOPIC);
    let payload = serde_json::to_vec(record)?;
    producer
        .send(
            FutureRecord::to(&topic)
                .key(&record.audit_id)
                .payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| Failure::usage(format!("writing the replay audit to {topic}: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(s: &str) -> String {
        s.to_owned()
    }

    /// Records as an older or newer omsctl wrote them: JSON, read as this one reads the topic.
    fn parsed(lines: &[&str]) -> Vec<AuditRecord> {
        lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect()
    }

    #[test]
    fn the_audit_tells_finished_partial_and_resumed_replays_apart() {
        let mut records = parsed(&[
            r#"{"auditId": "a1", "phase": "started", "who": "op", "at": "t0", "entries": ["e1", "e2", "e3"], "edits": {"e2": {"changes": []}}}"#,
            r#"{"auditId": "a1", "phase": "sent", "entry": "e1", "to": "t/0@4", "at": "t1"}"#,
            // Cut short here; a later run resumes it.
            r#"{"auditId": "a1", "phase": "resumed", "who": "op2", "at": "t5"}"#,
            r#"{"auditId": "a1", "phase": "sent", "entry": "e2", "to": "t/1@9", "at": "t6"}"#,
            r#"{"auditId": "b1", "phase": "started", "who": "op", "at": "t7", "entries": ["e4"]}"#,
        ]);
        let r = replays(&records, same);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].state, ReplayState::Partial);
        assert_eq!(r[0].unsent(), vec!["e3".to_owned()]);
        assert_eq!(r[0].resumed_by, vec!["op2".to_owned()]);
        assert!(r[0].edits.contains_key("e2"));
        // Started but never sent is not replayed.
        assert_eq!(r[1].unsent(), vec!["e4".to_owned()]);
        let counts = sent_counts(&r);
        assert_eq!(counts.get("e1"), Some(&1));
        assert_eq!(counts.get("e4"), None);

        records.extend(parsed(&[
            r#"{"auditId": "a1", "phase": "finished", "at": "t8", "results": [{"id": "e3", "ok": true, "topic": "t", "partition": 2, "offset": 1}]}"#,
        ]));
        let r = replays(&records, same);
        assert_eq!(r[0].state, ReplayState::Finished);
        assert_eq!(r[0].finished_at.as_deref(), Some("t8"));
        assert!(r[0].unsent().is_empty());
        assert_eq!(
            r[0].sent.last(),
            Some(&Sent {
                id: "e3".to_owned(),
                at: "t/2@1".to_owned()
            })
        );
    }

    #[test]
    fn audits_from_before_per_entry_records_count_their_ok_results() {
        let records = parsed(&[
            r#"{"auditId": "old", "phase": "started", "who": "op", "at": "t0", "entries": ["x:0:1", "x:0:2"]}"#,
            r#"{"auditId": "old", "phase": "finished", "at": "t1", "entries": ["x:0:1", "x:0:2"], "results": [{"id": "x:0:1", "ok": true, "topic": "t", "partition": 0, "offset": 3}, {"id": "x:0:2", "ok": false, "error": "boom"}]}"#,
        ]);
        let r = replays(&records, |s| s.replace(":0:", "/0@"));
        assert_eq!(r[0].state, ReplayState::Finished);
        assert_eq!(sent_counts(&r), BTreeMap::from([("x/0@1".to_owned(), 1)]));
        assert_eq!(r[0].unsent(), vec!["x/0@2".to_owned()]);
    }

    #[test]
    fn records_keep_their_wire_form() {
        let record = AuditRecord {
            audit_id: "a".into(),
            who: "op@h".into(),
            force: false,
            phase: Phase::Sent {
                entry: "oms.a.dlq/0@1".into(),
                to: "oms.a/0@9".into(),
                at: "t".into(),
            },
        };
        let json = serde_json::to_value(&record).expect("json");
        // The wire shape other omsctl versions read: flat, the phase named in `phase`.
        assert_eq!(json["phase"], "sent");
        assert_eq!(json["auditId"], "a");
        assert_eq!(json["entry"], "oms.a.dlq/0@1");
        assert_eq!(
            serde_json::from_value::<AuditRecord>(json).ok(),
            Some(record)
        );
        // Entries are counted in today's notation, whichever one a record used.
        let audit = parsed(&[
            r#"{"auditId": "a", "phase": "started", "entries": ["oms.a.dlq:0:1", "oms.a.dlq/1@2"]}"#,
            r#"{"auditId": "a", "phase": "sent", "entry": "oms.a.dlq:0:1", "to": "oms.a/0@9"}"#,
        ]);
        assert_eq!(
            replayed_ids(&audit),
            BTreeSet::from(["oms.a.dlq/0@1".to_owned()])
        );
        assert!(
            serde_json::from_str::<AuditRecord>(r#"{"auditId": "a", "phase": "exploded"}"#)
                .is_err()
        );
    }
}
