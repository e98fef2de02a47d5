//! Runtime configuration shared by every service, from flags and `OMS_*` environment variables.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use oms_contracts::auth::{AUDIENCE, LOCAL_ISSUER};
use sqlx::postgres::PgConnectOptions;

/// Settings every service has. Flatten it into the service's own `clap::Parser`.
#[derive(Debug, Clone, clap::Args)]
pub struct RuntimeConfig {
    /// PostgreSQL server URL; the path (database) part is replaced by the service's database.
    #[arg(
        long,
        env = "OMS_DATABASE_URL",
        default_value = "postgres://oms:oms@127.0.0.1:55432/postgres"
    )]
    pub database_url: DatabaseUrl,

    /// The service's own database (created if missing). Defaults to `oms_<service>`.
    #[arg(long, env = "OMS_DATABASE_NAME")]
    pub database_name: Option<String>,

    /// Maximum connections in the service's pool.
    #[arg(long, env = "OMS_DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub database_max_connections: u32,

    /// Kafka bootstrap servers.
    #[arg(long, env = "OMS_BROKERS", default_value = "127.0.0.1:19092")]
    pub brokers: String,

    /// A librdkafka property for every Kafka client of the service, as KEY=VALUE (repeatable),
    /// e.g. `-X security.protocol=SASL_SSL -X sasl.mechanism=SCRAM-SHA-512`. Also
    /// `OMS_KAFKA_<PROPERTY>` variables (`OMS_KAFKA_SASL_USERNAME` is `sasl.username`) and a
    /// properties file; flags win over variables, variables over the file.
    #[arg(short = 'X', long = "kafka-property", value_name = "KEY=VALUE", value_parser = parse_kafka_property)]
    pub kafka_properties: Vec<String>,

    /// A file of librdkafka properties (`key=value` lines, `#` comments), e.g. a mounted Secret.
    #[arg(long, env = "OMS_KAFKA_PROPERTIES_FILE")]
    pub kafka_properties_file: Option<std::path::PathBuf>,

    /// Prefix of every topic name (e.g. `staging.`), so several environments or test runs can
    /// share one cluster. Empty by default.
    #[arg(long, env = "OMS_TOPIC_PREFIX", default_value = "", value_parser = oms_contracts::topology::parse_topic_prefix)]
    pub topic_prefix: String,

    /// How the outbox relay learns about new rows: `notify` (LISTEN/NOTIFY, with a slow poll as
    /// fallback) or `poll:<interval>` (e.g. `poll:500ms`, the design of comparable projects).
    #[arg(long, env = "OMS_OUTBOX_WAKEUP", default_value = "notify")]
    pub outbox_wakeup: OutboxWakeup,

    /// How long published outbox rows are kept before they are pruned.
    #[arg(long, env = "OMS_OUTBOX_RETENTION", default_value = "1h", value_parser = parse_duration)]
    pub outbox_retention: Duration,

    /// How long the inbox (`processed_messages`) remembers a settled message: a redelivery or a
    /// dead-letter replay of it within this window is recognised and skipped. Default: the
    /// dead-letter topics' retention (30 days), the oldest a message can come back.
    #[arg(long, env = "OMS_INBOX_RETENTION", default_value = "30d", value_parser = parse_duration)]
    pub inbox_retention: Duration,

    /// Rows the relay publishes per batch.
    #[arg(long, env = "OMS_OUTBOX_BATCH_SIZE", default_value_t = 500)]
    pub outbox_batch_size: u32,

    /// Longest wait between two publish attempts of a failing outbox row.
    #[arg(long, env = "OMS_OUTBOX_MAX_BACKOFF", default_value = "30s", value_parser = parse_duration)]
    pub outbox_max_backoff: Duration,

    /// Times a consumer tries a failing handler before dead-lettering the message.
    #[arg(long, env = "OMS_CONSUMER_MAX_ATTEMPTS", default_value_t = 5)]
    pub consumer_max_attempts: u32,

    /// Longest time the broker may hold a consumer's fetch open waiting for data. Kafka answers
    /// a waiting fetch the moment a message arrives, so this costs no latency: it only sets how
    /// often an idle consumer asks (500 ms idles at half the broker CPU of 20 ms;
    /// docs/benchmarks.md).
    #[arg(long, env = "OMS_CONSUMER_FETCH_WAIT", default_value = "500ms", value_parser = parse_duration)]
    pub consumer_fetch_wait: Duration,

    /// How each service's consumer group shares its partitions out: `classic` (every member
    /// rejoins on every change) or `consumer` (KIP-848, Kafka 4: the broker assigns, members
    /// learn their part on heartbeats, a change stops nobody; after a broker outage the groups
    /// carry on in ~2 s where classic ones wait out a lapsed session, ~10 s). Classic is the
    /// default because omsctl (rdkafka 0.39, which has no DescribeConsumerGroups) cannot show a
    /// `consumer` group's members and assignment. docs/benchmarks.md has the figures.
    #[arg(long, env = "OMS_CONSUMER_GROUP_PROTOCOL", default_value = "classic")]
    pub consumer_group_protocol: crate::kafka::GroupProtocol,

    /// Most workers of each consumer (transactions in flight at once, each on its own orders);
    /// a handler may ask for fewer. Unset: the handler's choice. `1` with a batch of `1` is the
    /// one-message-at-a-time design of comparable projects.
    #[arg(long, env = "OMS_CONSUMER_WORKERS", value_parser = clap::value_parser!(u16).range(1..))]
    pub consumer_workers: Option<u16>,

    /// Most messages a consumer settles in one transaction; a handler may ask for fewer. Unset:
    /// the handler's choice.
    #[arg(long, env = "OMS_CONSUMER_MAX_BATCH", value_parser = clap::value_parser!(u16).range(1..))]
    pub consumer_max_batch: Option<u16>,

    /// Threads of the service's async runtime. The services wait on PostgreSQL and Kafka far
    /// more than they compute, and one thread wakes fewer threads per message: on the 2-core
    /// bench box it carried more orders per second than one per core (docs/benchmarks.md).
    /// More let one replica use more cores.
    #[arg(long, env = "OMS_WORKER_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub worker_threads: u16,

    /// Log format: `json` (one object per line) or `text`.
    #[arg(long, env = "OMS_LOG_FORMAT", default_value = "json")]
    pub log_format: LogFormat,

    /// Log filter in `RUST_LOG` syntax.
    #[arg(long, env = "OMS_LOG", default_value = "info")]
    pub log_filter: String,

    /// OTLP/HTTP endpoint traces are exported to, as a base URL (`/v1/traces` is added), e.g.
    /// `http://127.0.0.1:4318`. Unset: the standard `OTEL_EXPORTER_OTLP_ENDPOINT`; neither: spans
    /// are made (trace ids still travel with every message and reach the logs) but not exported.
    #[arg(long, env = "OMS_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// `on`: spans for requests, messages, enqueues and publishes (exported when an endpoint is
    /// set). `off`: no spans at all: messages carry a `traceparent` derived from their
    /// correlation id, orders record no trace id, nothing can be exported (the baseline of
    /// `scripts/bench.sh tracing`).
    #[arg(long, env = "OMS_TRACING", default_value = "on", value_parser = parse_switch)]
    pub tracing: bool,

    /// Who may call the HTTP API.
    #[command(flatten)]
    pub auth: AuthConfig,
}

/// Checks one `-X KEY=VALUE`.
fn parse_kafka_property(s: &str) -> Result<String, String> {
    oms_kafka::Properties::new()
        .set_pair(s)
        .map(|()| s.to_owned())
        .map_err(|e| e.to_string())
}

impl RuntimeConfig {
    /// Every librdkafka property the service was given (file, `OMS_KAFKA_*`, `-X`).
    pub fn kafka(&self) -> Result<oms_kafka::Properties, oms_kafka::properties::PropertyError> {
        oms_kafka::Properties::gather(
            self.kafka_properties_file.as_deref(),
            &self.kafka_properties,
        )
    }
}

/// Parses `500ms`, `30s`, `1h` and the like.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// Parses `on` or `off`.
pub fn parse_switch(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("expected on or off, got {s:?}")),
    }
}

/// The default listen address of `service` on the local stack: loopback and its topology port.
pub fn default_listen(service: oms_contracts::ServiceId) -> String {
    format!("127.0.0.1:{}", service.spec().port)
}

/// A PostgreSQL URL whose password never appears in `Debug` or `Display` output.
#[derive(Clone)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Connect options for database `name` on this server.
    pub fn options_for(&self, name: &str) -> Result<PgConnectOptions, sqlx::Error> {
        Ok(PgConnectOptions::from_str(&self.0)?.database(name))
    }

    /// The URL itself, password included: hand it to a client, never to a log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !(s.starts_with("postgres://") || s.starts_with("postgresql://")) {
            return Err(
                "invalid PostgreSQL URL: it must start with postgres:// or postgresql://".into(),
            );
        }
        PgConnectOptions::from_str(s).map_err(|e| format!("invalid PostgreSQL URL: {e}"))?;
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // postgres://user:secret@host/db -> postgres://user:***@host/db
        match (self.0.find("://"), self.0.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                let userinfo = &self.0[scheme + 3..at];
                match userinfo.find(':') {
                    Some(colon) => write!(
                        f,
                        "{}{}:***{}",
                        &self.0[..scheme + 3],
                        &userinfo[..colon],
                        &self.0[at..]
                    ),
                    None => f.write_str(&self.0),
                }
            }
            _ => f.write_str(&self.0),
        }
    }
}

/// How the outbox relay wakes up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxWakeup {
    /// `LISTEN` on the outbox channel; `NOTIFY` from every enqueue wakes the relay at once.
    Notify,
    /// Poll every interval, without `LISTEN/NOTIFY`.
    Poll(Duration),
}

impl FromStr for OutboxWakeup {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            None if s == "notify" => Ok(Self::Notify),
            Some(("poll", interval)) => {
                let d = parse_duration(interval)?;
                if d.is_zero() {
                    return Err("poll interval must be above zero".into());
                }
                Ok(Self::Poll(d))
            }
            _ => Err(format!(
                "invalid outbox wake-up {s:?}: expected `notify` or `poll:<interval>` (e.g. poll:500ms)"
            )),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// Authentication settings. Flattened into [`RuntimeConfig`]; the auth module checks
/// tokens with them.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthConfig {
    /// `jwt`: every route but /health/* and /openapi.json needs a bearer token; `off`: nothing is
    /// checked and every caller is an admin (benchmarks of the bare path only).
    #[arg(long = "auth", env = "OMS_AUTH", default_value = "jwt")]
    pub mode: AuthMode,

    /// File holding the HS256 secret (at least 32 bytes; surrounding whitespace is ignored).
    /// `omsctl stack up` generates one in its state directory.
    #[arg(long, env = "OMS_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,

    /// PEM public key (RSA for RS256, P-256 for ES256) of the issuer of the tokens.
    #[arg(long, env = "OMS_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,

    /// JWKS file (`{"keys": [...]}`) of the issuer: RS256 and ES256 keys, picked by the token's `kid`.
    #[arg(long, env = "OMS_JWT_JWKS_FILE")]
    pub jwt_jwks_file: Option<PathBuf>,

    /// The issuer (`iss`) tokens must name.
    #[arg(long, env = "OMS_JWT_ISSUER", default_value = LOCAL_ISSUER)]
    pub jwt_issuer: String,

    /// The audience (`aud`) tokens must name.
    #[arg(long, env = "OMS_JWT_AUDIENCE", default_value = AUDIENCE)]
    pub jwt_audience: String,

    /// Requests with no token or a bad one, per client address: `N/s` (bursts of twice that),
    /// `N/s:BURST`, or `off`. Over it they are answered 429 with `Retry-After` instead of 401:
    /// guessing tokens or flooding the checks from one address gets nowhere fast. Per replica.
    // The full path keeps clap from reading `Option` as "the flag may be left out".
    #[arg(long, env = "OMS_UNAUTHENTICATED_RATE_LIMIT", default_value = "20/s",
          value_parser = crate::limit::parse_rate_limit)]
    pub unauthenticated_rate_limit: std::option::Option<crate::limit::RateLimit>,
}

impl AuthConfig {
    /// No checks: every caller is an admin.
    pub fn off() -> Self {
        Self {
            mode: AuthMode::Off,
            jwt_secret_file: None,
            ..Self::secret_file("")
        }
    }

    /// HS256 with the secret in `file`, the local issuer and audience.
    pub fn secret_file(file: impl Into<PathBuf>) -> Self {
        Self {
            mode: AuthMode::Jwt,
            jwt_secret_file: Some(file.into()),
            jwt_public_key_file: None,
            jwt_jwks_file: None,
            jwt_issuer: LOCAL_ISSUER.to_owned(),
            jwt_audience: AUDIENCE.to_owned(),
            unauthenticated_rate_limit: None,
        }
    }
}

/// Whether tokens are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// Bearer JWTs are required.
    Jwt,
    /// No checks: every caller is an admin.
    Off,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Service {
        #[command(flatten)]
        runtime: RuntimeConfig,
    }

    #[test]
    fn a_service_parses_the_runtime_flags() {
        let s = Service::try_parse_from([
            "svc",
            "--brokers",
            "kafka:9092",
            "--outbox-wakeup",
            "poll:250ms",
            "--outbox-retention",
            "10m",
            "--consumer-max-attempts",
            "7",
        ])
        .expect("valid flags");
        assert_eq!(s.runtime.brokers, "kafka:9092");
        assert_eq!(
            s.runtime.outbox_wakeup,
            OutboxWakeup::Poll(Duration::from_millis(250))
        );
        assert_eq!(s.runtime.outbox_retention, Duration::from_secs(600));
        assert_eq!(s.runtime.consumer_max_attempts, 7);
        assert_eq!(s.runtime.log_format, LogFormat::Json);
        assert_eq!(s.runtime.consumer_fetch_wait, Duration::from_millis(500));
        assert_eq!(s.runtime.worker_threads, 1);
        let secured = Service::try_parse_from([
            "svc",
            "-X",
            "security.protocol=SASL_SSL",
            "--kafka-property",
            "sasl.mechanism=SCRAM-SHA-512",
        ])
        .expect("properties");
        assert_eq!(
            secured.runtime.kafka_properties,
            ["security.protocol=SASL_SSL", "sasl.mechanism=SCRAM-SHA-512"]
        );
    }

    #[test]
    fn bad_flags_are_refused_with_a_reason() {
        for (flag, value, needle) in [
            ("--outbox-wakeup", "sometimes", "notify"),
            ("--outbox-retention", "forever", "invalid duration"),
            ("--database-url", "mysql://x", "PostgreSQL URL"),
            ("--consumer-max-attempts", "-1", "-1"),
            ("--topic-prefix", "a b", "topic prefix"),
            ("--consumer-fetch-wait", "soon", "invalid duration"),
            ("--consumer-group-protocol", "eager", "classic"),
            ("--consumer-workers", "0", "0"),
            ("--worker-threads", "0", "0"),
            ("-X", "security.protocol", "KEY=VALUE"),
            ("--kafka-property", "group.id=mine", "cannot be overridden"),
        ] {
            let err = Service::try_parse_from(["svc", flag, value])
                .err()
                .unwrap_or_else(|| panic!("{flag} {value} accepted"));
            assert!(err.to_string().contains(needle), "{flag}: {err}");
        }
    }

    #[test]
    fn database_url_hides_its_password() {
        let url: DatabaseUrl = "postgres://oms:s3cret@127.0.0.1:5432/postgres"
            .parse()
            .expect("valid url");
        let shown = format!("{url} {url:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("postgres://oms:***@127.0.0.1:5432/postgres"));
    }

    #[test]
    fn outbox_wakeup_parses_both_modes_and_refuses_the_rest() {
        assert_eq!("notify".parse(), Ok(OutboxWakeup::Notify));
        assert_eq!(
            "poll:500ms".parse(),
            Ok(OutboxWakeup::Poll(Duration::from_millis(500)))
        );
        for bad in ["", "poll", "poll:", "poll:0s", "poll:fast", "listen"] {
            assert!(bad.parse::<OutboxWakeup>().is_err(), "{bad:?} accepted");
        }
    }
}
