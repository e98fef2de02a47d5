//! Wire contracts of the OMS, defined once and shared by every service and by `omsctl`.
//!
//! # Layout
//! - [`api`]: the request and response types of every HTTP route.
//! - [`auth`]: the roles bearer tokens carry and the claims of locally minted tokens.
//! - [`envelope`]: the one envelope every Kafka message travels in, and its encode/decode.
//! - [`messages`]: every command and event of the order saga, as typed payloads.
//! - [`values`]: the value types the payloads are made of (ids, money, order lines).
//! - [`topics`]: topic names and the topic each message type is published on.
//! - [`topology`]: every service with its port, consumer group and the messages it handles and
//!   emits; deployed topic names.
//! - [`headers`]: Kafka header names (envelope mirror, tracing, dead-letter diagnostics, replay).
//!
//! The JSON fixtures under `fixtures/` pin the wire format of every message type; a change that
//! breaks them must come with a new schema version of that type.

pub mod api;
pub mod auth;
pub mod envelope;
pub mod headers;
pub mod messages;
pub mod routes;
pub mod topics;
pub mod topology;
pub mod values;

pub use envelope::{DecodeError, Envelope};

/// The wire name of a unit enum value (`CUSTOMER_CANCELLED`, `REGION_NOT_SERVED`, ...), as
/// serde writes it; empty for a value that does not serialize to a string.
pub fn wire_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The unit enum value a wire name stands for, if it names one.
pub fn from_wire_name<T: serde::de::DeserializeOwned>(name: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
}

pub use messages::{Message, MessageKind, MessageType};
pub use topology::{ServiceId, ServiceSpec, Topics};
pub use values::{
    Currency, CustomerId, Money, OrderId, OrderLine, PricedLine, ProductId, ShippingAddress,
};

#[cfg(test)]
mod tests {
    use super::*;
    use messages::CancelReason;

    #[test]
    fn wire_names_round_trip() {
        assert_eq!(
            wire_name(&CancelReason::CustomerCancelled),
            "CUSTOMER_CANCELLED"
        );
        assert_eq!(
            from_wire_name::<CancelReason>("CUSTOMER_CANCELLED"),
            Some(CancelReason::CustomerCancelled)
        );
        assert_eq!(from_wire_name::<CancelReason>("LATER"), None);
        assert_eq!(wire_name(&7), "");
    }
}
