//! The outbox relay: publishes outbox rows to Kafka, in row id order, and marks each row
//! published only after the broker acknowledged it.
//!
//! - **One publisher per outbox.** Replicas of a service share an outbox; the relay that holds a
//!   session-level advisory lock is the leader and publishes, the others stand by and take over
//!   within a second when the leader's connection goes away. Every query of the leader runs on
//!   the connection that holds the lock, so a relay that lost it cannot mark or select anything
//!   more. One publisher keeps per-key order without coordination; a row can be published twice
//!   only if a leader dies between the broker's ack and its mark of `published_at`.
//! - **Pipelined.** The leader selects and sends the next batch while the acks of earlier ones
//!   are still on their way (up to [`PIPELINE_DEPTH`] batches), and marks each batch when its
//!   acks are in, oldest first. librdkafka keeps the order of sends per partition, and rows are
//!   sent in id order, so the pipeline keeps per-key order.
//!   After an ack it queries again only if its last query may have left rows behind (it ran
//!   while rows were in flight, or came back full); anything else new comes with a wake-up.
//! - **Cheap marks.** Marks commit without waiting for the WAL flush (`synchronous_commit = off`
//!   on the leader's session): a mark lost in a database crash only means that row is published
//!   again, which consumers skip as a duplicate. It saves an fsync per batch.
//! - **Wake-up.** In `notify` mode the relay `LISTEN`s on [`crate::outbox::CHANNEL`], with a
//!   slow poll as a fallback; a service wakes it after each commit that wrote rows
//!   ([`crate::outbox::notify`]): in memory when the leading relay runs in the same process,
//!   else by `pg_notify`. Rows written by tools notify at their commit. In `poll:<interval>`
//!   mode it polls.
//! - **Failures.** A transient failure (broker down, timeout) leaves the row pending with
//!   `attempts + 1` and `next_attempt_at` pushed out by capped exponential backoff; later rows of
//!   the same topic and key wait behind it, so they cannot overtake it. An outage is logged once
//!   when it starts and once when it ends. A permanent failure (message too large, invalid topic)
//!   marks the row failed with the reason, in place.
//! - **Housekeeping.** Published rows older than the retention are pruned; the backlog (count,
//!   oldest age) is exported as metrics.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use rdkafka::error::KafkaError;
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::config::OutboxWakeup;
use crate::kafka;
use crate::metrics::Metrics;
use crate::outbox;
use crate::publisher::Publisher;

/// Published rows deleted per statement when pruning.
const PRUNE_BATCH: i64 = 10_000;

/// Most prune statements per look (every `prune_interval`): 100,000 rows a minute.
const PRUNE_ROUNDS: usize = 10;

/// Session advisory lock key held by the leading relay of an outbox (one per database).
const LEADER_LOCK_KEY: i64 = 0x0A5B_0000_0000_0001;

/// Batches sent and not yet acknowledged, at most.
pub const PIPELINE_DEPTH: usize = 4;

/// How often the backlog gauge is refreshed.
const BACKLOG_EVERY: Duration = Duration::from_secs(5);

/// How often an idle leader checks that its session (and so its lock) is alive.
const LEADER_CHECK_EVERY: Duration = Duration::from_secs(5);

/// Relay settings.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Service name (client id, logs).
    pub service: String,
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// The operator's librdkafka properties (security, tuning).
    pub kafka: oms_kafka::Properties,
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
    /// In `notify` mode, the fallback poll interval (a notification lost while the listener
    /// reconnects is found at the next poll).
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
            kafka: oms_kafka::Properties::new(),
            wakeup: OutboxWakeup::Notify,
            batch_size: 500,
            base_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            retention: Duration::from_secs(3600),
            prune_interval: Duration::from_secs(60),
            fallback_poll: Duration::from_secs(5),
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
    Producer(#[source] KafkaError),
}

#[derive(sqlx::FromRow)]
struct StoredRow {
    id: i64,
    topic: String,
    message_key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: serde_json::Value,
}

type Acks = Pin<Box<dyn Future<Output = Vec<Result<(), KafkaError>>> + Send + Sync>>;

/// A batch handed to librdkafka whose acks are awaited.
struct InFlight {
    ids: Vec<i64>,
    acks: Acks,
}

/// What ended an idle wait.
enum Wake {
    Shutdown,
    Acked(Vec<Result<(), KafkaError>>),
    /// A notification (false: the listener's connection was lost).
    Notified(bool),
    Timer,
}

/// How a finished batch went.
#[derive(Debug, Default)]
struct Outcome {
    published: Vec<i64>,
    retry: Vec<(i64, String)>,
    failed: Vec<(i64, String)>,
}

/// The outbox relay of one service.
pub struct Relay {
    pool: PgPool,
    config: RelayConfig,
    metrics: Metrics,
    status: Arc<RelayStatus>,
    publisher: Arc<Publisher>,
    outage_since: Option<Instant>,
    /// The leader's session: holds the lock and runs the relay's queries.
    leader: Option<PgConnection>,
    /// A standby's session, kept between its tries for the lock (a new session per try would
    /// cost PostgreSQL a backend and an authentication every `standby_poll`).
    candidate: Option<PgConnection>,
    leader_checked: Instant,
    in_flight: VecDeque<InFlight>,
    /// Rows are waiting for a retry (ours or a previous leader's): the idle wait asks when.
    retries_pending: bool,
    /// In `notify` mode, the wake-up this process's commits use while this relay leads.
    local: Option<Arc<outbox::local::LocalRelay>>,
    /// Rows may be waiting: at the start, on taking the lead, after a wake-up or a timer, and
    /// after an ack when the last query may have left rows behind. Cleared by a query.
    select_due: bool,
    /// The last query ran while rows were in flight or retried rows were pending (it holds
    /// back any row whose key has such an earlier row, which the ack of that row frees) or came
    /// back full.
    rows_left_behind: bool,
}

impl Relay {
    /// A relay over `pool`'s outbox.
    pub fn new(pool: PgPool, config: RelayConfig, metrics: Metrics) -> Result<Self, RelayError> {
        let publisher = Arc::new(Self::new_publisher(&config)?);
        Ok(Self {
            pool,
            config,
            metrics,
            status: Arc::new(RelayStatus::default()),
            publisher,
            outage_since: None,
            leader: None,
            candidate: None,
            leader_checked: Instant::now(),
            in_flight: VecDeque::new(),
            retries_pending: true,
            local: None,
            select_due: true,
            rows_left_behind: false,
        })
    }

    fn new_publisher(config: &RelayConfig) -> Result<Publisher, RelayError> {
        let mut client = kafka::producer_config_with(
            &config.brokers,
            &format!("{}-relay", config.service),
            &config.kafka,
        );
        client.set(
            "message.timeout.ms",
            config.message_timeout.as_millis().max(1).to_string(),
        );
        Publisher::new(&client, &format!("{}-relay", config.service)).map_err(RelayError::Producer)
    }

    /// Health view of this relay.
    pub fn status(&self) -> Arc<RelayStatus> {
        Arc::clone(&self.status)
    }

    /// The relay's producer (the readiness check probes the broker through it).
    pub fn publisher(&self) -> Arc<Publisher> {
        Arc::clone(&self.publisher)
    }

    /// Runs until `shutdown`; batches in flight are finished (acked rows are marked published)
    /// before it returns.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), RelayError> {
        let mut listener = None;
        let mut last_prune = Instant::now();
        let mut last_backlog: Option<Instant> = None;
        tracing::info!(service = %self.config.service, wakeup = ?self.config.wakeup, "outbox relay started");
        if self.config.wakeup == OutboxWakeup::Notify {
            self.local = Some(outbox::local::register(&self.pool));
        }
        let local = self.local.clone();
        loop {
            self.status.beat();
            if shutdown.is_cancelled() {
                break;
            }
            if last_backlog.is_none_or(|t| t.elapsed() >= BACKLOG_EVERY) {
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

            // Fill the pipeline, when rows may be waiting: an ack alone brings none, unless the
            // last query left some behind.
            let mut more = false;
            while self.select_due && self.in_flight.len() < PIPELINE_DEPTH {
                self.select_due = false;
                match self.send_next().await {
                    Ok(sent) => {
                        more = sent >= self.config.batch_size as usize;
                        if !more {
                            break;
                        }
                        self.select_due = true;
                    }
                    Err(e) => {
                        // The leader's session is gone: whoever leads next republishes what
                        // we could not mark.
                        tracing::debug!(error = %e, "outbox batch failed");
                        self.resign();
                        listener = None;
                        break;
                    }
                }
            }
            if self.leader.is_none() {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
            self.rebuild_producer_if_fatal();

            if last_prune.elapsed() >= self.config.prune_interval {
                last_prune = Instant::now();
                // Batches of PRUNE_BATCH while whole ones come back, at most PRUNE_ROUNDS per
                // look: one batch a minute (166 rows/s) fell behind the saga's outbox at 50
                // orders/s (350 rows/s) in the soak.
                let pruned = match outbox::prune_rounds(
                    &self.pool,
                    self.config.retention,
                    PRUNE_BATCH,
                    PRUNE_ROUNDS,
                )
                .await
                {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::debug!(error = %e, "pruning the outbox failed");
                        0
                    }
                };
                if pruned > 0 {
                    tracing::debug!(rows = pruned, "pruned published outbox rows");
                }
            }

            // A full batch and room in the pipeline: more rows are likely waiting.
            if more && self.in_flight.len() < PIPELINE_DEPTH {
                continue;
            }
            let wait = if self.in_flight.len() >= PIPELINE_DEPTH {
                // Nothing to do but wait for acks.
                self.config.message_timeout + Duration::from_secs(1)
            } else {
                self.next_wait().await
            };
            let event = {
                let acked = async {
                    match self.in_flight.front_mut() {
                        Some(batch) => (&mut batch.acks).await,
                        None => std::future::pending().await,
                    }
                };
                let woken_here = async {
                    match &local {
                        Some(l) => l.woken().await,
                        None => std::future::pending().await,
                    }
                };
                let woken = async {
                    match (&mut listener, self.config.wakeup) {
                        (Some(l), OutboxWakeup::Notify) => {
                            if l.recv().await.is_err() {
                                return false;
                            }
                            // One batch answers every notification that piled up.
                            while l.next_buffered().is_some() {}
                            true
                        }
                        _ => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = shutdown.cancelled() => Wake::Shutdown,
                    results = acked => Wake::Acked(results),
                    ok = woken => Wake::Notified(ok),
                    _ = woken_here => Wake::Notified(true),
                    _ = tokio::time::sleep(wait) => Wake::Timer,
                }
            };
            match event {
                Wake::Shutdown => break,
                Wake::Acked(results) => {
                    if let Some(batch) = self.in_flight.pop_front() {
                        self.finish(batch.ids, results).await;
                    }
                    self.select_due |= self.rows_left_behind;
                }
                Wake::Notified(false) => {
                    listener = None;
                    self.select_due = true;
                }
                Wake::Notified(true) | Wake::Timer => self.select_due = true,
            }
        }
        // Let what is in flight land and mark it, so the next leader does not send it again.
        while let Some(batch) = self.in_flight.pop_front() {
            let results = batch.acks.await;
            self.finish(batch.ids, results).await;
        }
        self.resign();
        self.publisher.flush(Duration::from_secs(5));
        tracing::info!(service = %self.config.service, "outbox relay stopped");
        Ok(())
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut l = PgListener::connect_with(&self.pool).await.ok()?;
        l.listen(outbox::CHANNEL).await.ok()?;
        Some(l)
    }

    /// How long to sleep when idle: until the next retry is due, at most the poll interval.
    async fn next_wait(&mut self) -> Duration {
        let cap = match self.config.wakeup {
            OutboxWakeup::Notify => self.config.fallback_poll,
            OutboxWakeup::Poll(interval) => return interval,
        };
        if !self.retries_pending {
            return cap;
        }
        let Some(conn) = self.leader.as_mut() else {
            return cap;
        };
        let due: Result<Option<f64>, _> = sqlx::query_scalar(
            "SELECT EXTRACT(EPOCH FROM min(next_attempt_at) - clock_timestamp())::float8 \
             FROM outbox WHERE published_at IS NULL AND failed_at IS NULL AND attempts > 0",
        )
        .fetch_one(&mut *conn)
        .await;
        match due {
            Ok(None) => {
                self.retries_pending = false;
                cap
            }
            Ok(Some(secs)) if secs <= 0.0 => Duration::from_millis(5),
            Ok(Some(secs)) => Duration::from_secs_f64(secs).min(cap),
            Err(_) => cap,
        }
    }

    /// Holds or takes the leader lock; false when another relay leads.
    async fn lead(&mut self) -> bool {
        if let Some(conn) = self.leader.as_mut() {
            // Still ours as long as the session is alive; every query on it proves that too.
            if self.leader_checked.elapsed() < LEADER_CHECK_EVERY {
                return true;
            }
            if sqlx::query("SELECT 1").execute(&mut *conn).await.is_ok() {
                self.leader_checked = Instant::now();
                return true;
            }
            self.resign();
        }
        let mut conn = match self.candidate.take() {
            Some(conn) => conn,
            None => match crate::db::dedicated_connection(&self.pool).await {
                Ok(conn) => conn,
                Err(_) => return false,
            },
        };
        // A broken session is dropped here; the next try opens another.
        let Ok(got) = sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
            .bind(LEADER_LOCK_KEY)
            .fetch_one(&mut conn)
            .await
        else {
            return false;
        };
        if !got {
            self.candidate = Some(conn);
            return false;
        }
        if let Err(e) = sqlx::query("SET synchronous_commit = off")
            .execute(&mut conn)
            .await
        {
            tracing::debug!(error = %e, "preparing the leader session failed");
            return false;
        }
        tracing::info!(service = %self.config.service, "outbox relay is the leader");
        self.leader = Some(conn);
        self.leader_checked = Instant::now();
        self.retries_pending = true;
        self.select_due = true;
        self.status.leader.store(true, Ordering::Relaxed);
        self.metrics.set_leader(true);
        if let Some(local) = &self.local {
            local.set_leading(true);
        }
        true
    }

    fn resign(&mut self) {
        self.select_due = true;
        if self.leader.take().is_some() {
            tracing::info!(service = %self.config.service, "outbox relay gave up leadership");
        }
        // Dropping the connection ends the session and releases the lock.
        if let Some(local) = &self.local {
            local.set_leading(false);
        }
        self.status.leader.store(false, Ordering::Relaxed);
        self.metrics.set_leader(false);
    }

    fn rebuild_producer_if_fatal(&mut self) {
        if let Some((code, reason)) = self.publisher.client().fatal_error() {
            tracing::error!(
                ?code,
                reason,
                "Kafka producer hit a fatal error; recreating it"
            );
            match Self::new_publisher(&self.config) {
                Ok(p) => self.publisher = Arc::new(p),
                Err(e) => tracing::error!(error = %e, "recreating the producer failed"),
            }
        }
    }

    /// Selects the next due rows (not in flight) and hands them to librdkafka; returns how many.
    async fn send_next(&mut self) -> Result<usize, sqlx::Error> {
        let in_flight: Vec<i64> = self
            .in_flight
            .iter()
            .flat_map(|b| b.ids.iter().copied())
            .collect();
        let Some(conn) = self.leader.as_mut() else {
            return Ok(0);
        };
        // Rows held back behind one in flight, or behind a retried row (`attempts > 0`, which
        // only exist while `retries_pending`), are freed by its ack: then query again.
        self.rows_left_behind = !in_flight.is_empty() || self.retries_pending;
        // Due rows in id order, skipping rows in flight and any row with an earlier pending row
        // of the same topic and key that is waiting for a retry, still in flight, or has failed
        // before: it must not be overtaken. (An in-flight row can still fail, by a delivery
        // timeout during a broker outage; had its successor gone out in a later batch, the retry
        // would land after it. And after failures a key's rows go one at a time until its head
        // is through: two of them in one batch, the first failing again while the second is
        // acked as the broker comes back, arrive out of order.)
        let rows: Vec<StoredRow> = sqlx::query_as(
            "SELECT o.id, o.topic, o.message_key, o.payload, o.headers FROM outbox o \
             WHERE o.published_at IS NULL AND o.failed_at IS NULL \
               AND o.next_attempt_at <= clock_timestamp() \
               AND o.id <> ALL($2) \
               AND NOT EXISTS ( \
                   SELECT 1 FROM outbox p \
                   WHERE p.topic = o.topic \
                     AND p.message_key IS NOT DISTINCT FROM o.message_key \
                     AND p.id < o.id AND p.published_at IS NULL AND p.failed_at IS NULL \
                     AND (p.next_attempt_at > clock_timestamp() OR p.id = ANY($2) \
                          OR p.attempts > 0)) \
             ORDER BY o.id LIMIT $1",
        )
        .bind(i64::from(self.config.batch_size))
        .bind(&in_flight)
        .fetch_all(&mut *conn)
        .await?;
        self.leader_checked = Instant::now();
        if rows.len() >= self.config.batch_size as usize {
            self.rows_left_behind = true;
        }
        if rows.is_empty() {
            return Ok(0);
        }
        // Hand every row to librdkafka in id order; it keeps that order per partition.
        let mut ids = Vec::with_capacity(rows.len());
        let mut deliveries = Vec::with_capacity(rows.len());
        for row in rows {
            let mut headers = outbox::headers_from_json(row.headers);
            // The publish span is the enqueue span's child and what the message carries on.
            let span = tracing::info_span!(
                "outbox publish",
                otel.name = %format_args!("publish {}", row.topic),
                otel.kind = "producer",
                otel.status_code = tracing::field::Empty,
                messaging.system = "kafka",
                messaging.destination.name = %row.topic,
                outbox_id = row.id,
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty,
            );
            let stored = headers
                .iter()
                .find(|h| h.name == oms_contracts::headers::TRACEPARENT)
                .and_then(|h| h.value.as_deref())
                .and_then(|v| std::str::from_utf8(v).ok());
            let cx = crate::telemetry::set_parent(&span, stored);
            if let Some(tp) = crate::telemetry::traceparent_in(&cx) {
                headers = outbox::with_traceparent(&headers, tp);
            }
            let delivery = loop {
                match self.publisher.send(
                    &row.topic,
                    row.message_key.as_deref(),
                    row.payload.as_deref(),
                    &headers,
                ) {
                    Ok(d) => break Ok(d),
                    // librdkafka's queue is full: give it a moment to drain.
                    Err(e) if Publisher::is_queue_full(&e) => {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err(e) => break Err(e),
                }
            };
            ids.push(row.id);
            deliveries.push(async move {
                let result = match delivery {
                    Ok(d) => d.await.unwrap_or(Err(KafkaError::Canceled)),
                    Err(e) => Err(e),
                };
                // The span ends with the broker's answer.
                if result.is_err() {
                    span.record("otel.status_code", "error");
                }
                drop(span);
                result
            });
        }
        let n = ids.len();
        self.in_flight.push_back(InFlight {
            ids,
            acks: Box::pin(join_all(deliveries)),
        });
        Ok(n)
    }

    /// Marks a batch whose acks are in.
    async fn finish(&mut self, ids: Vec<i64>, results: Vec<Result<(), KafkaError>>) {
        let mut outcome = Outcome::default();
        for (id, result) in ids.into_iter().zip(results) {
            match result {
                Ok(()) => outcome.published.push(id),
                Err(e) if kafka::is_permanent_produce_error(&e) => {
                    outcome.failed.push((id, kafka::describe(&e)))
                }
                Err(e) => outcome.retry.push((id, kafka::describe(&e))),
            }
        }
        if let Err(e) = self.mark(&outcome).await {
            // Unmarked rows stay pending and are sent again: duplicates, never losses.
            tracing::debug!(error = %e, "marking published outbox rows failed");
            self.resign();
            return;
        }
        if !outcome.retry.is_empty() {
            self.retries_pending = true;
        }
        self.metrics
            .outbox_published(outcome.published.len() as u64);
        self.metrics.outbox_retried(outcome.retry.len() as u64);
        self.metrics
            .outbox_dead_lettered(outcome.failed.len() as u64);
        for (id, error) in &outcome.failed {
            tracing::error!(outbox_id = id, error = %error, "outbox row failed permanently; kept with failed_at set");
        }
        self.track_outage(&outcome);
    }

    async fn mark(&mut self, outcome: &Outcome) -> Result<(), sqlx::Error> {
        let Some(conn) = self.leader.as_mut() else {
            return Ok(());
        };
        if !outcome.published.is_empty() {
            sqlx::query(
                "UPDATE outbox SET published_at = clock_timestamp(), attempts = attempts + 1 \
                 WHERE id = ANY($1)",
            )
            .bind(&outcome.published)
            .execute(&mut *conn)
            .await?;
        }
        if !outcome.retry.is_empty() {
            let (ids, errors): (Vec<i64>, Vec<String>) = outcome.retry.iter().cloned().unzip();
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
            .execute(&mut *conn)
            .await?;
        }
        if !outcome.failed.is_empty() {
            let (ids, errors): (Vec<i64>, Vec<String>) = outcome.failed.iter().cloned().unzip();
            sqlx::query(
                "UPDATE outbox o SET attempts = o.attempts + 1, last_error = f.error, \
                     failed_at = clock_timestamp() \
                 FROM unnest($1::bigint[], $2::text[]) AS f(id, error) WHERE o.id = f.id",
            )
            .bind(&ids)
            .bind(&errors)
            .execute(&mut *conn)
            .await?;
        }
        self.leader_checked = Instant::now();
        Ok(())
    }

    fn track_outage(&mut self, outcome: &Outcome) {
        match (self.outage_since, outcome.retry.first()) {
            (None, Some((_, error))) => {
                self.outage_since = Some(Instant::now());
                tracing::warn!(
                    service = %self.config.service,
                    rows = outcome.retry.len(),
                    error = %error,
                    "cannot publish outbox rows; they stay pending and are retried with backoff"
                );
            }
            (Some(since), None) if !outcome.published.is_empty() => {
                self.outage_since = None;
                tracing::info!(
                    service = %self.config.service,
                    after_seconds = since.elapsed().as_secs_f64(),
                    "publishing outbox rows again"
                );
            }
            (Some(_), Some((_, error))) => {
                tracing::debug!(rows = outcome.retry.len(), error = %error, "outbox rows still failing");
            }
            _ => {}
        }
    }
}
