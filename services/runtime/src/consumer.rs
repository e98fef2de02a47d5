//! The idempotent consumer loop: at-least-once in, exactly-once effect.
//!
//! For every message, in one database transaction: insert the envelope id into
//! `processed_messages` (a conflict means a duplicate: skip it), run the [`Handler`], and write any
//! messages it emits to the outbox. The Kafka offset is stored only after that transaction
//! commits, so a crash at any point means redelivery, and redelivery changes nothing.
//!
//! Failures:
//! - **Poison** (undecodable, unknown type, contract violation) and [`HandlerError::Rejected`] go
//!   straight to `<topic>.dlq`.
//! - **Handler errors** are retried with capped exponential backoff, up to `max_attempts` tries in
//!   all, then dead-lettered.
//! - **Database outage** (connection refused, pool timeout, server shutting down) pauses the loop
//!   on the current message until the database is back, without using up attempts.
//!
//! Dead-lettering writes the DLQ record to the outbox in the same transaction that marks the
//! delivery settled, so it happens exactly once and survives a broker outage. The record keeps the
//! original key, value and headers and adds the [`oms_contracts::headers::dlq`] set. It is keyed
//! in the inbox by its delivery coordinates, not its envelope id, so a later replay of the same
//! message (at a new offset) is handled normally.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oms_contracts::headers::dlq as dlq_headers;
use oms_contracts::{topics, Envelope, Message};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message as KafkaMessage};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::config::Topics;
use crate::kafka::{self, QuietContext};
use crate::metrics::Metrics;
use crate::outbox::{self, EnqueueError, Header, OutgoingMessage};

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
    tx: Transaction<'static, Postgres>,
    cause: Envelope,
    service: Arc<str>,
    topics: Topics,
    attempt: u32,
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
        outbox::enqueue(
            &mut *self.tx,
            &self.topics.name(envelope.topic()),
            &envelope.key(),
            &envelope,
        )
        .await?;
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
}

/// Business logic for one consumer group.
pub trait Handler: Send + Sync + 'static {
    /// Handles one decoded message inside `ctx`'s transaction. Ignoring a message is `Ok(())`.
    fn handle<'a>(
        &'a self,
        ctx: &'a mut HandlerContext,
        envelope: &'a Envelope,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send + 'a;
}

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Service name (DLQ header, logs, emitted messages' source).
    pub service: String,
    /// Kafka consumer group, also the inbox's key.
    pub group_id: String,
    /// Topics to subscribe to.
    pub topics: Vec<String>,
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// Handler tries before dead-lettering.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt.
    pub base_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// How emitted messages' topics are named (prefix).
    pub topic_names: Topics,
    /// Longest time the broker holds a fetch waiting for data (`fetch.wait.max.ms`).
    pub fetch_wait: Duration,
}

impl ConsumerConfig {
    /// Defaults for `group_id` of `service` on `topics`.
    pub fn new(service: &str, group_id: &str, topics: &[&str], brokers: &str) -> Self {
        Self {
            service: service.to_owned(),
            group_id: group_id.to_owned(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            brokers: brokers.to_owned(),
            max_attempts: 5,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            topic_names: Topics::default(),
            fetch_wait: kafka::DEFAULT_FETCH_WAIT,
        }
    }
}

/// Counters of what a consumer did, for tests and status pages.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    /// Messages handled.
    pub handled: AtomicU64,
    /// Duplicates skipped.
    pub duplicates: AtomicU64,
    /// Messages dead-lettered.
    pub dead_lettered: AtomicU64,
    /// Handler retries.
    pub retries: AtomicU64,
    /// Waits for an unavailable database (these use up no attempts).
    pub outage_waits: AtomicU64,
}

/// Why a consumer could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// Creating or subscribing the Kafka consumer failed.
    #[error("consumer group {group}: {source}")]
    Kafka {
        /// Group concerned.
        group: String,
        /// Cause.
        #[source]
        source: rdkafka::error::KafkaError,
    },
}

enum Settled {
    Yes,
    Interrupted,
}

enum Failure {
    Rejected(String),
    Transient(String),
    Outage(String),
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

/// What a message looked like when it arrived, kept for dead-lettering.
struct Delivery<'m> {
    topic: &'m str,
    partition: i32,
    offset: i64,
    key: Option<&'m [u8]>,
    payload: Option<&'m [u8]>,
    headers: Vec<Header>,
}

impl<'m> Delivery<'m> {
    fn of(msg: &'m BorrowedMessage<'m>) -> Self {
        let headers = msg
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| Header {
                        name: h.key.to_owned(),
                        value: h.value.map(<[u8]>::to_vec),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            topic: msg.topic(),
            partition: msg.partition(),
            offset: msg.offset(),
            key: msg.key(),
            payload: msg.payload(),
            headers,
        }
    }

    /// Inbox key of a dead-lettered delivery: stable for redeliveries of this offset only.
    fn coordinates_id(&self) -> Uuid {
        let name = format!("kafka://{}/{}/{}", self.topic, self.partition, self.offset);
        Uuid::new_v5(&Uuid::NAMESPACE_URL, name.as_bytes())
    }
}

fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
    base.saturating_mul(factor).min(max)
}

/// An idempotent consumer running one [`Handler`].
pub struct InboxConsumer<H> {
    pool: PgPool,
    consumer: StreamConsumer<QuietContext>,
    handler: H,
    config: ConsumerConfig,
    service: Arc<str>,
    metrics: Metrics,
    stats: Arc<ConsumerStats>,
}

impl<H: Handler> InboxConsumer<H> {
    /// Creates the consumer and subscribes it.
    pub fn new(
        pool: PgPool,
        config: ConsumerConfig,
        handler: H,
        metrics: Metrics,
    ) -> Result<Self, ConsumerError> {
        let err = |source| ConsumerError::Kafka {
            group: config.group_id.clone(),
            source,
        };
        let consumer: StreamConsumer<QuietContext> =
            kafka::consumer_config(&config.brokers, &config.group_id, &config.service)
                .set(
                    "fetch.wait.max.ms",
                    config.fetch_wait.as_millis().clamp(1, 300_000).to_string(),
                )
                .create_with_context(QuietContext::with_lag_metrics(
                    metrics.clone(),
                    &config.group_id,
                ))
                .map_err(err)?;
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(err)?;
        Ok(Self {
            pool,
            consumer,
            handler,
            service: Arc::from(config.service.as_str()),
            config,
            metrics,
            stats: Arc::new(ConsumerStats::default()),
        })
    }

    /// Live counters of this consumer.
    pub fn stats(&self) -> Arc<ConsumerStats> {
        Arc::clone(&self.stats)
    }

    /// Consumes until `shutdown`. The message in hand is finished first (unless it is waiting out
    /// an outage or a backoff, in which case it is left for redelivery), then stored offsets are
    /// committed.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ConsumerError> {
        tracing::info!(group = %self.config.group_id, topics = ?self.config.topics, "consumer started");
        let mut last_recv_error: Option<Instant> = None;
        loop {
            let msg = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                msg = self.consumer.recv() => msg,
            };
            let msg = match msg {
                Ok(msg) => msg,
                Err(e) => {
                    if last_recv_error.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                        tracing::warn!(group = %self.config.group_id, error = %e, "consumer error (repeats logged at debug for a minute)");
                        last_recv_error = Some(Instant::now());
                    } else {
                        tracing::debug!(group = %self.config.group_id, error = %e, "consumer error");
                    }
                    continue;
                }
            };
            let span = tracing::info_span!(
                "message",
                service = %self.service,
                group = %self.config.group_id,
                topic = msg.topic(),
                partition = msg.partition(),
                offset = msg.offset(),
                message_id = tracing::field::Empty,
                message_type = tracing::field::Empty,
                correlation_id = tracing::field::Empty,
            );
            let settled = self.process(&msg, &shutdown).instrument(span).await;
            match settled {
                Settled::Yes => {
                    if let Err(e) = self.consumer.store_offset_from_message(&msg) {
                        // The partition was revoked meanwhile; the new owner will see the
                        // message again and skip it as a duplicate.
                        tracing::debug!(error = %e, "storing the offset failed");
                    }
                }
                Settled::Interrupted => break,
            }
        }
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(error = %e, "final offset commit had nothing to do or failed");
        }
        tracing::info!(group = %self.config.group_id, "consumer stopped");
        Ok(())
    }

    async fn process(&self, msg: &BorrowedMessage<'_>, shutdown: &CancellationToken) -> Settled {
        let delivery = Delivery::of(msg);
        let envelope = match Envelope::decode(delivery.payload.unwrap_or_default()) {
            Ok(envelope) => envelope,
            Err(e) => {
                return self
                    .dead_letter(&delivery, None, e.class(), &e.to_string(), 0, shutdown)
                    .await
            }
        };
        let span = tracing::Span::current();
        span.record("message_id", tracing::field::display(envelope.event_id));
        span.record("message_type", envelope.message_type().as_str());
        span.record(
            "correlation_id",
            tracing::field::display(envelope.correlation_id),
        );

        let mut attempt = 0;
        let mut outage: Option<(Instant, u32)> = None;
        loop {
            attempt += 1;
            let started = Instant::now();
            let result = self.try_handle(&delivery, &envelope, attempt).await;
            match result {
                Ok(duplicate) => {
                    if let Some((since, _)) = outage {
                        tracing::info!(
                            after_seconds = since.elapsed().as_secs_f64(),
                            "database reachable again; consumption resumed"
                        );
                    }
                    let outcome = if duplicate { "duplicate" } else { "handled" };
                    self.metrics.consumed(&self.config.group_id, outcome);
                    if duplicate {
                        self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!("duplicate skipped");
                    } else {
                        self.stats.handled.fetch_add(1, Ordering::Relaxed);
                        self.metrics.observe_handler(
                            &self.config.group_id,
                            started.elapsed().as_secs_f64(),
                        );
                        tracing::debug!(attempt, "handled");
                    }
                    return Settled::Yes;
                }
                Err(Failure::Rejected(reason)) => {
                    return self
                        .dead_letter(
                            &delivery,
                            Some(&envelope),
                            "handler.rejected",
                            &reason,
                            attempt,
                            shutdown,
                        )
                        .await;
                }
                Err(Failure::Outage(reason)) => {
                    // Not the message's fault: wait for the database without using up attempts.
                    attempt -= 1;
                    let (since, waits) = outage.get_or_insert((Instant::now(), 0));
                    *waits += 1;
                    self.stats.outage_waits.fetch_add(1, Ordering::Relaxed);
                    if *waits == 1 {
                        tracing::warn!(error = %reason, "database unavailable; consumption paused until it is back");
                    }
                    let delay = backoff(Duration::from_millis(200), Duration::from_secs(5), *waits);
                    tracing::debug!(
                        paused_seconds = since.elapsed().as_secs_f64(),
                        "still waiting for the database"
                    );
                    if self.wait(delay, shutdown).await.is_err() {
                        return Settled::Interrupted;
                    }
                }
                Err(Failure::Transient(reason)) => {
                    if attempt >= self.config.max_attempts {
                        return self
                            .dead_letter(
                                &delivery,
                                Some(&envelope),
                                "handler.exhausted",
                                &reason,
                                attempt,
                                shutdown,
                            )
                            .await;
                    }
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    self.metrics.handler_retried(&self.config.group_id);
                    let delay = backoff(self.config.base_backoff, self.config.max_backoff, attempt);
                    tracing::warn!(attempt, error = %reason, retry_in_ms = delay.as_millis() as u64, "handler failed; retrying");
                    if self.wait(delay, shutdown).await.is_err() {
                        return Settled::Interrupted;
                    }
                }
            }
        }
    }

    async fn wait(&self, delay: Duration, shutdown: &CancellationToken) -> Result<(), ()> {
        tokio::select! {
            _ = shutdown.cancelled() => Err(()),
            _ = tokio::time::sleep(delay) => Ok(()),
        }
    }

    /// One try: inbox insert, handler, commit. `Ok(true)` for a duplicate.
    async fn try_handle(
        &self,
        delivery: &Delivery<'_>,
        envelope: &Envelope,
        attempt: u32,
    ) -> Result<bool, Failure> {
        let mut tx = self.pool.begin().await?;
        let first = self
            .settle(
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
        };
        match self.handler.handle(&mut ctx, envelope).await {
            Ok(()) => {}
            Err(HandlerError::Rejected(reason)) => return Err(Failure::Rejected(reason)),
            Err(HandlerError::Retry(reason)) => return Err(Failure::Transient(reason)),
            Err(HandlerError::Database(e)) => return Err(e.into()),
        }
        ctx.tx.commit().await?;
        Ok(false)
    }

    /// Writes the delivery to `<topic>.dlq` through the outbox, once, with diagnostics.
    async fn dead_letter(
        &self,
        delivery: &Delivery<'_>,
        envelope: Option<&Envelope>,
        class: &str,
        reason: &str,
        attempts: u32,
        shutdown: &CancellationToken,
    ) -> Settled {
        let mut headers = delivery.headers.clone();
        let failed_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        for (name, value) in [
            (dlq_headers::ORIGIN_TOPIC, delivery.topic.to_owned()),
            (
                dlq_headers::ORIGIN_PARTITION,
                delivery.partition.to_string(),
            ),
            (dlq_headers::ORIGIN_OFFSET, delivery.offset.to_string()),
            (dlq_headers::CONSUMER_GROUP, self.config.group_id.clone()),
            (dlq_headers::SERVICE, self.config.service.clone()),
            (dlq_headers::ERROR_CLASS, class.to_owned()),
            (dlq_headers::ERROR_MESSAGE, reason.to_owned()),
            (dlq_headers::ATTEMPTS, attempts.to_string()),
            (dlq_headers::FAILED_AT, failed_at),
        ] {
            headers.push(Header::text(name, value));
        }
        let record = OutgoingMessage {
            topic: topics::dlq(delivery.topic),
            key: delivery.key.map(<[u8]>::to_vec),
            payload: delivery.payload.map(<[u8]>::to_vec),
            headers,
            message_id: envelope.map(|e| e.event_id),
            message_type: envelope.map(|e| e.message_type().as_str().to_owned()),
        };
        let mut waits = 0;
        loop {
            match self.try_dead_letter(delivery, &record).await {
                Ok(first_time) => {
                    if first_time {
                        self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                        self.metrics
                            .consumed(&self.config.group_id, "dead_lettered");
                        tracing::warn!(error_class = class, error = reason, attempts, dlq = %record.topic, "message dead-lettered");
                    } else {
                        self.metrics.consumed(&self.config.group_id, "duplicate");
                        tracing::debug!("dead-lettered delivery seen again; skipped");
                    }
                    return Settled::Yes;
                }
                Err(e) => {
                    waits += 1;
                    if waits == 1 {
                        tracing::warn!(error = %e, "cannot record the dead letter yet; waiting for the database");
                    }
                    let delay = backoff(Duration::from_millis(200), Duration::from_secs(5), waits);
                    if self.wait(delay, shutdown).await.is_err() {
                        return Settled::Interrupted;
                    }
                }
            }
        }
    }

    async fn try_dead_letter(
        &self,
        delivery: &Delivery<'_>,
        record: &OutgoingMessage,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let first = self
            .settle(
                &mut tx,
                delivery,
                delivery.coordinates_id(),
                "dead-lettered",
                record.message_type.as_deref(),
            )
            .await?;
        if first {
            outbox::enqueue_raw(&mut *tx, record).await?;
        }
        tx.commit().await?;
        Ok(first)
    }

    /// Records in the inbox that `id` was settled with `outcome`; false when it already was.
    async fn settle(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        delivery: &Delivery<'_>,
        id: Uuid,
        outcome: &str,
        message_type: Option<&str>,
    ) -> Result<bool, sqlx::Error> {
        let inserted = sqlx::query(
            "INSERT INTO processed_messages \
                 (consumer_group, message_id, outcome, message_type, topic, kafka_partition, kafka_offset) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(&self.config.group_id)
        .bind(id)
        .bind(outcome)
        .bind(message_type)
        .bind(delivery.topic)
        .bind(delivery.partition)
        .bind(delivery.offset)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        assert_eq!(backoff(base, max, 1), Duration::from_millis(100));
        assert_eq!(backoff(base, max, 2), Duration::from_millis(200));
        assert_eq!(backoff(base, max, 3), Duration::from_millis(400));
        assert_eq!(backoff(base, max, 5), max);
        assert_eq!(backoff(base, max, 500), max);
    }
}
