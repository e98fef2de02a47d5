//! Kafka clients as the services use them: an idempotent producer, consumers that store offsets
//! only after their work is durable, and a client context that keeps outages from flooding the
//! logs (topic creation is in `oms-kafka`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;

use crate::metrics::Metrics;
use oms_kafka::Properties;

/// How long the producer keeps trying one message before reporting it failed to the relay, which
/// then backs off. Short enough that an outage shows up in the outbox quickly.
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Producer settings: idempotent, `acks=all`, ordered per partition.
pub fn producer_config(brokers: &str, client_id: &str) -> ClientConfig {
    producer_config_with(brokers, client_id, &Properties::new())
}

/// [`producer_config`] with the operator's librdkafka properties (security, tuning); the
/// guarantees (idempotence, acks=all) are set after them, and [`Properties`] refuses those keys.
pub fn producer_config_with(brokers: &str, client_id: &str, props: &Properties) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("client.id", client_id)
        .set("linger.ms", "0")
        .set(
            "message.timeout.ms",
            MESSAGE_TIMEOUT.as_millis().to_string(),
        )
        .set("reconnect.backoff.max.ms", "2000");
    props.apply(&mut config);
    config
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set_log_level(RDKafkaLogLevel::Warning);
    config
}

/// How long the broker may hold a fetch open waiting for data (librdkafka's default). Kafka
/// answers a waiting fetch as soon as a message arrives, so the wait costs no latency per hop; it
/// only bounds how often an idle consumer asks (docs/benchmarks.md).
pub const DEFAULT_FETCH_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// How a consumer group shares its partitions out (librdkafka's `group.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupProtocol {
    /// The classic protocol: every member rejoins on every change (an eager rebalance), the
    /// session timeout and heartbeat set by the client.
    #[default]
    Classic,
    /// KIP-848's protocol: the broker computes the assignment and hands each member its part on
    /// its heartbeats, incrementally, without stopping the others; session timeout and heartbeat
    /// interval are the broker's (`group.consumer.*`).
    Consumer,
}

impl std::str::FromStr for GroupProtocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "classic" => Ok(Self::Classic),
            "consumer" => Ok(Self::Consumer),
            _ => Err(format!(
                "invalid group protocol {s:?}: expected `consumer` (KIP-848) or `classic`"
            )),
        }
    }
}

impl std::fmt::Display for GroupProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Classic => "classic",
            Self::Consumer => "consumer",
        })
    }
}

/// Consumer settings: offsets are committed automatically, but only offsets the application
/// stored, and it stores one only after the message's transaction committed.
pub fn consumer_config(brokers: &str, group_id: &str, client_id: &str) -> ClientConfig {
    consumer_config_with(
        brokers,
        group_id,
        client_id,
        &Properties::new(),
        GroupProtocol::default(),
    )
}

/// [`consumer_config`] with the operator's librdkafka properties over the defaults; the group
/// and the offset discipline are set after them (and [`Properties`] refuses those keys).
pub fn consumer_config_with(
    brokers: &str,
    group_id: &str,
    client_id: &str,
    props: &Properties,
    protocol: GroupProtocol,
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("client.id", client_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("group.protocol", protocol.to_string());
    if protocol == GroupProtocol::Classic {
        // A dead member's partitions move after 10 s; a third of that between heartbeats, as
        // Kafka recommends. (The consumer protocol takes both from the broker and refuses them.)
        config
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "3000");
    }
    config
        // A database outage pauses handling; stay in the group for a long one.
        .set("max.poll.interval.ms", "900000")
        .set("statistics.interval.ms", "5000")
        .set("reconnect.backoff.max.ms", "2000");
    props.apply(&mut config);
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", group_id)
        .set("enable.auto.offset.store", "false")
        .set_log_level(RDKafkaLogLevel::Warning);
    config
}

/// Whether a produce error will fail the same way on every retry (dead-letter the row) rather
/// than pass once the broker is back (keep it and retry).
pub fn is_permanent_produce_error(error: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    match error.rdkafka_error_code() {
        Some(code) => matches!(
            code,
            MessageSizeTooLarge
                | InvalidMessageSize
                | InvalidMessage
                | InvalidTopic
                | MessageBatchTooLarge
                | TopicAuthorizationFailed
                | ClusterAuthorizationFailed
                | InvalidRecord
                | InvalidArgument
                | UnsupportedForMessageFormat
        ),
        None => false,
    }
}

/// Logs librdkafka's own messages through `tracing`, turning the repeated connection complaints of
/// an outage into one warning a minute instead of a flood.
#[derive(Default)]
pub struct QuietContext {
    last_connectivity_warning: Mutex<Option<Instant>>,
    metrics: Option<(Metrics, String)>,
    assignments: Assignments,
}

/// Which assignment each partition this consumer holds came with: every rebalance that hands a
/// partition over gives it a new epoch. librdkafka forgets a partition's stored offset when it is
/// assigned, so the consumer's offset tracker must forget it too (see
/// [`crate::dispatch::OffsetTracker::received`]).
#[derive(Default)]
pub struct Assignments {
    /// Bumped on every assignment, so a reader can tell its copy of `epochs` is stale.
    changes: std::sync::atomic::AtomicU64,
    /// Topic, then partition, to epoch.
    epochs: Mutex<HashMap<String, HashMap<i32, u64>>>,
}

impl Assignments {
    /// How many assignments there were so far.
    pub fn changes(&self) -> u64 {
        self.changes.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The epoch of every partition assigned so far.
    pub fn epochs(&self) -> HashMap<String, HashMap<i32, u64>> {
        self.epochs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn assigned(&self, added: &rdkafka::TopicPartitionList) {
        let mut epochs = self.epochs.lock().unwrap_or_else(|p| p.into_inner());
        let epoch = self.changes() + 1;
        for e in added.elements() {
            epochs
                .entry(e.topic().to_owned())
                .or_default()
                .insert(e.partition(), epoch);
        }
        self.changes
            .store(epoch, std::sync::atomic::Ordering::Release);
    }
}

impl QuietContext {
    /// A context that also records consumer lag from librdkafka's statistics into `metrics`.
    pub fn with_lag_metrics(metrics: Metrics, group: &str) -> Self {
        Self {
            last_connectivity_warning: Mutex::new(None),
            metrics: Some((metrics, group.to_owned())),
            assignments: Assignments::default(),
        }
    }

    /// The partitions' assignment epochs (consumers only).
    pub fn assignments(&self) -> &Assignments {
        &self.assignments
    }

    fn connectivity(&self, message: &str) {
        let mut last = self
            .last_connectivity_warning
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60)) {
            *last = Some(now);
            tracing::warn!(
                kafka = message,
                "broker connectivity problem (repeats are logged at debug for a minute)"
            );
        } else {
            tracing::debug!(kafka = message, "broker connectivity problem");
        }
    }
}

fn is_connectivity(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "connect",
        "brokers are down",
        "transport",
        "timed out",
        "disconnected",
        "refused",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

impl ClientContext for QuietContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning => {
                if is_connectivity(log_message) {
                    self.connectivity(log_message);
                } else {
                    tracing::warn!(kafka.facility = fac, "{log_message}");
                }
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::debug!(kafka.facility = fac, "{log_message}")
            }
            RDKafkaLogLevel::Debug => tracing::trace!(kafka.facility = fac, "{log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let transport = matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::BrokerTransportFailure)
                | Some(RDKafkaErrorCode::AllBrokersDown)
                | Some(RDKafkaErrorCode::Resolve)
        );
        if transport || is_connectivity(reason) {
            self.connectivity(reason);
        } else {
            tracing::error!(error = %error, "kafka client error: {reason}");
        }
    }

    fn stats(&self, statistics: Statistics) {
        let Some((metrics, group)) = &self.metrics else {
            return;
        };
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                // -1 is librdkafka's internal "unassigned" partition; -1 lag means unknown.
                if *partition >= 0 && p.consumer_lag >= 0 {
                    metrics.set_consumer_lag(group, topic, *partition, p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for QuietContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(revoked) => tracing::info!(
                partitions = %partition_list(revoked),
                "consumer group rebalance: partitions revoked"
            ),
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "consumer group rebalance failed"),
        }
    }

    /// Logs the partitions this member holds after each assignment (`partitions`, `count`) and
    /// what the assignment added (`added`: all of them with the classic protocol's eager
    /// rebalances, only the new ones with the consumer protocol's incremental ones): with
    /// replicas, where the group put what (and, after a replica died, that a survivor took its
    /// partitions).
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(added) = rebalance {
            self.assignments.assigned(added);
            let holding = consumer.assignment().unwrap_or_else(|_| (*added).clone());
            tracing::info!(
                count = holding.count(),
                partitions = %partition_list(&holding),
                added = %partition_list(added),
                "consumer group rebalance: partitions assigned"
            );
        }
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        _offsets: &rdkafka::TopicPartitionList,
    ) {
        match result {
            Ok(()) => {}
            // Nothing new to commit: normal when idle.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => tracing::debug!(error = %e, "offset commit failed; it is retried"),
        }
    }
}

/// `topic/partition,...` of a partition list, for logs.
fn partition_list(list: &rdkafka::TopicPartitionList) -> String {
    list.elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether the broker answers a metadata request within `timeout` (blocking; call it from
/// `spawn_blocking`).
pub fn probe_broker<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    timeout: Duration,
) -> Result<(), KafkaError> {
    client.fetch_metadata(None, timeout).map(|_| ())
}

/// A client of its own, kept to ask whether the broker answers (the saga's outage watch).
pub struct BrokerProbe {
    consumer: BaseConsumer<QuietContext>,
    topic: String,
}

impl BrokerProbe {
    /// A probe of `brokers` that asks for the metadata of `topic` only.
    pub fn new(brokers: &str, props: &Properties, topic: &str) -> Result<Self, KafkaError> {
        let mut config = oms_kafka::client_config(brokers, props);
        config.set_log_level(RDKafkaLogLevel::Error);
        Ok(Self {
            consumer: config.create_with_context(QuietContext::default())?,
            topic: topic.to_owned(),
        })
    }

    /// Whether the broker answers within `timeout` (blocking; call it from `spawn_blocking`).
    pub fn probe(&self, timeout: Duration) -> Result<(), KafkaError> {
        use rdkafka::consumer::Consumer;
        self.consumer
            .fetch_metadata(Some(&self.topic), timeout)
            .map(|_| ())
    }
}

/// The response code of a delivery error, for logs and the outbox's `last_error`.
pub fn describe(error: &KafkaError) -> String {
    match error.rdkafka_error_code() {
        Some(code) => format!("{error} ({code:?})"),
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produce_errors_are_split_into_permanent_and_transient() {
        let too_large = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        let timed_out = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        let down = KafkaError::MessageProduction(RDKafkaErrorCode::AllBrokersDown);
        assert!(is_permanent_produce_error(&too_large));
        assert!(!is_permanent_produce_error(&timed_out));
        assert!(!is_permanent_produce_error(&down));
        assert!(!is_permanent_produce_error(&KafkaError::Canceled));
    }

    #[test]
    fn connection_complaints_are_recognised() {
        assert!(is_connectivity(
            "127.0.0.1:19092/bootstrap: Connect to ipv4#127.0.0.1:19092 failed: Connection refused"
        ));
        assert!(is_connectivity("1/1 brokers are down"));
        assert!(!is_connectivity("Topic oms.x partition count changed"));
    }
}
