//! Reading topics without a consumer group (for `tail`, `trace` and `dlq`), and a message's
//! stable JSON line.
//!
//! Topics are read by assigning partitions directly (no consumer group), so omsctl never moves a
//! service's offsets.

use std::time::{Duration, Instant};

use anyhow::Context;
use oms_contracts::Envelope;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedHeaders};
use rdkafka::{Offset, TopicPartitionList};

use crate::ctx::Kafka;
use serde::{Deserialize, Serialize};

use crate::Failure;

/// One Kafka message as read.
#[derive(Debug, Clone)]
pub struct Record {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Timestamp (ms since the epoch), when the broker gave one.
    pub timestamp_ms: Option<i64>,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Option<Vec<u8>>,
    /// Headers in order, as rdkafka's `detach()` owns them (produce them again as they are).
    pub headers: Option<OwnedHeaders>,
}

fn text_or_hex(bytes: &[u8]) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (Some(s.to_owned()), None),
        Err(_) => (None, Some(hex::encode(bytes))),
    }
}

impl Record {
    /// The headers in order: (name, value).
    pub fn header_list(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        self.headers
            .iter()
            .flat_map(|hs| hs.iter())
            .map(|h| (h.key, h.value))
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.header_list()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// The key as text (lossy).
    pub fn key_text(&self) -> Option<String> {
        self.key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned())
    }

    /// RFC 3339 time of the broker timestamp.
    pub fn time(&self) -> String {
        self.timestamp_ms
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
            .unwrap_or_else(|| "-".into())
    }

    /// The message as `--where` reads it ([`crate::filter`]): the envelope's fields when the
    /// value is a JSON object, and the record's own (`key`, `topic`, `partition`, `offset`,
    /// `timestamp`, `headers`, `text`), whatever the value holds.
    pub fn document(&self) -> serde_json::Value {
        use serde_json::{Map, Value};
        let mut doc = match self
            .value
            .as_deref()
            .and_then(|v| serde_json::from_slice::<Value>(v).ok())
        {
            Some(Value::Object(fields)) => fields,
            _ => Map::new(),
        };
        let key = self.key_text();
        let value = self.value.as_deref().map(String::from_utf8_lossy);
        let headers: Map<String, Value> = self
            .header_list()
            .map(|(n, v)| {
                let v = v.map_or(Value::Null, |v| {
                    Value::String(String::from_utf8_lossy(v).into_owned())
                });
                (n.to_owned(), v)
            })
            .collect();
        let mut text = [
            key.clone().unwrap_or_default(),
            value.unwrap_or_default().into_owned(),
        ]
        .join(" ");
        for (n, v) in &headers {
            text.push_str(&format!(" {n}={}", v.as_str().unwrap_or_default()));
        }
        let record = [
            ("key", key.map_or(Value::Null, Value::String)),
            ("topic", Value::String(self.topic.clone())),
            ("partition", self.partition.into()),
            ("offset", self.offset.into()),
            (
                "timestamp",
                self.timestamp_ms.map_or(Value::Null, Value::from),
            ),
            ("headers", Value::Object(headers)),
            ("text", Value::String(text)),
        ];
        for (name, v) in record {
            doc.insert(name.to_owned(), v);
        }
        Value::Object(doc)
    }

    /// The stable JSON form (one NDJSON line of `tail -o json`): enough to produce it again.
    /// Text parts are strings; a part that is not UTF-8 is given as hex under `…Hex`.
    pub fn line(&self) -> TailLine {
        let (key, key_hex) = self.key.as_deref().map(text_or_hex).unwrap_or((None, None));
        let (value, value_hex) = self
            .value
            .as_deref()
            .map(text_or_hex)
            .unwrap_or((None, None));
        let headers = self
            .header_list()
            .map(|(name, v)| HeaderLine {
                name: name.to_owned(),
                value: match v.map(text_or_hex) {
                    None => HeaderValue::Text { value: None },
                    Some((Some(t), _)) => HeaderValue::Text { value: Some(t) },
                    Some((None, hex)) => HeaderValue::Hex {
                        value_hex: hex.unwrap_or_default(),
                    },
                },
            })
            .collect();
        TailLine {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
            timestamp: self.time(),
            key,
            key_hex,
            headers,
            value,
            value_hex,
        }
    }
}

/// One message as `tail -o json` writes it (one NDJSON line) and `produce` reads it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TailLine {
    /// Topic as deployed.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// The broker's timestamp, RFC 3339 (`-` when it gave none).
    pub timestamp: String,
    /// The key, when it is UTF-8 text.
    pub key: Option<String>,
    /// The key in hex, when it is not text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_hex: Option<String>,
    /// Headers in order.
    pub headers: Vec<HeaderLine>,
    /// The value, when it is UTF-8 text.
    pub value: Option<String>,
    /// The value in hex, when it is not text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_hex: Option<String>,
}

/// One header of a [`TailLine`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderLine {
    /// Its name.
    pub name: String,
    /// Its value.
    #[serde(flatten)]
    pub value: HeaderValue,
}

/// A header's value: text (or null), or hex when it is not UTF-8.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HeaderValue {
    /// `"valueHex": "00ff"`.
    Hex {
        /// The bytes in hex.
        #[serde(rename = "valueHex")]
        value_hex: String,
    },
    /// `"value": "text"` or `"value": null`.
    Text {
        /// The text.
        value: Option<String>,
    },
}

/// What a message says, as far as it can be decoded.
pub struct Described {
    /// Message type (or why it could not be decoded).
    pub type_name: String,
    /// Source service.
    pub source: String,
    /// The payload, compact.
    pub payload: String,
}

/// Decodes a record's envelope for display.
pub fn describe(r: &Record) -> Described {
    match r.value.as_deref().map(Envelope::decode) {
        Some(Ok(env)) => Described {
            type_name: env.message_type().as_str().to_owned(),
            source: env.source.clone(),
            payload: serde_json::to_string(&env.message).unwrap_or_default(),
        },
        Some(Err(e)) => Described {
            type_name: format!("undecodable ({})", e.class()),
            source: r
                .header(oms_contracts::headers::dlq::SERVICE)
                .unwrap_or_else(|| "?".into()),
            payload: r
                .value
                .as_deref()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default(),
        },
        None => Described {
            type_name: "empty".into(),
            source: "?".into(),
            payload: String::new(),
        },
    }
}

/// A message as read, owned.
pub fn record(m: &rdkafka::message::BorrowedMessage<'_>) -> Record {
    Record {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        timestamp_ms: m.timestamp().to_millis(),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        headers: m.headers().map(|hs| hs.detach()),
    }
}

/// A consumer without a group (partitions are assigned directly).
pub fn client(brokers: &Kafka) -> anyhow::Result<BaseConsumer> {
    brokers
        .config()
        .set("group.id", "omsctl-reader")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set_log_level(rdkafka::config::RDKafkaLogLevel::Emerg)
        .create()
        .context("creating the Kafka client")
}

/// How long a metadata or watermark request may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Partitions of `topics` with their (low, high) watermarks; an unknown topic is an error.
/// Every partition of `topics` with its low and high watermarks.
pub fn partitions(
    consumer: &BaseConsumer,
    brokers: &Kafka,
    topics: &[String],
) -> Result<Vec<(String, i32, i64, i64)>, Failure> {
    let meta = consumer
        .fetch_metadata(None, TIMEOUT)
        .map_err(|e| Failure::usage(format!("broker unreachable at {brokers}: {e}")))?;
    let mut out = Vec::new();
    for topic in topics {
        let Some(t) = meta.topics().iter().find(|t| t.name() == topic) else {
            return Err(Failure::usage(format!("no topic {topic:?} on {brokers}")));
        };
        for p in t.partitions() {
            let (low, high) = oms_kafka::watermarks(consumer, topic, p.id(), TIMEOUT)
                .with_context(|| format!("watermarks of {topic}/{}", p.id()))?;
            out.push((topic.clone(), p.id(), low, high));
        }
    }
    Ok(out)
}

/// Reads `topics` from the beginning to their current ends; keeps the records `keep` accepts.
/// Blocking: call from `spawn_blocking`.
pub fn scan(
    brokers: &Kafka,
    topics: &[String],
    keep: impl Fn(&Record) -> bool,
) -> Result<Vec<Record>, Failure> {
    let consumer = client(brokers)?;
    let parts = partitions(&consumer, brokers, topics)?;
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0usize;
    for (topic, p, low, high) in &parts {
        if high > low {
            tpl.add_partition_offset(topic, *p, Offset::Offset(*low))
                .context("assigning")?;
            remaining += 1;
        }
    }
    let mut out = Vec::new();
    if remaining == 0 {
        return Ok(out);
    }
    consumer.assign(&tpl).context("assigning partitions")?;
    let mut done: std::collections::HashSet<(String, i32)> = std::collections::HashSet::new();
    let mut idle_since = Instant::now();
    while done.len() < remaining {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                idle_since = Instant::now();
                let r = record(&m);
                let end = parts
                    .iter()
                    .find(|(t, p, _, _)| *t == r.topic && *p == r.partition)
                    .map(|(_, _, _, h)| *h)
                    .unwrap_or(0);
                if r.offset + 1 >= end {
                    done.insert((r.topic.clone(), r.partition));
                }
                if r.offset < end && keep(&r) {
                    out.push(r);
                }
            }
            Some(Err(e)) => return Err(Failure::usage(format!("reading topics: {e}"))),
            None if idle_since.elapsed() > Duration::from_secs(15) => {
                return Err(Failure::usage(format!(
                    "reading topics from {brokers}: no progress for 15s"
                )))
            }
            None => {}
        }
    }
    out.sort_by(|a, b| {
        (a.timestamp_ms, &a.topic, a.partition, a.offset).cmp(&(
            b.timestamp_ms,
            &b.topic,
            b.partition,
            b.offset,
        ))
    });
    Ok(out)
}

/// Where to start reading.
#[derive(Debug, Clone, PartialEq)]
pub enum From {
    /// The oldest message.
    Beginning,
    /// New messages only.
    End,
    /// This offset in every partition.
    Offset(i64),
    /// The last N of every partition.
    Last(i64),
    /// The first message at or after this time (ms since the epoch).
    Time(i64),
}

/// Parses `beginning`, `end`, `OFFSET`, `-N`, `@RFC3339` or `@-DURATION`.
pub fn parse_from(s: &str) -> Result<From, String> {
    let bad = || {
        format!(
            "invalid --from {s:?}: expected beginning, end, OFFSET, -N, @TIMESTAMP (RFC 3339) or @-DURATION (e.g. @-10m)"
        )
    };
    match s {
        "beginning" | "earliest" | "start" => return Ok(From::Beginning),
        "end" | "latest" => return Ok(From::End),
        _ => {}
    }
    if let Some(t) = s.strip_prefix("@-") {
        let d = humantime::parse_duration(t).map_err(|_| bad())?;
        let at = chrono::Utc::now() - chrono::TimeDelta::from_std(d).map_err(|_| bad())?;
        return Ok(From::Time(at.timestamp_millis()));
    }
    if let Some(t) = s.strip_prefix('@') {
        let at = chrono::DateTime::parse_from_rfc3339(t).map_err(|_| bad())?;
        return Ok(From::Time(at.timestamp_millis()));
    }
    if let Some(n) = s.strip_prefix('-') {
        return match n.parse::<i64>() {
            Ok(n) if n > 0 => Ok(From::Last(n)),
            _ => Err(bad()),
        };
    }
    match s.parse::<i64>() {
        Ok(n) if n >= 0 => Ok(From::Offset(n)),
        _ => Err(bad()),
    }
}

/// Where `--until` stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Before this offset.
    Offset(i64),
    /// After this time (ms since the epoch).
    Time(i64),
}

/// Parses `OFFSET`, `@RFC3339` or `@-DURATION`.
pub fn parse_until(s: &str) -> Result<Until, String> {
    match parse_from(s) {
        Ok(From::Offset(n)) => Ok(Until::Offset(n)),
        Ok(From::Time(ms)) => Ok(Until::Time(ms)),
        _ => Err(format!(
            "invalid --until {s:?}: expected OFFSET, @TIMESTAMP (RFC 3339) or @-DURATION (e.g. @-5m)"
        )),
    }
}

/// One piece of a `tail --format` template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Topic,
    Partition,
    Offset,
    Key,
    KeyLen,
    Value,
    ValueLen,
    Timestamp,
    Headers,
    Type,
}

/// A kcat-style output template (`tail --format`): `%t` topic, `%p` partition, `%o` offset,
/// `%k` key, `%K` its length, `%s` value, `%S` its length, `%T` timestamp (ms), `%h` headers
/// (`name=value,…`), `%y` the message type, `%%` a percent sign; `\n`, `\t` and `\\` escapes.
/// Nothing is added: end the template with `\n` for one message per line, as with kcat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Piece>);

impl std::str::FromStr for Template {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            let piece = match c {
                '%' => match chars.next() {
                    Some('t') => Piece::Topic,
                    Some('p') => Piece::Partition,
                    Some('o') => Piece::Offset,
                    Some('k') => Piece::Key,
                    Some('K') => Piece::KeyLen,
                    Some('s') => Piece::Value,
                    Some('S') => Piece::ValueLen,
                    Some('T') => Piece::Timestamp,
                    Some('h') => Piece::Headers,
                    Some('y') => Piece::Type,
                    Some('%') => {
                        text.push('%');
                        continue;
                    }
                    other => {
                        return Err(format!(
                            "invalid --format {s:?}: unknown token %{} (expected %t %p %o %k %K %s %S %T %h %y or %%)",
                            other.map(String::from).unwrap_or_default()
                        ))
                    }
                },
                '\\' => {
                    match chars.next() {
                        Some('n') => text.push('\n'),
                        Some('t') => text.push('\t'),
                        Some('\\') => text.push('\\'),
                        other => {
                            return Err(format!(
                                "invalid --format {s:?}: unknown escape \\{} (expected \\n, \\t or \\\\)",
                                other.map(String::from).unwrap_or_default()
                            ))
                        }
                    }
                    continue;
                }
                c => {
                    text.push(c);
                    continue;
                }
            };
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(piece);
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Template(pieces))
    }
}

impl Template {
    /// The record as the template writes it (bytes that are not UTF-8 are written lossily).
    pub fn render(&self, r: &Record) -> String {
        fn lossy(b: Option<&[u8]>) -> String {
            b.map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        }
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Topic => out.push_str(&r.topic),
                Piece::Partition => out.push_str(&r.partition.to_string()),
                Piece::Offset => out.push_str(&r.offset.to_string()),
                Piece::Key => out.push_str(&lossy(r.key.as_deref())),
                Piece::KeyLen => {
                    out.push_str(&r.key.as_ref().map_or(-1, |k| k.len() as i64).to_string())
                }
                Piece::Value => out.push_str(&lossy(r.value.as_deref())),
                Piece::ValueLen => {
                    out.push_str(&r.value.as_ref().map_or(-1, |v| v.len() as i64).to_string())
                }
                Piece::Timestamp => {
                    out.push_str(&r.timestamp_ms.map_or("-1".into(), |t| t.to_string()))
                }
                Piece::Headers => {
                    let hs: Vec<String> = r
                        .header_list()
                        .map(|(n, v)| format!("{n}={}", lossy(v)))
                        .collect();
                    out.push_str(&hs.join(","));
                }
                Piece::Type => out.push_str(&describe(r).type_name),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::Header;

    #[test]
    fn from_expressions_parse_and_bad_ones_are_named() {
        assert_eq!(parse_from("beginning"), Ok(From::Beginning));
        assert_eq!(parse_from("end"), Ok(From::End));
        assert_eq!(parse_from("42"), Ok(From::Offset(42)));
        assert_eq!(parse_from("-5"), Ok(From::Last(5)));
        assert!(matches!(parse_from("@-10m"), Ok(From::Time(_))));
        assert_eq!(
            parse_from("@2026-11-23T10:00:00Z"),
            Ok(From::Time(1_795_428_000_000))
        );
        for bad in ["", "-0", "-x", "soon", "@yesterday", "@-", "1.5"] {
            let e = parse_from(bad).expect_err(bad);
            assert!(e.contains("--from"), "{e}");
        }
    }

    #[test]
    fn records_print_losslessly() {
        let r = Record {
            topic: "t".into(),
            partition: 1,
            offset: 7,
            timestamp_ms: Some(0),
            key: Some(b"k".to_vec()),
            value: Some(vec![0xff, 0x00]),
            headers: Some(
                OwnedHeaders::new()
                    .insert(Header {
                        key: "a",
                        value: Some("b"),
                    })
                    .insert(Header::<&[u8]> {
                        key: "n",
                        value: None,
                    }),
            ),
        };
        // The wire shape, field by field: what `produce` and users' scripts read.
        let line = r.line();
        let j = serde_json::to_value(&line).expect("json");
        assert_eq!(j["key"], "k");
        assert_eq!(j["valueHex"], "ff00");
        assert_eq!(j["headers"][0]["value"], "b");
        assert!(j["headers"][1]["value"].is_null());
        assert!(j.get("keyHex").is_none() && j.get("value").is_some_and(|v| v.is_null()));
        let back: TailLine = serde_json::from_value(j).expect("reads back");
        assert_eq!(back, line);
    }

    /// `--where` reads the envelope and the record as one document; a value that is not JSON
    /// still has its record fields.
    #[test]
    fn the_document_holds_the_envelope_and_the_record() {
        use crate::filter::{all_match, parse, shorthand};
        let record = |value: &[u8]| Record {
            topic: "t.oms.payment.events".into(),
            partition: 2,
            offset: 41,
            timestamp_ms: Some(1_700_000_000_000),
            key: Some(b"order-9".to_vec()),
            value: Some(value.to_vec()),
            headers: Some(OwnedHeaders::new().insert(Header {
                key: "oms.type",
                value: Some("payment.declined"),
            })),
        };
        let json =
            record(br#"{"type":"payment.declined","payload":{"amount":{"amountMinor":1200}}}"#);
        let doc = json.document();
        let cond = |s: &str| parse(s).expect(s);
        for yes in [
            "type=payment.declined",
            "payload.amount.amountMinor>=1000",
            "key=order-9",
            "partition=2",
            "offset>40",
            "timestamp>0",
            "topic~payment",
            "text~amountMinor",
        ] {
            assert!(all_match(&[cond(yes)], &doc), "{yes}: {doc}");
        }
        for no in ["type=x", "offset>41", "partition!=2", "payload.nope=1"] {
            assert!(!all_match(&[cond(no)], &doc), "{no}: {doc}");
        }
        let poison = record(b"\xff not json").document();
        let header = shorthand("header", "oms.type=payment.declined").expect("header");
        assert!(header.matches(&poison), "{poison}");
        assert!(cond("key=order-9").matches(&poison));
        assert!(!cond("type=payment.declined").matches(&poison));
        assert!(shorthand("grep", "not json")
            .expect("grep")
            .matches(&poison));
    }

    #[test]
    fn templates_write_what_kcat_would_and_bad_ones_are_named() {
        let r = Record {
            topic: "oms.order.events".into(),
            partition: 3,
            offset: 17,
            timestamp_ms: Some(1_700_000_000_000),
            key: Some(b"order-1".to_vec()),
            value: Some(b"{}".to_vec()),
            headers: Some(
                OwnedHeaders::new()
                    .insert(Header {
                        key: "a",
                        value: Some("1"),
                    })
                    .insert(Header {
                        key: "b",
                        value: Some("2"),
                    }),
            ),
        };
        let t: Template = "%t/%p@%o %k (%K) %s (%S) %T [%h] 100%%\\n"
            .parse()
            .expect("template");
        assert_eq!(
            t.render(&r),
            "oms.order.events/3@17 order-1 (7) {} (2) 1700000000000 [a=1,b=2] 100%\n"
        );
        let tabs: Template = "%k\\t%o\\\\".parse().expect("escapes");
        assert_eq!(tabs.render(&r), "order-1\t17\\");
        let empty = Record {
            key: None,
            value: None,
            headers: None,
            timestamp_ms: None,
            ..r
        };
        assert_eq!(
            "%K %S %T [%h] %y"
                .parse::<Template>()
                .expect("t")
                .render(&empty),
            "-1 -1 -1 [] empty"
        );
        for bad in ["%q", "50%", "\\x"] {
            let e = bad.parse::<Template>().expect_err(bad);
            assert!(e.contains("--format"), "{e}");
        }
    }
}
