//! The idempotent consumer: at-least-once in, exactly-once effect, several messages at a time.
//!
//! For every message, in one database transaction: insert the envelope id into
//! `processed_messages` (a conflict means a duplicate: skip it), run the [`Handler`], and write any
//! messages it emits to the outbox. The Kafka offset is stored only after that transaction
//! commits, and never past a message that is not finished, so a crash at any point means
//! redelivery, and redelivery changes nothing.
//!
//! Throughput without giving up per-key order:
//! - **Workers.** One loop receives from Kafka and queues each delivery behind the others of its
//!   key ([`crate::dispatch::KeyQueue`]); [`Parallelism::workers`] workers take batches from keys
//!   nobody else holds. Two messages of one order are never handled at once or out of order;
//!   different orders are handled in parallel.
//! - **Batches.** A worker settles up to [`Parallelism::max_batch`] messages in one transaction
//!   (one inbox insert, one commit and one fsync for all of them). Any failure inside a batch
//!   rolls it back and its messages are settled again one by one, with the usual retries, so a
//!   batch never changes what happens to a message, only how many commits it costs.
//! - **Interest.** A message type the handler declares no interest in is acknowledged without a
//!   transaction: it would change nothing, so it needs no inbox row either.
//! - **Long poll.** An idle consumer waits in a fetch the broker parks and answers the moment a
//!   message arrives (`fetch.wait.max.ms`, 500 ms by default, only bounds how often it asks).
//!
//! Failures:
//! - **Poison** (undecodable, unknown type, contract violation, or misrouted: a type its topic
//!   does not carry, or an emitter other than the one the topology names) and
//!   [`HandlerError::Rejected`] go straight to `<topic>.dlq`.
//! - **Handler errors** are retried with capped exponential backoff with equal jitter, up to
//!   `max_attempts` tries in all, then dead-lettered; the decision after each failed try is
//!   [`crate::retry::RetryPolicy`]'s. Only the failing message's key waits; other keys go on.
//! - **Database outage** (connection refused, pool timeout, server shutting down) pauses the
//!   workers on what they hold until the database is back, without using up attempts; the
//!   receive loop stops taking messages once its queue is full.
//!
//! Dead-lettering writes the DLQ record to the outbox in the same transaction that marks the
//! delivery settled, so it happens exactly once and survives a broker outage. The record keeps the
//! original key, value and headers and adds the [`oms_contracts::headers::dlq`] set. It is keyed
//! in the inbox by its delivery coordinates, not its envelope id, so a later replay of the same
//! message (at a new offset) is handled normally.
//!
//! A partition taken away by a rebalance while its messages are in the workers' hands is
//! redelivered to its new owner, which skips what was committed here as duplicates.
//!
//! # Files
//! Each layer imports only the ones below it:
//! - `handler`: the API a service implements ([`Handler`], [`HandlerContext`], [`HandlerError`],
//!   [`Parallelism`]); `config`: [`ConsumerConfig`], [`ConsumerStats`], [`ConsumerError`].
//! - `delivery`: a message as received, and how settling it ended.
//! - `shared`: what the receive loop and the workers share, and the helpers both settling and
//!   dead-lettering use (waits, inbox rows, spans, counters).
//! - `dead_letter`: writing a delivery to `<topic>.dlq` through the outbox.
//! - `settle`: settling a batch in one transaction, or one by one with retries.
//! - `fetch`: [`InboxConsumer`]: the receive loop with its back-pressure and the workers' loop
//!   that stores offsets.

mod config;
mod dead_letter;
mod delivery;
mod fetch;
mod handler;
mod settle;
mod shared;

pub use config::{ConsumerConfig, ConsumerError, ConsumerStats};
pub use fetch::InboxConsumer;
pub use handler::{Handler, HandlerContext, HandlerError, Parallelism};
