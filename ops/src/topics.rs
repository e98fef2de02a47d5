//! The OMS topics with message counts and consumer lag, partition leadership, and consumer
//! groups as the broker describes them.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::TopicPartitionList;

use serde::Serialize;

use crate::ctx::Kafka;
use crate::Failure;

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicRow {
    /// Name.
    pub topic: String,
    /// Partition count.
    pub partitions: usize,
    /// Messages held (high minus low watermark, summed).
    pub messages: i64,
    /// High watermark per partition.
    pub end_offsets: Vec<i64>,
    /// Lag of each consumer group reading the topic (messages not yet handled).
    pub lag: BTreeMap<String, i64>,
}

/// Topics with counts, and the lag of `groups` (group, topics it reads).
pub fn list(
    brokers: &Kafka,
    wanted: &[String],
    groups: &[(String, Vec<String>)],
) -> Result<Vec<TopicRow>, Failure> {
    let consumer = brokers.asking_client()?;
    let timeout = Duration::from_secs(5);
    let metadata = brokers.metadata(&consumer, None)?;
    let mut rows = Vec::new();
    for topic in metadata.topics() {
        if !wanted.iter().any(|w| w == topic.name()) {
            continue;
        }
        let mut messages = 0;
        let mut end_offsets = Vec::new();
        for p in topic.partitions() {
            let (low, high) = oms_kafka::watermarks(&consumer, topic.name(), p.id(), timeout)
                .with_context(|| format!("watermarks of {}/{}", topic.name(), p.id()))?;
            messages += high - low;
            end_offsets.push(high);
        }
        let mut lag = BTreeMap::new();
        for (group, reads) in groups {
            if !reads.iter().any(|t| t == topic.name()) {
                continue;
            }
            let reader: BaseConsumer = brokers
                .config()
                .set("group.id", group)
                .set("enable.auto.commit", "false")
                .set_log_level(rdkafka::config::RDKafkaLogLevel::Emerg)
                .create()
                .context("creating the Kafka client")?;
            let mut tpl = TopicPartitionList::new();
            for p in topic.partitions() {
                tpl.add_partition(topic.name(), p.id());
            }
            let committed = reader
                .committed_offsets(tpl, timeout)
                .with_context(|| format!("committed offsets of {group}"))?;
            let mut behind = 0;
            for (i, p) in topic.partitions().iter().enumerate() {
                let end = end_offsets.get(i).copied().unwrap_or(0);
                let at = committed
                    .find_partition(topic.name(), p.id())
                    .and_then(|e| e.offset().to_raw())
                    .filter(|o| *o >= 0)
                    .unwrap_or(0);
                behind += (end - at).max(0);
            }
            lag.insert(group.clone(), behind);
        }
        rows.push(TopicRow {
            topic: topic.name().to_owned(),
            partitions: topic.partitions().len(),
            messages,
            end_offsets,
            lag,
        });
    }
    rows.sort_by(|a, b| a.topic.cmp(&b.topic));
    Ok(rows)
}

/// One partition's leadership as the cluster's metadata gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The node that leads it (-1: none, while a new leader is elected).
    pub leader: i32,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
}

/// The cluster as its metadata shows it: the brokers that answer, and who leads each partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leaders {
    /// Ids of the live brokers, ascending.
    pub brokers: Vec<i32>,
    /// Each partition of the topics asked for.
    pub partitions: Vec<Leadership>,
}

impl Leaders {
    /// How many of the partitions node `id` leads.
    pub fn led_by(&self, id: i32) -> usize {
        self.partitions.iter().filter(|p| p.leader == id).count()
    }
}

/// The live brokers and who leads each partition of `wanted` (topics the cluster does not know
/// are left out).
pub fn leadership(brokers: &Kafka, wanted: &[String]) -> Result<Leaders, Failure> {
    let metadata = brokers.metadata(&brokers.asking_client()?, None)?;
    let mut out = Vec::new();
    for topic in metadata.topics() {
        if !wanted.iter().any(|w| w == topic.name()) {
            continue;
        }
        for p in topic.partitions() {
            out.push(Leadership {
                topic: topic.name().to_owned(),
                partition: p.id(),
                leader: p.leader(),
                isr: p.isr().to_vec(),
            });
        }
    }
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    let mut live: Vec<i32> = metadata.brokers().iter().map(|b| b.id()).collect();
    live.sort_unstable();
    Ok(Leaders {
        brokers: live,
        partitions: out,
    })
}

/// One topic in full (`topics describe`): each partition's leader, replicas, in-sync replicas
/// and offsets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicDetail {
    /// Name, as deployed.
    pub topic: String,
    /// Its partitions, in order.
    pub partitions: Vec<PartitionDetail>,
    /// The topic configs set on it, not the cluster's defaults (`retention.ms`, ...).
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionDetail {
    /// Partition id.
    pub partition: i32,
    /// The node that leads it (-1: none now).
    pub leader: i32,
    /// The nodes that hold a copy.
    pub replicas: Vec<i32>,
    /// The copies in sync with the leader.
    pub isr: Vec<i32>,
    /// The oldest offset held.
    pub start: i64,
    /// The next offset to be written.
    pub end: i64,
}

/// `topic` (as deployed) in full; an error names a topic the cluster does not have.
pub fn describe(brokers: &Kafka, topic: &str) -> Result<TopicDetail, Failure> {
    let consumer = brokers.asking_client()?;
    let metadata = brokers.metadata(&consumer, Some(topic))?;
    let Some(t) = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
    else {
        return Err(Failure::usage(format!(
            "no topic {topic:?} on {brokers} (see `omsctl topics list`)"
        )));
    };
    let mut partitions = Vec::new();
    for p in t.partitions() {
        let (start, end) = oms_kafka::watermarks(&consumer, topic, p.id(), Duration::from_secs(5))
            .with_context(|| format!("watermarks of {topic}/{}", p.id()))?;
        partitions.push(PartitionDetail {
            partition: p.id(),
            leader: p.leader(),
            replicas: p.replicas().to_vec(),
            isr: p.isr().to_vec(),
            start,
            end,
        });
    }
    partitions.sort_by_key(|p| p.partition);
    Ok(TopicDetail {
        topic: topic.to_owned(),
        partitions,
        configs: BTreeMap::new(),
    })
}

/// The configs set on `topic` (those that are not the cluster's defaults).
pub async fn configs(brokers: &Kafka, topic: &str) -> Result<BTreeMap<String, String>, Failure> {
    use rdkafka::admin::{AdminOptions, ResourceSpecifier};
    let admin = admin(brokers)?;
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let answers = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &options)
        .await
        .map_err(|e| Failure::usage(format!("broker unreachable at {brokers}: {e}")))?;
    let mut out = BTreeMap::new();
    for answer in answers {
        let resource = answer.map_err(|code| refused(topic, code))?;
        for entry in resource.entries {
            if !entry.is_default {
                if let Some(value) = entry.value {
                    out.insert(entry.name, value);
                }
            }
        }
    }
    Ok(out)
}

/// A topic `topic create` made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    /// Its name.
    pub topic: String,
    /// Its partitions.
    pub partitions: i32,
    /// Copies of each partition (`None`: the cluster's default).
    pub replication: Option<i32>,
    /// Topic configs set at creation (`retention.ms`, `cleanup.policy`, ...).
    pub configs: BTreeMap<String, String>,
}

/// What `topic delete` removed, or would.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deleted {
    /// Its name.
    pub topic: String,
    /// Its partitions.
    pub partitions: usize,
    /// The messages it held.
    pub messages: i64,
    /// Whether it was deleted (false: the plan only).
    pub deleted: bool,
}

/// Checks a topic name as Kafka would (1 to 249 of `a-z A-Z 0-9 . _ -`, not `.` or `..`), and
/// refuses the OMS's own names: `topic ensure` makes those, and deleting one breaks the
/// saga. `prefix` is the context's topic prefix.
pub fn check_user_topic(name: &str, prefix: &str) -> Result<(), Failure> {
    let legal = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !legal {
        return Err(Failure::usage(format!(
            "invalid topic name {name:?}: 1 to 249 of a-z, A-Z, 0-9, '.', '_' and '-', not '.' or '..'"
        )));
    }
    let bare = name.strip_prefix(prefix).unwrap_or(name);
    if bare.starts_with("oms.") || name.starts_with("oms.") {
        return Err(Failure::usage(format!(
            "{name} is an OMS topic: `omsctl topic ensure` makes them, and they are not deleted \
             while the OMS runs (`omsctl stack wipe` removes a local stack's)"
        )));
    }
    Ok(())
}

/// `KEY=VALUE` of `--config`.
pub fn parse_config(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, v)| !k.trim().is_empty() && !v.is_empty())
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .ok_or_else(|| {
            format!("invalid --topic-config {s:?}: expected KEY=VALUE, e.g. retention.ms=86400000")
        })
}

fn admin(
    brokers: &Kafka,
) -> Result<rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext>, Failure> {
    Ok(brokers
        .config()
        .set_log_level(rdkafka::config::RDKafkaLogLevel::Emerg)
        .create()
        .context("creating the Kafka admin client")?)
}

/// The answer of an admin request for one topic as a [`Failure`]: the cluster's refusal is
/// the user's to fix (exit 2), naming the topic.
fn refused(topic: &str, code: rdkafka::types::RDKafkaErrorCode) -> Failure {
    use rdkafka::types::RDKafkaErrorCode as Code;
    match code {
        Code::TopicAlreadyExists => Failure::usage(format!("topic {topic} exists already")),
        Code::UnknownTopicOrPartition => Failure::usage(format!("no topic {topic:?}")),
        Code::InvalidReplicationFactor => Failure::usage(format!(
            "topic {topic}: the cluster refused the replication factor (more copies than nodes?)"
        )),
        Code::InvalidConfig => Failure::usage(format!(
            "topic {topic}: the cluster refused a --topic-config"
        )),
        other => Failure::usage(format!("topic {topic}: the cluster refused: {other}")),
    }
}

/// Creates `topic` (checked with [`check_user_topic`] first).
pub async fn create(
    brokers: &Kafka,
    prefix: &str,
    topic: &str,
    partitions: i32,
    replication: Option<i32>,
    configs: &BTreeMap<String, String>,
) -> Result<Created, Failure> {
    use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
    check_user_topic(topic, prefix)?;
    if partitions < 1 {
        return Err(Failure::usage("--partitions must be at least 1"));
    }
    if replication.is_some_and(|r| r < 1) {
        return Err(Failure::usage("--replication-factor must be at least 1"));
    }
    let admin = admin(brokers)?;
    let mut new = NewTopic::new(
        topic,
        partitions,
        TopicReplication::Fixed(replication.unwrap_or(-1)),
    );
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics([&new], &options)
        .await
        .map_err(|e| Failure::usage(format!("broker unreachable at {brokers}: {e}")))?;
    for result in results {
        if let Err((t, code)) = result {
            return Err(refused(&t, code));
        }
    }
    Ok(Created {
        topic: topic.to_owned(),
        partitions,
        replication,
        configs: configs.clone(),
    })
}

/// What deleting `topic` would remove (checked with [`check_user_topic`]): the plan
/// [`delete`] carries out.
pub async fn deletion_plan(brokers: &Kafka, prefix: &str, topic: &str) -> Result<Deleted, Failure> {
    check_user_topic(topic, prefix)?;
    let detail = {
        let brokers = brokers.clone();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || describe(&brokers, &topic))
            .await
            .map_err(anyhow::Error::from)??
    };
    Ok(Deleted {
        topic: topic.to_owned(),
        partitions: detail.partitions.len(),
        messages: detail.partitions.iter().map(|p| p.end - p.start).sum(),
        deleted: false,
    })
}

/// Deletes the topic of `plan` ([`deletion_plan`]); the plan, marked deleted.
pub async fn delete(brokers: &Kafka, mut plan: Deleted) -> Result<Deleted, Failure> {
    use rdkafka::admin::AdminOptions;
    let admin = admin(brokers)?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .delete_topics(&[plan.topic.as_str()], &options)
        .await
        .map_err(|e| Failure::usage(format!("broker unreachable at {brokers}: {e}")))?;
    for result in results {
        if let Err((t, code)) = result {
            return Err(refused(&t, code));
        }
    }
    plan.deleted = true;
    Ok(plan)
}

/// The node that leads the most of `partitions` (the lowest id of those tied), if any leads.
pub fn busiest_leader(partitions: &[Leadership]) -> Option<i32> {
    let mut counts: BTreeMap<i32, usize> = BTreeMap::new();
    for p in partitions.iter().filter(|p| p.leader >= 0) {
        *counts.entry(p.leader).or_default() += 1;
    }
    let most = counts.values().copied().max()?;
    counts
        .into_iter()
        .find(|(_, n)| *n == most)
        .map(|(id, _)| id)
}

/// A consumer group as the broker describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupView {
    /// `Stable`, `PreparingRebalance`, `CompletingRebalance`, `Empty` or `Dead`.
    pub state: String,
    /// Its members.
    pub members: Vec<MemberView>,
}

/// A member of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    /// The member id the coordinator gave it.
    pub id: String,
    /// Its `client.id`.
    pub client_id: String,
    /// The address it connected from.
    pub host: String,
    /// The partitions assigned to it, as (topic, partition).
    pub assigned: Vec<(String, i32)>,
}

impl GroupView {
    /// Every partition assigned to a member.
    pub fn assigned(&self) -> Vec<(String, i32)> {
        let mut all: Vec<(String, i32)> = self
            .members
            .iter()
            .flat_map(|m| m.assigned.iter().cloned())
            .collect();
        all.sort();
        all.dedup();
        all
    }
}

/// Describes consumer group `group` (DescribeGroups).
pub fn describe_group(brokers: &Kafka, group: &str) -> Result<GroupView, Failure> {
    let list = brokers
        .asking_client()?
        .fetch_group_list(Some(group), Duration::from_secs(5))
        .map_err(|e| Failure::usage(format!("describing group {group} at {brokers}: {e}")))?;
    Ok(list
        .groups()
        .iter()
        .find(|g| g.name() == group)
        .map(GroupView::of)
        .unwrap_or_else(GroupView::dead))
}

impl GroupView {
    /// A group the broker does not know.
    pub fn dead() -> Self {
        GroupView {
            state: "Dead".into(),
            members: Vec::new(),
        }
    }

    /// A group as a ListGroups/DescribeGroups answer gives it.
    pub fn of(info: &rdkafka::groups::GroupInfo) -> Self {
        GroupView {
            state: info.state().to_owned(),
            members: info
                .members()
                .iter()
                .map(|m| MemberView {
                    id: m.id().to_owned(),
                    client_id: m.client_id().to_owned(),
                    host: m.client_host().to_owned(),
                    assigned: m
                        .assignment()
                        .and_then(parse_assignment)
                        .unwrap_or_default(),
                })
                .collect(),
        }
    }
}

/// The partitions of a consumer-protocol assignment (the member's part of a `consumer` group's
/// sync): version (i16), then topics as (name: i16-length string, partitions: i32 array), then
/// user data. `None` when the bytes are not such an assignment.
pub fn parse_assignment(bytes: &[u8]) -> Option<Vec<(String, i32)>> {
    struct Reader<'a>(&'a [u8]);
    impl Reader<'_> {
        fn take(&mut self, n: usize) -> Option<&[u8]> {
            if self.0.len() < n {
                return None;
            }
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            Some(head)
        }
        fn i16(&mut self) -> Option<i16> {
            self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
        }
        fn i32(&mut self) -> Option<i32> {
            self.take(4)
                .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        }
    }
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let mut r = Reader(bytes);
    r.i16().filter(|v| *v >= 0)?;
    let topics = usize::try_from(r.i32()?).ok()?;
    let mut out = Vec::new();
    for _ in 0..topics {
        let len = usize::try_from(r.i16()?).ok()?;
        let name = std::str::from_utf8(r.take(len)?).ok()?.to_owned();
        let count = usize::try_from(r.i32()?).ok()?;
        for _ in 0..count {
            out.push((name.clone(), r.i32()?));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busiest_leader_leads_the_most_partitions_ties_to_the_lowest_id() {
        let p = |partition: i32, leader: i32| Leadership {
            topic: "t".into(),
            partition,
            leader,
            isr: vec![],
        };
        assert_eq!(
            busiest_leader(&[p(0, 2), p(1, 3), p(2, 2), p(3, -1)]),
            Some(2)
        );
        assert_eq!(busiest_leader(&[p(0, 3), p(1, 1)]), Some(1));
        assert_eq!(busiest_leader(&[p(0, -1)]), None);
        assert_eq!(busiest_leader(&[]), None);
    }

    fn assignment(topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(1i16.to_be_bytes());
        b.extend((topics.len() as i32).to_be_bytes());
        for (name, parts) in topics {
            b.extend((name.len() as i16).to_be_bytes());
            b.extend(name.as_bytes());
            b.extend((parts.len() as i32).to_be_bytes());
            for p in *parts {
                b.extend(p.to_be_bytes());
            }
        }
        b.extend((-1i32).to_be_bytes());
        b
    }

    #[test]
    fn assignments_are_read_and_broken_ones_refused() {
        let bytes = assignment(&[("oms.a", &[0, 2]), ("oms.b", &[1])]);
        assert_eq!(
            parse_assignment(&bytes),
            Some(vec![
                ("oms.a".to_owned(), 0),
                ("oms.a".to_owned(), 2),
                ("oms.b".to_owned(), 1)
            ])
        );
        assert_eq!(parse_assignment(&[]), Some(Vec::new()));
        for cut in 1..bytes.len() - 4 {
            assert_eq!(parse_assignment(&bytes[..cut]), None, "cut at {cut}");
        }
        assert_eq!(parse_assignment(&[0xff, 0xff, 0, 0, 0, 0]), None);
    }

    #[test]
    fn user_topics_are_checked_as_kafka_would_and_the_oms_names_are_kept() {
        for ok in ["exports", "team-a.orders_v2", "x"] {
            assert!(check_user_topic(ok, "").is_ok(), "{ok}");
        }
        let long = "a".repeat(250);
        for bad in ["", ".", "..", "has space", "ümlaut", long.as_str()] {
            let e = check_user_topic(bad, "").expect_err(bad);
            assert!(
                e.error.to_string().contains("invalid topic name"),
                "{bad}: {}",
                e.error
            );
        }
        for oms in [
            "oms.order.events",
            "oms.payment.commands.dlq",
            "t1.oms.order.events",
        ] {
            let e = check_user_topic(oms, "t1.").expect_err(oms);
            assert_eq!(e.code, 2);
            assert!(e.error.to_string().contains("OMS topic"), "{}", e.error);
        }
        assert_eq!(
            parse_config("retention.ms=86400000"),
            Ok(("retention.ms".into(), "86400000".into()))
        );
        for bad in ["retention.ms", "=1", "retention.ms="] {
            assert!(parse_config(bad).is_err(), "{bad}");
        }
    }
}
