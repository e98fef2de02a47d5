//! What the receive loop and the workers share, and the helpers that settling and
//! dead-lettering both use: waits, the inbox row of one delivery, spans and counters.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use oms_contracts::Envelope;
use rdkafka::consumer::StreamConsumer;
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::config::{ConsumerConfig, ConsumerStats};
use super::delivery::Delivery;
use super::handler::{Handler, Parallelism};
use crate::dispatch::{KeyQueue, OffsetTracker};
use crate::kafka::QuietContext;
use crate::metrics::Metrics;

/// What the receive loop and the workers share.
pub(super) struct State {
    pub(super) queue: KeyQueue<Vec<u8>, Delivery>,
    pub(super) offsets: OffsetTracker<(Arc<str>, i32)>,
    pub(super) closed: bool,
}

pub(super) struct Shared<H> {
    pub(super) pool: PgPool,
    pub(super) consumer: StreamConsumer<QuietContext>,
    pub(super) handler: H,
    pub(super) config: ConsumerConfig,
    pub(super) parallelism: Parallelism,
    pub(super) service: Arc<str>,
    pub(super) metrics: Metrics,
    pub(super) stats: Arc<ConsumerStats>,
    pub(super) state: Mutex<State>,
    /// Wakes idle workers: a key became ready, or the consumer is closing.
    pub(super) work: Notify,
    /// Wakes the receive loop: the queue has room again.
    pub(super) room: Notify,
}

impl<H: Handler> Shared<H> {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A worker that panicked while holding the lock left consistent data behind (every
        // update is a single call on the queue or the tracker).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The consumer span of one delivery: a child of the `traceparent` it carries (a trace of
    /// its own without one), linked to the trace it was replayed from, if any.
    pub(super) fn message_span(
        &self,
        delivery: &Delivery,
        envelope: Option<&Envelope>,
    ) -> tracing::Span {
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

    pub(super) fn count_settled(&self, handled: u64, duplicates: u64, took: Duration) {
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

    pub(super) fn resumed(&self, outage: Option<(Instant, u32)>) {
        if let Some((since, _)) = outage {
            tracing::info!(
                after_seconds = since.elapsed().as_secs_f64(),
                "database reachable again; consumption resumed"
            );
        }
    }

    /// Waits out one round of a database outage; `Err` when shut down meanwhile.
    pub(super) async fn outage_wait(
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

    pub(super) async fn wait(
        &self,
        delay: Duration,
        shutdown: &CancellationToken,
    ) -> Result<(), ()> {
        tokio::select! {
            _ = shutdown.cancelled() => Err(()),
            _ = tokio::time::sleep(delay) => Ok(()),
        }
    }

    /// Records in the inbox that `id` was settled with `outcome`; false when it already was.
    pub(super) async fn settle_one(
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
