//! `omsctl tail`: follow topics, envelopes decoded, filtered.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};

use oms_ops::ctx::{Ctx, Kafka};
use oms_ops::tail::{
    client, describe, parse_from, parse_until, partitions, record, Described, From, Record, Until,
    TIMEOUT,
};
use oms_ops::{Failure, Output};

fn parse_header(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("invalid --header {s:?}: expected NAME=VALUE"))
}

/// `omsctl tail` arguments.
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// Topics (contract names such as oms.order.events, the prefix is added; `all` for every
    /// topic and DLQ).
    #[arg(required = true, add = clap_complete::ArgValueCandidates::new(crate::complete::tail_topics))]
    topics: Vec<String>,
    /// Where to start: beginning, end, OFFSET, -N (last N per partition), @TIMESTAMP or @-10m.
    #[arg(long, default_value = "end", value_parser = parse_from, allow_hyphen_values = true)]
    from: From,
    /// Stop at the end instead of following.
    #[arg(long)]
    exit: bool,
    /// Stop after this many (matching) messages.
    #[arg(long)]
    max: Option<u64>,
    /// Only this key (order id).
    #[arg(long)]
    key: Option<String>,
    /// Only this message type (e.g. payment.declined).
    #[arg(long = "type")]
    message_type: Option<String>,
    /// Only messages with this header (NAME=VALUE; repeatable, all must match).
    #[arg(long = "header", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Only messages whose key, value or headers contain this text.
    #[arg(long)]
    grep: Option<String>,
    /// Only messages whose decoded envelope matches FIELD OP VALUE (payload.reason=OUT_OF_STOCK,
    /// payload.amount.amountMinor>=10000; OP = != > >= < <= ~); repeatable, all must match.
    #[arg(long = "where", value_parser = oms_ops::filter::parse)]
    conditions: Vec<oms_ops::filter::Where>,
    /// Stop at this offset (exclusive) or time (@TIMESTAMP, @-DURATION) in every partition,
    /// and at the current end (as --exit).
    #[arg(long, value_parser = parse_until, allow_hyphen_values = true)]
    until: Option<Until>,
    /// Only these partitions (repeatable).
    #[arg(long = "partition")]
    partitions: Vec<i32>,
}

impl TailArgs {
    fn matches(&self, r: &Record, described: &Described) -> bool {
        if let Some(k) = &self.key {
            if r.key_text().as_deref() != Some(k.as_str()) {
                return false;
            }
        }
        if let Some(t) = &self.message_type {
            if described.type_name != *t {
                return false;
            }
        }
        if !self
            .headers
            .iter()
            .all(|(k, v)| r.header(k).as_deref() == Some(v.as_str()))
        {
            return false;
        }
        if !oms_ops::filter::all_match(&self.conditions, r.value.as_deref()) {
            return false;
        }
        if let Some(g) = &self.grep {
            let hay = format!(
                "{} {} {:?}",
                r.key_text().unwrap_or_default(),
                r.value
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default(),
                r.header_list().collect::<Vec<_>>()
            );
            if !hay.contains(g.as_str()) {
                return false;
            }
        }
        true
    }
}

pub async fn run(ctx: &Ctx, args: TailArgs) -> Result<(), Failure> {
    let topics: Vec<String> = if args.topics.iter().any(|t| t == "all") {
        ctx.topics.all_with_dlq()
    } else {
        args.topics.iter().map(|t| ctx.deployed_topic(t)).collect()
    };
    let brokers = ctx.brokers.clone();
    let output = ctx.output;
    tokio::task::spawn_blocking(move || follow(&brokers, &topics, &args, output))
        .await
        .map_err(anyhow::Error::from)?
}

fn follow(
    brokers: &Kafka,
    topics: &[String],
    args: &TailArgs,
    output: Output,
) -> Result<(), Failure> {
    let consumer = client(brokers)?;
    let mut parts = partitions(&consumer, brokers, topics)?;
    if !args.partitions.is_empty() {
        if let Some(missing) = args
            .partitions
            .iter()
            .find(|p| !parts.iter().any(|(_, id, _, _)| id == *p))
        {
            return Err(Failure::usage(format!(
                "no partition {missing} in {}",
                topics.join(", ")
            )));
        }
        parts.retain(|(_, id, _, _)| args.partitions.contains(id));
    }
    let exit = args.exit || args.until.is_some();
    let mut tpl = TopicPartitionList::new();
    for (topic, p, low, high) in &parts {
        let offset = match args.from {
            From::Beginning => Offset::Offset(*low),
            From::End => Offset::Offset(*high),
            From::Offset(n) => Offset::Offset(n.clamp(*low, *high)),
            From::Last(n) => Offset::Offset((high - n).max(*low)),
            From::Time(ms) => Offset::Offset(ms),
        };
        tpl.add_partition_offset(topic, *p, offset)
            .context("assigning")?;
    }
    if let From::Time(_) = args.from {
        tpl = consumer
            .offsets_for_times(tpl, TIMEOUT)
            .context("looking up offsets for the time")?;
        // A partition with nothing at or after the time resolves to Offset::End: new messages.
    }
    consumer.assign(&tpl).context("assigning partitions")?;
    // With --exit: stop once every partition reached the end it had when we started (or the
    // --until offset, if that comes first).
    let mut pending: std::collections::HashMap<(String, i32), i64> = parts
        .iter()
        .map(|(t, p, _, h)| {
            let end = match args.until {
                Some(Until::Offset(n)) => (*h).min(n),
                _ => *h,
            };
            ((t.clone(), *p), end)
        })
        .collect();
    if exit {
        let starts: std::collections::HashMap<(String, i32), i64> = tpl
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
                _ => None,
            })
            .collect();
        pending.retain(|k, end| starts.get(k).is_some_and(|s| s < end));
    }
    let mut out = std::io::stdout().lock();
    let mut shown = 0u64;
    if exit && pending.is_empty() {
        return Ok(());
    }
    loop {
        if args.max.is_some_and(|m| shown >= m) {
            return Ok(());
        }
        let Some(result) = consumer.poll(Duration::from_millis(250)) else {
            continue;
        };
        let m = result.map_err(|e| Failure::usage(format!("reading topics: {e}")))?;
        let r = record(&m);
        if let (Some(Until::Time(until)), Some(at)) = (args.until, r.timestamp_ms) {
            if at > until {
                // Past the time: this partition is done.
                pending.remove(&(r.topic.clone(), r.partition));
                if pending.is_empty() {
                    return Ok(());
                }
                continue;
            }
        }
        if exit {
            if let Some(end) = pending.get(&(r.topic.clone(), r.partition)).copied() {
                if r.offset >= end {
                    continue;
                }
                if r.offset + 1 >= end {
                    pending.remove(&(r.topic.clone(), r.partition));
                }
            } else {
                continue;
            }
        }
        let described = describe(&r);
        if args.matches(&r, &described) {
            shown += 1;
            match output {
                Output::Json => writeln!(out, "{}", serde_json::to_string(&r.line())?)?,
                Output::Yaml => write!(out, "---\n{}", oms_ops::render::yaml(&r.line())?)?,
                Output::Ids => writeln!(
                    out,
                    "{}",
                    oms_ops::render::coordinates(&r.topic, r.partition, r.offset)
                )?,
                Output::Table => {
                    let mut payload = described.payload.clone();
                    if payload.len() > 160 {
                        let cut = (0..=160)
                            .rev()
                            .find(|i| payload.is_char_boundary(*i))
                            .unwrap_or(0);
                        payload.truncate(cut);
                        payload.push('…');
                    }
                    writeln!(
                        out,
                        "{} {} key={} {} [{}] {}",
                        r.time(),
                        oms_ops::render::coordinates(&r.topic, r.partition, r.offset),
                        r.key_text().unwrap_or_else(|| "-".into()),
                        described.type_name,
                        described.source,
                        payload
                    )?
                }
            }
            out.flush()?;
        }
        if exit && pending.is_empty() {
            return Ok(());
        }
    }
}
