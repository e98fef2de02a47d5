//! Settings, the services' HTTP APIs and output helpers shared by every command.
//!
//! Each setting comes from its flag, else its `OMS_*` variable, else the config file
//! (`--config`, `OMS_CONFIG`, or `~/.config/omsctl/config.toml` when it exists), else a default
//! that works against the local stack.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use comfy_table::{presets::UTF8_FULL_CONDENSED, ContentArrangement, Table};
use oms_runtime::config::Topics;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use crate::{Failure, Output};

/// Global options.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Kafka bootstrap servers [default: 127.0.0.1:19092].
    #[arg(long, global = true, env = "OMS_BROKERS")]
    brokers: Option<String>,

    /// Prefix of every topic and consumer group (as the services' --topic-prefix).
    #[arg(long, global = true, env = "OMS_TOPIC_PREFIX")]
    topic_prefix: Option<String>,

    /// Output format.
    #[arg(short, long, global = true, value_enum)]
    output: Option<Output>,

    /// Order service URL [default: http://127.0.0.1:8081].
    #[arg(long, global = true, env = "OMS_ORDER_URL")]
    order_url: Option<String>,

    /// Payment service URL [default: http://127.0.0.1:8082].
    #[arg(long, global = true, env = "OMS_PAYMENT_URL")]
    payment_url: Option<String>,

    /// Inventory service URL [default: http://127.0.0.1:8083].
    #[arg(long, global = true, env = "OMS_INVENTORY_URL")]
    inventory_url: Option<String>,

    /// Notification service URL [default: http://127.0.0.1:8084].
    #[arg(long, global = true, env = "OMS_NOTIFICATION_URL")]
    notification_url: Option<String>,

    /// Saga orchestrator URL [default: http://127.0.0.1:8085].
    #[arg(long, global = true, env = "OMS_SAGA_URL")]
    saga_url: Option<String>,

    /// State directory of the local stack (pid files, logs) [default: ./.oms].
    #[arg(long, global = true, env = "OMS_STATE_DIR")]
    state_dir: Option<PathBuf>,

    /// Config file (TOML) [default: ~/.config/omsctl/config.toml if it exists].
    #[arg(long, global = true, env = "OMS_CONFIG")]
    config: Option<PathBuf>,
}

/// The config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    brokers: Option<String>,
    topic_prefix: Option<String>,
    output: Option<String>,
    state_dir: Option<PathBuf>,
    #[serde(default)]
    endpoints: FileEndpoints,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEndpoints {
    order: Option<String>,
    payment: Option<String>,
    inventory: Option<String>,
    notification: Option<String>,
    saga: Option<String>,
}

/// A service omsctl talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Svc {
    /// order
    Order,
    /// payment
    Payment,
    /// inventory
    Inventory,
    /// notification
    Notification,
    /// saga
    Saga,
}

impl Svc {
    /// All five, in the local stack's start order.
    pub const ALL: [Svc; 5] = [
        Svc::Inventory,
        Svc::Payment,
        Svc::Order,
        Svc::Saga,
        Svc::Notification,
    ];

    /// The service's name.
    pub fn name(self) -> &'static str {
        match self {
            Svc::Order => "order",
            Svc::Payment => "payment",
            Svc::Inventory => "inventory",
            Svc::Notification => "notification",
            Svc::Saga => "saga",
        }
    }

    /// Its consumer group (before the prefix).
    pub fn group(self) -> String {
        format!("oms-{}", self.name())
    }

    /// Contract topics its consumer reads.
    pub fn topics(self) -> &'static [&'static str] {
        use oms_contracts::topics::*;
        match self {
            Svc::Order | Svc::Notification => &[ORDER_EVENTS],
            Svc::Inventory => &[INVENTORY_COMMANDS, ORDER_EVENTS],
            Svc::Payment => &[PAYMENT_COMMANDS],
            Svc::Saga => &[ORDER_EVENTS, INVENTORY_EVENTS, PAYMENT_EVENTS],
        }
    }
}

/// Everything a command needs.
#[derive(Clone)]
pub struct Ctx {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// Topic names as deployed.
    pub topics: Topics,
    /// Output format.
    pub output: Output,
    /// State directory of the local stack.
    pub state_dir: PathBuf,
    urls: [(Svc, String); 5],
    http: reqwest::Client,
}

fn check_url(svc: &str, url: String) -> Result<String, Failure> {
    let parsed = reqwest::Url::parse(&url)
        .map_err(|e| Failure::usage(format!("invalid {svc} URL {url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Failure::usage(format!(
            "invalid {svc} URL {url:?}: expected http:// or https://"
        )));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

impl Ctx {
    /// Resolves the settings.
    pub fn new(s: Settings) -> Result<Self, Failure> {
        let explicit = s.config.is_some();
        let path = s.config.clone().or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/omsctl/config.toml"))
        });
        let file: FileConfig = match path {
            Some(p) if explicit || p.exists() => {
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| Failure::usage(format!("config file {}: {e}", p.display())))?;
                toml::from_str(&text).map_err(|e| {
                    Failure::usage(format!(
                        "config file {}: {}",
                        p.display(),
                        e.to_string().replace('\n', " ")
                    ))
                })?
            }
            _ => FileConfig::default(),
        };
        let output = match (s.output, file.output.as_deref()) {
            (Some(o), _) => o,
            (None, Some("json")) => Output::Json,
            (None, Some("table")) | (None, None) => Output::Table,
            (None, Some(other)) => {
                return Err(Failure::usage(format!(
                    "config file: output {other:?} is not table or json"
                )))
            }
        };
        let prefix = s.topic_prefix.or(file.topic_prefix).unwrap_or_default();
        let prefix = oms_runtime::config::parse_topic_prefix(&prefix).map_err(Failure::usage)?;
        let e = file.endpoints;
        let pick = |flag: Option<String>, file: Option<String>, port: u16| {
            flag.or(file)
                .unwrap_or_else(|| format!("http://127.0.0.1:{port}"))
        };
        let urls = [
            (
                Svc::Order,
                check_url("order", pick(s.order_url, e.order, 8081))?,
            ),
            (
                Svc::Payment,
                check_url("payment", pick(s.payment_url, e.payment, 8082))?,
            ),
            (
                Svc::Inventory,
                check_url("inventory", pick(s.inventory_url, e.inventory, 8083))?,
            ),
            (
                Svc::Notification,
                check_url(
                    "notification",
                    pick(s.notification_url, e.notification, 8084),
                )?,
            ),
            (
                Svc::Saga,
                check_url("saga", pick(s.saga_url, e.saga, 8085))?,
            ),
        ];
        Ok(Self {
            brokers: s
                .brokers
                .or(file.brokers)
                .unwrap_or_else(|| "127.0.0.1:19092".into()),
            topics: Topics::new(&prefix),
            output,
            state_dir: s
                .state_dir
                .or(file.state_dir)
                .unwrap_or_else(|| PathBuf::from(".oms")),
            urls,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .connect_timeout(Duration::from_secs(3))
                .build()
                .context("creating the HTTP client")?,
        })
    }

    /// Each service's consumer group with the topics it reads, as deployed (prefixed).
    pub fn consumer_groups(&self) -> Vec<(String, Vec<String>)> {
        Svc::ALL
            .iter()
            .map(|s| {
                (
                    self.topics.name(&s.group()),
                    s.topics().iter().map(|t| self.topics.name(t)).collect(),
                )
            })
            .collect()
    }

    /// The saga's topics, as deployed (no DLQs).
    pub fn saga_topics(&self) -> Vec<String> {
        oms_contracts::topics::ALL
            .iter()
            .map(|t| self.topics.name(t))
            .collect()
    }

    /// Every dead-letter topic, as deployed.
    pub fn dlq_topics(&self) -> Vec<String> {
        oms_contracts::topics::ALL
            .iter()
            .map(|t| self.topics.name(&oms_contracts::topics::dlq(t)))
            .collect()
    }

    /// Base URL of a service.
    pub fn url(&self, svc: Svc) -> &str {
        self.urls
            .iter()
            .find(|(s, _)| *s == svc)
            .map(|(_, u)| u.as_str())
            .unwrap_or_default()
    }

    fn unreachable(&self, svc: Svc, e: &reqwest::Error) -> Failure {
        let why = if e.is_timeout() {
            "timed out"
        } else {
            "unreachable"
        };
        Failure::usage(format!(
            "{} service {why} at {} (is the stack up? `omsctl stack up`)",
            svc.name(),
            self.url(svc)
        ))
    }

    /// `GET` a JSON document; `None` on 404.
    pub async fn get_opt(&self, svc: Svc, path: &str) -> Result<Option<Value>, Failure> {
        let url = format!("{}{path}", self.url(svc));
        let r = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| self.unreachable(svc, &e))?;
        match r.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(r.json().await.with_context(|| format!("GET {url}"))?)),
            s => {
                let body: Value = r.json().await.unwrap_or(Value::Null);
                Err(api_failure(svc, s, &body))
            }
        }
    }

    /// `GET` a JSON document that must exist.
    pub async fn get(&self, svc: Svc, path: &str) -> Result<Value, Failure> {
        self.get_opt(svc, path)
            .await?
            .ok_or_else(|| Failure::verdict(format!("{} service: {path} not found", svc.name())))
    }

    /// `POST` JSON: (status, body).
    pub async fn post(
        &self,
        svc: Svc,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> Result<(StatusCode, Value), Failure> {
        let mut request = self
            .http
            .post(format!("{}{path}", self.url(svc)))
            .json(body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let r = request
            .send()
            .await
            .map_err(|e| self.unreachable(svc, &e))?;
        let status = r.status();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// `PUT` JSON: (status, body).
    pub async fn put(
        &self,
        svc: Svc,
        path: &str,
        body: &Value,
    ) -> Result<(StatusCode, Value), Failure> {
        let r = self
            .http
            .put(format!("{}{path}", self.url(svc)))
            .json(body)
            .send()
            .await
            .map_err(|e| self.unreachable(svc, &e))?;
        let status = r.status();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// Prints `value` as JSON, or `table` when the output is a table.
    pub fn print(&self, value: &Value, table: impl FnOnce() -> String) -> Result<(), Failure> {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        match self.output {
            Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(value)?)?,
            Output::Table => writeln!(out, "{}", table())?,
        }
        Ok(())
    }

    /// Whether stderr is a terminal (progress bars and colour only then).
    pub fn interactive(&self) -> bool {
        std::io::stderr().is_terminal()
    }
}

/// A service's error answer as one line.
pub fn api_failure(svc: Svc, status: StatusCode, body: &Value) -> Failure {
    let message = body["message"].as_str().unwrap_or("error").to_owned();
    let errors: Vec<String> = body["errors"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let detail = if errors.is_empty() {
        String::new()
    } else {
        format!(" ({})", errors.join("; "))
    };
    let code = if status.is_client_error() { 2 } else { 1 };
    Failure {
        code,
        error: anyhow::anyhow!(
            "{} service: {} {message}{detail}",
            svc.name(),
            status.as_u16()
        ),
    }
}

/// A table with our look.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().map(|h| h.to_string()));
    t
}

/// A JSON value as a table cell (`-` when absent).
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Money as `169.97 EUR`.
pub fn money(v: &Value) -> String {
    match (v["amountMinor"].as_i64(), v["currency"].as_str()) {
        (Some(a), Some(c)) => format!("{}.{:02} {c}", a / 100, (a % 100).abs()),
        _ => "-".into(),
    }
}

/// Whether an error chain ends in a closed pipe.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Parses `30s`, `10m`, ...
pub fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}
