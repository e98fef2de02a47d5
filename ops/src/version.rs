//! `omsctl version`: omsctl's own version, each service's (from its `/health/live`) and the
//! Kafka cluster's, so a mismatch between what runs and what operates it shows at a glance.

use oms_contracts::routes::HEALTH_LIVE;
use serde::{Deserialize, Serialize};

use crate::ctx::Ctx;
use crate::local::Local;
use crate::Failure;

/// What `omsctl version` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionReport {
    /// omsctl's version.
    pub omsctl: String,
    /// The version of librdkafka omsctl talks to Kafka with.
    pub librdkafka: String,
    /// Each service replica the context names.
    pub services: Vec<ServiceVersion>,
    /// The Kafka cluster.
    pub broker: BrokerVersion,
}

/// One service replica's version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceVersion {
    /// Service name (with the replica's number when it has several).
    pub service: String,
    /// Its base URL.
    pub url: String,
    /// What it says it is; `None` when it did not answer or runs a build too old to say.
    pub version: Option<String>,
    /// Why there is no version.
    pub error: Option<String>,
}

/// The Kafka cluster omsctl reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerVersion {
    /// Bootstrap servers.
    pub bootstrap: String,
    /// The node ids that answered the metadata request.
    pub nodes: Vec<i32>,
    /// The Apache Kafka release, when omsctl knows it: the one the local stack runs. (The Kafka
    /// protocol tells API versions, not the release, so a remote cluster's is not known here.)
    pub kafka: Option<String>,
    /// Why the cluster did not answer.
    pub error: Option<String>,
}

impl VersionReport {
    /// Whether every service said its version and the cluster answered.
    pub fn complete(&self) -> bool {
        self.broker.error.is_none() && self.services.iter().all(|s| s.version.is_some())
    }

    /// The services whose version differs from omsctl's.
    pub fn mismatched(&self) -> Vec<&ServiceVersion> {
        self.services
            .iter()
            .filter(|s| s.version.as_deref().is_some_and(|v| v != self.omsctl))
            .collect()
    }
}

/// Asks every service replica and the cluster.
pub async fn versions(ctx: &Ctx) -> Result<VersionReport, Failure> {
    let mut services = Vec::new();
    for r in ctx.replicas() {
        let (version, error) = match ctx.read_opt_at(HEALTH_LIVE.of(r.svc), r.base).await {
            Ok(Some(live)) => match live.version {
                Some(v) => (Some(v), None),
                None => (None, Some("does not say (an older build)".to_owned())),
            },
            Ok(None) => (None, Some("no /health/live".to_owned())),
            Err(f) => (None, Some(format!("{:#}", f.error))),
        };
        services.push(ServiceVersion {
            service: r.name,
            url: r.base.to_owned(),
            version,
            error,
        });
    }
    let kafka = ctx.brokers.clone();
    let answered = tokio::task::spawn_blocking(move || {
        let client = kafka.asking_client()?;
        let metadata = kafka.metadata(&client, None)?;
        Ok::<_, Failure>(
            metadata
                .brokers()
                .iter()
                .map(|b| b.id())
                .collect::<Vec<_>>(),
        )
    })
    .await
    .map_err(anyhow::Error::from)?;
    let (nodes, error) = match answered {
        Ok(nodes) => (nodes, None),
        Err(f) => (Vec::new(), Some(format!("{:#}", f.error))),
    };
    let local = Local::is_recorded(&ctx.state_dir)
        && matches!(ctx.context.target, crate::context::Target::Local);
    Ok(VersionReport {
        omsctl: env!("CARGO_PKG_VERSION").to_owned(),
        librdkafka: rdkafka::util::get_rdkafka_version().1,
        services,
        broker: BrokerVersion {
            bootstrap: ctx.brokers.servers.clone(),
            nodes,
            kafka: local.then(|| oms_kafka::node::KAFKA_VERSION.to_owned()),
            error,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(versions: &[Option<&str>], broker_error: Option<&str>) -> VersionReport {
        VersionReport {
            omsctl: "1.2.0".into(),
            librdkafka: "2.10.0".into(),
            services: versions
                .iter()
                .enumerate()
                .map(|(i, v)| ServiceVersion {
                    service: format!("s{i}"),
                    url: format!("http://127.0.0.1:{}", 8000 + i),
                    version: v.map(str::to_owned),
                    error: v.is_none().then(|| "refused".to_owned()),
                })
                .collect(),
            broker: BrokerVersion {
                bootstrap: "127.0.0.1:9092".into(),
                nodes: vec![1],
                kafka: None,
                error: broker_error.map(str::to_owned),
            },
        }
    }

    #[test]
    fn a_report_is_complete_when_everything_answered_and_names_mismatches() {
        let all = report(&[Some("1.2.0"), Some("1.1.0")], None);
        assert!(all.complete());
        let names: Vec<&str> = all
            .mismatched()
            .iter()
            .map(|s| s.service.as_str())
            .collect();
        assert_eq!(names, ["s1"]);
        assert!(!report(&[Some("1.2.0"), None], None).complete());
        assert!(!report(&[Some("1.2.0")], Some("down")).complete());
        let json = serde_json::to_string(&all).expect("json");
        let back: VersionReport = serde_json::from_str(&json).expect("reads back");
        assert_eq!(back, all);
    }
}
