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
//! - **Handler errors** are retried with capped exponential backoff, up to `max_attempts` tries in
//!   all, then dead-lettered; the decision after each failed try is [`crate::retry::RetryPolicy`]'s.
//!   Only the failing message's key waits; other keys go on.
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

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use oms_contracts::headers::dlq as dlq_headers;
use oms_contracts::{topics, Envelope, Message, MessageType};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message as KafkaMessage, OwnedMessage};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::dispatch::{KeyQueue, OffsetTracker};
use crate::kafka::{self, QuietContext};
use crate::metrics::Metrics;
use crate::outbox::{self, EnqueueError, Header, OutgoingMessage};
use crate::retry::{FailureKind, Next, RetryPolicy};
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
    tx: Transaction<'static, Postgres>,
    cause: Envelope,
    service: Arc<str>,
    topics: Topics,
    attempt: u32,
    after_commit: Vec<AfterCommit>,
    /// Whether the transaction wrote outbox rows (the relay is notified after the commit).
    emitted: bool,
}

/// Work to do once the handler's transaction has committed.
type AfterCommit = Box<dyn FnOnce() + Send>;

fn run_after_commit(hooks: Vec<AfterCommit>) {
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
    /// The operator's librdkafka properties (security, tuning).
    pub kafka: oms_kafka::Properties,
    /// Handler tries before dead-lettering.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt.
    pub base_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// How emitted messages' topics are named (prefix).
    pub topic_names: Topics,
    /// The message types that reach the handler (`None`: every type it is interested in); the
    /// topology's `handles` for a service.
    pub handles: Option<Vec<MessageType>>,
    /// Longest time the broker holds a fetch waiting for data (`fetch.wait.max.ms`).
    pub fetch_wait: Duration,
    /// The most workers and batch size an operator allows (the handler may ask for less).
    pub max_parallelism: Parallelism,
    /// How the group shares its partitions out.
    pub group_protocol: kafka::GroupProtocol,
}

impl ConsumerConfig {
    /// The retry decisions of this consumer.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts,
            base_backoff: self.base_backoff,
            max_backoff: self.max_backoff,
            ..RetryPolicy::default()
        }
    }

    /// Defaults for `group_id` of `service` on `topics`.
    pub fn new(service: &str, group_id: &str, topics: &[&str], brokers: &str) -> Self {
        Self {
            service: service.to_owned(),
            group_id: group_id.to_owned(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            brokers: brokers.to_owned(),
            kafka: oms_kafka::Properties::new(),
            max_attempts: 5,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            topic_names: Topics::default(),
            handles: None,
            fetch_wait: kafka::DEFAULT_FETCH_WAIT,
            max_parallelism: Parallelism {
                workers: 64,
                max_batch: 256,
            },
            group_protocol: kafka::GroupProtocol::default(),
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
    /// Messages of no interest to the handler, acknowledged without a transaction.
    pub ignored: AtomicU64,
    /// Messages dead-lettered.
    pub dead_lettered: AtomicU64,
    /// Handler retries.
    pub retries: AtomicU64,
    /// Waits for an unavailable database (these use up no attempts).
    pub outage_waits: AtomicU64,
    /// Transactions that settled more than one message.
    pub batches: AtomicU64,
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

/// A message as it arrived, as rdkafka's `detach()` owns it (key, value and headers are not
/// copied again), with its decoded envelope.
struct Delivery {
    msg: OwnedMessage,
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    /// The assignment of its partition it came in (see [`kafka::Assignments`]).
    epoch: u64,
    decoded: Result<Envelope, (&'static str, String)>,
}

impl Delivery {
    fn of(msg: OwnedMessage, epoch: u64) -> Self {
        let decoded = Envelope::decode(msg.payload().unwrap_or_default())
            .map_err(|e| (e.class(), e.to_string()));
        Self {
            topic: Arc::from(msg.topic()),
            partition: msg.partition(),
            offset: msg.offset(),
            epoch,
            msg,
            decoded,
        }
    }

    /// Its headers as the outbox stores them (only a dead letter needs them).
    fn headers(&self) -> Vec<Header> {
        self.msg
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| Header {
                        name: h.key.to_owned(),
                        value: h.value.map(<[u8]>::to_vec),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The value of header `name`, when present and UTF-8.
    fn header(&self, name: &str) -> Option<&str> {
        self.msg
            .headers()?
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The key its order is kept by: the Kafka key, or the partition for keyless messages.
    fn order_key(&self) -> Vec<u8> {
        match self.msg.key() {
            Some(k) => k.to_vec(),
            None => format!("\0{}/{}", self.topic, self.partition).into_bytes(),
        }
    }

    fn partition_id(&self) -> (Arc<str>, i32) {
        (Arc::clone(&self.topic), self.partition)
    }

    /// Where it sits, for the offset tracker: partition, assignment epoch, offset.
    fn position(&self) -> Position {
        (self.partition_id(), self.epoch, self.offset)
    }

    /// Inbox key of a dead-lettered delivery: stable for redeliveries of this offset only.
    fn coordinates_id(&self) -> Uuid {
        let name = format!("kafka://{}/{}/{}", self.topic, self.partition, self.offset);
        Uuid::new_v5(&Uuid::NAMESPACE_URL, name.as_bytes())
    }
}

/// A delivery's partition, assignment epoch and offset.
type Position = ((Arc<str>, i32), u64, i64);

/// What the receive loop and the workers share.
struct State {
    queue: KeyQueue<Vec<u8>, Delivery>,
    offsets: OffsetTracker<(Arc<str>, i32)>,
    closed: bool,
}

struct Shared<H> {
    pool: PgPool,
    consumer: StreamConsumer<QuietContext>,
    handler: H,
    config: ConsumerConfig,
    parallelism: Parallelism,
    service: Arc<str>,
    metrics: Metrics,
    stats: Arc<ConsumerStats>,
    state: Mutex<State>,
    /// Wakes idle workers: a key became ready, or the consumer is closing.
    work: Notify,
    /// Wakes the receive loop: the queue has room again.
    room: Notify,
}

/// An idempotent consumer running one [`Handler`].
pub struct InboxConsumer<H> {
    shared: Arc<Shared<H>>,
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
        let consumer: StreamConsumer<QuietContext> = kafka::consumer_config_with(
            &config.brokers,
            &config.group_id,
            &config.service,
            &config.kafka,
            config.group_protocol,
        )
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
        let parallelism = handler.parallelism().capped(config.max_parallelism);
        Ok(Self {
            shared: Arc::new(Shared {
                pool,
                consumer,
                handler,
                service: Arc::from(config.service.as_str()),
                parallelism,
                config,
                metrics,
                stats: Arc::new(ConsumerStats::default()),
                state: Mutex::new(State {
                    queue: KeyQueue::default(),
                    offsets: OffsetTracker::default(),
                    closed: false,
                }),
                work: Notify::new(),
                room: Notify::new(),
            }),
        })
    }

    /// Live counters of this consumer.
    pub fn stats(&self) -> Arc<ConsumerStats> {
        Arc::clone(&self.shared.stats)
    }

    /// The workers and batch size this consumer runs with.
    pub fn parallelism(&self) -> Parallelism {
        self.shared.parallelism
    }

    /// Consumes until `shutdown`. Batches in hand are finished first (unless they are waiting
    /// out an outage or a backoff, in which case they are left for redelivery), then stored
    /// offsets are committed.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ConsumerError> {
        let shared = self.shared;
        tracing::info!(
            group = %shared.config.group_id,
            topics = ?shared.config.topics,
            workers = shared.parallelism.workers,
            max_batch = shared.parallelism.max_batch,
            "consumer started"
        );
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..shared.parallelism.workers {
            let (shared, shutdown) = (Arc::clone(&shared), shutdown.clone());
            workers.spawn(async move { shared.work_loop(&shutdown).await });
        }
        shared.receive_loop(&shutdown).await;
        shared.lock().closed = true;
        shared.work.notify_waiters();
        while workers.join_next().await.is_some() {}
        if let Err(e) = shared.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(error = %e, "final offset commit had nothing to do or failed");
        }
        tracing::info!(group = %shared.config.group_id, "consumer stopped");
        Ok(())
    }
}

impl<H: Handler> Shared<H> {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A worker that panicked while holding the lock left consistent data behind (every
        // update is a single call on the queue or the tracker).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Most deliveries queued before the receive loop waits for the workers.
    fn max_queued(&self) -> usize {
        (self.parallelism.workers * self.parallelism.max_batch * 4).max(64)
    }

    fn store(&self, partition: &(Arc<str>, i32), offset: i64) {
        if let Err(e) = self
            .consumer
            .store_offset(&partition.0, partition.1, offset)
        {
            // The partition was revoked meanwhile; the new owner will see the message again
            // and skip it as a duplicate.
            tracing::debug!(error = %e, "storing the offset failed");
        }
    }

    async fn receive_loop(self: &Arc<Self>, shutdown: &CancellationToken) {
        let mut last_recv_error: Option<Instant> = None;
        // This loop's copy of the partitions' assignment epochs, renewed after a rebalance.
        let assignments = self.consumer.context().assignments();
        let (mut seen_changes, mut epochs) = (0, std::collections::HashMap::new());
        loop {
            // Back-pressure: while the workers are behind (or the database is down), stop
            // taking messages from Kafka.
            loop {
                let room = self.room.notified();
                tokio::pin!(room);
                room.as_mut().enable();
                if self.lock().queue.len() < self.max_queued() {
                    break;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = room => {}
                }
            }
            let msg = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                msg = self.consumer.recv() => msg,
            };
            let msg = match msg {
                Ok(msg) => msg.detach(),
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
            if assignments.changes() != seen_changes {
                seen_changes = assignments.changes();
                epochs = assignments.epochs();
            }
            let epoch = epochs
                .get(msg.topic())
                .and_then(|t| t.get(&msg.partition()))
                .copied()
                .unwrap_or(0);
            let mut delivery = Delivery::of(msg, epoch);
            if let Ok(envelope) = &delivery.decoded {
                // Only what could have come from here is acted on: the broker lets only a type's
                // emitter write its topic (ACLs from the same table), so a type off its topic
                // or a stranger's name on it is a forgery or a bug, and goes to the DLQ.
                let topic = &delivery.topic;
                let contract_topic = topic
                    .strip_prefix(self.config.topic_names.prefix())
                    .unwrap_or(topic);
                if let Some(why) = oms_contracts::topology::misrouted(
                    envelope.message_type(),
                    &envelope.source,
                    contract_topic,
                ) {
                    delivery.decoded = Err(("poison.misrouted", why));
                }
            }
            let partition = delivery.partition_id();
            let of_interest = match &delivery.decoded {
                Ok(envelope) => {
                    let t = envelope.message_type();
                    self.config.handles.as_ref().is_none_or(|h| h.contains(&t))
                        && self.handler.interest(t)
                }
                // Poison is dead-lettered by a worker, in its key's order.
                Err(_) => true,
            };
            let mut state = self.lock();
            state
                .offsets
                .received(&partition, delivery.epoch, delivery.offset);
            if of_interest {
                state.queue.push(delivery.order_key(), delivery);
                drop(state);
                self.work.notify_waiters();
            } else {
                let stored = state
                    .offsets
                    .finished(&partition, delivery.epoch, delivery.offset);
                drop(state);
                self.stats.ignored.fetch_add(1, Ordering::Relaxed);
                self.metrics.consumed(&self.config.group_id, "ignored");
                if let Some(offset) = stored {
                    self.store(&partition, offset);
                }
            }
        }
    }

    async fn work_loop(&self, shutdown: &CancellationToken) {
        loop {
            let work = self.work.notified();
            tokio::pin!(work);
            work.as_mut().enable();
            let taken = {
                let mut state = self.lock();
                if state.closed {
                    return;
                }
                state.queue.take(self.parallelism.max_batch)
            };
            if taken.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = work => continue,
                }
            }
            self.room.notify_one();
            let keys: Vec<Vec<u8>> = taken.iter().map(|(k, _)| k.clone()).collect();
            let batch: Vec<Delivery> = taken.into_iter().flat_map(|(_, items)| items).collect();
            let (finished, settled) = self.settle(batch, shutdown).await;
            let mut stores = Vec::new();
            {
                let mut state = self.lock();
                for (partition, epoch, offset) in &finished {
                    if let Some(o) = state.offsets.finished(partition, *epoch, *offset) {
                        stores.push((partition.clone(), o));
                    }
                }
                for key in &keys {
                    state.queue.done(key);
                }
            }
            for (partition, offset) in stores {
                self.store(&partition, offset);
            }
            self.work.notify_waiters();
            if let Settled::Interrupted = settled {
                return;
            }
        }
    }

    /// Settles `batch` (any keys, each key's messages in order): in one transaction when it can,
    /// else one by one. Returns the deliveries finished, and whether it was interrupted.
    async fn settle(
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

    /// The consumer span of one delivery: a child of the `traceparent` it carries (a trace of
    /// its own without one), linked to the trace it was replayed from, if any.
    fn message_span(&self, delivery: &Delivery, envelope: Option<&Envelope>) -> tracing::Span {
        let span = tracing::info_span!(
            "message",
            otel.name = %format_args!("process {}", delivery.topic),
            otel.kind = "consumer",
            messaging.system = "kafka",
            messaging.consumer.group.name = %self.config.group_id,
            service = %self.service,
            group = %self.config.group_id,
            topic = &*delivery.topic,
            partition = delivery.partition,
            offset = delivery.offset,
            message_id = tracing::field::Empty,
            message_type = tracing::field::Empty,
            correlation_id = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        if let Some(envelope) = envelope {
            span.record("message_id", tracing::field::display(envelope.event_id));
            span.record("message_type", envelope.message_type().as_str());
            span.record(
                "correlation_id",
                tracing::field::display(envelope.correlation_id),
            );
        }
        crate::telemetry::set_parent(&span, delivery.header(oms_contracts::headers::TRACEPARENT));
        if let Some(linked) = delivery
            .header(oms_contracts::headers::REPLAYED_TRACEPARENT)
            .and_then(crate::telemetry::span_context_of)
        {
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            span.add_link(linked);
        }
        span
    }

    fn count_settled(&self, handled: u64, duplicates: u64, took: Duration) {
        self.stats.handled.fetch_add(handled, Ordering::Relaxed);
        self.stats
            .duplicates
            .fetch_add(duplicates, Ordering::Relaxed);
        let per_message = took.as_secs_f64() / (handled + duplicates).max(1) as f64;
        for _ in 0..handled {
            self.metrics.consumed(&self.config.group_id, "handled");
            self.metrics
                .observe_handler(&self.config.group_id, per_message);
        }
        for _ in 0..duplicates {
            self.metrics.consumed(&self.config.group_id, "duplicate");
        }
    }

    fn resumed(&self, outage: Option<(Instant, u32)>) {
        if let Some((since, _)) = outage {
            tracing::info!(
                after_seconds = since.elapsed().as_secs_f64(),
                "database reachable again; consumption resumed"
            );
        }
    }

    /// Waits out one round of a database outage; `Err` when shut down meanwhile.
    async fn outage_wait(
        &self,
        outage: &mut Option<(Instant, u32)>,
        reason: &str,
        shutdown: &CancellationToken,
    ) -> Result<(), ()> {
        let (since, waits) = outage.get_or_insert((Instant::now(), 0));
        *waits += 1;
        self.stats.outage_waits.fetch_add(1, Ordering::Relaxed);
        if *waits == 1 {
            tracing::warn!(error = %reason, "database unavailable; consumption paused until it is back");
        }
        tracing::debug!(
            paused_seconds = since.elapsed().as_secs_f64(),
            "still waiting for the database"
        );
        let delay = self.config.retry_policy().outage_wait(*waits);
        self.wait(delay, shutdown).await
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

    async fn wait(&self, delay: Duration, shutdown: &CancellationToken) -> Result<(), ()> {
        tokio::select! {
            _ = shutdown.cancelled() => Err(()),
            _ = tokio::time::sleep(delay) => Ok(()),
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

    /// Writes the delivery to `<topic>.dlq` through the outbox, once, with diagnostics.
    async fn dead_letter(
        &self,
        delivery: &Delivery,
        envelope: Option<&Envelope>,
        class: &str,
        reason: &str,
        attempts: u32,
        shutdown: &CancellationToken,
    ) -> Settled {
        let mut headers = delivery.headers();
        let failed_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        for (name, value) in [
            (dlq_headers::ORIGIN_TOPIC, delivery.topic.to_string()),
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
            topic: topics::dlq(&delivery.topic),
            key: delivery.msg.key().map(<[u8]>::to_vec),
            payload: delivery.msg.payload().map(<[u8]>::to_vec),
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
                    let delay = self.config.retry_policy().outage_wait(waits);
                    if self.wait(delay, shutdown).await.is_err() {
                        return Settled::Interrupted;
                    }
                }
            }
        }
    }

    async fn try_dead_letter(
        &self,
        delivery: &Delivery,
        record: &OutgoingMessage,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let first = self
            .settle_one(
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
    async fn settle_one(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        delivery: &Delivery,
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
        .bind(&*delivery.topic)
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
