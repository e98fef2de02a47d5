//! `omsctl topics ensure | list`: the OMS topics, their messages and each group's lag.

use oms_ops::ctx::Ctx;
use oms_ops::render::table;
use oms_ops::{topics, Failure};

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
