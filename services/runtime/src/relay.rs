//! The outbox relay: publishes outbox rows to Kafka, in row id order, and marks each row
//! published only after the broker acknowledged it.
//!
//! - **One publisher per outbox.** Replicas of a service share an outbox; the relay that holds a
//!   session-level advisory lock is the leader and publishes, the others stand by and take over
//!   within a second when the leader's connection goes away. One publisher keeps per-key order
//!   without coordination; a row can be published twice only if a leader dies between the
//!   broker's ack and its commit of `published_at`.
//! - **Wake-up.** In `notify` mode the relay `LISTEN`s on [`crate::outbox::CHANNEL`] and every
//!   enqueue wakes it at commit, with a slow poll as a fallback; in `poll:<interval>` mode it
//!   polls.
//! - **Failures.** A transient failure (broker down, timeout) leaves the row pending with
//!   `attempts + 1` and `next_attempt_at` pushed out by capped exponential backoff; later rows of
//!   the same topic and key wait behind it, so they cannot overtake it. An outage is logged once
//!   when it starts and once when it ends. A permanent failure (message too large, invalid topic)
//!   marks the row failed with the reason, in place.
//! - **Housekeeping.** Published rows older than the retention are pruned; the backlog (count,
//!   oldest age) is exported as metrics.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::config::OutboxWakeup;
use crate::kafka::{self, QuietContext};
use crate::metrics::Metrics;
use crate::outbox::{self, Header};

/// Session advisory lock key held by the leading relay of an outbox (one per database).
const LEADER_LOCK_KEY: i64 = 0x0A5B_0000_0000_0001;

/// Relay settings.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Service name (client id, logs).
    pub service: String,
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// Wake-up mode.
    pub wakeup: OutboxWakeup,
    /// Rows per batch.
    pub batch_size: u32,
    /// First retry delay; doubles per attempt.
    pub base_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// How long published rows are kept.
    pub retention: Duration,
    /// How often the leader prunes.
    pub prune_interval: Duration,
    /// In `notify` mode, the fallback poll interval.
    pub fallback_poll: Duration,
    /// How often a standby relay tries to become leader.
    pub standby_poll: Duration,
    /// How long the producer tries one delivery before the row counts as failed for this attempt.
    pub message_timeout: Duration,
}

impl RelayConfig {
    /// Defaults for `service` on `brokers`.
    pub fn new(service: &str, brokers: &str) -> Self {
        Self {
            service: service.to_owned(),
            brokers: brokers.to_owned(),
            wakeup: OutboxWakeup::Notify,
            batch_size: 500,
            base_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            retention: Duration::from_secs(3600),
            prune_interval: Duration::from_secs(60),
            fallback_poll: Duration::from_secs(1),
            standby_poll: Duration::from_secs(1),
            message_timeout: kafka::MESSAGE_TIMEOUT,
        }
    }
}

/// Shared view of a running relay, for health checks.
#[derive(Debug, Default)]
pub struct RelayStatus {
    heartbeat_ms: AtomicI64,
    leader: std::sync::atomic::AtomicBool,
}

impl RelayStatus {
    fn beat(&self) {
        self.heartbeat_ms
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// Time since the relay loop last went round, `None` before it started.
    pub fn since_heartbeat(&self) -> Option<Duration> {
        let at = self.heartbeat_ms.load(Ordering::Relaxed);
        (at > 0).then(|| {
            let now = chrono::Utc::now().timestamp_millis();
            Duration::from_millis(u64::try_from(now - at).unwrap_or(0))
        })
    }

    /// Whether this relay currently publishes.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }
}

/// Why the relay stopped.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The producer could not be created (bad configuration).
    #[error("creating the Kafka producer: {0}")]
    Producer(#[source] rdkafka::error::KafkaError),
}

/// What one batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Rows selected.
    pub selected: usize,
    /// Rows published.
    pub published: usize,
    /// Rows that failed transiently and will be retried.
    pub retried: usize,
    /// Rows that failed permanently.
    pub failed: usize,
}

#[derive(sqlx::FromRow)]
struct StoredRow {
    id: i64,
    topic: String,
    message_key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: serde_json::Value,
}

struct Row {
    id: i64,
    topic: String,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: Vec<Header>,
}

/// The outbox relay of one service.
pub struct Relay {
    pool: PgPool,
    config: RelayConfig,
    metrics: Metrics,
    status: Arc<RelayStatus>,
    producer: FutureProducer<QuietContext>,
    outage_since: Option<Instant>,
    leader_conn: Option<PgConnection>,
}

impl Relay {
    /// A relay over `pool`'s outbox.
    pub fn new(pool: PgPool, config: RelayConfig, metrics: Metrics) -> Result<Self, RelayError> {
        let producer = Self::producer(&config)?;
        Ok(Self {
            pool,
            config,
            metrics,
            status: Arc::new(RelayStatus::default()),
            producer,
            outage_since: None,
            leader_conn: None,
        })
    }

    fn producer(config: &RelayConfig) -> Result<FutureProducer<QuietContext>, RelayError> {
        kafka::producer_config(&config.brokers, &format!("{}-relay", config.service))
            .set(
                "message.timeout.ms",
                config.message_timeout.as_millis().max(1).to_string(),
            )
            .create_with_context(QuietContext::default())
            .map_err(RelayError::Producer)
    }

    /// Health view of this relay.
    pub fn status(&self) -> Arc<RelayStatus> {
        Arc::clone(&self.status)
    }

    /// Runs until `shutdown`; the batch in flight is finished (acked rows are marked published)
    /// before it returns.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), RelayError> {
        let mut listener = None;
        let mut last_prune = Instant::now();
        let mut last_backlog: Option<Instant> = None;
        tracing::info!(service = %self.config.service, wakeup = ?self.config.wakeup, "outbox relay started");
        loop {
            self.status.beat();
            if shutdown.is_cancelled() {
                break;
            }
            if last_backlog.is_none_or(|t| t.elapsed() >= Duration::from_secs(2)) {
                last_backlog = Some(Instant::now());
                if let Ok(b) = outbox::backlog(&self.pool).await {
                    self.metrics
                        .set_backlog(b.pending, b.oldest_pending_seconds);
                }
            }
            if !self.lead().await {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(self.config.standby_poll) => continue,
                }
            }
            if self.config.wakeup == OutboxWakeup::Notify && listener.is_none() {
                listener = self.listen().await;
            }

            let outcome = match self.publish_batch().await {
                Ok(outcome) => outcome,
                Err(e) => {
                    // The database is unavailable; drop leadership state and retry shortly.
                    tracing::debug!(error = %e, "outbox batch failed");
                    self.resign();
                    listener = None;
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            self.rebuild_producer_if_fatal();

            if last_prune.elapsed() >= self.config.prune_interval {
                last_prune = Instant::now();
                match outbox::prune(&self.pool, self.config.retention, 10_000).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(rows = n, "pruned published outbox rows"),
                    Err(e) => tracing::debug!(error = %e, "pruning the outbox failed"),
                }
            }

            // A full batch with progress: more rows are likely waiting, go again at once.
            if outcome.selected as u32 >= self.config.batch_size && outcome.published > 0 {
                continue;
            }
            let wait = self.next_wait().await;
            match (&mut listener, self.config.wakeup) {
                (Some(l), OutboxWakeup::Notify) => {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        received = l.recv() => {
                            if received.is_err() {
                                listener = None;
                            } else {
                                // One batch answers every notification that piled up.
                                while l.next_buffered().is_some() {}
                            }
                        }
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
                _ => {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
        self.resign();
        // Let librdkafka finish deliveries it already has.
        let _ = self.producer.flush(Duration::from_secs(5));
        tracing::info!(service = %self.config.service, "outbox relay stopped");
        Ok(())
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut l = PgListener::connect_with(&self.pool).await.ok()?;
        l.listen(outbox::CHANNEL).await.ok()?;
        Some(l)
    }

    /// How long to sleep when idle: until the next retry is due, at most the poll interval.
    async fn next_wait(&self) -> Duration {
        let cap = match self.config.wakeup {
            OutboxWakeup::Notify => self.config.fallback_poll,
            OutboxWakeup::Poll(interval) => return interval,
        };
        let due: Result<Option<f64>, _> = sqlx::query_scalar(
            "SELECT EXTRACT(EPOCH FROM min(next_attempt_at) - clock_timestamp())::float8 \
             FROM outbox WHERE published_at IS NULL AND failed_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await;
        match due {
            Ok(Some(secs)) if secs <= 0.0 => Duration::from_millis(5),
            Ok(Some(secs)) => Duration::from_secs_f64(secs).min(cap),
            _ => cap,
        }
    }

    /// Holds or takes the leader lock; false when another relay leads.
    async fn lead(&mut self) -> bool {
        if let Some(conn) = self.leader_conn.as_mut() {
            // Still ours as long as the session is alive.
            if sqlx::query("SELECT 1").execute(&mut *conn).await.is_ok() {
                return true;
            }
            self.resign();
        }
        let Ok(mut conn) = crate::db::dedicated_connection(&self.pool).await else {
            return false;
        };
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LEADER_LOCK_KEY)
            .fetch_one(&mut conn)
            .await
            .unwrap_or(false);
        if got {
            tracing::info!(service = %self.config.service, "outbox relay is the leader");
            self.leader_conn = Some(conn);
            self.status.leader.store(true, Ordering::Relaxed);
            self.metrics.set_leader(true);
        }
        got
    }

    fn resign(&mut self) {
        if self.leader_conn.take().is_some() {
            tracing::info!(service = %self.config.service, "outbox relay gave up leadership");
        }
        // Dropping the connection ends the session and releases the lock.
        self.status.leader.store(false, Ordering::Relaxed);
        self.metrics.set_leader(false);
    }

    fn rebuild_producer_if_fatal(&mut self) {
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            tracing::error!(
                ?code,
                reason,
                "Kafka producer hit a fatal error; recreating it"
            );
            match Self::producer(&self.config) {
                Ok(p) => self.producer = p,
                Err(e) => tracing::error!(error = %e, "recreating the producer failed"),
            }
        }
    }

    /// Publishes one batch of due rows. Public so tests and benchmarks can drive the relay
    /// step by step.
    pub async fn publish_batch(&mut self) -> Result<BatchOutcome, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        // Due rows in id order, skipping any row with an earlier pending row of the same topic
        // and key that is waiting for a retry (it must not be overtaken).
        let rows: Vec<StoredRow> = sqlx::query_as(
            "SELECT o.id, o.topic, o.message_key, o.payload, o.headers FROM outbox o \
             WHERE o.published_at IS NULL AND o.failed_at IS NULL \
               AND o.next_attempt_at <= clock_timestamp() \
               AND NOT EXISTS ( \
                   SELECT 1 FROM outbox p \
                   WHERE p.topic = o.topic \
                     AND p.message_key IS NOT DISTINCT FROM o.message_key \
                     AND p.id < o.id AND p.published_at IS NULL AND p.failed_at IS NULL \
                     AND p.next_attempt_at > clock_timestamp()) \
             ORDER BY o.id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(i64::from(self.config.batch_size))
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(BatchOutcome::default());
        }
        let rows: Vec<Row> = rows
            .into_iter()
            .map(|r| Row {
                id: r.id,
                topic: r.topic,
                key: r.message_key,
                payload: r.payload,
                headers: outbox::headers_from_json(r.headers),
            })
            .collect();

        // Hand every row to librdkafka in id order (it keeps that order per partition), then
        // wait for all acks.
        let mut deliveries = Vec::with_capacity(rows.len());
        for row in &rows {
            deliveries.push(self.send(row).await);
        }
        let results = join_all(deliveries).await;

        let mut published = Vec::new();
        let mut retry: Vec<(i64, String)> = Vec::new();
        let mut failed: Vec<(i64, String)> = Vec::new();
        for (row, result) in rows.iter().zip(results) {
            match result {
                Ok(()) => published.push(row.id),
                Err(e) if kafka::is_permanent_produce_error(&e) => {
                    failed.push((row.id, kafka::describe(&e)))
                }
                Err(e) => retry.push((row.id, kafka::describe(&e))),
            }
        }

        if !published.is_empty() {
            sqlx::query(
                "UPDATE outbox SET published_at = clock_timestamp(), attempts = attempts + 1 \
                 WHERE id = ANY($1)",
            )
            .bind(&published)
            .execute(&mut *tx)
            .await?;
        }
        if !retry.is_empty() {
            let (ids, errors): (Vec<i64>, Vec<String>) = retry.iter().cloned().unzip();
            sqlx::query(
                "UPDATE outbox o SET attempts = o.attempts + 1, last_error = f.error, \
                     next_attempt_at = clock_timestamp() + make_interval(secs => \
                         least($3::float8, $2::float8 * power(2, least(o.attempts, 30)))) \
                 FROM unnest($1::bigint[], $4::text[]) AS f(id, error) WHERE o.id = f.id",
            )
            .bind(&ids)
            .bind(self.config.base_backoff.as_secs_f64())
            .bind(self.config.max_backoff.as_secs_f64())
            .bind(&errors)
            .execute(&mut *tx)
            .await?;
        }
        if !failed.is_empty() {
            let (ids, errors): (Vec<i64>, Vec<String>) = failed.iter().cloned().unzip();
            sqlx::query(
                "UPDATE outbox o SET attempts = o.attempts + 1, last_error = f.error, \
                     failed_at = clock_timestamp() \
                 FROM unnest($1::bigint[], $2::text[]) AS f(id, error) WHERE o.id = f.id",
            )
            .bind(&ids)
            .bind(&errors)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;

        self.metrics.outbox_published(published.len() as u64);
        self.metrics.outbox_retried(retry.len() as u64);
        self.metrics.outbox_dead_lettered(failed.len() as u64);
        for (id, error) in &failed {
            tracing::error!(outbox_id = id, error = %error, "outbox row failed permanently; kept with failed_at set");
        }
        self.track_outage(&published, &retry);
        Ok(BatchOutcome {
            selected: rows.len(),
            published: published.len(),
            retried: retry.len(),
            failed: failed.len(),
        })
    }

    fn track_outage(&mut self, published: &[i64], retry: &[(i64, String)]) {
        match (self.outage_since, retry.first()) {
            (None, Some((_, error))) => {
                self.outage_since = Some(Instant::now());
                tracing::warn!(
                    service = %self.config.service,
                    rows = retry.len(),
                    error = %error,
                    "cannot publish outbox rows; they stay pending and are retried with backoff"
                );
            }
            (Some(since), None) if !published.is_empty() => {
                self.outage_since = None;
                tracing::info!(
                    service = %self.config.service,
                    after_seconds = since.elapsed().as_secs_f64(),
                    "publishing outbox rows again"
                );
            }
            (Some(_), Some((_, error))) => {
                tracing::debug!(rows = retry.len(), error = %error, "outbox rows still failing");
            }
            _ => {}
        }
    }

    /// Queues one row with librdkafka; the returned future resolves with its delivery result.
    async fn send(
        &self,
        row: &Row,
    ) -> impl std::future::Future<Output = Result<(), rdkafka::error::KafkaError>> {
        let mut headers = OwnedHeaders::new_with_capacity(row.headers.len());
        for h in &row.headers {
            headers = headers.insert(KafkaHeader {
                key: &h.name,
                value: h.value.as_deref(),
            });
        }
        loop {
            let mut record = FutureRecord::<[u8], [u8]>::to(&row.topic).headers(headers.clone());
            if let Some(k) = row.key.as_deref() {
                record = record.key(k);
            }
            if let Some(p) = row.payload.as_deref() {
                record = record.payload(p);
            }
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    return futures::future::Either::Left(async move {
                        match delivery.await {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err((e, _))) => Err(e),
                            Err(_canceled) => Err(rdkafka::error::KafkaError::Canceled),
                        }
                    })
                }
                Err((e, _))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::error::RDKafkaErrorCode::QueueFull) =>
                {
                    // librdkafka's queue is full: give it a moment to drain.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => {
                    return futures::future::Either::Right(futures::future::ready(Err(e)))
                }
            }
        }
    }
}
