//! `omsctl dlq list | show | replay | audit`: dead letters and their safe replay.
//!
//! An entry's id is its coordinates `<dlq topic>/<partition>@<offset>` (without the topic
//! prefix; the older `<dlq topic>:<partition>:<offset>` is still accepted). A replay
//! re-publishes the original key, value and headers (without the `oms-dlq-*` ones, with
//! `oms-replayed-from: <id>`) to the origin topic. Every replay is recorded in the audit topic
//! `oms.dlq.audit` (durable, shared by every operator): an intent record before anything is sent
//! and a result record after. An entry named in any audit record is not replayed again unless
//! `--force`. Replaying is harmless for messages already handled: consumers are idempotent.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::Context;
use oms_contracts::headers::{
    dlq as dlq_headers, REPLAYED_FROM, REPLAYED_TRACEPARENT, TRACEPARENT,
};
use oms_contracts::Envelope;
use rdkafka::message::Header;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value};

use oms_contracts::api::OrderView;
use oms_contracts::routes;

use crate::ctx::Ctx;
use crate::render::{cell, coordinates, opt, table};
use crate::repair;
use crate::tail::{self, Record};
use crate::Failure;

/// The audit topic (before the prefix).
pub const AUDIT_TOPIC: &str = "oms.dlq.audit";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupBy {
    /// Error class.
    Error,
    /// Origin topic.
    Origin,
    /// Message type.
    Type,
}

#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// Dead letters (of one origin topic, or all), or groups of them.
    List {
        /// Origin topic (e.g. oms.payment.commands) or its DLQ.
        #[arg(add = clap_complete::ArgValueCandidates::new(crate::complete::topics))]
        topic: Option<String>,
        /// Group by error class, origin topic or message type.
        #[arg(long)]
        group_by: Option<GroupBy>,
        /// Only entries whose decoded envelope matches FIELD OP VALUE
        /// (payload.reason=OUT_OF_STOCK; OP = != > >= < <= ~); repeatable, all must match.
        #[arg(long = "where", value_parser = crate::filter::parse)]
        conditions: Vec<crate::filter::Where>,
    },
    /// One dead letter: the original message, its diagnosis, a decode attempt, the order now.
    Show {
        /// Entry id (`<dlq topic>:<partition>:<offset>`).
        id: String,
    },
    /// Re-publish dead letters to their origin topic.
    Replay(ReplayArgs),
    /// The replay audit: who replayed which entries when, and how it went.
    Audit,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Entry ids.
    ids: Vec<String>,
    /// Every dead letter (narrowed by --filter).
    #[arg(long)]
    all: bool,
    /// Only entries with FIELD=VALUE (class, origin, type, key, service); repeatable.
    #[arg(long = "filter", value_parser = parse_filter)]
    filters: Vec<(String, String)>,
    /// Only entries whose decoded envelope matches FIELD OP VALUE (as `dlq list --where`).
    #[arg(long = "where", value_parser = crate::filter::parse)]
    conditions: Vec<crate::filter::Where>,
    /// Print the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// At most this many messages per second (e.g. 10/s).
    #[arg(long, value_parser = crate::args::rate)]
    rate: Option<f64>,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
    /// Replay entries even if they were replayed before (within --budget).
    #[arg(long)]
    force: bool,
    /// Open the entry's value in $EDITOR before it is sent (one entry); the edit is checked
    /// against the contracts and recorded in the audit.
    #[arg(long, conflicts_with = "patch")]
    edit: bool,
    /// Apply this JSON merge patch (RFC 7396) to the entry's value before it is sent (one
    /// entry); checked and recorded like --edit.
    #[arg(long, value_name = "FILE")]
    patch: Option<std::path::PathBuf>,
    /// Send to this topic instead of the origin topic.
    #[arg(long, value_name = "TOPIC")]
    to: Option<String>,
    /// The most times any entry may be sent, --force or not.
    #[arg(long, default_value_t = 3)]
    budget: u32,
    /// Send what the replay AUDIT (cut short) planned and never sent, under the same audit.
    #[arg(long, value_name = "AUDIT")]
    resume: Option<String>,
}

fn parse_filter(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("invalid --filter {s:?}: expected FIELD=VALUE"))?;
    if !["class", "origin", "type", "key", "service"].contains(&k) {
        return Err(format!(
            "invalid --filter field {k:?}: expected class, origin, type, key or service"
        ));
    }
    Ok((k.to_owned(), v.to_owned()))
}

/// One dead letter.
struct Entry {
    id: String,
    record: Record,
    origin: String,
    class: String,
    error: String,
    message_type: String,
    service: String,
    failed_at: String,
}

impl Entry {
    fn of(ctx: &Ctx, record: Record) -> Self {
        let unprefixed = record
            .topic
            .strip_prefix(ctx.topics.prefix())
            .unwrap_or(&record.topic)
            .to_owned();
        let described = tail::describe(&record);
        let header = |name: &str| record.header(name).unwrap_or_else(|| "-".into());
        Entry {
            id: coordinates(&unprefixed, record.partition, record.offset),
            origin: {
                let o = header(dlq_headers::ORIGIN_TOPIC);
                o.strip_prefix(ctx.topics.prefix())
                    .map(str::to_owned)
                    .unwrap_or(o)
            },
            class: header(dlq_headers::ERROR_CLASS),
            error: header(dlq_headers::ERROR_MESSAGE),
            service: header(dlq_headers::SERVICE),
            failed_at: header(dlq_headers::FAILED_AT),
            message_type: record
                .header(oms_contracts::headers::MESSAGE_TYPE)
                .unwrap_or(described.type_name),
            record,
        }
    }

    fn field(&self, name: &str) -> String {
        match name {
            "class" => self.class.clone(),
            "origin" => self.origin.clone(),
            "type" => self.message_type.clone(),
            "key" => self.record.key_text().unwrap_or_default(),
            "service" => self.service.clone(),
            _ => String::new(),
        }
    }

    fn to_json(&self, replayed: bool) -> Value {
        json!({
            "id": self.id,
            "originTopic": self.origin,
            "key": self.record.key_text(),
            "type": self.message_type,
            "errorClass": self.class,
            "error": self.error,
            "service": self.service,
            "failedAt": self.failed_at,
            "replayed": replayed,
        })
    }
}

fn dlq_topics(ctx: &Ctx, topic: Option<&str>) -> Vec<String> {
    match topic {
        None => ctx.dlq_topics(),
        Some(t) => {
            let base = t.strip_prefix(ctx.topics.prefix()).unwrap_or(t);
            let base = if oms_contracts::topics::is_dlq(base) {
                base.to_owned()
            } else {
                oms_contracts::topics::dlq(base)
            };
            vec![ctx.topics.name(&base)]
        }
    }
}

async fn read(ctx: &Ctx, topics: Vec<String>) -> Result<Vec<Record>, Failure> {
    let brokers = ctx.brokers.clone();
    tokio::task::spawn_blocking(move || tail::scan(&brokers, &topics, |_| true))
        .await
        .map_err(anyhow::Error::from)?
}

async fn entries(ctx: &Ctx, topic: Option<&str>) -> Result<Vec<Entry>, Failure> {
    Ok(read(ctx, dlq_topics(ctx, topic))
        .await?
        .into_iter()
        .map(|r| Entry::of(ctx, r))
        .collect())
}

/// Audit records, oldest first.
async fn audit(ctx: &Ctx) -> Result<Vec<Value>, Failure> {
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

/// The entries sent at least once by a replay, in today's notation.
fn replayed_ids(audit: &[Value]) -> BTreeSet<String> {
    repair::sent_counts(&repair::replays(audit, normalize_id))
        .into_keys()
        .collect()
}

/// An entry id as (unprefixed DLQ topic, partition, offset), from `topic/partition@offset` or
/// the older `topic:partition:offset`.
fn split_id(id: &str) -> Option<(&str, i32, i64)> {
    let (rest, offset) = id.rsplit_once('@').or_else(|| id.rsplit_once(':'))?;
    let (topic, partition) = rest.rsplit_once('/').or_else(|| rest.rsplit_once(':'))?;
    Some((topic, partition.parse().ok()?, offset.parse().ok()?))
}

/// An id in today's notation (unchanged when it does not parse).
fn normalize_id(id: &str) -> String {
    split_id(id)
        .map(|(t, p, o)| coordinates(t, p, o))
        .unwrap_or_else(|| id.to_owned())
}

pub async fn run(ctx: &Ctx, command: DlqCommand) -> Result<(), Failure> {
    match command {
        DlqCommand::List {
            topic,
            group_by,
            conditions,
        } => list(ctx, topic.as_deref(), group_by, &conditions).await,
        DlqCommand::Show { id } => show(ctx, &id).await,
        DlqCommand::Replay(args) => replay(ctx, args).await,
        DlqCommand::Audit => {
            let history = repair::replays(&audit(ctx).await?, normalize_id);
            let value = Value::Array(history.iter().map(repair::Replay::to_json).collect());
            ctx.print(&value, || {
                let mut t = table(&[
                    "STARTED", "AUDIT", "WHO", "STATE", "SENT", "ENTRIES", "EDITED",
                ]);
                for r in &history {
                    let edited: Vec<&str> = r.edits.keys().map(String::as_str).collect();
                    t.add_row([
                        r.started_at.clone(),
                        r.audit_id.clone(),
                        r.who.clone(),
                        if r.resumed_by.is_empty() {
                            r.state().to_owned()
                        } else {
                            format!("{} (resumed)", r.state())
                        },
                        format!("{}/{}", r.sent.len(), r.planned.len()),
                        r.planned.join(" "),
                        edited.join(" "),
                    ]);
                }
                t.to_string()
            })
        }
    }
}

async fn list(
    ctx: &Ctx,
    topic: Option<&str>,
    group_by: Option<GroupBy>,
    conditions: &[crate::filter::Where],
) -> Result<(), Failure> {
    let mut all = entries(ctx, topic).await?;
    all.retain(|e| crate::filter::all_match(conditions, e.record.value.as_deref()));
    let replayed = replayed_ids(&audit(ctx).await?);
    let Some(by) = group_by else {
        let value = Value::Array(
            all.iter()
                .map(|e| e.to_json(replayed.contains(&e.id)))
                .collect(),
        );
        return ctx.print(&value, || {
            let mut t = table(&[
                "ID",
                "ORIGIN",
                "TYPE",
                "KEY",
                "CLASS",
                "ERROR",
                "FAILED AT",
                "REPLAYED",
            ]);
            for e in &all {
                t.add_row([
                    e.id.clone(),
                    e.origin.clone(),
                    e.message_type.clone(),
                    e.record.key_text().unwrap_or_else(|| "-".into()),
                    e.class.clone(),
                    e.error.clone(),
                    e.failed_at.clone(),
                    if replayed.contains(&e.id) {
                        "yes"
                    } else {
                        "no"
                    }
                    .into(),
                ]);
            }
            t.to_string()
        });
    };
    let mut groups: BTreeMap<String, (u64, String, String, u64)> = BTreeMap::new();
    for e in &all {
        let key = match by {
            GroupBy::Error => e.class.clone(),
            GroupBy::Origin => e.origin.clone(),
            GroupBy::Type => e.message_type.clone(),
        };
        let g = groups
            .entry(key)
            .or_insert((0, e.failed_at.clone(), e.failed_at.clone(), 0));
        g.0 += 1;
        if e.failed_at < g.1 {
            g.1 = e.failed_at.clone();
        }
        if e.failed_at > g.2 {
            g.2 = e.failed_at.clone();
        }
        g.3 += u64::from(replayed.contains(&e.id));
    }
    let value = Value::Array(
        groups
            .iter()
            .map(|(k, (n, first, last, r))| {
                json!({"group": k, "count": n, "firstSeen": first, "lastSeen": last, "replayed": r})
            })
            .collect(),
    );
    ctx.print(&value, || {
        let mut t = table(&["GROUP", "COUNT", "FIRST SEEN", "LAST SEEN", "REPLAYED"]);
        for (k, (n, first, last, r)) in &groups {
            t.add_row([
                k.clone(),
                n.to_string(),
                first.clone(),
                last.clone(),
                r.to_string(),
            ]);
        }
        t.to_string()
    })
}

fn parse_id(ctx: &Ctx, id: &str) -> Result<(String, i32, i64), Failure> {
    let bad = || {
        Failure::usage(format!(
            "invalid entry id {id:?}: expected <dlq topic>/<partition>@<offset> (see `omsctl dlq list`)"
        ))
    };
    let (topic, partition, offset) = split_id(id)
        .filter(|(t, _, _)| oms_contracts::topics::is_dlq(t))
        .ok_or_else(bad)?;
    Ok((ctx.topics.name(topic), partition, offset))
}

async fn find(ctx: &Ctx, id: &str) -> Result<Entry, Failure> {
    let (topic, partition, offset) = parse_id(ctx, id)?;
    let records = read(ctx, vec![topic]).await?;
    records
        .into_iter()
        .find(|r| r.partition == partition && r.offset == offset)
        .map(|r| Entry::of(ctx, r))
        .ok_or_else(|| Failure::verdict(format!("no dead letter {id}")))
}

async fn show(ctx: &Ctx, id: &str) -> Result<(), Failure> {
    let e = find(ctx, id).await?;
    let decode = match e.record.value.as_deref().map(Envelope::decode) {
        Some(Ok(env)) => {
            json!({"ok": true, "type": env.message_type().as_str(), "eventId": env.event_id})
        }
        Some(Err(err)) => json!({"ok": false, "class": err.class(), "error": err.to_string()}),
        None => json!({"ok": false, "error": "no value"}),
    };
    let order: Option<OrderView> = match e
        .record
        .key_text()
        .filter(|k| uuid::Uuid::parse_str(k).is_ok())
    {
        Some(k) => ctx.read_opt(routes::GET_ORDER, &[&k]).await.ok().flatten(),
        None => None,
    };
    let replayed = replayed_ids(&audit(ctx).await?).contains(&e.id);
    let doc = json!({
        "entry": e.to_json(replayed),
        "message": e.record.to_json(),
        "decode": decode,
        "order": order,
    });
    ctx.print(&doc, || {
        let mut t = table(&["FIELD", "VALUE"]);
        t.add_row(["id".to_string(), e.id.clone()]);
        t.add_row([
            "key".to_string(),
            e.record.key_text().unwrap_or_else(|| "-".into()),
        ]);
        for (name, value) in e.record.header_list() {
            t.add_row([
                format!("header {name}"),
                value
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_else(|| "(null)".into()),
            ]);
        }
        t.add_row([
            "value".to_string(),
            e.record
                .value
                .as_deref()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_else(|| "(null)".into()),
        ]);
        t.add_row([
            "decode".to_string(),
            if decode["ok"] == true {
                format!("ok: {}", cell(&decode["type"]))
            } else {
                format!("{}: {}", cell(&decode["class"]), cell(&decode["error"]))
            },
        ]);
        t.add_row([
            "order now".to_string(),
            order
                .as_ref()
                .map(|o| format!("{} {}", o.status, opt(o.cancel_reason.as_ref())))
                .unwrap_or_else(|| "-".into()),
        ]);
        t.add_row([
            "replayed".to_string(),
            if replayed { "yes" } else { "no" }.into(),
        ]);
        t.to_string()
    })
}

fn who() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host}")
}

async fn write_audit(ctx: &Ctx, producer: &FutureProducer, record: &Value) -> Result<(), Failure> {
    let topic = ctx.topics.name(AUDIT_TOPIC);
    let payload = serde_json::to_vec(record)?;
    let key = record["auditId"].as_str().unwrap_or_default().to_owned();
    producer
        .send(
            FutureRecord::to(&topic).key(&key).payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| Failure::usage(format!("writing the replay audit to {topic}: {e}")))?;
    Ok(())
}

/// One entry of a replay plan: where it goes and what is sent.
struct Planned<'a> {
    entry: &'a Entry,
    /// Destination topic, as deployed.
    to: String,
    /// The value to send: the dead letter's, or the edited one.
    value: Option<Vec<u8>>,
    /// What an edit changed (`None`: sent as it was dead-lettered).
    edit: Option<Value>,
}

impl Planned<'_> {
    fn to_json(&self) -> Value {
        json!({
            "id": self.entry.id,
            "to": self.to,
            "key": self.entry.record.key_text(),
            "type": self.entry.message_type,
            "edited": self.edit.is_some(),
        })
    }
}

/// The destination of an entry: `--to`, else its origin topic (as deployed).
fn destination(ctx: &Ctx, to: Option<&str>, e: &Entry) -> String {
    match to {
        Some(t) => ctx.deployed_topic(t),
        None => ctx.topics.name(&e.origin),
    }
}

/// Opens `text` in `$VISUAL`/`$EDITOR` (else `vi`) and returns what was saved.
fn edit_in_editor(text: &str) -> Result<String, Failure> {
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "vi".into());
    // The message may hold a customer's address or a payment token: a file only its owner may
    // read (0600, created anew, never an existing path), deleted when done.
    let mut file = tempfile::Builder::new()
        .prefix("omsctl-dlq-")
        .suffix(".json")
        .tempfile()
        .context("creating the file to edit")?;
    let path = file.path().to_path_buf();
    std::io::Write::write_all(&mut file, text.as_bytes())
        .and_then(|()| std::io::Write::flush(&mut file))
        .with_context(|| format!("writing {}", path.display()))?;
    // Through the shell, so `EDITOR="code --wait"` works as in git.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("omsctl")
        .arg(&path)
        .status();
    let edited = std::fs::read_to_string(&path);
    drop(file);
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            return Err(Failure::verdict(format!(
                "the editor ({editor}) exited with {s}; nothing sent"
            )))
        }
        Err(e) => {
            return Err(Failure::usage(format!(
                "cannot run the editor {editor:?}: {e}"
            )))
        }
    }
    Ok(edited.with_context(|| format!("reading back {}", path.display()))?)
}

/// The edited value of `e` for `to`: checked against the contracts before anything is sent.
fn edited(ctx: &Ctx, e: &Entry, to: &str, args: &ReplayArgs) -> Result<(Vec<u8>, Value), Failure> {
    let original = e.record.value.clone().unwrap_or_default();
    let new_value: Vec<u8> = if let Some(path) = &args.patch {
        let patch_text = std::fs::read_to_string(path)
            .map_err(|err| Failure::usage(format!("cannot read {}: {err}", path.display())))?;
        let patch: Value = serde_json::from_str(&patch_text).map_err(|err| {
            Failure::usage(format!("{}: not a JSON merge patch: {err}", path.display()))
        })?;
        let mut doc: Value = serde_json::from_slice(&original).map_err(|_| {
            Failure::usage(format!(
                "{}'s value is not JSON, so it cannot be patched: use --edit",
                e.id
            ))
        })?;
        repair::merge_patch(&mut doc, &patch);
        serde_json::to_vec(&doc)?
    } else {
        let text = match serde_json::from_slice::<Value>(&original) {
            Ok(doc) => serde_json::to_string_pretty(&doc)?,
            Err(_) => String::from_utf8_lossy(&original).into_owned(),
        };
        let saved = edit_in_editor(&text)?;
        // Stored compact, as the services write it.
        match serde_json::from_str::<Value>(&saved) {
            Ok(doc) => serde_json::to_vec(&doc)?,
            Err(_) => saved.into_bytes(),
        }
    };
    let unprefixed = to.strip_prefix(ctx.topics.prefix()).unwrap_or(to);
    let message = crate::produce::Outgoing {
        key: e.record.key.clone(),
        headers: Vec::new(),
        value: Some(new_value.clone()),
    };
    // A topic outside the contracts (a quarantine topic) takes any envelope that decodes.
    let contract_topic = oms_contracts::topics::ALL.contains(&unprefixed);
    let check = if contract_topic {
        crate::produce::validate(&message, unprefixed).map(|_| ())
    } else {
        Envelope::decode(&new_value)
            .map(|_| ())
            .map_err(|err| format!("{err} ({})", err.class()))
    };
    check.map_err(|why| {
        Failure::usage(format!(
            "the edited {} breaks the contract: {why}; nothing sent",
            e.id
        ))
    })?;
    let before: Value = serde_json::from_slice(&original)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&original).into_owned()));
    let after: Value = serde_json::from_slice(&new_value)?;
    let changes = repair::changes(&before, &after);
    Ok((
        new_value.clone(),
        json!({"changes": changes, "value": String::from_utf8_lossy(&new_value)}),
    ))
}

/// Why an entry is not replayed now, if it is not: its budget is spent, or it was replayed
/// before and `--force` was not given.
fn held_back(sent: u32, budget: u32, force: bool) -> Option<String> {
    if sent >= budget {
        Some(format!("replay budget of {budget} spent"))
    } else if sent > 0 && !force {
        Some("already replayed (use --force to replay again)".into())
    } else {
        None
    }
}

async fn replay(ctx: &Ctx, args: ReplayArgs) -> Result<(), Failure> {
    if args.resume.is_some() {
        if !args.ids.is_empty()
            || args.all
            || !args.filters.is_empty()
            || !args.conditions.is_empty()
        {
            return Err(Failure::usage(
                "--resume replays what the named audit left unsent: give no ids, --all or --filter",
            ));
        }
    } else if args.ids.is_empty()
        && !args.all
        && args.filters.is_empty()
        && args.conditions.is_empty()
    {
        return Err(Failure::usage(
            "name entry ids, or --all / --filter FIELD=VALUE / --where FIELD=VALUE, or --resume AUDIT (see `omsctl dlq list`)",
        ));
    }
    if !args.ids.is_empty() && args.all {
        return Err(Failure::usage("give entry ids or --all, not both"));
    }
    if args.budget == 0 {
        return Err(Failure::usage("--budget must be at least 1"));
    }
    for id in &args.ids {
        parse_id(ctx, id)?;
    }
    let all = entries(ctx, None).await?;
    let history = repair::replays(&audit(ctx).await?, normalize_id);
    let resumed = match &args.resume {
        None => None,
        Some(audit_id) => {
            let r = history
                .iter()
                .find(|r| r.audit_id == *audit_id)
                .ok_or_else(|| {
                    Failure::usage(format!(
                        "no replay audit {audit_id} (see `omsctl dlq audit`)"
                    ))
                })?;
            if r.state() == "finished" {
                return Err(Failure::verdict(format!(
                    "replay {audit_id} finished; nothing to resume"
                )));
            }
            Some(r.clone())
        }
    };
    let selected: Vec<&Entry> = if let Some(r) = &resumed {
        r.unsent()
            .iter()
            .map(|id| {
                all.iter()
                    .find(|e| e.id == *id)
                    .ok_or_else(|| Failure::verdict(format!("no dead letter {id}")))
            })
            .collect::<Result<_, _>>()?
    } else if args.ids.is_empty() {
        all.iter()
            .filter(|e| args.filters.iter().all(|(k, v)| e.field(k) == *v))
            .filter(|e| crate::filter::all_match(&args.conditions, e.record.value.as_deref()))
            .collect()
    } else {
        let mut chosen = Vec::new();
        for id in &args.ids {
            let wanted = normalize_id(id);
            let e = all
                .iter()
                .find(|e| e.id == wanted)
                .ok_or_else(|| Failure::verdict(format!("no dead letter {id}")))?;
            if args.filters.iter().all(|(k, v)| e.field(k) == *v)
                && crate::filter::all_match(&args.conditions, e.record.value.as_deref())
            {
                chosen.push(e);
            }
        }
        chosen
    };
    let editing = args.edit || args.patch.is_some();
    if editing && selected.len() != 1 {
        return Err(Failure::usage(format!(
            "--edit and --patch repair one entry at a time ({} selected)",
            selected.len()
        )));
    }
    if let Some(t) = &args.to {
        crate::produce::exists(ctx, &ctx.deployed_topic(t)).await?;
    }
    let counts = repair::sent_counts(&history);
    let mut plan: Vec<Planned<'_>> = Vec::new();
    let mut refused: Vec<(String, String)> = Vec::new();
    for e in selected {
        let sent = counts.get(&e.id).copied().unwrap_or(0);
        // A resumed replay sends what it planned and never sent: that is not a second replay.
        if resumed.is_none() {
            if let Some(why) = held_back(sent, args.budget, args.force) {
                refused.push((e.id.clone(), why));
                continue;
            }
        } else if sent >= args.budget {
            refused.push((
                e.id.clone(),
                format!("replay budget of {} spent", args.budget),
            ));
            continue;
        }
        let planned_edit = resumed.as_ref().and_then(|r| r.edits.get(&e.id).cloned());
        let to = match resumed.as_ref().and_then(|r| r.targets.get(&e.id)) {
            Some(t) => t.clone(),
            None => destination(ctx, args.to.as_deref(), e),
        };
        let (value, edit) = if editing {
            let (v, edit) = edited(ctx, e, &to, &args)?;
            (Some(v), Some(edit))
        } else if let Some(edit) = planned_edit {
            let v = edit["value"].as_str().map(|s| s.as_bytes().to_vec());
            (v, Some(edit))
        } else {
            (e.record.value.clone(), None)
        };
        plan.push(Planned {
            entry: e,
            to,
            value,
            edit,
        });
    }
    let mut plan_json: Vec<Value> = plan.iter().map(Planned::to_json).collect();
    if args.dry_run && !plan.is_empty() {
        for (doc, p) in plan_json.iter_mut().zip(predictions(ctx, &plan).await?) {
            doc["prediction"] = serde_json::to_value(p)?;
        }
    }
    let refused_json: Vec<Value> = refused
        .iter()
        .map(|(id, why)| json!({"id": id, "why": why}))
        .collect();
    for (id, why) in &refused {
        eprintln!("omsctl: not replaying {id}: {why}");
    }
    if args.dry_run || plan.is_empty() {
        let edits: Vec<&Value> = plan.iter().filter_map(|p| p.edit.as_ref()).collect();
        let doc = json!({"dryRun": args.dry_run, "plan": plan_json, "refused": refused_json, "edits": edits});
        ctx.print(&doc, || {
            let mut t = table(&["ENTRY", "TO TOPIC", "KEY", "TYPE", "EDITED", "PREDICTION"]);
            for p in &plan_json {
                t.add_row([
                    cell(&p["id"]),
                    cell(&p["to"]),
                    cell(&p["key"]),
                    cell(&p["type"]),
                    if p["edited"] == true { "yes" } else { "no" }.into(),
                    if p["prediction"].is_object() {
                        format!(
                            "{}: {}",
                            cell(&p["prediction"]["outcome"]),
                            cell(&p["prediction"]["detail"])
                        )
                    } else {
                        "-".into()
                    },
                ]);
            }
            let mut text = t.to_string();
            for edit in &edits {
                for c in edit["changes"].as_array().into_iter().flatten() {
                    text.push_str(&format!("\n  {}", change_line(c)));
                }
            }
            let n = plan.len();
            let entries = if n == 1 { "entry" } else { "entries" };
            if args.dry_run {
                format!("{text}\nwould replay {n} {entries} (dry run: nothing changed)")
            } else {
                format!("{text}\nnothing to replay")
            }
        })?;
        return if !args.dry_run && !refused.is_empty() {
            Err(Failure::verdict(format!(
                "{} entr{} held back; nothing sent",
                refused.len(),
                if refused.len() == 1 { "y" } else { "ies" }
            )))
        } else {
            Ok(())
        };
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(Failure::usage(format!(
                "replaying {} entries needs confirmation: add --yes (or --dry-run to see the plan)",
                plan.len()
            )));
        }
        eprint!("replay {} entries? [y/N] ", plan.len());
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err(Failure::verdict("replay cancelled"));
        }
    }

    let (done, results, failed, audit_id) = send(
        ctx,
        &plan,
        args.force,
        args.rate,
        resumed.as_ref().map(|r| r.audit_id.as_str()),
    )
    .await?;
    ctx.print(&done, || {
        let mut t = table(&["ENTRY", "RESULT"]);
        for r in &results {
            t.add_row([
                cell(&r["id"]),
                if r["ok"] == true {
                    format!("sent to {}", cell(&r["at"]))
                } else {
                    format!("FAILED: {}", cell(&r["error"]))
                },
            ]);
        }
        format!("{t}\naudit {audit_id}: {}", cell(&done["summary"]))
    })?;
    if failed > 0 {
        return Err(Failure::verdict(format!(
            "{failed} of {} replays failed",
            plan.len()
        )));
    }
    Ok(())
}

/// What replaying each planned entry will do (`--dry-run`), from the services' current state:
/// the order's saga and payment, and whether the event already caused a message (it was
/// handled). Read-only.
async fn predictions(
    ctx: &Ctx,
    plan: &[Planned<'_>],
) -> Result<Vec<crate::predict::Prediction>, Failure> {
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
        let mut facts = crate::predict::Facts {
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
        out.push(crate::predict::predict(p.value.as_deref(), to, &facts, now));
    }
    Ok(out)
}

/// One change of an edit, for a terminal.
fn change_line(c: &Value) -> String {
    let path = cell(&c["path"]);
    if let Some(v) = c.get("added") {
        format!("{path}: added {v}")
    } else if let Some(v) = c.get("removed") {
        format!("{path}: removed (was {v})")
    } else {
        format!("{path}: {} -> {}", c["from"], c["to"])
    }
}

/// Sends `plan`, with the audit's records around it: `started` (or `resumed`, under the audit
/// id it resumes) before anything is sent, `sent` after each delivery, `finished` at the end.
/// Returns (finished record, per-entry results, failures, audit id).
async fn send(
    ctx: &Ctx,
    plan: &[Planned<'_>],
    force: bool,
    rate: Option<f64>,
    resumes: Option<&str>,
) -> Result<(Value, Vec<Value>, usize, String), Failure> {
    let producer: FutureProducer = ctx.producer()?;
    let audit_id = resumes
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let ids: Vec<&str> = plan.iter().map(|p| p.entry.id.as_str()).collect();
    let base = json!({"auditId": audit_id, "who": who(), "force": force});
    let mut intent = base.clone();
    intent["at"] = json!(chrono::Utc::now().to_rfc3339());
    intent["entries"] = json!(ids);
    if resumes.is_some() {
        intent["phase"] = json!("resumed");
    } else {
        intent["phase"] = json!("started");
        let targets: BTreeMap<&str, &str> = plan
            .iter()
            .map(|p| (p.entry.id.as_str(), p.to.as_str()))
            .collect();
        let edits: BTreeMap<&str, &Value> = plan
            .iter()
            .filter_map(|p| p.edit.as_ref().map(|e| (p.entry.id.as_str(), e)))
            .collect();
        intent["targets"] = json!(targets);
        intent["edits"] = json!(edits);
    }
    write_audit(ctx, &producer, &intent).await?;

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
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&p.to).headers(headers);
        if let Some(k) = &e.record.key {
            record = record.key(k.as_slice());
        }
        if let Some(v) = &p.value {
            record = record.payload(v.as_slice());
        }
        match producer.send(record, Duration::from_secs(15)).await {
            Ok(d) => {
                let at = coordinates(&p.to, d.partition, d.offset);
                let mut sent = base.clone();
                sent["phase"] = json!("sent");
                sent["entry"] = json!(e.id);
                sent["to"] = json!(at);
                sent["at"] = json!(chrono::Utc::now().to_rfc3339());
                write_audit(ctx, &producer, &sent).await?;
                results.push(json!({"id": e.id, "ok": true, "topic": p.to, "partition": d.partition, "offset": d.offset, "at": at}));
            }
            Err((err, _)) => {
                failed += 1;
                results.push(json!({"id": e.id, "ok": false, "error": err.to_string()}));
            }
        }
    }
    let mut done = base;
    done["phase"] = json!("finished");
    done["at"] = json!(chrono::Utc::now().to_rfc3339());
    done["entries"] = json!(ids);
    done["results"] = json!(results);
    done["summary"] = json!(format!("{} replayed, {failed} failed", plan.len() - failed));
    write_audit(ctx, &producer, &done).await?;
    Ok((done, results, failed, audit_id))
}

/// A dead letter as the TUI shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    /// Entry id.
    pub id: String,
    /// Origin topic (contract name).
    pub origin: String,
    /// Message type.
    pub message_type: String,
    /// Key (order id).
    pub key: String,
    /// Error class.
    pub class: String,
    /// Error message.
    pub error: String,
    /// When it was dead-lettered.
    pub failed_at: String,
    /// Whether it was replayed.
    pub replayed: bool,
}

/// Every dead letter, with its replay status.
pub async fn items(ctx: &Ctx) -> Result<Vec<Item>, Failure> {
    let all = entries(ctx, None).await?;
    let replayed = replayed_ids(&audit(ctx).await?);
    Ok(all
        .into_iter()
        .map(|e| Item {
            replayed: replayed.contains(&e.id),
            key: e.record.key_text().unwrap_or_default(),
            id: e.id,
            origin: e.origin,
            message_type: e.message_type,
            class: e.class,
            error: e.error,
            failed_at: e.failed_at,
        })
        .collect())
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
    if replayed_ids(&audit(ctx).await?).contains(&id) {
        return Err(Failure::verdict(format!("{id} was already replayed")));
    }
    let planned = Planned {
        entry,
        to: destination(ctx, None, entry),
        value: entry.record.value.clone(),
        edit: None,
    };
    let (done, _, failed, audit_id) = send(ctx, &[planned], false, None, None).await?;
    if failed > 0 {
        return Err(Failure::verdict(format!(
            "replay of {id} failed (audit {audit_id})"
        )));
    }
    Ok(format!(
        "replayed {id} ({}; audit {audit_id})",
        cell(&done["summary"])
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

    #[test]
    fn entry_ids_read_both_notations_and_print_one() {
        assert_eq!(
            split_id("oms.payment.commands.dlq/2@17"),
            Some(("oms.payment.commands.dlq", 2, 17))
        );
        assert_eq!(
            split_id("oms.payment.commands.dlq:2:17"),
            Some(("oms.payment.commands.dlq", 2, 17))
        );
        assert_eq!(
            normalize_id("oms.payment.commands.dlq:2:17"),
            "oms.payment.commands.dlq/2@17"
        );
        // Audit records name entries in either notation; what was sent counts in today's.
        let audit = [
            json!({"auditId": "a", "phase": "started", "entries": ["oms.a.dlq:0:1", "oms.a.dlq/1@2"]}),
            json!({"auditId": "a", "phase": "sent", "entry": "oms.a.dlq:0:1", "to": "oms.a/0@9"}),
        ];
        assert_eq!(
            replayed_ids(&audit),
            BTreeSet::from(["oms.a.dlq/0@1".to_owned()])
        );
        for bad in [
            "",
            "oms.a.dlq",
            "oms.a.dlq/x@1",
            "oms.a.dlq/1@",
            "oms.a.dlq@1",
        ] {
            assert_eq!(split_id(bad), None, "{bad}");
        }
    }
}
