//! Prometheus metrics of the runtime: HTTP, outbox, relay, consumers (services add their own
//! business metrics to the same registry). Served as text at `/metrics`. Every name starts with
//! `oms_`; no constant labels (which service answered is the scrape's `job`/`instance`).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of per-consumer-group metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    /// Consumer group.
    pub group: String,
}

/// Labels of consumed-message counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumedLabels {
    /// Consumer group.
    pub group: String,
    /// `handled`, `duplicate` or `dead_lettered`.
    pub outcome: String,
}

/// Labels of consumer lag.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LagLabels {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: String,
}

/// One `outcome` label, for the services' business counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// What became of it.
    pub outcome: String,
}

/// Counts `outcome` in `outcomes` once the handler's transaction commits (a rolled-back attempt
/// counts nothing).
pub fn count_outcome_after_commit(
    outcomes: &Family<OutcomeLabel, Counter>,
    ctx: &mut crate::HandlerContext,
    outcome: &'static str,
) {
    let outcomes = outcomes.clone();
    ctx.after_commit(move || {
        outcomes
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .inc();
    });
}

/// One `reason` label, for the services' business counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why.
    pub reason: String,
}

/// Labels of HTTP request counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Route template (`/orders/{id}`), or `unmatched`.
    pub route: String,
    /// Status code.
    pub status: String,
}

/// Labels of HTTP latencies.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Route template, or `unmatched`.
    pub route: String,
}

struct Inner {
    registry: Registry,
    http_requests: Family<RequestLabels, Counter>,
    http_seconds: Family<RouteLabels, Histogram>,
    outbox_published: Counter,
    outbox_retries: Counter,
    outbox_dead_lettered: Counter,
    outbox_backlog: Gauge,
    outbox_oldest_pending_seconds: Gauge<f64, AtomicU64>,
    relay_leader: Gauge,
    consumed: Family<ConsumedLabels, Counter>,
    handler_retries: Family<GroupLabels, Counter>,
    handler_seconds: Family<GroupLabels, Histogram>,
    consumer_lag: Family<LagLabels, Gauge>,
}

/// The runtime's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

fn handler_histogram() -> Histogram {
    // 0.5 ms .. ~8 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0005, 2.0, 15,
    ))
}

fn http_histogram() -> Histogram {
    // 1 ms .. ~4 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 13,
    ))
}

impl Metrics {
    /// The runtime's metrics; `extra` may register the service's own metrics in the same
    /// registry (under the `oms_` prefix).
    pub fn new(extra: impl FnOnce(&mut Registry)) -> Self {
        let mut registry = Registry::with_prefix("oms");
        let http_requests = Family::<RequestLabels, Counter>::default();
        let http_seconds =
            Family::<RouteLabels, Histogram>::new_with_constructor(http_histogram as fn() -> _);
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route and status",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route",
            http_seconds.clone(),
        );
        let outbox_published = Counter::default();
        let outbox_retries = Counter::default();
        let outbox_dead_lettered = Counter::default();
        let outbox_backlog = Gauge::default();
        let outbox_oldest_pending_seconds = Gauge::<f64, AtomicU64>::default();
        let relay_leader = Gauge::default();
        let consumed = Family::<ConsumedLabels, Counter>::default();
        let handler_retries = Family::<GroupLabels, Counter>::default();
        let handler_seconds =
            Family::<GroupLabels, Histogram>::new_with_constructor(handler_histogram as fn() -> _);
        let consumer_lag = Family::<LagLabels, Gauge>::default();

        registry.register(
            "outbox_published",
            "Outbox rows published to Kafka",
            outbox_published.clone(),
        );
        registry.register(
            "outbox_retries",
            "Outbox publish attempts that failed and will be retried",
            outbox_retries.clone(),
        );
        registry.register(
            "outbox_dead_lettered",
            "Outbox rows that failed permanently",
            outbox_dead_lettered.clone(),
        );
        registry.register(
            "outbox_backlog",
            "Outbox rows waiting to be published",
            outbox_backlog.clone(),
        );
        registry.register(
            "outbox_oldest_pending_seconds",
            "Age of the oldest outbox row waiting to be published",
            outbox_oldest_pending_seconds.clone(),
        );
        registry.register(
            "relay_leader",
            "1 when this process is the outbox relay leader",
            relay_leader.clone(),
        );
        registry.register(
            "messages_consumed",
            "Messages settled by consumers, by outcome",
            consumed.clone(),
        );
        registry.register(
            "handler_retries",
            "Handler attempts that failed and were retried",
            handler_retries.clone(),
        );
        registry.register(
            "handler_duration_seconds",
            "Time to handle one message, transaction included",
            handler_seconds.clone(),
        );
        registry.register(
            "consumer_lag",
            "Messages behind the end of the partition",
            consumer_lag.clone(),
        );
        extra(&mut registry);
        Self(Arc::new(Inner {
            registry,
            http_requests,
            http_seconds,
            outbox_published,
            outbox_retries,
            outbox_dead_lettered,
            outbox_backlog,
            outbox_oldest_pending_seconds,
            relay_leader,
            consumed,
            handler_retries,
            handler_seconds,
            consumer_lag,
        }))
    }

    /// The Prometheus/OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.0.registry);
        out
    }

    pub(crate) fn observe_http(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.0
            .http_requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status: status.to_string(),
            })
            .inc();
        self.0
            .http_seconds
            .get_or_create(&RouteLabels {
                method: method.to_owned(),
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    pub(crate) fn outbox_published(&self, n: u64) {
        self.0.outbox_published.inc_by(n);
    }

    pub(crate) fn outbox_retried(&self, n: u64) {
        self.0.outbox_retries.inc_by(n);
    }

    pub(crate) fn outbox_dead_lettered(&self, n: u64) {
        self.0.outbox_dead_lettered.inc_by(n);
    }

    pub(crate) fn set_backlog(&self, pending: i64, oldest_seconds: f64) {
        self.0.outbox_backlog.set(pending);
        self.0.outbox_oldest_pending_seconds.set(oldest_seconds);
    }

    pub(crate) fn set_leader(&self, leader: bool) {
        self.0.relay_leader.set(i64::from(leader));
    }

    pub(crate) fn consumed(&self, group: &str, outcome: &str) {
        self.0
            .consumed
            .get_or_create(&ConsumedLabels {
                group: group.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub(crate) fn handler_retried(&self, group: &str) {
        self.0
            .handler_retries
            .get_or_create(&GroupLabels {
                group: group.to_owned(),
            })
            .inc();
    }

    pub(crate) fn observe_handler(&self, group: &str, seconds: f64) {
        self.0
            .handler_seconds
            .get_or_create(&GroupLabels {
                group: group.to_owned(),
            })
            .observe(seconds);
    }

    pub(crate) fn set_consumer_lag(&self, group: &str, topic: &str, partition: i32, lag: i64) {
        self.0
            .consumer_lag
            .get_or_create(&LagLabels {
                group: group.to_owned(),
                topic: topic.to_owned(),
                partition: partition.to_string(),
            })
            .set(lag);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_runtime_metric() {
        let m = Metrics::new(|_| {});
        m.outbox_published(3);
        m.observe_http("GET", "/orders/{id}", 404, 0.003);
        m.consumed("g", "handled");
        m.observe_handler("g", 0.002);
        m.set_consumer_lag("g", "t", 0, 7);
        let text = m.encode();
        for needle in [
            "oms_outbox_published_total 3",
            "oms_outbox_backlog 0",
            "oms_messages_consumed_total{group=\"g\",outcome=\"handled\"} 1",
            "oms_handler_duration_seconds_bucket",
            "oms_consumer_lag{group=\"g\",topic=\"t\",partition=\"0\"} 7",
            "oms_http_requests_total{method=\"GET\",route=\"/orders/{id}\",status=\"404\"} 1",
            "oms_http_request_duration_seconds_bucket{le=\"0.004\",method=\"GET\",route=\"/orders/{id}\"} 1",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
