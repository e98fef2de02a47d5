//! `omsctl groups list | describe | reset-offsets`: consumer groups, their lag per partition, and
//! moving their committed offsets with a plan first.
//!
//! A reset prints its plan and changes nothing unless `--execute` is given, and it refuses while
//! the group has live members (they would overwrite the new offsets with their own next commit).
//! omsctl commits the new offsets as the group, without joining it.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::ctx::{Ctx, Kafka};
use crate::topics::{describe_group, GroupView};
use crate::Failure;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Where to move the offsets.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[cfg_attr(feature = "clap", group(required = true, multiple = false))]
pub struct Target {
    /// The first offset at or after this time: @TIMESTAMP (RFC 3339) or @-DURATION (@-10m), as
    /// `tail --from` takes it.
    #[cfg_attr(feature = "clap", arg(long, value_parser = parse_datetime, allow_hyphen_values = true))]
    to_datetime: Option<i64>,
    /// This offset in every partition (clamped to what the partition holds).
    #[cfg_attr(feature = "clap", arg(long))]
    to_offset: Option<i64>,
    /// The oldest message held.
    #[cfg_attr(feature = "clap", arg(long))]
    to_earliest: bool,
    /// The end: skip everything not yet handled.
    #[cfg_attr(feature = "clap", arg(long))]
    to_latest: bool,
    /// Move by N (negative: back, re-handle the last N) from the committed offset.
    #[cfg_attr(feature = "clap", arg(long, allow_hyphen_values = true))]
    shift_by: Option<i64>,
}

/// `--to-datetime`: `@TIMESTAMP` (RFC 3339) or `@-DURATION`, as `tail --from`; the bare forms too
/// (ms since the epoch).
pub fn parse_datetime(s: &str) -> Result<i64, String> {
    let bad = || {
        format!("invalid --to-datetime {s:?}: expected @TIMESTAMP (RFC 3339) or @-DURATION (e.g. @-10m), as tail --from takes")
    };
    // `tail --from`'s syntax (`@2026-12-01T10:00:00Z`, `@-10m`), and the older bare forms.
    let s = s.strip_prefix('@').unwrap_or(s);
    if let Some(d) = s.strip_prefix('-') {
        let d = humantime::parse_duration(d).map_err(|_| bad())?;
        let at = chrono::Utc::now() - chrono::TimeDelta::from_std(d).map_err(|_| bad())?;
        return Ok(at.timestamp_millis());
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| bad())
}

/// A consumer group of `groups list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRow {
    /// Its name.
    pub group: String,
    /// Its state.
    pub state: String,
    /// How many members.
    pub members: usize,
    /// The topics it has committed offsets on (the OMS groups').
    pub topics: std::collections::BTreeSet<String>,
    /// Its lag (the OMS groups').
    pub lag: Option<i64>,
}

/// One consumer group in full (`groups describe`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDetail {
    /// Its name.
    pub group: String,
    /// Its state.
    pub state: String,
    /// Its members.
    pub members: Vec<crate::topics::MemberView>,
    /// Each partition's offsets and lag.
    pub partitions: Vec<PartitionLag>,
    /// The sum of their lag.
    pub lag: i64,
}

/// `groups reset`: what moves (or would move).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetReport {
    /// The group.
    pub group: String,
    /// Its state.
    pub state: String,
    /// Whether the moves were made.
    pub executed: bool,
    /// The moves.
    pub plan: Vec<Move>,
}

/// One partition of a group: offsets and lag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionLag {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Committed offset (the next message the group handles), if any.
    pub committed: Option<i64>,
    /// Oldest offset held.
    pub start: i64,
    /// End offset (high watermark).
    pub end: i64,
    /// Messages not yet handled.
    pub lag: i64,
    /// The member holding it, when the broker says.
    pub member: Option<String>,
}

/// Lag of a partition: from the committed offset, or from the oldest held when none is.
pub fn lag(committed: Option<i64>, start: i64, end: i64) -> i64 {
    (end - committed.unwrap_or(start).max(start)).max(0)
}

/// What a reset does to one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Move {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Committed offset now.
    pub current: Option<i64>,
    /// Committed offset after.
    pub target: i64,
    /// Lag after.
    pub lag_after: i64,
}

/// Where a reset puts one partition; `found` is the offset looked up for a time (None: nothing
/// at or after it, so the end). Every target is clamped to what the partition holds.
pub fn plan_one(target: &Target, p: &PartitionLag, found: Option<i64>) -> i64 {
    let wanted = if target.to_earliest {
        p.start
    } else if target.to_latest {
        p.end
    } else if let Some(o) = target.to_offset {
        o
    } else if let Some(n) = target.shift_by {
        p.committed.unwrap_or(p.start).saturating_add(n)
    } else {
        found.unwrap_or(p.end)
    };
    wanted.clamp(p.start, p.end)
}

fn client(brokers: &Kafka, group: &str) -> Result<BaseConsumer, Failure> {
    Ok(brokers
        .config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set_log_level(rdkafka::config::RDKafkaLogLevel::Emerg)
        .create()
        .context("creating the Kafka client")?)
}

/// A group named on the command line: an OMS group by its contract name (`oms-payment`) gets
/// the topic prefix; any other name is taken as it is.
/// A group id as deployed (the prefix added unless given).
pub fn group_name(ctx: &Ctx, group: &str) -> String {
    let known = ctx.consumer_groups();
    let prefixed = format!("{}{group}", ctx.topics.prefix());
    if !known.iter().any(|(g, _)| g == group) && known.iter().any(|(g, _)| *g == prefixed) {
        prefixed
    } else {
        group.to_owned()
    }
}

/// The topics `group` reads: the topology's for an OMS group, else every topic on which it has
/// a committed offset.
fn topics_of(ctx: &Ctx, group: &str) -> Option<Vec<String>> {
    ctx.consumer_groups()
        .into_iter()
        .find(|(g, _)| g == group)
        .map(|(_, t)| t)
}

/// Per-partition offsets and lag of `group` over `topics` (None: every topic, keeping the
/// partitions it committed on). Blocking.
fn partitions(
    brokers: &Kafka,
    group: &str,
    topics: Option<&[String]>,
    view: &GroupView,
) -> Result<Vec<PartitionLag>, Failure> {
    let consumer = client(brokers, group)?;
    let meta = consumer
        .fetch_metadata(None, TIMEOUT)
        .map_err(|e| Failure::usage(format!("broker unreachable at {brokers}: {e}")))?;
    if let Some(wanted) = topics {
        if let Some(missing) = wanted
            .iter()
            .find(|w| !meta.topics().iter().any(|t| t.name() == w.as_str()))
        {
            return Err(Failure::usage(format!("no topic {missing:?} on {brokers}")));
        }
    }
    let mut tpl = TopicPartitionList::new();
    for t in meta.topics() {
        if topics.is_some_and(|w| !w.iter().any(|n| n == t.name())) {
            continue;
        }
        if topics.is_none() && t.name().starts_with("__") {
            continue;
        }
        for p in t.partitions() {
            tpl.add_partition(t.name(), p.id());
        }
    }
    let committed = consumer
        .committed_offsets(tpl.clone(), TIMEOUT)
        .map_err(|e| Failure::usage(format!("committed offsets of {group}: {e}")))?;
    let owners: BTreeMap<(String, i32), String> = view
        .members
        .iter()
        .flat_map(|m| {
            m.assigned
                .iter()
                .map(move |(t, p)| ((t.clone(), *p), m.client_id.clone()))
        })
        .collect();
    let mut out = Vec::new();
    for e in tpl.elements() {
        let at = committed
            .find_partition(e.topic(), e.partition())
            .and_then(|c| c.offset().to_raw())
            .filter(|o| *o >= 0);
        if topics.is_none() && at.is_none() {
            continue;
        }
        let (start, end) = oms_kafka::watermarks(&consumer, e.topic(), e.partition(), TIMEOUT)
            .with_context(|| format!("watermarks of {}/{}", e.topic(), e.partition()))?;
        out.push(PartitionLag {
            topic: e.topic().to_owned(),
            partition: e.partition(),
            committed: at,
            start,
            end,
            lag: lag(at, start, end),
            member: owners.get(&(e.topic().to_owned(), e.partition())).cloned(),
        });
    }
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(out)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(anyhow::Error::from)?
}

/// The consumer groups: the OMS services' (topics and total lag) and any other the broker
/// knows (state and members).
pub async fn list(ctx: &Ctx) -> Result<Vec<GroupRow>, Failure> {
    let brokers = ctx.brokers.clone();
    let known = ctx.consumer_groups();
    let rows = blocking(move || {
        let listed = brokers
            .asking_client()?
            .fetch_group_list(None, TIMEOUT)
            .map_err(|e| Failure::usage(format!("listing groups at {brokers}: {e}")))?;
        // One ListGroups answer gives every group's state and members. Lag is worked out for
        // the OMS groups, whose topics the topology names; any other group's lag takes a scan of
        // every topic's committed offsets, which `groups describe GROUP` does for one group.
        let view = |name: &str| {
            listed
                .groups()
                .iter()
                .find(|g| g.name() == name)
                .map(GroupView::of)
                .unwrap_or_else(GroupView::dead)
        };
        let mut rows = Vec::new();
        for (name, topics) in &known {
            let view = view(name);
            let parts = partitions(&brokers, name, Some(topics), &view)?;
            rows.push(GroupRow {
                group: name.clone(),
                state: view.state,
                members: view.members.len(),
                topics: parts.iter().map(|p| p.topic.clone()).collect(),
                lag: Some(parts.iter().map(|p| p.lag).sum()),
            });
        }
        for g in listed.groups() {
            if known.iter().any(|(n, _)| n == g.name()) || g.name() == "omsctl-reader" {
                continue;
            }
            let view = GroupView::of(g);
            rows.push(GroupRow {
                group: g.name().to_owned(),
                state: view.state,
                members: view.members.len(),
                topics: std::collections::BTreeSet::new(),
                lag: None,
            });
        }
        Ok(rows)
    })
    .await?;
    Ok(rows)
}

/// One group: members and, per partition, committed and end offsets, lag and holder.
pub async fn describe(ctx: &Ctx, group: &str) -> Result<GroupDetail, Failure> {
    let brokers = ctx.brokers.clone();
    let topics = topics_of(ctx, group);
    let name = group.to_owned();
    let (view, parts) = blocking(move || {
        let view = describe_group(&brokers, &name)?;
        let parts = partitions(&brokers, &name, topics.as_deref(), &view)?;
        Ok((view, parts))
    })
    .await?;
    if view.state == "Dead" && parts.is_empty() {
        return Err(Failure::usage(format!(
            "no consumer group {group:?} (see `omsctl groups list`)"
        )));
    }
    let doc = GroupDetail {
        group: group.to_owned(),
        lag: parts.iter().map(|p| p.lag).sum(),
        state: view.state.clone(),
        members: view.members.clone(),
        partitions: parts.clone(),
    };
    Ok(doc)
}

/// Plans (and with `execute` commits) moving `group`'s offsets on `topics` (contract names;
/// none: every topic it reads) to `target`.
pub async fn reset(
    ctx: &Ctx,
    group: &str,
    topics: &[String],
    target: Target,
    execute: bool,
) -> Result<ResetReport, Failure> {
    let topics: Option<Vec<String>> = if topics.is_empty() {
        topics_of(ctx, group)
    } else {
        Some(topics.iter().map(|t| ctx.deployed_topic(t)).collect())
    };
    if let Some(o) = target.to_offset.filter(|o| *o < 0) {
        return Err(Failure::usage(format!(
            "invalid --to-offset {o}: offsets start at 0"
        )));
    }
    let brokers = ctx.brokers.clone();
    let group = group.to_owned();
    let name = group.clone();
    let (view, moves) = blocking(move || {
        let group = name;
        let view = describe_group(&brokers, &group)?;
        let parts = partitions(&brokers, &group, topics.as_deref(), &view)?;
        if parts.is_empty() {
            return Err(Failure::usage(format!(
                "group {group:?} has no committed offsets to reset; name its topics with --topic"
            )));
        }
        let consumer = client(&brokers, &group)?;
        let found: BTreeMap<(String, i32), i64> = match target.to_datetime {
            None => BTreeMap::new(),
            Some(ms) => {
                let mut tpl = TopicPartitionList::new();
                for p in &parts {
                    tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(ms))
                        .context("looking up offsets for the time")?;
                }
                consumer
                    .offsets_for_times(tpl, TIMEOUT)
                    .map_err(|e| Failure::usage(format!("offsets for the time: {e}")))?
                    .elements()
                    .iter()
                    .filter_map(|e| match e.offset() {
                        Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
                        _ => None,
                    })
                    .collect()
            }
        };
        let moves: Vec<Move> = parts
            .iter()
            .map(|p| {
                let to = plan_one(
                    &target,
                    p,
                    found.get(&(p.topic.clone(), p.partition)).copied(),
                );
                Move {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    current: p.committed,
                    target: to,
                    lag_after: p.end - to,
                }
            })
            .collect();
        if execute {
            if !view.members.is_empty() || !matches!(view.state.as_str(), "Empty" | "Dead") {
                return Err(Failure::verdict(format!(
                    "group {group} has {} live member(s) ({}): stop its consumers first (`omsctl stack stop SERVICE`), then reset",
                    view.members.len(),
                    view.state
                )));
            }
            let mut tpl = TopicPartitionList::new();
            for m in &moves {
                tpl.add_partition_offset(&m.topic, m.partition, Offset::Offset(m.target))
                    .context("building the commit")?;
            }
            consumer
                .commit(&tpl, CommitMode::Sync)
                .map_err(|e| Failure::verdict(format!("committing the new offsets of {group}: {e}")))?;
        }
        Ok((view, moves))
    })
    .await?;
    let doc = ResetReport {
        group: group.clone(),
        state: view.state.clone(),
        executed: execute,
        plan: moves.clone(),
    };
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(committed: Option<i64>, start: i64, end: i64) -> PartitionLag {
        PartitionLag {
            topic: "t".into(),
            partition: 0,
            committed,
            start,
            end,
            lag: lag(committed, start, end),
            member: None,
        }
    }

    fn target() -> Target {
        Target {
            to_datetime: None,
            to_offset: None,
            to_earliest: false,
            to_latest: false,
            shift_by: None,
        }
    }

    #[test]
    fn lag_counts_from_the_committed_offset_or_the_oldest_held() {
        assert_eq!(lag(Some(7), 0, 10), 3);
        assert_eq!(lag(None, 4, 10), 6);
        // Committed below what retention still holds: only what is held is lag.
        assert_eq!(lag(Some(1), 4, 10), 6);
        assert_eq!(lag(Some(12), 0, 10), 0);
    }

    #[test]
    fn every_kind_of_target_is_clamped_to_what_the_partition_holds() {
        let p = part(Some(6), 2, 10);
        let t = |f: &dyn Fn(&mut Target)| {
            let mut t = target();
            f(&mut t);
            t
        };
        assert_eq!(plan_one(&t(&|t| t.to_earliest = true), &p, None), 2);
        assert_eq!(plan_one(&t(&|t| t.to_latest = true), &p, None), 10);
        assert_eq!(plan_one(&t(&|t| t.to_offset = Some(5)), &p, None), 5);
        assert_eq!(plan_one(&t(&|t| t.to_offset = Some(50)), &p, None), 10);
        assert_eq!(plan_one(&t(&|t| t.shift_by = Some(-3)), &p, None), 3);
        assert_eq!(plan_one(&t(&|t| t.shift_by = Some(-30)), &p, None), 2);
        assert_eq!(plan_one(&t(&|t| t.shift_by = Some(i64::MAX)), &p, None), 10);
        // Without a committed offset a shift counts from the oldest held.
        assert_eq!(
            plan_one(&t(&|t| t.shift_by = Some(1)), &part(None, 2, 10), None),
            3
        );
        let at = t(&|t| t.to_datetime = Some(0));
        assert_eq!(plan_one(&at, &p, Some(4)), 4);
        // Nothing at or after the time: the end.
        assert_eq!(plan_one(&at, &p, None), 10);
    }

    #[test]
    fn datetimes_parse_and_bad_ones_are_named() {
        assert_eq!(
            parse_datetime("2026-11-23T10:00:00Z"),
            Ok(1_795_428_000_000)
        );
        assert!(parse_datetime("-10m").is_ok_and(|ms| ms < chrono::Utc::now().timestamp_millis()));
        // The syntax of `tail --from` too.
        assert_eq!(
            parse_datetime("@2026-11-23T10:00:00Z"),
            Ok(1_795_428_000_000)
        );
        assert!(parse_datetime("@-10m").is_ok_and(|ms| ms < chrono::Utc::now().timestamp_millis()));
        for bad in [
            "",
            "yesterday",
            "-",
            "-10 parsecs",
            "2026-13-01",
            "@",
            "@soon",
        ] {
            let e = parse_datetime(bad).expect_err(bad);
            assert!(e.contains("--to-datetime"), "{e}");
        }
    }
}
