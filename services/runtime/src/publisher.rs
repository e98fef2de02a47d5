//! The relay's Kafka producer: idempotent, `acks=all`, each delivery resolving a future.
//!
//! rust-rdkafka's `FutureProducer` polls librdkafka from a thread of its own in 100 ms calls whose
//! last fraction of a millisecond is a busy loop (the remaining time rounds down to a zero
//! timeout): about 1 % of a core per producer, forever, even when nothing is sent. This producer
//! polls from its own thread in one-second calls, so an idle service idles, while a delivery
//! report still wakes the thread at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::client::{Client, ClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::ClientConfig;
use tokio::sync::oneshot;

use crate::kafka::QuietContext;
use crate::outbox::Header;

/// The outcome of one delivery: acknowledged by the broker, or why not.
pub type Delivery = oneshot::Receiver<Result<(), KafkaError>>;

/// Forwards librdkafka's logs to [`QuietContext`] and delivery reports to their futures.
pub struct PublishContext {
    quiet: QuietContext,
}

impl ClientContext for PublishContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.quiet.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.quiet.error(error, reason);
    }
}

impl ProducerContext for PublishContext {
    type DeliveryOpaque = Box<oneshot::Sender<Result<(), KafkaError>>>;

    fn delivery(&self, result: &DeliveryResult<'_>, reply: Self::DeliveryOpaque) {
        // The relay may have stopped waiting (shutdown): nobody to tell.
        let _ = reply.send(result.as_ref().map(|_| ()).map_err(|(e, _)| e.clone()));
    }
}

/// A producer with its own polling thread, stopped when the publisher is dropped.
pub struct Publisher {
    producer: Arc<BaseProducer<PublishContext>>,
    stop: Arc<AtomicBool>,
}

impl Publisher {
    /// Creates the producer from `config` and starts its polling thread.
    pub fn new(config: &ClientConfig, name: &str) -> Result<Self, KafkaError> {
        let producer: Arc<BaseProducer<PublishContext>> =
            Arc::new(config.create_with_context(PublishContext {
                quiet: QuietContext::default(),
            })?);
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (producer, stop) = (Arc::clone(&producer), Arc::clone(&stop));
            std::thread::Builder::new()
                .name(format!("{name}-poll"))
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        producer.poll(Duration::from_secs(1));
                    }
                })
                .map_err(|_| {
                    KafkaError::ClientCreation("cannot start the polling thread".into())
                })?;
        }
        Ok(Self { producer, stop })
    }

    /// Queues one message; the returned future resolves with its delivery report. `Err` with
    /// `QueueFull` means librdkafka's queue is full: try again shortly.
    pub fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: &[Header],
    ) -> Result<Delivery, KafkaError> {
        let mut kafka_headers = OwnedHeaders::new_with_capacity(headers.len());
        for h in headers {
            kafka_headers = kafka_headers.insert(KafkaHeader {
                key: &h.name,
                value: h.value.as_deref(),
            });
        }
        let (reply, delivery) = oneshot::channel();
        let mut record: BaseRecord<'_, [u8], [u8], _> =
            BaseRecord::with_opaque_to(topic, Box::new(reply)).headers(kafka_headers);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(p) = payload {
            record = record.payload(p);
        }
        self.producer.send(record).map_err(|(e, _)| e)?;
        Ok(delivery)
    }

    /// Whether `error` means "librdkafka's queue is full".
    pub fn is_queue_full(error: &KafkaError) -> bool {
        error.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull)
    }

    /// The underlying client (metadata probes, fatal error checks).
    pub fn client(&self) -> &Client<PublishContext> {
        self.producer.client()
    }

    /// Waits up to `timeout` for queued messages to be delivered.
    pub fn flush(&self, timeout: Duration) {
        let _ = self.producer.flush(timeout);
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        // The thread notices within a second and drops its handle on the producer.
        self.stop.store(true, Ordering::Relaxed);
    }
}
