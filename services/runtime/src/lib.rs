//! The shared runtime every OMS service is built on.
//!
//! # Layout
//! - [`config`]: settings from flags and `OMS_*` environment variables.
//! - [`telemetry`]: JSON logs and OpenTelemetry traces through `tracing`, OTLP export.
//! - [`db`]: the service's own database, created if missing, migrated at start.
//! - [`outbox`]: `enqueue` inside the caller's transaction; backlog; pruning.
//! - [`relay`]: publishes the outbox to Kafka (pipelined, idempotent producer, acks=all, ordered
//!   per key); [`publisher`]: its producer, polled without a busy loop.
//! - [`consumer`]: the idempotent consumer: key-ordered workers, batched transactions, retries,
//!   dead-lettering and outage pauses; [`dispatch`]: its per-key queue and offset tracker.
//! - [`kafka`]: client settings, quiet logging, error classes, topic creation.
//! - [`http`]: `/health/live`, `/health/ready`, `/metrics`, list filters, JSON extractors;
//!   [`problem`]: the problem+json error body every endpoint answers with.
//! - [`auth`]: bearer tokens (JWKS re-read on change), roles; [`limit`]: rate limits per client.
//! - [`metrics`]: Prometheus metrics (the `prometheus_client` crate is re-exported for the
//!   services' own).
//! - [`service`]: the [`service::Runtime`] that runs all of the above until shutdown.
//! - [`shutdown`]: SIGTERM/SIGINT handling.

pub mod auth;
pub mod config;
pub mod consumer;
pub mod db;
pub mod dispatch;
pub mod http;
pub mod inbox;
pub mod kafka;
pub mod knobs;
pub mod limit;
pub mod metrics;
pub mod outbox;
pub mod problem;
pub mod publisher;
pub mod relay;
pub mod retry;
pub mod service;
pub mod shutdown;
pub mod telemetry;

pub use config::RuntimeConfig;
pub use consumer::{Handler, HandlerContext, HandlerError, Parallelism};
pub use prometheus_client;
pub use service::Runtime;
