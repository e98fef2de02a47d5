//! `omsctl topics ensure | list`: the OMS topics with message counts and consumer lag.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::TopicPartitionList;

use crate::ctx::Kafka;
use serde::Serialize;

use crate::ctx::{table, Ctx};
use crate::Failure;

#[derive(Debug, clap::Subcommand)]
pub enum TopicsCommand {
    /// Create every OMS topic and its dead-letter topic unless it exists.
    Ensure {
        /// Partitions of each topic created.
        #[arg(long, default_value_t = oms_contracts::topics::PARTITIONS)]
        partitions: i32,
    },
    /// The OMS topics: partitions, end offsets, messages and each consumer group's lag.
    List,
}

/// One topic.
#[derive(Debug, Serialize)]
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

pub async fn run(ctx: &Ctx, command: TopicsCommand) -> Result<(), Failure> {
    let topics = ctx.topics.all_with_dlq();
    if let TopicsCommand::Ensure { partitions } = command {
        if partitions < 1 {
            return Err(Failure::usage("--partitions must be at least 1"));
        }
        oms_kafka::ensure_topics_with(
            &ctx.brokers.servers,
            &ctx.brokers.props,
            &topics,
            partitions,
        )
        .await
        .map_err(|e| Failure::usage(format!("broker {}: {e}", ctx.brokers)))?;
    }
    let brokers = ctx.brokers.clone();
    let groups = ctx.consumer_groups();
    let rows = tokio::task::spawn_blocking(move || list(&brokers, &topics, &groups))
        .await
        .map_err(anyhow::Error::from)??;
    let value = serde_json::to_value(&rows)?;
    ctx.print(&value, || {
        let mut t = table(&["TOPIC", "PARTITIONS", "MESSAGES", "END OFFSETS", "LAG"]);
        for r in &rows {
            let ends: Vec<String> = r.end_offsets.iter().map(i64::to_string).collect();
            let lag: Vec<String> = r.lag.iter().map(|(g, l)| format!("{g}={l}")).collect();
            t.add_row([
                r.topic.clone(),
                r.partitions.to_string(),
                r.messages.to_string(),
                ends.join(","),
                lag.join(" "),
            ]);
        }
        t.to_string()
    })
}

/// Topics with counts, and the lag of `groups` (group, topics it reads).
pub fn list(
    brokers: &Kafka,
    wanted: &[String],
    groups: &[(String, Vec<String>)],
) -> Result<Vec<TopicRow>, Failure> {
    let consumer: BaseConsumer = brokers
        .config()
        .set_log_level(rdkafka::config::RDKafkaLogLevel::Emerg)
        .create()
        .context("creating the Kafka client")?;
    let timeout = Duration::from_secs(5);
    let metadata = consumer
        .fetch_metadata(None, timeout)
        .map_err(|e| Failure::usage(format!("broker unreachable at {brokers}: {e}")))?;
    let mut rows = Vec::new();
    for topic in metadata.topics() {
        if !wanted.iter().any(|w| w == topic.name()) {
            continue;
        }
        let mut messages = 0;
        let mut end_offsets = Vec::new();
        for p in topic.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(topic.name(), p.id(), timeout)
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
