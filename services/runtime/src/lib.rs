//! The shared runtime every OMS service is built on.
//!
//! # Layout
//! - [`config`]: settings from flags and `OMS_*` environment variables.
//! - [`telemetry`]: JSON logs through `tracing`.
//! - [`db`]: the service's own database, created if missing, migrated at start.
//! - [`outbox`]: `enqueue` inside the caller's transaction; backlog; pruning.
//! - [`relay`]: publishes the outbox to Kafka (idempotent producer, acks=all, ordered per key).
//! - [`consumer`]: the idempotent consumer loop with retries, dead-lettering and outage pauses.
//! - [`kafka`]: client settings, quiet logging, error classes, topic creation.
//! - [`http`]: `/health/live`, `/health/ready`, `/metrics` and the JSON error body.
//! - [`metrics`]: Prometheus metrics.
//! - [`service`]: the [`service::Runtime`] that runs all of the above until shutdown.
//! - [`shutdown`]: SIGTERM/SIGINT handling.

pub mod config;
pub mod consumer;
pub mod db;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod outbox;
pub mod relay;
pub mod service;
pub mod shutdown;
pub mod telemetry;

pub use config::RuntimeConfig;
pub use consumer::{Handler, HandlerContext, HandlerError};
pub use service::Runtime;
