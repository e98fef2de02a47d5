//! Settling a batch of deliveries: in one transaction when it can, else one by one with
//! retries, outage waits and dead-lettering.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use oms_contracts::Envelope;
use sqlx::{Postgres, Transaction};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::delivery::{Delivery, Position, Settled};
use super::handler::{run_after_commit, Handler, HandlerContext, HandlerError};
use super::shared::Shared;
use crate::outbox;
use crate::retry::{FailureKind, Next};

enum Failure {
    Rejected(String),
    Transient(String),
    Outage(String),
}

impl Failure {
    fn kind(&self) -> FailureKind {
        match self {
            Failure::Rejected(_) => FailureKind::Rejected,
            Failure::Transient(_) => FailureKind::Transient,
            Failure::Outage(_) => FailureKind::Outage,
        }
    }

    fn reason(&self) -> &str {
        match self {
            Failure::Rejected(r) | Failure::Transient(r) | Failure::Outage(r) => r,
        }
    }
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        if crate::db::is_outage(&e) {
            Failure::Outage(e.to_string())
        } else {
            Failure::Transient(e.to_string())
        }
    }
}

impl From<HandlerError> for Failure {
    fn from(e: HandlerError) -> Self {
        match e {
            HandlerError::Rejected(reason) => Failure::Rejected(reason),
            HandlerError::Retry(reason) => Failure::Transient(reason),
            HandlerError::Database(e) => e.into(),
        }
    }
}

impl<H: Handler> Shared<H> {
    /// Settles `batch` (any keys, each key's messages in order): in one transaction when it can,
    /// else one by one. Returns the deliveries finished, and whether it was interrupted.
    pub(super) async fn settle(
        &self,
        batch: Vec<Delivery>,
        shutdown: &CancellationToken,
    ) -> (Vec<Position>, Settled) {
        let mut finished = Vec::with_capacity(batch.len());
        let mut first_attempt = vec![1u32; batch.len()];
        if batch.len() > 1 && batch.iter().all(|d| d.decoded.is_ok()) {
            let span = tracing::info_span!(
                target: crate::telemetry::LOCAL_ONLY,
                "batch",
                service = %self.service,
                group = %self.config.group_id,
                messages = batch.len(),
            );
            let mut outage: Option<(Instant, u32)> = None;
            loop {
                let started = Instant::now();
                match self.try_batch(&batch).instrument(span.clone()).await {
                    Ok((handled, duplicates)) => {
                        self.resumed(outage);
                        self.stats.batches.fetch_add(1, Ordering::Relaxed);
                        self.count_settled(handled, duplicates, started.elapsed());
                        let done = batch.iter().map(Delivery::position);
                        return (done.collect(), Settled::Yes);
                    }
                    Err((Failure::Outage(reason), _)) => {
                        if self
                            .outage_wait(&mut outage, &reason, shutdown)
                            .await
                            .is_err()
                        {
                            return (finished, Settled::Interrupted);
                        }
                    }
                    Err((failure, at)) => {
                        // Settle one by one; the message that failed has had its first try.
                        // That try counts: the one-by-one pass is its retry (and is counted as
                        // one), so a batch never gives a message more tries than alone.
                        if let Some(i) = at {
                            let policy = self.config.retry_policy();
                            if let Next::Retry { .. } = policy.next(failure.kind(), 1) {
                                first_attempt[i] = 2;
                                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                                self.metrics.handler_retried(&self.config.group_id);
                            }
                        }
                        tracing::debug!(parent: &span, "batch failed; settling its messages one by one");
                        break;
                    }
                }
            }
        }
        for (delivery, attempt) in batch.iter().zip(first_attempt) {
            let span = self.message_span(delivery, delivery.decoded.as_ref().ok());
            match self
                .process(delivery, attempt, shutdown)
                .instrument(span)
                .await
            {
                Settled::Yes => finished.push(delivery.position()),
                Settled::Interrupted => return (finished, Settled::Interrupted),
            }
        }
        (finished, Settled::Yes)
    }

    /// One transaction for the whole batch: `(handled, duplicates)`, or the failure and the
    /// index of the message that failed (none when the transaction itself failed).
    async fn try_batch(&self, batch: &[Delivery]) -> Result<(u64, u64), (Failure, Option<usize>)> {
        let mut tx = self.pool.begin().await.map_err(|e| (e.into(), None))?;
        let firsts = self
            .settle_many(&mut tx, batch)
            .await
            .map_err(|e| (e.into(), None))?;
        let (mut handled, mut duplicates) = (0, 0);
        let mut after_commit = Vec::new();
        let mut emitted = false;
        for (i, delivery) in batch.iter().enumerate() {
            let Ok(envelope) = &delivery.decoded else {
                continue;
            };
            if !firsts.contains(&i) {
                duplicates += 1;
                continue;
            }
            let mut ctx = HandlerContext {
                tx,
                cause: envelope.clone(),
                service: Arc::clone(&self.service),
                topics: self.config.topic_names.clone(),
                attempt: 1,
                after_commit,
                emitted,
            };
            // Each message is handled in a span of its own trace, whatever the batch.
            let span = self.message_span(delivery, Some(envelope));
            let result = self
                .handler
                .handle(&mut ctx, envelope)
                .instrument(span)
                .await;
            tx = ctx.tx;
            after_commit = ctx.after_commit;
            emitted = ctx.emitted;
            if let Err(e) = result {
                return Err((e.into(), Some(i)));
            }
            handled += 1;
        }
        tx.commit().await.map_err(|e| (e.into(), None))?;
        if emitted {
            outbox::notify(&self.pool).await;
        }
        run_after_commit(after_commit);
        Ok((handled, duplicates))
    }

    /// Inbox rows for every message of `batch` in one statement; the indexes of the messages
    /// seen for the first time (a message twice in one batch counts once).
    async fn settle_many(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        batch: &[Delivery],
    ) -> Result<HashSet<usize>, sqlx::Error> {
        let mut seen = HashSet::new();
        let mut index = Vec::new();
        let (mut ids, mut types, mut topics, mut partitions, mut offsets) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (i, d) in batch.iter().enumerate() {
            let Ok(envelope) = &d.decoded else { continue };
            if !seen.insert(envelope.event_id) {
                continue;
            }
            index.push((envelope.event_id, i));
            ids.push(envelope.event_id);
            types.push(envelope.message_type().as_str());
            topics.push(&*d.topic);
            partitions.push(d.partition);
            offsets.push(d.offset);
        }
        let inserted: Vec<Uuid> = sqlx::query_scalar(
            "INSERT INTO processed_messages \
                 (consumer_group, message_id, outcome, message_type, topic, kafka_partition, kafka_offset) \
             SELECT $1, m.id, 'handled', m.t, m.topic, m.p, m.o \
             FROM unnest($2::uuid[], $3::text[], $4::text[], $5::int4[], $6::int8[]) AS m(id, t, topic, p, o) \
             ON CONFLICT DO NOTHING RETURNING message_id",
        )
        .bind(&self.config.group_id)
        .bind(&ids)
        .bind(&types)
        .bind(&topics)
        .bind(&partitions)
        .bind(&offsets)
        .fetch_all(&mut **tx)
        .await?;
        let inserted: HashSet<Uuid> = inserted.into_iter().collect();
        Ok(index
            .into_iter()
            .filter(|(id, _)| inserted.contains(id))
            .map(|(_, i)| i)
            .collect())
    }

    /// Settles one delivery in transactions of its own, with retries, starting at `attempt`.
    async fn process(
        &self,
        delivery: &Delivery,
        first_attempt: u32,
        shutdown: &CancellationToken,
    ) -> Settled {
        let envelope = match &delivery.decoded {
            Ok(envelope) => envelope,
            Err((class, reason)) => {
                return self
                    .dead_letter(delivery, None, class, reason, 0, shutdown)
                    .await
            }
        };

        let policy = self.config.retry_policy();
        let mut attempt = first_attempt - 1;
        if attempt > 0 && self.wait(policy.backoff(attempt), shutdown).await.is_err() {
            return Settled::Interrupted;
        }
        let mut outage: Option<(Instant, u32)> = None;
        loop {
            attempt += 1;
            let started = Instant::now();
            let failure = match self.try_handle(delivery, envelope, attempt).await {
                Ok(duplicate) => {
                    self.resumed(outage);
                    if duplicate {
                        tracing::debug!("duplicate skipped");
                        self.count_settled(0, 1, started.elapsed());
                    } else {
                        tracing::debug!(attempt, "handled");
                        self.count_settled(1, 0, started.elapsed());
                    }
                    return Settled::Yes;
                }
                Err(failure) => failure,
            };
            match policy.next(failure.kind(), attempt) {
                Next::DeadLetter { class } => {
                    return self
                        .dead_letter(
                            delivery,
                            Some(envelope),
                            class,
                            failure.reason(),
                            attempt,
                            shutdown,
                        )
                        .await;
                }
                Next::AwaitDatabase => {
                    // Not the message's fault: wait for the database without using up a try.
                    attempt -= 1;
                    if self
                        .outage_wait(&mut outage, failure.reason(), shutdown)
                        .await
                        .is_err()
                    {
                        return Settled::Interrupted;
                    }
                }
                Next::Retry { after } => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    self.metrics.handler_retried(&self.config.group_id);
                    tracing::warn!(attempt, error = %failure.reason(), retry_in_ms = after.as_millis() as u64, "handler failed; retrying");
                    if self.wait(after, shutdown).await.is_err() {
                        return Settled::Interrupted;
                    }
                }
            }
        }
    }

    /// One try: inbox insert, handler, commit. `Ok(true)` for a duplicate.
    async fn try_handle(
        &self,
        delivery: &Delivery,
        envelope: &Envelope,
        attempt: u32,
    ) -> Result<bool, Failure> {
        let mut tx = self.pool.begin().await?;
        let first = self
            .settle_one(
                &mut tx,
                delivery,
                envelope.event_id,
                "handled",
                Some(envelope.message_type().as_str()),
            )
            .await?;
        if !first {
            tx.rollback().await?;
            return Ok(true);
        }
        let mut ctx = HandlerContext {
            tx,
            cause: envelope.clone(),
            service: Arc::clone(&self.service),
            topics: self.config.topic_names.clone(),
            attempt,
            after_commit: Vec::new(),
            emitted: false,
        };
        self.handler.handle(&mut ctx, envelope).await?;
        ctx.tx.commit().await?;
        if ctx.emitted {
            outbox::notify(&self.pool).await;
        }
        run_after_commit(ctx.after_commit);
        Ok(false)
    }
}
