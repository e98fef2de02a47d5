//! The handler API: what a service implements and the context its handler works in.

use std::future::Future;
use std::sync::Arc;

use oms_contracts::{Envelope, Message, MessageType};
use sqlx::{PgConnection, Postgres, Transaction};

use crate::outbox::{self, EnqueueError};
use oms_contracts::Topics;

/// Why a handler could not handle a message.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The message can never be handled (it breaks a rule the decoder cannot see): dead-letter
    /// it now.
    #[error("rejected: {0}")]
    Rejected(String),
    /// Something went wrong that may not happen again: retry with backoff.
    #[error("{0}")]
    Retry(String),
    /// A database error: an outage pauses the consumer, anything else is retried.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl From<EnqueueError> for HandlerError {
    fn from(e: EnqueueError) -> Self {
        HandlerError::Database(e.into())
    }
}

/// The transaction a handler works in, and a way to emit messages caused by the one it handles.
pub struct HandlerContext {
    pub(super) tx: Transaction<'static, Postgres>,
    pub(super) cause: Envelope,
    pub(super) service: Arc<str>,
    pub(super) topics: Topics,
    pub(super) attempt: u32,
    pub(super) after_commit: Vec<AfterCommit>,
    /// Whether the transaction wrote outbox rows (the relay is notified after the commit).
    pub(super) emitted: bool,
}

/// Work to do once the handler's transaction has committed.
type AfterCommit = Box<dyn FnOnce() + Send>;

pub(super) fn run_after_commit(hooks: Vec<AfterCommit>) {
    for hook in hooks {
        hook();
    }
}

impl HandlerContext {
    /// The transaction: everything done through it commits together with the inbox row.
    pub fn tx(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// Emits `message` through the outbox, caused by the message being handled (same
    /// correlation id), on its type's topic, keyed by its order id.
    pub async fn emit(&mut self, message: impl Into<Message>) -> Result<Envelope, HandlerError> {
        let envelope = Envelope::caused_by(&self.cause, message, &self.service);
        outbox::enqueue_envelope(&mut *self.tx, &self.topics, &envelope).await?;
        self.emitted = true;
        Ok(envelope)
    }

    /// The message being handled.
    pub fn cause(&self) -> &Envelope {
        &self.cause
    }

    /// 1 on the first try, 2 on the first retry, ...
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Runs `hook` once the transaction commits, never if it rolls back (a failed try, a batch
    /// settled again one by one): for counting business outcomes exactly once.
    pub fn after_commit(&mut self, hook: impl FnOnce() + Send + 'static) {
        self.after_commit.push(Box::new(hook));
    }
}

/// How many messages of one consumer may be in hand at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parallelism {
    /// Transactions in flight at once, each on keys of its own.
    pub workers: usize,
    /// Messages settled in one transaction at most.
    pub max_batch: usize,
}

impl Parallelism {
    /// Several orders at once, up to 32 messages per commit: for handlers whose work on one
    /// order touches only that order's rows.
    pub const DEFAULT: Parallelism = Parallelism {
        workers: 4,
        max_batch: 32,
    };

    /// One message at a time, each in its own transaction (the design of comparable projects;
    /// the baseline of the benchmarks).
    pub const SERIAL: Parallelism = Parallelism {
        workers: 1,
        max_batch: 1,
    };

    /// `self` within the limits of `cap` (an operator's setting), at least one of each.
    pub fn capped(self, cap: Parallelism) -> Parallelism {
        Parallelism {
            workers: self.workers.min(cap.workers).max(1),
            max_batch: self.max_batch.min(cap.max_batch).max(1),
        }
    }
}

/// Business logic for one consumer group.
pub trait Handler: Send + Sync + 'static {
    /// Whether messages of `message_type` can change anything here. Others are acknowledged
    /// without a transaction or an inbox row. All by default.
    fn interest(&self, message_type: MessageType) -> bool {
        let _ = message_type;
        true
    }

    /// How the handler may be run: how many transactions at once and how many messages in one.
    /// [`Parallelism::DEFAULT`] unless the handler says otherwise (shared hot rows, calls to
    /// the outside world).
    fn parallelism(&self) -> Parallelism {
        Parallelism::DEFAULT
    }

    /// Handles one decoded message inside `ctx`'s transaction. Ignoring a message is `Ok(())`.
    /// Other messages may share the transaction (before and after this one): work only through
    /// `ctx` and never commit or roll back.
    fn handle<'a>(
        &'a self,
        ctx: &'a mut HandlerContext,
        envelope: &'a Envelope,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send + 'a;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operator_cap_limits_the_handler_but_never_to_zero() {
        let asked = Parallelism {
            workers: 8,
            max_batch: 32,
        };
        assert_eq!(asked.capped(Parallelism::SERIAL), Parallelism::SERIAL);
        let cap = Parallelism {
            workers: 2,
            max_batch: 100,
        };
        assert_eq!(
            asked.capped(cap),
            Parallelism {
                workers: 2,
                max_batch: 32
            }
        );
        let zero = Parallelism {
            workers: 0,
            max_batch: 0,
        };
        assert_eq!(asked.capped(zero), Parallelism::SERIAL);
    }
}
