//! The envelope every message travels in, and its JSON encoding.
//!
//! ```json
//! { "eventId": "<uuid v7>", "type": "order.created", "schemaVersion": 1,
//!   "occurredAt": "<RFC 3339>", "correlationId": "<uuid>", "causationId": "<uuid>|null",
//!   "source": "order-service", "payload": { ... } }
//! ```
//!
//! Decoding is done in two steps (envelope, then the payload of the named type) so every failure
//! is a typed [`DecodeError`] that says what was wrong, never a panic.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::headers;
use crate::messages::{check_contract, Message, MessageType};

/// A message with its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Unique id of this message (UUID v7); consumers deduplicate on it.
    pub event_id: Uuid,
    /// Schema version of the payload.
    pub schema_version: u16,
    /// When the fact happened or the command was issued.
    pub occurred_at: DateTime<Utc>,
    /// The journey this message belongs to (one order's saga).
    pub correlation_id: Uuid,
    /// The message that caused this one, if any.
    pub causation_id: Option<Uuid>,
    /// Service that produced it.
    pub source: String,
    /// The typed payload.
    pub message: Message,
}

/// Why bytes could not be turned into an [`Envelope`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or not an envelope (missing or mistyped envelope fields).
    #[error("malformed envelope: {0}")]
    Malformed(#[source] serde_json::Error),
    /// The envelope names a type nobody defined.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// A known type at a schema version this build does not speak.
    #[error(
        "{message_type} schema version {version} is not supported (this build speaks {supported})"
    )]
    UnsupportedVersion {
        /// The message type.
        message_type: MessageType,
        /// Version found.
        version: u16,
        /// Version this build speaks.
        supported: u16,
    },
    /// The payload does not fit the type's schema.
    #[error("invalid {message_type} payload: {source}")]
    InvalidPayload {
        /// The message type.
        message_type: MessageType,
        /// What serde found wrong.
        #[source]
        source: serde_json::Error,
    },
    /// The payload fits the schema but breaks a rule of the contract (empty order, wrong total).
    #[error("{message_type} violates the contract: {reason}")]
    ContractViolation {
        /// The message type.
        message_type: MessageType,
        /// The broken rule.
        reason: String,
    },
}

impl DecodeError {
    /// Short stable class for dead-letter headers and metrics.
    pub fn class(&self) -> &'static str {
        match self {
            DecodeError::Malformed(_) => "poison.malformed",
            DecodeError::UnknownType(_) => "poison.unknown-type",
            DecodeError::UnsupportedVersion { .. } => "poison.unsupported-version",
            DecodeError::InvalidPayload { .. } => "poison.invalid-payload",
            DecodeError::ContractViolation { .. } => "poison.contract-violation",
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireOut<'a> {
    event_id: Uuid,
    #[serde(rename = "type")]
    message_type: &'static str,
    schema_version: u16,
    occurred_at: DateTime<Utc>,
    correlation_id: Uuid,
    causation_id: Option<Uuid>,
    source: &'a str,
    payload: &'a Message,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireIn<'a> {
    event_id: Uuid,
    #[serde(rename = "type")]
    message_type: String,
    schema_version: u16,
    occurred_at: DateTime<Utc>,
    correlation_id: Uuid,
    causation_id: Option<Uuid>,
    source: String,
    #[serde(borrow)]
    payload: &'a RawValue,
}

impl Envelope {
    /// A message that starts a journey: its correlation id is `correlation_id`, it has no cause.
    pub fn new(message: impl Into<Message>, source: &str, correlation_id: Uuid) -> Self {
        let message = message.into();
        Self {
            event_id: Uuid::now_v7(),
            schema_version: message.message_type().schema_version(),
            // Microseconds: what PostgreSQL keeps, so a stored copy compares equal.
            occurred_at: Utc::now().trunc_subsecs(6),
            correlation_id,
            causation_id: None,
            source: source.to_owned(),
            message,
        }
    }

    /// A message caused by `cause`: same journey, `causation_id` pointing at it.
    pub fn caused_by(cause: &Envelope, message: impl Into<Message>, source: &str) -> Self {
        let mut envelope = Self::new(message, source, cause.correlation_id);
        envelope.causation_id = Some(cause.event_id);
        envelope
    }

    /// The message's type.
    pub fn message_type(&self) -> MessageType {
        self.message.message_type()
    }

    /// The Kafka key: the order id.
    pub fn key(&self) -> String {
        self.message.order_id().to_string()
    }

    /// The topic the message belongs on.
    pub fn topic(&self) -> &'static str {
        self.message_type().topic()
    }

    /// The JSON wire form.
    pub fn encode(&self) -> Vec<u8> {
        let wire = WireOut {
            event_id: self.event_id,
            message_type: self.message_type().as_str(),
            schema_version: self.schema_version,
            occurred_at: self.occurred_at,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            source: &self.source,
            payload: &self.message,
        };
        // Serializing plain structs of strings, numbers and UUIDs into memory cannot fail.
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    /// Parses and checks the JSON wire form.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let wire: WireIn<'_> = serde_json::from_slice(bytes).map_err(DecodeError::Malformed)?;
        let message_type: MessageType = wire
            .message_type
            .parse()
            .map_err(|_| DecodeError::UnknownType(wire.message_type.clone()))?;
        let supported = message_type.schema_version();
        if wire.schema_version != supported {
            return Err(DecodeError::UnsupportedVersion {
                message_type,
                version: wire.schema_version,
                supported,
            });
        }
        let message =
            Message::decode_payload(message_type, wire.payload.get()).map_err(|source| {
                DecodeError::InvalidPayload {
                    message_type,
                    source,
                }
            })?;
        check_contract(&message).map_err(|reason| DecodeError::ContractViolation {
            message_type,
            reason,
        })?;
        Ok(Self {
            event_id: wire.event_id,
            schema_version: wire.schema_version,
            occurred_at: wire.occurred_at,
            correlation_id: wire.correlation_id,
            causation_id: wire.causation_id,
            source: wire.source,
            message,
        })
    }

    /// The Kafka headers mirroring the envelope, plus `traceparent`.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            (headers::MESSAGE_ID, self.event_id.to_string()),
            (
                headers::MESSAGE_TYPE,
                self.message_type().as_str().to_owned(),
            ),
            (headers::CORRELATION_ID, self.correlation_id.to_string()),
            (
                headers::TRACEPARENT,
                headers::traceparent(self.correlation_id, self.event_id),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::OrderCreated;
    use crate::values::{CustomerId, OrderId, OrderLine, ProductId};

    fn order_created() -> Envelope {
        let order_id = OrderId::new();
        Envelope::new(
            OrderCreated {
                order_id,
                customer_id: CustomerId::try_from("c-1").expect("valid"),
                items: vec![OrderLine {
                    product_id: ProductId::try_from("mouse-01").expect("valid"),
                    quantity: 2,
                }],
                payment_token: "tok_visa".into(),
                shipping_address: None,
            },
            "order-service",
            order_id.0,
        )
    }

    #[test]
    fn encode_then_decode_is_identity() {
        let env = order_created();
        let back = Envelope::decode(&env.encode()).expect("decodes");
        assert_eq!(back, env);
    }

    #[test]
    fn caused_messages_keep_the_journey() {
        let cause = order_created();
        let next = Envelope::caused_by(&cause, cause.message.clone(), "saga");
        assert_eq!(next.correlation_id, cause.correlation_id);
        assert_eq!(next.causation_id, Some(cause.event_id));
        assert_ne!(next.event_id, cause.event_id);
    }

    fn decode_value(v: serde_json::Value) -> Result<Envelope, DecodeError> {
        Envelope::decode(&serde_json::to_vec(&v).expect("json"))
    }

    #[test]
    fn every_kind_of_bad_input_is_a_typed_error() {
        let good: serde_json::Value =
            serde_json::from_slice(&order_created().encode()).expect("json");

        assert!(matches!(
            Envelope::decode(b"{not json"),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            Envelope::decode(b"[]"),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            Envelope::decode(b""),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            Envelope::decode(&[0xff, 0xfe, 0x00]),
            Err(DecodeError::Malformed(_))
        ));

        let mut v = good.clone();
        v["type"] = "order.exploded".into();
        assert!(
            matches!(decode_value(v), Err(DecodeError::UnknownType(t)) if t == "order.exploded")
        );

        let mut v = good.clone();
        v["schemaVersion"] = 99.into();
        assert!(matches!(
            decode_value(v),
            Err(DecodeError::UnsupportedVersion { version: 99, .. })
        ));

        let mut v = good.clone();
        v["payload"]["items"][0]["quantity"] = "two".into();
        assert!(matches!(
            decode_value(v),
            Err(DecodeError::InvalidPayload { .. })
        ));

        let mut v = good.clone();
        v["payload"]["items"] = serde_json::json!([]);
        let err = decode_value(v).expect_err("empty order is refused");
        assert_eq!(err.class(), "poison.contract-violation");

        let mut v = good;
        v.as_object_mut().expect("object").remove("eventId");
        assert!(matches!(decode_value(v), Err(DecodeError::Malformed(_))));
    }
}
