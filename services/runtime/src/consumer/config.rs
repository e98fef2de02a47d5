//! Consumer settings, live counters, and why a consumer could not start.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use oms_contracts::MessageType;

use super::handler::Parallelism;
use crate::kafka;
use crate::retry::RetryPolicy;
use oms_contracts::Topics;

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
    /// Ceiling of the first retry delay; doubles per attempt (each delay is drawn from the upper
    /// half of its ceiling: equal jitter).
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
