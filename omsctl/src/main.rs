//! `omsctl`: the terminal-first toolkit that operates the OMS.
//!
//! Exit codes: 0 ok, 1 a failed check, 2 a usage error or an unreachable dependency (one line on
//! stderr names it).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use serde::Serialize;

/// Operate the OMS: topics, orders, sagas, dead letters, chaos.
#[derive(Debug, Parser)]
#[command(name = "omsctl", version, about, propagate_version = true)]
struct Cli {
    /// Kafka bootstrap servers.
    #[arg(
        long,
        global = true,
        env = "OMS_BROKERS",
        default_value = "127.0.0.1:19092"
    )]
    brokers: String,

    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// Human-readable table.
    Table,
    /// JSON, stable field names.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Kafka topics of the OMS.
    #[command(subcommand)]
    Topics(TopicsCommand),
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// Create every OMS topic and its dead-letter topic unless it exists.
    Ensure {
        /// Partitions of each topic created.
        #[arg(long, default_value_t = oms_contracts::topics::PARTITIONS)]
        partitions: i32,
    },
    /// List the OMS topics with partitions and message counts.
    List,
}

/// An error that knows its exit code.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure {
            code: 2,
            error: e.into(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TopicRow {
    topic: String,
    partitions: usize,
    messages: i64,
    end_offsets: Vec<i64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("omsctl: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("omsctl: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Topics(TopicsCommand::Ensure { partitions }) => {
            if partitions < 1 {
                return Err(anyhow::anyhow!("--partitions must be at least 1").into());
            }
            let topics = oms_contracts::topics::all_with_dlq();
            oms_runtime::kafka::ensure_topics(&cli.brokers, &topics, partitions).await?;
            let rows = list_topics(&cli.brokers, &topics)?;
            print_topics(cli.output, &rows)
        }
        Command::Topics(TopicsCommand::List) => {
            let rows = list_topics(&cli.brokers, &oms_contracts::topics::all_with_dlq())?;
            print_topics(cli.output, &rows)
        }
    }
}

fn list_topics(brokers: &str, wanted: &[String]) -> Result<Vec<TopicRow>, Failure> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("creating the Kafka client")?;
    let timeout = Duration::from_secs(5);
    let metadata = consumer
        .fetch_metadata(None, timeout)
        .with_context(|| format!("broker {brokers} unreachable"))?;
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
        rows.push(TopicRow {
            topic: topic.name().to_owned(),
            partitions: topic.partitions().len(),
            messages,
            end_offsets,
        });
    }
    rows.sort_by(|a, b| a.topic.cmp(&b.topic));
    Ok(rows)
}

fn print_topics(output: Output, rows: &[TopicRow]) -> Result<(), Failure> {
    match output {
        Output::Json => {
            println!("{}", serde_json::to_string_pretty(rows)?);
        }
        Output::Table => {
            let mut table = Table::new();
            table.load_preset(UTF8_FULL_CONDENSED).set_header([
                "TOPIC",
                "PARTITIONS",
                "MESSAGES",
                "END OFFSETS",
            ]);
            for r in rows {
                let ends: Vec<String> = r.end_offsets.iter().map(i64::to_string).collect();
                table.add_row([
                    r.topic.clone(),
                    r.partitions.to_string(),
                    r.messages.to_string(),
                    ends.join(","),
                ]);
            }
            println!("{table}");
        }
    }
    Ok(())
}
