//! Settings, the services' HTTP APIs and output helpers shared by every command.
//!
//! Each setting comes from its flag, else its `OMS_*` variable, else the config file
//! (`--config`, `OMS_CONFIG`, or `~/.config/omsctl/config.toml` when it exists), else a default
//! that works against the local stack.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use crate::render::{ids_of, yaml};
use anyhow::Context;
use oms_contracts::Topics;

use crate::{Failure, Output};

/// Global options.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct Settings {
    /// The context to operate (a `[contexts.NAME]` of the config file, or the built-in `local`
    /// and `compose`) [default: the file's current-context, else local].
    #[cfg_attr(feature = "clap", arg(long, global = true, env = "OMS_CONTEXT"))]
    pub context: Option<String>,

    /// Kafka bootstrap servers [default: 127.0.0.1:19092].
    #[cfg_attr(feature = "clap", arg(long, global = true, env = "OMS_BROKERS"))]
    pub brokers: Option<String>,

    /// Prefix of every topic and consumer group (as the services' --topic-prefix).
    #[cfg_attr(feature = "clap", arg(long, global = true, env = "OMS_TOPIC_PREFIX"))]
    pub topic_prefix: Option<String>,

    /// Output format.
    #[cfg_attr(feature = "clap", arg(short, long, global = true, value_enum))]
    pub output: Option<Output>,

    /// A service's URL, as NAME=URL (repeatable; `OMS_<NAME>_URL` does the same); several
    /// replicas as NAME=URL,URL (requests take turns and move on when one refuses connections)
    /// [default: http://127.0.0.1:PORT, the topology's port of each service].
    #[cfg_attr(feature = "clap", arg(long = "url", global = true, value_name = "NAME=URL", value_parser = service_url))]
    pub urls: Vec<(Svc, String)>,

    /// State directory of the local stack (pid files, logs)
    /// [default: $XDG_STATE_HOME/oms, else ~/.local/state/oms].
    #[cfg_attr(feature = "clap", arg(long, global = true, env = "OMS_STATE_DIR"))]
    pub state_dir: Option<PathBuf>,

    /// Bearer token for the services' APIs [default: one minted from the local stack's secret,
    /// when the state directory has one].
    #[cfg_attr(
        feature = "clap",
        arg(long, global = true, env = "OMS_TOKEN", hide_env_values = true)
    )]
    pub token: Option<String>,

    /// A command that prints the bearer token (run once, with `sh -c`), e.g. an identity
    /// provider's CLI.
    #[cfg_attr(feature = "clap", arg(long, global = true, env = "OMS_TOKEN_COMMAND"))]
    pub token_command: Option<String>,

    /// The trace backend's page of a trace, to link traces to: a URL with `{traceId}` in it, or
    /// a Jaeger UI base URL (`/trace/{traceId}` is added), e.g. http://127.0.0.1:16686.
    #[cfg_attr(feature = "clap", arg(long, global = true, env = "OMS_TRACE_URL"))]
    pub trace_url: Option<String>,

    /// Config file (TOML) [default: ~/.config/omsctl/config.toml if it exists].
    #[cfg_attr(feature = "clap", arg(long, global = true, env = "OMS_CONFIG"))]
    pub config: Option<PathBuf>,

    /// A librdkafka property for omsctl's Kafka clients, as KEY=VALUE (repeatable), e.g.
    /// `-X security.protocol=SASL_SSL -X sasl.mechanism=SCRAM-SHA-512`; over the context's
    /// `kafka` table, `OMS_KAFKA_<PROPERTY>` variables and `OMS_KAFKA_PROPERTIES_FILE`.
    #[cfg_attr(
        feature = "clap",
        arg(
            short = 'X',
            long = "kafka-property",
            global = true,
            value_name = "KEY=VALUE"
        )
    )]
    pub kafka_properties: Vec<String>,
}

/// The Kafka cluster omsctl talks to: bootstrap servers and librdkafka properties.
#[derive(Debug, Clone)]
pub struct Kafka {
    /// Bootstrap servers.
    pub servers: String,
    /// librdkafka properties (security, tuning) for every client.
    pub props: oms_kafka::Properties,
    /// The caller's own properties (context file, `-X`, environment), without a local stack's:
    /// what [`Ctx::for_local`] lays over the stack it points at.
    pub own: oms_kafka::Properties,
}

impl Kafka {
    /// A client config: the servers and every property.
    pub fn config(&self) -> rdkafka::ClientConfig {
        oms_kafka::client_config(&self.servers, &self.props)
    }

    /// A client that only asks the cluster (metadata, watermarks, groups): no consumer group,
    /// and librdkafka's own log lines kept off the terminal.
    pub fn asking_client(&self) -> Result<rdkafka::consumer::BaseConsumer, Failure> {
        Ok(self
            .config()
            .set_log_level(rdkafka::config::RDKafkaLogLevel::Emerg)
            .create()
            .context("creating the Kafka client")?)
    }

    /// The cluster's metadata (of `topic` only, when named); brokers that do not answer are a
    /// usage error that names them.
    pub fn metadata(
        &self,
        client: &rdkafka::consumer::BaseConsumer,
        topic: Option<&str>,
    ) -> Result<rdkafka::metadata::Metadata, Failure> {
        use rdkafka::consumer::Consumer;
        client
            .fetch_metadata(topic, Duration::from_secs(5))
            .map_err(|e| Failure::usage(format!("broker unreachable at {self}: {e}")))
    }
}

impl std::fmt::Display for Kafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.servers)
    }
}

/// `--url NAME=URL`.
pub fn service_url(s: &str) -> Result<(Svc, String), String> {
    let (name, url) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=URL, got {s:?}"))?;
    let svc: Svc = name
        .parse()
        .map_err(|e: oms_contracts::topology::UnknownService| e.to_string())?;
    Ok((svc, url.to_owned()))
}

/// A service omsctl talks to: a row of the topology.
pub use oms_contracts::ServiceId as Svc;

/// The settings a context resolves to (`context show`), secrets hidden.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextView {
    /// The context's name.
    pub context: String,
    /// What it operates.
    pub target: TargetView,
    /// The config file (it may not exist).
    pub config_file: Option<String>,
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// librdkafka properties, secret ones redacted.
    pub kafka: std::collections::BTreeMap<String, String>,
    /// Prefix of every topic and group.
    pub topic_prefix: String,
    /// Each service's URL(s), comma-separated.
    pub endpoints: std::collections::BTreeMap<String, String>,
    /// Where tokens come from, in words.
    pub token: String,
    /// The local stack's state directory.
    pub state_dir: String,
    /// The trace backend's page template.
    pub trace_url: Option<String>,
}

/// What a context operates, as `context show` says it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum TargetView {
    /// The local process stack.
    Local,
    /// compose.yaml.
    Compose {
        /// The compose project.
        project: String,
        /// The compose file, when named.
        file: Option<String>,
    },
    /// Kubernetes (deploy/kubernetes).
    Kubernetes {
        /// The namespace.
        namespace: String,
        /// The kubeconfig context, when named.
        #[serde(rename = "kubeContext")]
        kube_context: Option<String>,
        /// The Strimzi Kafka cluster.
        #[serde(rename = "kafkaCluster")]
        kafka_cluster: String,
        /// The CloudNativePG cluster.
        #[serde(rename = "postgresCluster")]
        postgres_cluster: String,
    },
}

/// Everything a command needs.
#[derive(Clone)]
pub struct Ctx {
    /// The Kafka cluster: bootstrap servers and properties.
    pub brokers: Kafka,
    /// Topic names as deployed.
    pub topics: Topics,
    /// Output format.
    pub output: Output,
    /// State directory of the local stack.
    pub state_dir: PathBuf,
    urls: Vec<(Svc, Vec<String>)>,
    /// Turn of the next request among a service's replicas (shared by clones).
    pub(crate) turn: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    pub(crate) http: reqwest::Client,
    pub(crate) token: crate::auth::TokenSource,
    /// Template of a trace's page in the trace backend (`{traceId}` in it).
    trace_url: Option<String>,
    /// The context in use.
    pub context: crate::context::Resolved,
    /// The config file's path (it may not exist).
    pub config_path: Option<PathBuf>,
}

/// One replica of a service as the context names it ([`Ctx::replicas`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica<'a> {
    /// Its service.
    pub svc: Svc,
    /// Its number, from 1.
    pub replica: u32,
    /// `order`, or `order-2` of several.
    pub name: String,
    /// Its base URL.
    pub base: &'a str,
}

/// `--trace-url`: a template with `{traceId}`, or a Jaeger UI base URL.
fn trace_template(url: &str) -> Result<String, Failure> {
    let template = if url.contains("{traceId}") {
        url.to_owned()
    } else {
        format!("{}/trace/{{traceId}}", url.trim_end_matches('/'))
    };
    check_url("trace backend", template.replace("{traceId}", "0"))?;
    Ok(template)
}

/// A comma-separated list of a service's URLs (its replicas), each checked.
fn check_urls(svc: &str, urls: &str) -> Result<Vec<String>, Failure> {
    let list: Vec<String> = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| check_url(svc, u.to_owned()))
        .collect::<Result<_, _>>()?;
    if list.is_empty() {
        return Err(Failure::usage(format!("no {svc} URL given in {urls:?}")));
    }
    Ok(list)
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
    /// Resolves the settings: flags, else `OMS_*` variables, else the context's settings in
    /// the config file, else defaults.
    pub fn new(s: Settings) -> Result<Self, Failure> {
        let config_path = crate::context::config_path(s.config.as_deref());
        let file_config = crate::context::read_file(config_path.as_deref(), s.config.is_some())?;
        let context = crate::context::resolve(&file_config, s.context.as_deref())?;
        let file = context.config.clone();
        let is_local = context.target == crate::context::Target::Local;
        let output = match (s.output, file.output.as_deref()) {
            (Some(o), _) => o,
            (None, Some("json")) => Output::Json,
            (None, Some("yaml")) => Output::Yaml,
            (None, Some("ids")) => Output::Ids,
            (None, Some("table")) | (None, None) => Output::Table,
            (None, Some(other)) => {
                return Err(Failure::usage(format!(
                    "config file: output {other:?} is not table, json, yaml or ids"
                )))
            }
        };
        let prefix = s.topic_prefix.or(file.topic_prefix).unwrap_or_default();
        let prefix =
            oms_contracts::topology::parse_topic_prefix(&prefix).map_err(Failure::usage)?;
        // Another target's faults are recorded apart from the local stack's.
        let state_dir = s
            .state_dir
            .clone()
            .or(file.state_dir.clone())
            .unwrap_or_else(|| {
                if is_local {
                    crate::paths::default_state_dir()
                } else {
                    crate::paths::default_state_dir()
                        .join("contexts")
                        .join(&context.name)
                }
            });
        // A stack brought up by `omsctl stack up` in this state directory says where it listens.
        let local = if is_local {
            crate::local::Local::open(&state_dir).ok()
        } else {
            None
        };
        let mut kafka = oms_kafka::Properties::new();
        for (k, v) in &file.kafka {
            kafka.set(k, v).map_err(Failure::usage)?;
        }
        kafka.extend(
            &oms_kafka::Properties::gather(None, &s.kafka_properties).map_err(Failure::usage)?,
        );
        let own = kafka.clone();
        // A secured local stack is reached as its operator's Kafka user, unless told otherwise.
        // Its user file missing (an `up --secure` that failed early) must not lock out `stack
        // down`, `wipe` or `up --plain`: those go on, told why Kafka may refuse them.
        if let Some(l) = &local {
            match l.operator_properties() {
                Ok(mut base) => {
                    base.extend(&kafka);
                    kafka = base;
                }
                Err(e) => eprintln!("omsctl: warning: {:#}", e.error),
            }
        }
        let mut urls = Vec::new();
        for svc in Svc::all() {
            let flag = s
                .urls
                .iter()
                .rev()
                .find(|(x, _)| *x == svc)
                .map(|(_, u)| u.clone());
            let env = std::env::var(format!("OMS_{}_URL", svc.name().to_uppercase())).ok();
            let url = flag
                .or(env)
                .or_else(|| file.endpoints.get(svc.name()).cloned())
                .unwrap_or_else(|| match &local {
                    Some(l) => l.urls(svc).join(","),
                    None => format!("http://127.0.0.1:{}", svc.spec().port),
                });
            urls.push((svc, check_urls(svc.name(), &url)?));
        }
        let token = crate::auth::TokenSource::new(
            s.token.or(file.token.clone()),
            s.token_command.or(file.token_command.clone()),
            &state_dir,
        );
        let trace_url = s
            .trace_url
            .or(file.trace_url)
            .filter(|u| !u.trim().is_empty())
            .map(|u| trace_template(&u))
            .transpose()?;
        Ok(Self {
            trace_url,
            token,
            brokers: Kafka {
                servers: s.brokers.or(file.brokers).unwrap_or_else(|| {
                    local
                        .as_ref()
                        .map_or_else(|| "127.0.0.1:19092".into(), |l| l.brokers())
                }),
                props: kafka,
                own,
            },
            context,
            config_path,
            topics: Topics::new(&prefix),
            output,
            state_dir,
            urls,
            turn: Default::default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .connect_timeout(Duration::from_secs(3))
                .build()
                .context("creating the HTTP client")?,
        })
    }

    /// What `context show` prints: the resolved settings, secrets hidden.
    pub fn describe(&self) -> ContextView {
        let target = match &self.context.target {
            crate::context::Target::Local => TargetView::Local,
            crate::context::Target::Compose { project, file } => TargetView::Compose {
                project: project.clone(),
                file: file.as_ref().map(|f| f.display().to_string()),
            },
            crate::context::Target::Kubernetes {
                namespace,
                kube_context,
                kafka_cluster,
                postgres_cluster,
            } => TargetView::Kubernetes {
                namespace: namespace.clone(),
                kube_context: kube_context.clone(),
                kafka_cluster: kafka_cluster.clone(),
                postgres_cluster: postgres_cluster.clone(),
            },
        };
        ContextView {
            context: self.context.name.clone(),
            target,
            config_file: self.config_path.as_ref().map(|p| p.display().to_string()),
            brokers: self.brokers.servers.clone(),
            kafka: self.brokers.props.redacted().into_iter().collect(),
            topic_prefix: self.topics.prefix().to_owned(),
            endpoints: self
                .urls
                .iter()
                .map(|(s, u)| (s.name().to_owned(), u.join(",")))
                .collect(),
            token: self.token.describe().to_owned(),
            state_dir: self.state_dir.display().to_string(),
            trace_url: self.trace_url.clone(),
        }
    }

    /// The trace backend's page of trace `trace_id`, when one is configured.
    pub fn trace_link(&self, trace_id: &str) -> Option<String> {
        self.trace_url
            .as_ref()
            .map(|t| t.replace("{traceId}", trace_id))
    }

    /// This context pointed at the local stack `local` (its brokers, its operator's Kafka user
    /// when it is secured, and its service ports).
    pub fn for_local(&self, local: &crate::local::Local) -> Result<Self, Failure> {
        let mut here = self.clone();
        here.brokers.servers = local.brokers();
        let mut props = local.operator_properties()?;
        props.extend(&self.brokers.own);
        here.brokers.props = props;
        here.urls = Svc::all().map(|s| (s, local.urls(s))).collect();
        Ok(here)
    }

    /// Each service's consumer group with the topics it reads, as deployed (prefixed).
    pub fn consumer_groups(&self) -> Vec<(String, Vec<String>)> {
        oms_contracts::topology::SERVICES
            .iter()
            .map(|s| self.topics.consumer(s))
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

    /// A topic named on the command line, as deployed: the prefix is added unless it is there
    /// (completions offer prefixed names, people type contract names).
    pub fn deployed_topic(&self, t: &str) -> String {
        let prefix = self.topics.prefix();
        let base = t.strip_prefix(prefix).filter(|_| !prefix.is_empty());
        self.topics.name(base.unwrap_or(t))
    }

    /// An idempotent producer (acks from every replica) for what omsctl writes: produced
    /// messages, replays, poison, the replay audit.
    pub fn producer(&self) -> Result<rdkafka::producer::FutureProducer, Failure> {
        use anyhow::Context as _;
        Ok(self
            .brokers
            .config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "15000")
            .set_log_level(rdkafka::config::RDKafkaLogLevel::Emerg)
            .create()
            .context("creating the Kafka producer")?)
    }

    /// This omsctl as a child process with the same brokers, prefix, state directory and
    /// service URLs (drill steps, the dashboard's `:` commands).
    pub fn omsctl_command(&self) -> std::io::Result<tokio::process::Command> {
        let mut cmd = tokio::process::Command::new(std::env::current_exe()?);
        cmd.env("OMS_BROKERS", &self.brokers.servers)
            .env("OMS_TOPIC_PREFIX", self.topics.prefix())
            .env("OMS_STATE_DIR", &self.state_dir);
        for svc in Svc::all() {
            cmd.env(
                format!("OMS_{}_URL", svc.name().to_uppercase()),
                self.urls_of(svc).join(","),
            );
        }
        Ok(cmd)
    }

    /// Base URL of every replica of a service.
    pub fn urls_of(&self, svc: Svc) -> &[String] {
        self.urls
            .iter()
            .find(|(s, _)| *s == svc)
            .map_or(&[][..], |(_, u)| u.as_slice())
    }

    /// Every replica of every service, in the topology's order, named after its service (with
    /// `-K` when the service has several, as the local stack names them).
    pub fn replicas(&self) -> Vec<Replica<'_>> {
        let mut out = Vec::new();
        for svc in Svc::all() {
            let bases = self.urls_of(svc);
            for (i, base) in bases.iter().enumerate() {
                let replica = u32::try_from(i + 1).unwrap_or(u32::MAX);
                let name = if bases.len() > 1 {
                    format!("{}-{replica}", svc.name())
                } else {
                    svc.name().to_owned()
                };
                out.push(Replica {
                    svc,
                    replica,
                    name,
                    base,
                });
            }
        }
        out
    }

    /// Prints `value` as JSON, or `table` when the output is a table.
    pub fn print(
        &self,
        value: &impl serde::Serialize,
        table: impl FnOnce() -> String,
    ) -> Result<(), Failure> {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        match self.output {
            Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(value)?)?,
            Output::Yaml => write!(out, "{}", yaml(value)?)?,
            Output::Ids => {
                let ids = ids_of(&serde_json::to_value(value)?).ok_or_else(|| {
                    Failure::usage("this command's output has no ids: use -o json or -o yaml")
                })?;
                for id in ids {
                    writeln!(out, "{id}")?;
                }
            }
            Output::Table => writeln!(out, "{}", table())?,
        }
        Ok(())
    }

    /// Whether stderr is a terminal (progress bars and colour only then).
    pub fn interactive(&self) -> bool {
        std::io::stderr().is_terminal()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_may_list_its_replicas() {
        let two = check_urls("order", "http://127.0.0.1:8081/, http://127.0.0.1:8181,")
            .expect("two URLs");
        assert_eq!(two, ["http://127.0.0.1:8081", "http://127.0.0.1:8181"]);
        assert!(check_urls("order", " , ").is_err());
        let err = check_urls("order", "http://127.0.0.1:8081,ftp://x")
            .err()
            .map(|f| f.error.to_string());
        assert!(err.is_some_and(|e| e.contains("ftp://x")));
    }
}
