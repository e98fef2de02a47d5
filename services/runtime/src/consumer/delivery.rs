//! A message as the receive loop took it from Kafka, and how settling it ended.

use std::sync::Arc;

use oms_contracts::Envelope;
use rdkafka::message::{Headers, Message as KafkaMessage, OwnedMessage};
use uuid::Uuid;

use crate::outbox::Header;

pub(super) enum Settled {
    Yes,
    Interrupted,
}

/// A message as it arrived, as rdkafka's `detach()` owns it (key, value and headers are not
/// copied again), with its decoded envelope.
pub(super) struct Delivery {
    pub(super) msg: OwnedMessage,
    pub(super) topic: Arc<str>,
    pub(super) partition: i32,
    pub(super) offset: i64,
    /// The assignment of its partition it came in (see [`crate::kafka::Assignments`]).
    pub(super) epoch: u64,
    pub(super) decoded: Result<Envelope, (&'static str, String)>,
}

impl Delivery {
    pub(super) fn of(msg: OwnedMessage, epoch: u64) -> Self {
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
    pub(super) fn headers(&self) -> Vec<Header> {
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
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.msg
            .headers()?
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The key its order is kept by: the Kafka key, or the partition for keyless messages.
    pub(super) fn order_key(&self) -> Vec<u8> {
        match self.msg.key() {
            Some(k) => k.to_vec(),
            None => format!("\0{}/{}", self.topic, self.partition).into_bytes(),
        }
    }

    pub(super) fn partition_id(&self) -> (Arc<str>, i32) {
        (Arc::clone(&self.topic), self.partition)
    }

    /// Where it sits, for the offset tracker: partition, assignment epoch, offset.
    pub(super) fn position(&self) -> Position {
        (self.partition_id(), self.epoch, self.offset)
    }

    /// Inbox key of a dead-lettered delivery: stable for redeliveries of this offset only.
    pub(super) fn coordinates_id(&self) -> Uuid {
        let name = format!("kafka://{}/{}/{}", self.topic, self.partition, self.offset);
        Uuid::new_v5(&Uuid::NAMESPACE_URL, name.as_bytes())
    }
}

/// A delivery's partition, assignment epoch and offset.
pub(super) type Position = ((Arc<str>, i32), u64, i64);
