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
pub mod topics;
pub mod topology;
pub mod values;

pub use envelope::{DecodeError, Envelope};
pub use messages::{Message, MessageKind, MessageType};
pub use topology::{ServiceId, ServiceSpec, Topics};
pub use values::{
    Currency, CustomerId, Money, OrderId, OrderLine, PricedLine, ProductId, ShippingAddress,
};
