//! What `dlq list` and `dlq show` report: dead letters with their replay status, groups of them,
//! and one entry with its message, a decode attempt and its order now.

use std::collections::BTreeMap;

use oms_contracts::api::OrderView;
use oms_contracts::{routes, Envelope};
use serde::{Deserialize, Serialize};

use super::audit;
use super::entry::{entries, find, EntryView};
use crate::ctx::Ctx;
use crate::tail::TailLine;
use crate::Failure;

/// What dead letters are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// Error class.
    Error,
    /// Origin topic.
    Origin,
    /// Message type.
    Type,
}

/// A group of dead letters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupRow {
    /// What they share.
    pub group: String,
    /// How many.
    pub count: u64,
    /// The earliest dead-lettered.
    pub first_seen: String,
    /// The latest.
    pub last_seen: String,
    /// How many a replay sent.
    pub replayed: u64,
}

/// Whether an entry's value decodes as an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decode {
    /// It decodes.
    pub ok: bool,
    /// Its message type, when it decodes.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub message_type: Option<String>,
    /// Its event id, when it decodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<uuid::Uuid>,
    /// The error class, when it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One dead letter in full (`dlq show`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shown {
    /// The entry.
    pub entry: EntryView,
    /// Its message as read.
    pub message: TailLine,
    /// A decode attempt of its value.
    pub decode: Decode,
    /// Its order now, when the key is an order id the order service knows.
    pub order: Option<OrderView>,
}

/// The dead letters (of one origin topic, or all) matching `conditions`.
pub async fn list(
    ctx: &Ctx,
    topic: Option<&str>,
    conditions: &[crate::filter::Where],
) -> Result<Vec<EntryView>, Failure> {
    let mut all = entries(ctx, topic).await?;
    all.retain(|e| crate::filter::all_match(conditions, &e.document()));
    let replayed = audit::replayed_ids(&audit::records(ctx).await?);
    Ok(all
        .iter()
        .map(|e| e.view(replayed.contains(&e.id)))
        .collect())
}

/// `entries` grouped `by`, in group order.
pub fn groups(entries: &[EntryView], by: GroupBy) -> Vec<GroupRow> {
    let mut groups: BTreeMap<String, GroupRow> = BTreeMap::new();
    for e in entries {
        let key = match by {
            GroupBy::Error => &e.error_class,
            GroupBy::Origin => &e.origin_topic,
            GroupBy::Type => &e.message_type,
        };
        let g = groups.entry(key.clone()).or_insert_with(|| GroupRow {
            group: key.clone(),
            count: 0,
            first_seen: e.failed_at.clone(),
            last_seen: e.failed_at.clone(),
            replayed: 0,
        });
        g.count += 1;
        if e.failed_at < g.first_seen {
            g.first_seen = e.failed_at.clone();
        }
        if e.failed_at > g.last_seen {
            g.last_seen = e.failed_at.clone();
        }
        g.replayed += u64::from(e.replayed);
    }
    groups.into_values().collect()
}

/// The dead letter `id` in full.
pub async fn show(ctx: &Ctx, id: &str) -> Result<Shown, Failure> {
    let e = find(ctx, id).await?;
    let decode = match e.record.value.as_deref().map(Envelope::decode) {
        Some(Ok(env)) => Decode {
            ok: true,
            message_type: Some(env.message_type().as_str().to_owned()),
            event_id: Some(env.event_id),
            class: None,
            error: None,
        },
        Some(Err(err)) => Decode {
            ok: false,
            message_type: None,
            event_id: None,
            class: Some(err.class().to_string()),
            error: Some(err.to_string()),
        },
        None => Decode {
            ok: false,
            message_type: None,
            event_id: None,
            class: None,
            error: Some("no value".into()),
        },
    };
    let order = match e
        .record
        .key_text()
        .filter(|k| uuid::Uuid::parse_str(k).is_ok())
    {
        Some(k) => ctx.read_opt(routes::GET_ORDER, &[&k]).await.ok().flatten(),
        None => None,
    };
    let replayed = audit::replayed_ids(&audit::records(ctx).await?).contains(&e.id);
    Ok(Shown {
        entry: e.view(replayed),
        message: e.record.line(),
        decode,
        order,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, class: &str, at: &str, replayed: bool) -> EntryView {
        EntryView {
            id: id.into(),
            origin_topic: "oms.payment.commands".into(),
            key: None,
            message_type: "payment.authorize".into(),
            error_class: class.into(),
            error: "boom".into(),
            service: "payment".into(),
            failed_at: at.into(),
            replayed,
        }
    }

    #[test]
    fn groups_count_their_entries_span_and_replays() {
        let all = [
            entry("a", "permanent", "t2", false),
            entry("b", "transient", "t1", true),
            entry("c", "permanent", "t1", true),
            entry("d", "permanent", "t3", false),
        ];
        let g = groups(&all, GroupBy::Error);
        assert_eq!(g.len(), 2);
        assert_eq!(
            (
                g[0].group.as_str(),
                g[0].count,
                g[0].first_seen.as_str(),
                g[0].last_seen.as_str(),
                g[0].replayed
            ),
            ("permanent", 3, "t1", "t3", 1)
        );
        assert_eq!((g[1].group.as_str(), g[1].count), ("transient", 1));
        assert_eq!(groups(&all, GroupBy::Origin).len(), 1);
    }
}
