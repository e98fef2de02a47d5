//! Kafka helpers shared by the services' runtime, omsctl and the tests, so none keeps a copy and
//! omsctl does not build the runtime (axum, sqlx) for them: librdkafka properties passed through
//! ([`properties`]), the local Apache Kafka cluster ([`node`]), topic creation and header copying.

pub mod node;
pub mod properties;

pub use properties::{client_config, Properties};

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, OwnedHeaders};

/// Errors while creating topics.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// The admin request failed.
    #[error("creating topics on {brokers}: {source}")]
    Admin {
        /// Brokers asked.
        brokers: String,
        /// Cause.
        #[source]
        source: KafkaError,
    },
    /// The broker refused one topic.
    #[error("creating topic {topic}: {code}")]
    Refused {
        /// Topic refused.
        topic: String,
        /// Broker's answer.
        code: RDKafkaErrorCode,
    },
}

/// Creates each topic with `partitions` partitions unless it exists, replicated as the cluster's
/// `default.replication.factor` says (and held to its `min.insync.replicas`): one copy on a
/// single node, three on three nodes, whatever compose or Strimzi configured.
pub async fn ensure_topics(
    brokers: &str,
    topics: &[String],
    partitions: i32,
) -> Result<(), TopicError> {
    ensure_topics_with(brokers, &Properties::new(), topics, partitions).await
}

/// [`ensure_topics`] with librdkafka properties (a secured cluster).
pub async fn ensure_topics_with(
    brokers: &str,
    props: &Properties,
    topics: &[String],
    partitions: i32,
) -> Result<(), TopicError> {
    let admin: AdminClient<DefaultClientContext> = client_config(brokers, props)
        .set_log_level(RDKafkaLogLevel::Error)
        .create()
        .map_err(|source| TopicError::Admin {
            brokers: brokers.to_owned(),
            source,
        })?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        // -1: the broker's default (KIP-464).
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(-1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    // Right after nodes start, a request can meet a cluster still settling: the client drops
    // the bootstrap connections once it learns the nodes' own (DestroyBroker), a controller is
    // not elected yet. Such answers are asked again, a moment apart, within CREATE_WITHIN.
    let deadline = Instant::now() + CREATE_WITHIN;
    loop {
        let settling = match admin.create_topics(&new, &options).await {
            Ok(results) => {
                let mut settling = None;
                for result in results {
                    match result {
                        Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        Err((_, code)) if settling_code(code) => settling = Some(code),
                        Err((topic, code)) => return Err(TopicError::Refused { topic, code }),
                    }
                }
                match settling {
                    None => return Ok(()),
                    Some(code) => KafkaError::AdminOp(code),
                }
            }
            Err(e) if e.rdkafka_error_code().is_some_and(settling_code) => e,
            Err(source) => {
                return Err(TopicError::Admin {
                    brokers: brokers.to_owned(),
                    source,
                })
            }
        };
        if Instant::now() + RETRY_AFTER * 5 >= deadline {
            return Err(TopicError::Admin {
                brokers: brokers.to_owned(),
                source: settling,
            });
        }
        tokio::time::sleep(RETRY_AFTER * 5).await;
    }
}

/// How long [`ensure_topics_with`] asks again while the cluster settles.
const CREATE_WITHIN: Duration = Duration::from_secs(30);

/// True for the answers of a cluster that is still settling (asked again), not of a refusal.
fn settling_code(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::DestroyBroker
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::NotController
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::LeaderNotAvailable
    )
}

/// The low and high watermarks of one partition. Right after brokers start or stop, leadership
/// moves and a broker answers "not leader" until the client's metadata catches up; such answers
/// are asked again, a moment apart, until `timeout` has passed. Any other error returns at once.
pub fn watermarks<X: ConsumerContext, C: Consumer<X>>(
    consumer: &C,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> KafkaResult<(i64, i64)> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match consumer.fetch_watermarks(topic, partition, left) {
            Err(e) if leader_moving(&e) && Instant::now() + RETRY_AFTER < deadline => {
                std::thread::sleep(RETRY_AFTER);
            }
            answer => return answer,
        }
    }
}

/// How long [`watermarks`] waits before asking again.
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// True for the answers of a partition whose leader is being elected or has just moved.
fn leader_moving(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::FencedLeaderEpoch
                | RDKafkaErrorCode::UnknownLeaderEpoch
                | RDKafkaErrorCode::PreferredLeaderNotAvailable
        )
    )
}

/// The headers of `from` that `keep` accepts, in order, as headers to produce with. A record read
/// with `detach()` carries its headers already owned: hand them on as they are
/// (`msg.headers().cloned()`) when nothing is dropped; this is for when some are.
pub fn headers_where<H: Headers>(from: Option<&H>, keep: impl Fn(&str) -> bool) -> OwnedHeaders {
    let mut out = OwnedHeaders::new();
    for h in from.into_iter().flat_map(|hs| hs.iter()) {
        if keep(h.key) {
            out = out.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_copied_in_order_without_the_dropped_ones() {
        let from = OwnedHeaders::new()
            .insert(Header {
                key: "a",
                value: Some("1"),
            })
            .insert(Header {
                key: "drop",
                value: Some("x"),
            })
            .insert(Header::<&[u8]> {
                key: "n",
                value: None,
            })
            .insert(Header {
                key: "a",
                value: Some("2"),
            });
        let copy = headers_where(Some(&from), |k| k != "drop");
        let got: Vec<(String, Option<Vec<u8>>)> = copy
            .iter()
            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
            .collect();
        assert_eq!(
            got,
            [
                ("a".to_owned(), Some(b"1".to_vec())),
                ("n".to_owned(), None),
                ("a".to_owned(), Some(b"2".to_vec())),
            ]
        );
        assert_eq!(headers_where::<OwnedHeaders>(None, |_| true).count(), 0);
    }

    #[test]
    fn only_a_moving_leader_is_asked_again() {
        let fetch = |code| KafkaError::MetadataFetch(code);
        assert!(leader_moving(&fetch(
            RDKafkaErrorCode::NotLeaderForPartition
        )));
        assert!(leader_moving(&fetch(RDKafkaErrorCode::LeaderNotAvailable)));
        assert!(!leader_moving(&fetch(
            RDKafkaErrorCode::UnknownTopicOrPartition
        )));
        assert!(!leader_moving(&fetch(
            RDKafkaErrorCode::TopicAuthorizationFailed
        )));
        assert!(!leader_moving(&KafkaError::NoMessageReceived));
    }

    #[test]
    fn topic_creation_asks_again_only_while_the_cluster_settles() {
        for settling in [
            RDKafkaErrorCode::DestroyBroker,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::NotController,
        ] {
            assert!(settling_code(settling), "{settling:?}");
        }
        for refusal in [
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::InvalidReplicationFactor,
            RDKafkaErrorCode::InvalidConfig,
            RDKafkaErrorCode::PolicyViolation,
        ] {
            assert!(!settling_code(refusal), "{refusal:?}");
        }
    }
}
