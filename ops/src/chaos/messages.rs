//! One-shot faults: poison messages and duplicates, written to a topic; nothing is recorded.

use crate::ctx::Ctx;
use crate::tail::{self, From};
use crate::Failure;
use oms_contracts::headers;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;

use super::record::now;
use super::PoisonKind;

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

pub(super) fn topic_name(ctx: &Ctx, topic: &str) -> Result<String, Failure> {
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
