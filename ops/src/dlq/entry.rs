//! Dead letters as read from the DLQ topics, and their ids.
//!
//! An entry's id is its coordinates `<dlq topic>/<partition>@<offset>` (without the topic
//! prefix; the older `<dlq topic>:<partition>:<offset>` is still accepted).

use oms_contracts::headers::dlq as dlq_headers;
use serde::{Deserialize, Serialize};

use crate::ctx::Ctx;
use crate::render::coordinates;
use crate::tail::{self, Record};
use crate::Failure;

/// One dead letter: the record and what its DLQ headers say.
pub struct Entry {
    /// Its id (`<dlq topic>/<partition>@<offset>`).
    pub id: String,
    /// The record as read.
    pub record: Record,
    /// Origin topic (contract name).
    pub origin: String,
    /// Error class.
    pub class: String,
    /// Error message.
    pub error: String,
    /// Message type.
    pub message_type: String,
    /// The service that dead-lettered it.
    pub service: String,
    /// When it was dead-lettered.
    pub failed_at: String,
}

/// A dead letter as `dlq list` and the TUI show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryView {
    /// Entry id.
    pub id: String,
    /// Origin topic (contract name).
    pub origin_topic: String,
    /// Key (the order id), when it is text.
    pub key: Option<String>,
    /// Message type.
    #[serde(rename = "type")]
    pub message_type: String,
    /// Error class.
    pub error_class: String,
    /// Error message.
    pub error: String,
    /// The service that dead-lettered it.
    pub service: String,
    /// When it was dead-lettered.
    pub failed_at: String,
    /// Whether a replay sent it.
    pub replayed: bool,
}

impl Entry {
    /// The entry of a record read from a DLQ topic.
    pub fn of(ctx: &Ctx, record: Record) -> Self {
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

    /// The entry as `--where` reads it ([`crate::filter`]): the record's document, with
    /// `dlq.class`, `dlq.origin`, `dlq.service`, `dlq.error` and `dlq.failedAt`, and the
    /// message type under `type` when the value does not say it.
    pub fn document(&self) -> serde_json::Value {
        let mut doc = self.record.document();
        if let serde_json::Value::Object(fields) = &mut doc {
            fields
                .entry("type")
                .or_insert_with(|| self.message_type.clone().into());
            fields.insert(
                "dlq".to_owned(),
                serde_json::json!({
                    "class": self.class,
                    "origin": self.origin,
                    "service": self.service,
                    "error": self.error,
                    "failedAt": self.failed_at,
                }),
            );
        }
        doc
    }

    /// As `dlq list` shows it.
    pub fn view(&self, replayed: bool) -> EntryView {
        EntryView {
            id: self.id.clone(),
            origin_topic: self.origin.clone(),
            key: self.record.key_text(),
            message_type: self.message_type.clone(),
            error_class: self.class.clone(),
            error: self.error.clone(),
            service: self.service.clone(),
            failed_at: self.failed_at.clone(),
            replayed,
        }
    }
}

/// The DLQ topics to read (as deployed): one origin topic's (or a DLQ named as such), else all.
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

/// Every record of `topics`, read without a consumer group.
pub async fn read(ctx: &Ctx, topics: Vec<String>) -> Result<Vec<Record>, Failure> {
    let brokers = ctx.brokers.clone();
    tokio::task::spawn_blocking(move || tail::scan(&brokers, &topics, |_| true))
        .await
        .map_err(anyhow::Error::from)?
}

/// The dead letters of one origin topic, or of all.
pub async fn entries(ctx: &Ctx, topic: Option<&str>) -> Result<Vec<Entry>, Failure> {
    Ok(read(ctx, dlq_topics(ctx, topic))
        .await?
        .into_iter()
        .map(|r| Entry::of(ctx, r))
        .collect())
}

/// An entry id as (unprefixed DLQ topic, partition, offset), from `topic/partition@offset` or
/// the older `topic:partition:offset`.
pub fn split_id(id: &str) -> Option<(&str, i32, i64)> {
    let (rest, offset) = id.rsplit_once('@').or_else(|| id.rsplit_once(':'))?;
    let (topic, partition) = rest.rsplit_once('/').or_else(|| rest.rsplit_once(':'))?;
    Some((topic, partition.parse().ok()?, offset.parse().ok()?))
}

/// An id in today's notation (unchanged when it does not parse).
pub fn normalize_id(id: &str) -> String {
    split_id(id)
        .map(|(t, p, o)| coordinates(t, p, o))
        .unwrap_or_else(|| id.to_owned())
}

/// A user's entry id, checked: (DLQ topic as deployed, partition, offset).
pub fn parse_id(ctx: &Ctx, id: &str) -> Result<(String, i32, i64), Failure> {
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

/// The entry `id`, read from its topic.
pub async fn find(ctx: &Ctx, id: &str) -> Result<Entry, Failure> {
    let (topic, partition, offset) = parse_id(ctx, id)?;
    let records = read(ctx, vec![topic]).await?;
    records
        .into_iter()
        .find(|r| r.partition == partition && r.offset == offset)
        .map(|r| Entry::of(ctx, r))
        .ok_or_else(|| Failure::verdict(format!("no dead letter {id}")))
}

#[cfg(test)]
mod tests {
    use super::*;

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
