//! Dead-lettering: the delivery goes to `<topic>.dlq` through the outbox, in the transaction
//! that marks it settled, so exactly once.

use std::sync::atomic::Ordering;

use oms_contracts::headers::dlq as dlq_headers;
use oms_contracts::{topics, Envelope};
use rdkafka::message::Message as KafkaMessage;
use tokio_util::sync::CancellationToken;

use super::delivery::{Delivery, Settled};
use super::handler::Handler;
use super::shared::Shared;
use crate::outbox::{self, Header, OutgoingMessage};

impl<H: Handler> Shared<H> {
    /// Writes the delivery to `<topic>.dlq` through the outbox, once, with diagnostics.
    pub(super) async fn dead_letter(
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
}
