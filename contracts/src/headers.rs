//! Kafka header names.
//!
//! Every message mirrors its envelope's id, type and correlation id in headers, so tools can filter
//! without decoding, and carries a W3C `traceparent`: the span that published it. Dead-lettered messages keep all their original
//! headers and gain the `oms-dlq-*` set below; a replayed message gains `oms-replay-*`.

use uuid::Uuid;

/// Envelope `eventId`.
pub const MESSAGE_ID: &str = "oms-message-id";
/// Envelope `type`.
pub const MESSAGE_TYPE: &str = "oms-message-type";
/// Envelope `correlationId`.
pub const CORRELATION_ID: &str = "oms-correlation-id";
/// W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// Dead-letter diagnostics, added to the original headers when a message is dead-lettered.
pub mod dlq {
    /// Topic the message was consumed from.
    pub const ORIGIN_TOPIC: &str = "oms-dlq-origin-topic";
    /// Partition it was consumed from.
    pub const ORIGIN_PARTITION: &str = "oms-dlq-origin-partition";
    /// Offset it was consumed from.
    pub const ORIGIN_OFFSET: &str = "oms-dlq-origin-offset";
    /// Consumer group that gave up on it.
    pub const CONSUMER_GROUP: &str = "oms-dlq-consumer-group";
    /// Service that gave up on it.
    pub const SERVICE: &str = "oms-dlq-service";
    /// Error class: `poison.malformed`, `poison.unknown-type`, `poison.unsupported-version`,
    /// `poison.invalid-payload`, `poison.contract-violation`, `handler.rejected` or
    /// `handler.exhausted`.
    pub const ERROR_CLASS: &str = "oms-dlq-error-class";
    /// Error message, for people.
    pub const ERROR_MESSAGE: &str = "oms-dlq-error-message";
    /// How many times the handler was tried (0 for poison that was never handled).
    pub const ATTEMPTS: &str = "oms-dlq-attempts";
    /// When it was dead-lettered (RFC 3339).
    pub const FAILED_AT: &str = "oms-dlq-failed-at";

    /// Every dead-letter header, to strip them on replay.
    pub const ALL: &[&str] = &[
        ORIGIN_TOPIC,
        ORIGIN_PARTITION,
        ORIGIN_OFFSET,
        CONSUMER_GROUP,
        SERVICE,
        ERROR_CLASS,
        ERROR_MESSAGE,
        ATTEMPTS,
        FAILED_AT,
    ];
}

/// Replay marker: the dead-letter record (`topic/partition/offset`) a replayed message came from.
pub const REPLAYED_FROM: &str = "oms-replayed-from";

/// The `traceparent` a replayed message had when it was dead-lettered. A replay is a new
/// operation, so it does not carry on as that span's child: the consumer's span starts a trace
/// of its own and links to this one.
pub const REPLAYED_TRACEPARENT: &str = "oms-replayed-traceparent";

/// A W3C `traceparent` whose trace id is the correlation id and whose span id is the last 8
/// bytes of the message id: what a message carries when its producer has no trace of its own
/// (the services replace it with their span's context when they publish).
pub fn traceparent(correlation_id: Uuid, message_id: Uuid) -> String {
    let span = &message_id.as_bytes()[8..];
    let mut span_hex = String::with_capacity(16);
    for b in span {
        span_hex.push_str(&format!("{b:02x}"));
    }
    format!("00-{}-{span_hex}-01", correlation_id.simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_has_the_w3c_shape() {
        let corr = Uuid::parse_str("0192f0c4-5a1e-7cc0-8000-000000000001").expect("uuid");
        let msg = Uuid::parse_str("0192f0c4-5a1e-7cc0-8000-0000000000ff").expect("uuid");
        assert_eq!(
            traceparent(corr, msg),
            "00-0192f0c45a1e7cc08000000000000001-80000000000000ff-01"
        );
    }
}
