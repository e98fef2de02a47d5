//! The consumer's loops: one receives from Kafka into the per-key queue (stopping while the
//! queue is full), the workers take batches from it, settle them and store the offsets.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message as KafkaMessage;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::config::{ConsumerConfig, ConsumerError, ConsumerStats};
use super::delivery::{Delivery, Settled};
use super::handler::{Handler, Parallelism};
use super::shared::{Shared, State};
use crate::dispatch::{KeyQueue, OffsetTracker};
use crate::kafka::{self, QuietContext};
use crate::metrics::Metrics;

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
}
