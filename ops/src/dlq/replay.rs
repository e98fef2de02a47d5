//! Replaying dead letters: choosing the entries (ids, filters, or what a cut-short replay left
//! unsent), holding back what its budget forbids, predicting each one's fate for `--dry-run`,
//! and sending them with the audit's records around them.
//!
//! A replay re-publishes the original key, value and headers (without the `oms-dlq-*` ones,
//! with `oms-replayed-from: <id>`) to the origin topic. An entry named in any audit record is
//! not replayed again unless forced. Replaying is harmless for messages already handled:
//! consumers are idempotent.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use oms_contracts::headers::{
    dlq as dlq_headers, REPLAYED_FROM, REPLAYED_TRACEPARENT, TRACEPARENT,
};
use oms_contracts::{routes, Envelope};
use rdkafka::message::Header;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};

use super::audit::{self, AuditRecord, Phase, Replay, ReplayState, SendResult};
use super::edit::{edited, Edit};
use super::entry::{entries, normalize_id, parse_id, Entry};
use super::predict::{self, Prediction};
use crate::ctx::Ctx;
use crate::render::coordinates;
use crate::tail;
use crate::Failure;

/// What a replay is asked to do.
#[derive(Debug, Clone, Default)]
pub struct Request<'a> {
    /// Entry ids (else every entry, narrowed by the conditions).
    pub ids: &'a [String],
    /// Every dead letter, narrowed by the conditions.
    pub all: bool,
    /// `--where` conditions on the entry's document ([`Entry::document`]), the `--filter`
    /// shorthands among them.
    pub conditions: &'a [crate::filter::Where],
    /// Replay what was replayed before (within the budget).
    pub force: bool,
    /// The most times an entry may be sent.
    pub budget: u32,
    /// Send here instead of the origin topic.
    pub to: Option<&'a str>,
    /// Repair the one entry first.
    pub repair: Repair<'a>,
    /// Send what this cut-short replay left unsent.
    pub resume: Option<&'a str>,
}

/// How an entry is repaired before it is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Repair<'a> {
    /// Sent as it was dead-lettered.
    #[default]
    None,
    /// Edited in `$EDITOR`.
    Editor,
    /// Patched with this merge patch file.
    Patch(&'a Path),
}

/// One entry of a replay plan: where it goes and what is sent.
pub struct Planned<'a> {
    /// The dead letter.
    pub entry: &'a Entry,
    /// Destination topic, as deployed.
    pub to: String,
    /// The value to send: the dead letter's, or the edited one.
    pub value: Option<Vec<u8>>,
    /// What an edit changed (`None`: sent as it was dead-lettered).
    pub edit: Option<Edit>,
}

/// A row of a replay plan, as `dlq replay --dry-run` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanRow {
    /// Entry id.
    pub id: String,
    /// Destination topic, as deployed.
    pub to: String,
    /// The key, when it is text.
    pub key: Option<String>,
    /// Message type.
    #[serde(rename = "type")]
    pub message_type: String,
    /// Whether it is sent edited.
    pub edited: bool,
    /// What sending it will do (`--dry-run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<Prediction>,
}

/// An entry left out of a replay, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldBack {
    /// Entry id.
    pub id: String,
    /// Why.
    pub why: String,
}

/// A plan shown instead of sent (`--dry-run`, or nothing to send).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanReport {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// What would be sent.
    pub plan: Vec<PlanRow>,
    /// What is held back.
    pub refused: Vec<HeldBack>,
    /// The edits that would be made.
    pub edits: Vec<Edit>,
}

/// A plan: what is sent, what is held back, and the replay it resumes.
pub struct Plan<'a> {
    /// To send, in order.
    pub planned: Vec<Planned<'a>>,
    /// Held back.
    pub refused: Vec<HeldBack>,
    /// The replay resumed.
    pub resumed: Option<Replay>,
}

impl Planned<'_> {
    /// As the plan shows it.
    pub fn row(&self) -> PlanRow {
        PlanRow {
            id: self.entry.id.clone(),
            to: self.to.clone(),
            key: self.entry.record.key_text(),
            message_type: self.entry.message_type.clone(),
            edited: self.edit.is_some(),
            prediction: None,
        }
    }
}

/// The destination of an entry: `to`, else its origin topic (as deployed).
fn destination(ctx: &Ctx, to: Option<&str>, e: &Entry) -> String {
    match to {
        Some(t) => ctx.deployed_topic(t),
        None => ctx.topics.name(&e.origin),
    }
}

/// Why an entry is not replayed now, if it is not: its budget is spent, or it was replayed
/// before and `force` was not given.
pub fn held_back(sent: u32, budget: u32, force: bool) -> Option<String> {
    if sent >= budget {
        Some(format!("replay budget of {budget} spent"))
    } else if sent > 0 && !force {
        Some("already replayed (use --force to replay again)".into())
    } else {
        None
    }
}

/// Checks a request before anything is read.
pub fn check(ctx: &Ctx, r: &Request<'_>) -> Result<(), Failure> {
    let selects = !r.ids.is_empty() || r.all || !r.conditions.is_empty();
    if r.resume.is_some() && selects {
        return Err(Failure::usage(
            "--resume replays what the named audit left unsent: give no ids, --all or --filter",
        ));
    }
    if r.resume.is_none() && !selects {
        return Err(Failure::usage(
            "name entry ids, or --all / --filter FIELD=VALUE / --where FIELD=VALUE, or --resume AUDIT (see `omsctl dlq list`)",
        ));
    }
    if !r.ids.is_empty() && r.all {
        return Err(Failure::usage("give entry ids or --all, not both"));
    }
    if r.budget == 0 {
        return Err(Failure::usage("--budget must be at least 1"));
    }
    for id in r.ids {
        parse_id(ctx, id)?;
    }
    Ok(())
}

/// The entries `r` selects out of `all`.
fn select<'a>(
    r: &Request<'_>,
    all: &'a [Entry],
    resumed: Option<&Replay>,
) -> Result<Vec<&'a Entry>, Failure> {
    let find = |id: &str| {
        all.iter()
            .find(|e| e.id == id)
            .ok_or_else(|| Failure::verdict(format!("no dead letter {id}")))
    };
    let wanted = |e: &Entry| crate::filter::all_match(r.conditions, &e.document());
    if let Some(resumed) = resumed {
        return resumed.unsent().iter().map(|id| find(id)).collect();
    }
    if r.ids.is_empty() {
        return Ok(all.iter().filter(|e| wanted(e)).collect());
    }
    let mut chosen = Vec::new();
    for id in r.ids {
        let e = find(&normalize_id(id))
            .map_err(|_| Failure::verdict(format!("no dead letter {id}")))?;
        if wanted(e) {
            chosen.push(e);
        }
    }
    Ok(chosen)
}

/// Plans a replay of `all`'s entries as `r` asks, against the audit's `history`.
pub async fn plan<'a>(
    ctx: &Ctx,
    r: &Request<'_>,
    all: &'a [Entry],
    history: &[Replay],
) -> Result<Plan<'a>, Failure> {
    let resumed = match r.resume {
        None => None,
        Some(audit_id) => {
            let found = history
                .iter()
                .find(|h| h.audit_id == audit_id)
                .ok_or_else(|| {
                    Failure::usage(format!(
                        "no replay audit {audit_id} (see `omsctl dlq audit`)"
                    ))
                })?;
            if found.state == ReplayState::Finished {
                return Err(Failure::verdict(format!(
                    "replay {audit_id} finished; nothing to resume"
                )));
            }
            Some(found.clone())
        }
    };
    let selected = select(r, all, resumed.as_ref())?;
    if r.repair != Repair::None && selected.len() != 1 {
        return Err(Failure::usage(format!(
            "--edit and --patch repair one entry at a time ({} selected)",
            selected.len()
        )));
    }
    if let Some(t) = r.to {
        crate::produce::exists(ctx, &ctx.deployed_topic(t)).await?;
    }
    let counts = audit::sent_counts(history);
    let mut planned: Vec<Planned<'_>> = Vec::new();
    let mut refused = Vec::new();
    for e in selected {
        let sent = counts.get(&e.id).copied().unwrap_or(0);
        // A resumed replay sends what it planned and never sent: that is not a second replay.
        let why = if resumed.is_none() {
            held_back(sent, r.budget, r.force)
        } else {
            (sent >= r.budget).then(|| format!("replay budget of {} spent", r.budget))
        };
        if let Some(why) = why {
            refused.push(HeldBack {
                id: e.id.clone(),
                why,
            });
            continue;
        }
        let planned_edit = resumed.as_ref().and_then(|h| h.edits.get(&e.id).cloned());
        let to = match resumed.as_ref().and_then(|h| h.targets.get(&e.id)) {
            Some(t) => t.clone(),
            None => destination(ctx, r.to, e),
        };
        let (value, edit) = match r.repair {
            Repair::Patch(path) => {
                let (v, edit) = edited(ctx, e, &to, Some(path))?;
                (Some(v), Some(edit))
            }
            Repair::Editor => {
                let (v, edit) = edited(ctx, e, &to, None)?;
                (Some(v), Some(edit))
            }
            Repair::None => match planned_edit {
                Some(edit) => (Some(edit.value.as_bytes().to_vec()), Some(edit)),
                None => (e.record.value.clone(), None),
            },
        };
        planned.push(Planned {
            entry: e,
            to,
            value,
            edit,
        });
    }
    Ok(Plan {
        planned,
        refused,
        resumed,
    })
}

/// What replaying each planned entry will do (`--dry-run`), from the services' current state:
/// the order's saga and payment, and whether the event already caused a message (it was
/// handled). Read-only.
pub async fn predictions(ctx: &Ctx, plan: &[Planned<'_>]) -> Result<Vec<Prediction>, Failure> {
    // Which events caused which messages, over the saga's topics (the causation id of each).
    let brokers = ctx.brokers.clone();
    let topics = ctx.saga_topics();
    let records = tokio::task::spawn_blocking(move || tail::scan(&brokers, &topics, |_| true))
        .await
        .map_err(anyhow::Error::from)??;
    let mut caused: BTreeMap<uuid::Uuid, String> = BTreeMap::new();
    for r in &records {
        if let Some(Ok(env)) = r.value.as_deref().map(Envelope::decode) {
            if let Some(cause) = env.causation_id {
                caused
                    .entry(cause)
                    .or_insert_with(|| coordinates(&r.topic, r.partition, r.offset));
            }
        }
    }
    let now = chrono::Utc::now();
    let mut out = Vec::new();
    for p in plan {
        let env = p.value.as_deref().and_then(|v| Envelope::decode(v).ok());
        let order = env.as_ref().map(|e| e.message.order_id().to_string());
        let mut facts = predict::Facts {
            caused: env.as_ref().and_then(|e| caused.get(&e.event_id).cloned()),
            ..Default::default()
        };
        if let Some(order) = &order {
            facts.saga = ctx.read_opt(routes::GET_SAGA, &[order]).await?;
            if env
                .as_ref()
                .is_some_and(|e| e.topic() == oms_contracts::topics::PAYMENT_COMMANDS)
            {
                facts.payment = ctx.read_opt(routes::GET_PAYMENT, &[order]).await?;
            }
        }
        let to = p.to.strip_prefix(ctx.topics.prefix()).unwrap_or(&p.to);
        out.push(predict::predict(p.value.as_deref(), to, &facts, now));
    }
    Ok(out)
}

/// How a replay went: its `finished` record's parts.
pub struct Sent {
    /// The audit id.
    pub audit_id: String,
    /// The `finished` record written.
    pub finished: AuditRecord,
    /// Per entry, how it went.
    pub results: Vec<SendResult>,
    /// How many failed.
    pub failed: usize,
    /// `N replayed, M failed`.
    pub summary: String,
}

/// Sends `plan`, with the audit's records around it: `started` (or `resumed`, under the audit
/// id it resumes) before anything is sent, `sent` after each delivery, `finished` at the end.
pub async fn send(
    ctx: &Ctx,
    plan: &[Planned<'_>],
    force: bool,
    rate: Option<f64>,
    resumes: Option<&str>,
) -> Result<Sent, Failure> {
    let producer: FutureProducer = ctx.producer()?;
    let audit_id = resumes
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let ids: Vec<String> = plan.iter().map(|p| p.entry.id.clone()).collect();
    let now = || chrono::Utc::now().to_rfc3339();
    let record = |phase| AuditRecord {
        audit_id: audit_id.clone(),
        who: audit::who(),
        force,
        phase,
    };
    let intent = if resumes.is_some() {
        Phase::Resumed {
            at: now(),
            entries: ids.clone(),
        }
    } else {
        Phase::Started {
            at: now(),
            entries: ids.clone(),
            targets: plan
                .iter()
                .map(|p| (p.entry.id.clone(), p.to.clone()))
                .collect(),
            edits: plan
                .iter()
                .filter_map(|p| p.edit.clone().map(|e| (p.entry.id.clone(), e)))
                .collect(),
        }
    };
    audit::write(ctx, &producer, &record(intent)).await?;

    let interval = rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let mut results = Vec::new();
    let mut failed = 0;
    for (i, p) in plan.iter().enumerate() {
        if let (Some(every), true) = (interval, i > 0) {
            tokio::time::sleep(every).await;
        }
        let e = p.entry;
        // The dead letter's own diagnostics stay behind; every other header travels on. The
        // replay is an operation of its own: its handling starts a trace that links to the one
        // the message was dead-lettered in, instead of continuing it. An edited envelope's
        // mirror headers (id, type, correlation) are taken from the edit.
        let mirrored = p
            .value
            .as_deref()
            .filter(|_| p.edit.is_some())
            .and_then(|v| Envelope::decode(v).ok())
            .map(|env| env.headers())
            .unwrap_or_default();
        let mut headers = oms_kafka::headers_where(e.record.headers.as_ref(), |name| {
            !dlq_headers::ALL.contains(&name)
                && name != REPLAYED_FROM
                && name != TRACEPARENT
                && name != REPLAYED_TRACEPARENT
                && !mirrored.iter().any(|(m, _)| *m == name)
        });
        for (name, value) in mirrored.iter().filter(|(n, _)| *n != TRACEPARENT) {
            headers = headers.insert(Header {
                key: name,
                value: Some(value.as_bytes()),
            });
        }
        headers = headers.insert(Header {
            key: REPLAYED_FROM,
            value: Some(e.id.as_bytes()),
        });
        if let Some(tp) = e.record.header(TRACEPARENT) {
            headers = headers.insert(Header {
                key: REPLAYED_TRACEPARENT,
                value: Some(tp.as_bytes()),
            });
        }
        let mut outgoing: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&p.to).headers(headers);
        if let Some(k) = &e.record.key {
            outgoing = outgoing.key(k.as_slice());
        }
        if let Some(v) = &p.value {
            outgoing = outgoing.payload(v.as_slice());
        }
        match producer.send(outgoing, Duration::from_secs(15)).await {
            Ok(d) => {
                let at = coordinates(&p.to, d.partition, d.offset);
                let sent = Phase::Sent {
                    entry: e.id.clone(),
                    to: at.clone(),
                    at: now(),
                };
                audit::write(ctx, &producer, &record(sent)).await?;
                results.push(SendResult {
                    id: e.id.clone(),
                    ok: true,
                    topic: Some(p.to.clone()),
                    partition: Some(d.partition),
                    offset: Some(d.offset),
                    at: Some(at),
                    error: None,
                });
            }
            Err((err, _)) => {
                failed += 1;
                results.push(SendResult {
                    id: e.id.clone(),
                    ok: false,
                    topic: None,
                    partition: None,
                    offset: None,
                    at: None,
                    error: Some(err.to_string()),
                });
            }
        }
    }
    let summary = format!("{} replayed, {failed} failed", plan.len() - failed);
    let finished = record(Phase::Finished {
        at: now(),
        entries: ids,
        results: results.clone(),
        summary: summary.clone(),
    });
    audit::write(ctx, &producer, &finished).await?;
    Ok(Sent {
        audit_id,
        finished,
        results,
        failed,
        summary,
    })
}

/// Replays one entry without asking (the caller asked) unless it was replayed before; returns a
/// one-line summary.
pub async fn replay_one(ctx: &Ctx, id: &str) -> Result<String, Failure> {
    parse_id(ctx, id)?;
    let id = normalize_id(id);
    let all = entries(ctx, None).await?;
    let entry = all
        .iter()
        .find(|e| e.id == id)
        .ok_or_else(|| Failure::verdict(format!("no dead letter {id}")))?;
    if audit::replayed_ids(&audit::records(ctx).await?).contains(&id) {
        return Err(Failure::verdict(format!("{id} was already replayed")));
    }
    let planned = Planned {
        entry,
        to: destination(ctx, None, entry),
        value: entry.record.value.clone(),
        edit: None,
    };
    let sent = send(ctx, &[planned], false, None, None).await?;
    if sent.failed > 0 {
        return Err(Failure::verdict(format!(
            "replay of {id} failed (audit {})",
            sent.audit_id
        )));
    }
    Ok(format!(
        "replayed {id} ({}; audit {})",
        sent.summary, sent.audit_id
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_hold_back_what_was_sent_often_enough_force_or_not() {
        assert_eq!(held_back(0, 3, false), None);
        assert!(held_back(1, 3, false).is_some_and(|w| w.contains("--force")));
        assert_eq!(held_back(2, 3, true), None);
        assert!(held_back(3, 3, true).is_some_and(|w| w.contains("budget of 3")));
    }
}
