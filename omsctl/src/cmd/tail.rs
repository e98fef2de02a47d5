//! `omsctl tail`: follow topics, envelopes decoded, filtered.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};

use oms_ops::ctx::{Ctx, Kafka};
use oms_ops::filter::Where;
use oms_ops::tail::{
    client, describe, parse_from, parse_until, partitions, record, From, Record, Template, Until,
    TIMEOUT,
};
use oms_ops::{Failure, Output};

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
    /// Only this key (order id): a shorthand for --where key=KEY.
    #[arg(long, value_parser = |s: &str| oms_ops::filter::shorthand("key", s))]
    key: Option<Where>,
    /// Only this message type (e.g. payment.declined): a shorthand for --where type=TYPE.
    #[arg(long = "type", value_parser = |s: &str| oms_ops::filter::shorthand("type", s))]
    message_type: Option<Where>,
    /// Only messages with this header (NAME=VALUE): a shorthand for --where
    /// headers.NAME=VALUE; repeatable, all must match.
    #[arg(long = "header", value_parser = |s: &str| oms_ops::filter::shorthand("header", s))]
    headers: Vec<Where>,
    /// Only messages whose key, value or headers contain this text: a shorthand for --where
    /// text~TEXT.
    #[arg(long, value_parser = |s: &str| oms_ops::filter::shorthand("grep", s))]
    grep: Option<Where>,
    /// Only messages that match FIELD OP VALUE: the envelope's fields
    /// (payload.reason=OUT_OF_STOCK, payload.amount.amountMinor>=10000) and the record's (key,
    /// partition, offset, timestamp, headers.NAME, text); OP = != > >= < <= ~; repeatable, all
    /// must match. The filter flags above are shorthands for it.
    #[arg(long = "where", value_parser = oms_ops::filter::parse)]
    conditions: Vec<Where>,
    /// Stop at this offset (exclusive) or time (@TIMESTAMP, @-DURATION) in every partition,
    /// and at the current end (as --exit).
    #[arg(long, value_parser = parse_until, allow_hyphen_values = true)]
    until: Option<Until>,
    /// Only these partitions (repeatable).
    #[arg(long = "partition")]
    partitions: Vec<i32>,
    /// Write each message with this kcat-style template instead of -o: %t topic, %p
    /// partition, %o offset, %k key, %K key length, %s value, %S value length, %T timestamp
    /// (ms), %h headers, %y message type, %% a percent sign; \n \t escapes (nothing is added:
    /// end with \n for one message per line).
    #[arg(long, value_name = "TEMPLATE")]
    format: Option<Template>,
}

impl TailArgs {
    /// Whether the record matches every condition: the shorthands' and --where's.
    fn matches(&self, r: &Record) -> bool {
        let mut conditions = self
            .key
            .iter()
            .chain(&self.message_type)
            .chain(&self.headers)
            .chain(&self.grep)
            .chain(&self.conditions)
            .peekable();
        if conditions.peek().is_none() {
            return true;
        }
        let doc = r.document();
        conditions.all(|w| w.matches(&doc))
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
        if args.matches(&r) {
            shown += 1;
            if let Some(template) = &args.format {
                write!(out, "{}", template.render(&r))?;
            } else {
                write_record(&mut out, &r, output)?;
            }
            out.flush()?;
        }
        if exit && pending.is_empty() {
            return Ok(());
        }
    }
}

/// One record as `-o` asks.
fn write_record(out: &mut impl Write, r: &Record, output: Output) -> std::io::Result<()> {
    match output {
        Output::Json => writeln!(out, "{}", serde_json::to_string(&r.line())?),
        Output::Yaml => write!(
            out,
            "---\n{}",
            oms_ops::render::yaml(&r.line())
                .map_err(|e| std::io::Error::other(format!("{:#}", e.error)))?
        ),
        Output::Ids => writeln!(
            out,
            "{}",
            oms_ops::render::coordinates(&r.topic, r.partition, r.offset)
        ),
        Output::Table => {
            let described = describe(r);
            let mut payload = described.payload;
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
            )
        }
    }
}
