//! Producing the NDJSON that `omsctl tail -o json` writes (`omsctl produce TOPIC`).
//!
//! Each line is one message: `key` (or `keyHex`), `headers` (`[{name, value | valueHex}]`) and
//! `value` (or `valueHex`); `topic`, `partition`, `offset` and `timestamp` of a tailed line are
//! ignored (the key picks the partition, as it did). Every line is read and checked before
//! anything is sent: one bad line refuses the whole input and nothing is produced.

use std::io::BufRead;
use std::time::Duration;

use anyhow::Context;
use oms_contracts::Envelope;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

use crate::ctx::Ctx;
use crate::Failure;

/// One message to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Headers in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Value bytes.
    pub value: Option<Vec<u8>>,
}

/// Decodes lowercase or uppercase hex.
fn hex(s: &str) -> Result<Vec<u8>, String> {
    hex::decode(s).map_err(|e| format!("not hex: {e}"))
}

/// A text field or its `…Hex` twin (both is an error).
fn bytes_of(doc: &Value, field: &str) -> Result<Option<Vec<u8>>, String> {
    let hex_field = format!("{field}Hex");
    match (doc.get(field), doc.get(&hex_field)) {
        (Some(t), Some(h)) if !t.is_null() && !h.is_null() => {
            Err(format!("both {field} and {hex_field} given"))
        }
        (Some(Value::String(s)), _) => Ok(Some(s.as_bytes().to_vec())),
        (_, Some(Value::String(h))) => hex(h).map(Some).map_err(|e| format!("{hex_field}: {e}")),
        (Some(Value::Null) | None, Some(Value::Null) | None) => Ok(None),
        (Some(other), _) if !other.is_null() => Err(format!(
            "{field} must be a string or null, not {}",
            kind(other)
        )),
        _ => Err(format!("{hex_field} must be a string of hex digits")),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

const KNOWN: &[&str] = &[
    "topic",
    "partition",
    "offset",
    "timestamp",
    "key",
    "keyHex",
    "headers",
    "value",
    "valueHex",
];

/// One NDJSON line as `tail -o json` writes it.
pub fn parse_line(line: &str) -> Result<Outgoing, String> {
    let doc: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let Some(fields) = doc.as_object() else {
        return Err(format!("expected a JSON object, got {}", kind(&doc)));
    };
    if let Some(unknown) = fields.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!(
            "unknown field {unknown:?} (expected key, headers, value; or their …Hex forms)"
        ));
    }
    let mut headers = Vec::new();
    match doc.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, h) in list.iter().enumerate() {
                let name = h
                    .get("name")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| format!("headers[{i}] has no name"))?;
                let value = bytes_of(h, "value").map_err(|e| format!("headers[{i}]: {e}"))?;
                headers.push((name.to_owned(), value));
            }
        }
        Some(other) => return Err(format!("headers must be an array, not {}", kind(other))),
    }
    Ok(Outgoing {
        key: bytes_of(&doc, "key")?,
        headers,
        value: bytes_of(&doc, "value")?,
    })
}

/// Checks a message against the contracts for `topic` (unprefixed): its value is an envelope,
/// of a type published there, and its key is the envelope's (the order id).
pub fn validate(message: &Outgoing, topic: &str) -> Result<Envelope, String> {
    let value = message.value.as_deref().ok_or("no value to validate")?;
    let env = Envelope::decode(value).map_err(|e| format!("{} ({})", e, e.class()))?;
    let ty = env.message_type();
    if ty.topic() != topic {
        return Err(format!(
            "a {} belongs on {}, not {topic}",
            ty.as_str(),
            ty.topic()
        ));
    }
    let emitter = oms_contracts::topology::emitter(ty).name;
    if env.source != emitter {
        return Err(format!(
            "a {} comes from {emitter}, not {:?} (consumers dead-letter any other source)",
            ty.as_str(),
            env.source
        ));
    }
    let key = env.key();
    if message.key.as_deref() != Some(key.as_bytes()) {
        return Err(format!(
            "key must be the order id {key} (partitioning keeps an order's messages in order)"
        ));
    }
    Ok(env)
}

/// Reads and checks every line; the first bad one is the error, naming its line number.
pub fn read_all(
    input: impl BufRead,
    source: &str,
    topic: Option<&str>,
) -> Result<Vec<Outgoing>, Failure> {
    let mut out = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line.with_context(|| format!("reading {source}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let n = i + 1;
        let message =
            parse_line(&line).map_err(|e| Failure::usage(format!("{source}:{n}: {e}")))?;
        if let Some(t) = topic {
            validate(&message, t)
                .map_err(|e| Failure::usage(format!("{source}:{n}: invalid message: {e}")))?;
        }
        out.push(message);
    }
    Ok(out)
}

/// Produces `messages` to `topic` (as deployed) in order; where each one went. The first
/// failure stops the rest and says how many were sent before it.
pub async fn send(ctx: &Ctx, topic: &str, messages: &[Outgoing]) -> Result<Vec<Produced>, Failure> {
    let producer: FutureProducer = ctx.producer()?;
    let mut sent = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let mut headers = OwnedHeaders::new();
        for (name, value) in &m.headers {
            headers = headers.insert(Header {
                key: name,
                value: value.as_deref(),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
        if let Some(k) = &m.key {
            record = record.key(k.as_slice());
        }
        if let Some(v) = &m.value {
            record = record.payload(v.as_slice());
        }
        let delivery = producer
            .send(record, Duration::from_secs(15))
            .await
            .map_err(|(e, _)| {
                Failure::verdict(format!(
                    "message {} of {} not produced to {topic}: {e} ({} sent before it)",
                    i + 1,
                    messages.len(),
                    sent.len()
                ))
            })?;
        sent.push(Produced {
            topic: topic.to_owned(),
            partition: delivery.partition,
            offset: delivery.offset,
            at: crate::render::coordinates(topic, delivery.partition, delivery.offset),
        });
    }
    Ok(sent)
}

/// `produce --dry-run`: what would be produced.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    /// Always true.
    pub dry_run: bool,
    /// Topic as deployed.
    pub topic: String,
    /// Messages read and checked.
    pub messages: usize,
    /// Whether they were checked against the contracts.
    pub validated: bool,
}

/// Where a message was produced.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Produced {
    /// Topic as deployed.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// `topic/partition@offset`.
    pub at: String,
}

/// Refuses a topic the broker does not have (producing would create it, or wait and fail).
pub async fn exists(ctx: &Ctx, topic: &str) -> Result<(), Failure> {
    let brokers = ctx.brokers.clone();
    let name = topic.to_owned();
    tokio::task::spawn_blocking(move || -> Result<(), Failure> {
        let meta = brokers.metadata(&brokers.asking_client()?, None)?;
        if meta.topics().iter().any(|t| t.name() == name) {
            Ok(())
        } else {
            Err(Failure::usage(format!("no topic {name:?} on {brokers}")))
        }
    })
    .await
    .map_err(anyhow::Error::from)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use oms_contracts::messages::{CancelReason, Message, RefundPayment};
    use oms_contracts::OrderId;

    #[test]
    fn tailed_lines_parse_back_to_the_bytes_they_came_from() {
        let line = r#"{"topic":"oms.x","partition":2,"offset":9,"timestamp":"-","key":"k","headers":[{"name":"a","value":"b"},{"name":"n","value":null},{"name":"h","valueHex":"00ff"}],"valueHex":"ff00"}"#;
        assert_eq!(
            parse_line(line),
            Ok(Outgoing {
                key: Some(b"k".to_vec()),
                headers: vec![
                    ("a".into(), Some(b"b".to_vec())),
                    ("n".into(), None),
                    ("h".into(), Some(vec![0, 0xff])),
                ],
                value: Some(vec![0xff, 0]),
            })
        );
        assert_eq!(
            parse_line(r#"{"value":"v"}"#).map(|m| (m.key, m.value)),
            Ok((None, Some(b"v".to_vec())))
        );
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        for (line, says) in [
            ("nope", "not JSON"),
            ("[1]", "expected a JSON object"),
            (r#"{"valu":"x"}"#, "unknown field \"valu\""),
            (r#"{"key":1}"#, "key must be a string"),
            (
                r#"{"value":"a","valueHex":"00"}"#,
                "both value and valueHex",
            ),
            (r#"{"valueHex":"0g"}"#, "not hex"),
            (r#"{"valueHex":"000"}"#, "not hex"),
            (r#"{"headers":{}}"#, "headers must be an array"),
            (r#"{"headers":[{"value":"x"}]}"#, "headers[0] has no name"),
        ] {
            let e = parse_line(line).expect_err(line);
            assert!(e.contains(says), "{line}: {e}");
        }
    }

    #[test]
    fn validation_checks_the_envelope_its_topic_and_its_key() {
        let order = OrderId::new();
        let env = Envelope::new(
            Message::PaymentRefund(RefundPayment {
                order_id: order,
                reason: CancelReason::Timeout,
            }),
            "saga",
            uuid::Uuid::now_v7(),
        );
        let good = Outgoing {
            key: Some(order.to_string().into_bytes()),
            headers: Vec::new(),
            value: Some(env.encode()),
        };
        assert!(validate(&good, env.topic()).is_ok());
        let e = validate(&good, "oms.order.events").expect_err("wrong topic");
        assert!(e.contains("belongs on"), "{e}");
        let stranger = Outgoing {
            value: Some(
                Envelope::new(
                    Message::PaymentRefund(RefundPayment {
                        order_id: order,
                        reason: CancelReason::Timeout,
                    }),
                    "order",
                    uuid::Uuid::now_v7(),
                )
                .encode(),
            ),
            ..good.clone()
        };
        let e = validate(&stranger, env.topic()).expect_err("another emitter");
        assert!(
            e.contains("a payment.refund comes from saga, not \"order\""),
            "{e}"
        );
        let mut other_key = good.clone();
        other_key.key = Some(b"someone-else".to_vec());
        let e = validate(&other_key, env.topic()).expect_err("wrong key");
        assert!(e.contains("key must be the order id"), "{e}");
        let mut broken = good.clone();
        broken.value = Some(b"{\"eventId\":1}".to_vec());
        assert!(validate(&broken, env.topic()).is_err());
        let mut empty = good;
        empty.value = None;
        assert!(validate(&empty, env.topic()).is_err());
    }
}
