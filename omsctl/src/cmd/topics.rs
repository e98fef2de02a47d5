//! `omsctl topic ensure | list | describe | create | delete`: the OMS topics, their messages
//! and each group's lag; any topic in full; topics of your own made and removed.

use std::collections::BTreeMap;

use oms_ops::ctx::Ctx;
use oms_ops::render::table;
use oms_ops::{topics, Failure};

use super::confirm::Confirm;

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
    /// One topic: each partition's leader, replicas, in-sync replicas and offsets, and the
    /// configs set on it.
    Describe {
        /// Topic (contract name such as oms.order.events; the prefix is added).
        #[arg(add = clap_complete::ArgValueCandidates::new(crate::complete::topics))]
        topic: String,
    },
    /// Create a topic of your own (not an OMS topic: `ensure` makes those).
    Create {
        /// Its name (the context's topic prefix is added, as to every topic name).
        topic: String,
        /// Partitions.
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        /// Copies of each partition [default: the cluster's].
        #[arg(long)]
        replication_factor: Option<i32>,
        /// A topic config, KEY=VALUE (retention.ms=86400000, cleanup.policy=compact);
        /// repeatable.
        #[arg(long = "topic-config", value_parser = topics::parse_config)]
        configs: Vec<(String, String)>,
    },
    /// Delete a topic of your own and every message in it (OMS topics are refused).
    Delete {
        /// Its name (the context's topic prefix is added).
        topic: String,
        #[command(flatten)]
        confirm: Confirm,
    },
}

pub async fn run(ctx: &Ctx, command: TopicsCommand) -> Result<(), Failure> {
    let prefix = ctx.topics.prefix().to_owned();
    let command = match command {
        TopicsCommand::Describe { topic } => return describe(ctx, &topic).await,
        TopicsCommand::Create {
            topic,
            partitions,
            replication_factor,
            configs,
        } => {
            let configs: BTreeMap<String, String> = configs.into_iter().collect();
            let topic = ctx.deployed_topic(&topic);
            let made = topics::create(
                &ctx.brokers,
                &prefix,
                &topic,
                partitions,
                replication_factor,
                &configs,
            )
            .await?;
            return ctx.print(&made, || {
                format!(
                    "created topic {} ({} partitions)",
                    made.topic, made.partitions
                )
            });
        }
        TopicsCommand::Delete { topic, confirm } => {
            let topic = ctx.deployed_topic(&topic);
            let plan = topics::deletion_plan(&ctx.brokers, &prefix, &topic).await?;
            let what = format!(
                "delete topic {topic} ({} partitions, {} messages)",
                plan.partitions, plan.messages
            );
            let done = if confirm.go_ahead(&what)? {
                topics::delete(&ctx.brokers, plan).await?
            } else {
                plan
            };
            return ctx.print(&done, || {
                if done.deleted {
                    format!("deleted topic {topic}")
                } else {
                    format!("would {what} (dry run: nothing changed)")
                }
            });
        }
        other => other,
    };
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
    let rows = tokio::task::spawn_blocking(move || topics::list(&brokers, &topics, &groups))
        .await
        .map_err(anyhow::Error::from)??;
    ctx.print(&rows, || {
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

async fn describe(ctx: &Ctx, topic: &str) -> Result<(), Failure> {
    let brokers = ctx.brokers.clone();
    let name = ctx.deployed_topic(topic);
    let mut doc = tokio::task::spawn_blocking({
        let name = name.clone();
        move || topics::describe(&brokers, &name)
    })
    .await
    .map_err(anyhow::Error::from)??;
    doc.configs = topics::configs(&ctx.brokers, &name).await?;
    let list = |ids: &[i32]| ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    ctx.print(&doc, || {
        let mut t = table(&["PARTITION", "LEADER", "REPLICAS", "ISR", "START", "END"]);
        for p in &doc.partitions {
            t.add_row([
                format!("{}/{}", doc.topic, p.partition),
                p.leader.to_string(),
                list(&p.replicas),
                list(&p.isr),
                p.start.to_string(),
                p.end.to_string(),
            ]);
        }
        if doc.configs.is_empty() {
            format!("{t}\nconfigs: the cluster's defaults")
        } else {
            let set: Vec<String> = doc
                .configs
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("{t}\nconfigs: {}", set.join(" "))
        }
    })
}
