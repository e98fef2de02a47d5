//! Contexts: named targets omsctl operates (like kubectl contexts or rpk profiles), kept in the
//! config file as `[contexts.NAME]` with the brokers, service URLs, token or token command,
//! librdkafka properties and the kind of target: `local` (the process stack `omsctl stack up`
//! runs), `compose` (compose.yaml) or `kubernetes` (deploy/kubernetes). Chaos verbs act on the
//! target of the context.
//!
//! The context in use is `--context`, else `OMS_CONTEXT`, else the file's `current-context`,
//! else `local`. Two contexts exist without a file: `local` (the top-level keys of the file
//! apply to it, as before contexts) and `compose` (compose.yaml's host ports); a file entry of
//! the same name changes them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Failure;

/// What a context operates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// The local process stack (pids under the state directory).
    #[default]
    Local,
    /// A `docker compose` project of compose.yaml.
    Compose,
    /// A Kubernetes namespace with deploy/kubernetes applied (Strimzi Kafka, CloudNativePG).
    Kubernetes,
}

impl TargetKind {
    /// Its name in the config file.
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Local => "local",
            TargetKind::Compose => "compose",
            TargetKind::Kubernetes => "kubernetes",
        }
    }
}

/// One `[contexts.NAME]` table (every key optional; the top level of the file has the same keys
/// for the `local` context).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ContextConfig {
    /// local, compose or kubernetes.
    pub target: Option<TargetKind>,
    /// Kafka bootstrap servers.
    pub brokers: Option<String>,
    /// Topic and group prefix.
    pub topic_prefix: Option<String>,
    /// table or json.
    pub output: Option<String>,
    /// State directory (local: the stack's; others: where chaos records its faults).
    pub state_dir: Option<PathBuf>,
    /// A bearer token (prefer `token-command`: a file of tokens is a file of secrets).
    pub token: Option<String>,
    /// A command that prints the bearer token.
    pub token_command: Option<String>,
    /// Trace page template or Jaeger base URL.
    pub trace_url: Option<String>,
    /// Service name -> base URL.
    #[serde(default)]
    pub endpoints: BTreeMap<String, String>,
    /// librdkafka properties, e.g. `"security.protocol" = "SASL_SSL"`.
    #[serde(default)]
    pub kafka: BTreeMap<String, String>,
    /// compose: the project name (`docker compose -p`) [default: oms].
    pub compose_project: Option<String>,
    /// compose: the compose file (`docker compose -f`) [default: compose's own lookup].
    pub compose_file: Option<PathBuf>,
    /// kubernetes: the namespace [default: oms].
    pub namespace: Option<String>,
    /// kubernetes: the kubeconfig context (`kubectl --context`) [default: kubectl's current].
    pub kube_context: Option<String>,
    /// kubernetes: the Strimzi `Kafka` resource's name [default: oms-kafka].
    pub kafka_cluster: Option<String>,
    /// kubernetes: the CloudNativePG `Cluster`'s name [default: oms-postgres].
    pub postgres_cluster: Option<String>,
}

/// The config file: the `local` context's keys at the top level, `current-context`, and
/// `[contexts.NAME]` tables.
#[derive(Debug, Clone, Default)]
pub struct FileConfig {
    /// The context used when none is named.
    pub current_context: Option<String>,
    /// Named contexts.
    pub contexts: BTreeMap<String, ContextConfig>,
    /// The top-level keys: the `local` context's.
    pub top: ContextConfig,
}

/// Where a chaos verb acts, with what it needs to reach the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The local process stack.
    Local,
    /// `docker compose -p PROJECT [-f FILE]`.
    Compose {
        /// Project name.
        project: String,
        /// Compose file, when not compose's default lookup.
        file: Option<PathBuf>,
    },
    /// `kubectl -n NAMESPACE [--context CONTEXT]`.
    Kubernetes {
        /// Namespace of the OMS.
        namespace: String,
        /// kubeconfig context.
        kube_context: Option<String>,
        /// Strimzi `Kafka` name.
        kafka_cluster: String,
        /// CloudNativePG `Cluster` name.
        postgres_cluster: String,
    },
}

impl Target {
    /// Its kind.
    pub fn kind(&self) -> TargetKind {
        match self {
            Target::Local => TargetKind::Local,
            Target::Compose { .. } => TargetKind::Compose,
            Target::Kubernetes { .. } => TargetKind::Kubernetes,
        }
    }
}

/// The context in use, resolved.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Its name.
    pub name: String,
    /// Its settings (the built-in defaults under the file's).
    pub config: ContextConfig,
    /// Where chaos acts.
    pub target: Target,
}

/// The config file's path: `--config`/`OMS_CONFIG`, else `$XDG_CONFIG_HOME/omsctl/config.toml`,
/// else `~/.config/omsctl/config.toml`.
pub fn config_path(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("omsctl/config.toml"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/omsctl/config.toml"))
}

/// Reads the config file: missing is empty unless it was named explicitly.
pub fn read_file(path: Option<&Path>, explicit: bool) -> Result<FileConfig, Failure> {
    let Some(p) = path else {
        return Ok(FileConfig::default());
    };
    if !explicit && !p.exists() {
        return Ok(FileConfig::default());
    }
    let text = std::fs::read_to_string(p)
        .map_err(|e| Failure::usage(format!("config file {}: {e}", p.display())))?;
    parse_file(&text).map_err(|e| Failure::usage(format!("config file {}: {e}", p.display())))
}

/// Parses the config file's text and checks every context in it.
pub fn parse_file(text: &str) -> Result<FileConfig, String> {
    let one_line = |e: toml::de::Error| e.to_string().replace('\n', " ");
    // Read in parts: serde cannot refuse unknown keys of a table that is flattened into another.
    let mut table: toml::Table = toml::from_str(text).map_err(one_line)?;
    let current_context = match table.remove("current-context") {
        None => None,
        Some(toml::Value::String(s)) => Some(s),
        Some(other) => {
            return Err(format!(
                "current-context: expected a string, got a {}",
                other.type_str()
            ))
        }
    };
    let contexts = match table.remove("contexts") {
        None => BTreeMap::new(),
        Some(v) => v.try_into().map_err(one_line)?,
    };
    let top: ContextConfig = toml::Value::Table(table).try_into().map_err(one_line)?;
    let file = FileConfig {
        current_context,
        contexts,
        top,
    };
    if file.top.target.is_some_and(|t| t != TargetKind::Local) {
        return Err("the top-level keys are the local context's: `target` belongs in a [contexts.NAME] table".into());
    }
    for name in file.contexts.keys() {
        check_name(name)?;
    }
    for (name, c) in std::iter::once(("(top level)", &file.top))
        .chain(file.contexts.iter().map(|(n, c)| (n.as_str(), c)))
    {
        for svc in c.endpoints.keys() {
            svc.parse::<oms_contracts::ServiceId>()
                .map_err(|e| format!("context {name}: [endpoints] {e}"))?;
        }
        for (k, v) in &c.kafka {
            oms_kafka::Properties::new()
                .set(k, v)
                .map_err(|e| format!("context {name}: {e}"))?;
        }
    }
    if let Some(current) = &file.current_context {
        if !file.contexts.contains_key(current) && builtin(current).is_none() {
            return Err(format!(
                "current-context {current:?} is not a context of the file (contexts: {})",
                names(&file).join(", ")
            ));
        }
    }
    Ok(file)
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "context name {name:?}: letters, digits, '-', '_' and '.' only (at most 63)"
        ))
    }
}

/// The built-in contexts: `local`, and `compose` at compose.yaml's host ports.
fn builtin(name: &str) -> Option<ContextConfig> {
    match name {
        "local" => Some(ContextConfig {
            target: Some(TargetKind::Local),
            ..ContextConfig::default()
        }),
        "compose" => Some(ContextConfig {
            target: Some(TargetKind::Compose),
            brokers: Some(COMPOSE_HOST_BROKERS.into()),
            compose_project: Some("oms".into()),
            // The services' secret lives in a compose volume: omsctl in the image mints a token.
            token_command: Some(
                "docker compose -p oms run --rm -T --no-deps omsctl auth token --role admin".into(),
            ),
            ..ContextConfig::default()
        }),
        _ => None,
    }
}

/// The Kafka listener compose.yaml publishes on the host's loopback.
pub const COMPOSE_HOST_BROKERS: &str = "127.0.0.1:29092";

/// Every context name: built-in ones and the file's, sorted.
pub fn names(file: &FileConfig) -> Vec<String> {
    let mut all: Vec<String> = ["compose", "local"].map(String::from).to_vec();
    for n in file.contexts.keys() {
        if !all.contains(n) {
            all.push(n.clone());
        }
    }
    all.sort();
    all
}

/// `over`'s settings over `under`'s.
fn layer(under: ContextConfig, over: &ContextConfig) -> ContextConfig {
    let o = over.clone();
    let mut endpoints = under.endpoints;
    endpoints.extend(o.endpoints);
    let mut kafka = under.kafka;
    kafka.extend(o.kafka);
    ContextConfig {
        target: o.target.or(under.target),
        brokers: o.brokers.or(under.brokers),
        topic_prefix: o.topic_prefix.or(under.topic_prefix),
        output: o.output.or(under.output),
        state_dir: o.state_dir.or(under.state_dir),
        token: o.token.or(under.token),
        token_command: o.token_command.or(under.token_command),
        trace_url: o.trace_url.or(under.trace_url),
        endpoints,
        kafka,
        compose_project: o.compose_project.or(under.compose_project),
        compose_file: o.compose_file.or(under.compose_file),
        namespace: o.namespace.or(under.namespace),
        kube_context: o.kube_context.or(under.kube_context),
        kafka_cluster: o.kafka_cluster.or(under.kafka_cluster),
        postgres_cluster: o.postgres_cluster.or(under.postgres_cluster),
    }
}

/// The context `wanted` (else the file's current one, else `local`) with its settings.
pub fn resolve(file: &FileConfig, wanted: Option<&str>) -> Result<Resolved, Failure> {
    let name = wanted
        .map(str::to_owned)
        .or_else(|| file.current_context.clone())
        .unwrap_or_else(|| "local".to_owned());
    let base = builtin(&name);
    let entry = file.contexts.get(&name);
    if base.is_none() && entry.is_none() {
        return Err(Failure::usage(format!(
            "no context {name:?} (contexts: {}; add [contexts.{name}] to the config file)",
            names(file).join(", ")
        )));
    }
    let mut config = base.unwrap_or_default();
    if name == "local" {
        config = layer(config, &file.top);
    }
    if let Some(e) = entry {
        config = layer(config, e);
    }
    let target = match config.target.unwrap_or_default() {
        TargetKind::Local => Target::Local,
        TargetKind::Compose => Target::Compose {
            project: config
                .compose_project
                .clone()
                .unwrap_or_else(|| "oms".into()),
            file: config.compose_file.clone(),
        },
        TargetKind::Kubernetes => Target::Kubernetes {
            namespace: config.namespace.clone().unwrap_or_else(|| "oms".into()),
            kube_context: config.kube_context.clone(),
            kafka_cluster: config
                .kafka_cluster
                .clone()
                .unwrap_or_else(|| "oms-kafka".into()),
            postgres_cluster: config
                .postgres_cluster
                .clone()
                .unwrap_or_else(|| "oms-postgres".into()),
        },
    };
    Ok(Resolved {
        name,
        config,
        target,
    })
}

/// A context of `context list`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContextRow {
    /// Its name.
    pub name: String,
    /// It is the one in use.
    pub current: bool,
    /// `local`, `compose` or `kubernetes`.
    pub target: String,
    /// Its bootstrap servers, when it names them.
    pub brokers: Option<String>,
}

/// Every context of `file` with its target and brokers; `current` is marked.
pub fn list(file: &FileConfig, current: &str) -> Result<Vec<ContextRow>, Failure> {
    let mut rows = Vec::new();
    for name in names(file) {
        let r = resolve(file, Some(&name))?;
        rows.push(ContextRow {
            current: name == current,
            target: r.target.kind().name().to_owned(),
            brokers: r.config.brokers.clone(),
            name,
        });
    }
    Ok(rows)
}

/// Sets `current-context` in the config file at `path`, keeping the rest of it (comments too);
/// creates the file when there is none.
pub fn set_current(path: &Path, name: &str) -> Result<(), Failure> {
    edit(path, |file, doc| {
        if builtin(name).is_none() && !file.contexts.contains_key(name) {
            return Err(format!(
                "no context {name:?} (contexts: {})",
                names(file).join(", ")
            ));
        }
        doc["current-context"] = toml_edit::value(name);
        Ok(())
    })
}

/// How `context create` and `context set` change a context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Make a new context (refused when the file has one of that name).
    Create,
    /// Change (or add) keys of one.
    Set,
}

/// Creates context `name`, or sets keys of it: each `KEY=VALUE` is a key of a
/// `[contexts.NAME]` table (`brokers`, `target`, `topic-prefix`, ...; `endpoints.SERVICE` and
/// `kafka.PROPERTY` for the tables). The file is checked as a whole before it is written: an
/// unknown key or a bad value writes nothing. Comments and the rest of the file are kept.
pub fn set_keys(path: &Path, name: &str, change: Change, pairs: &[String]) -> Result<(), Failure> {
    check_name(name).map_err(Failure::usage)?;
    let mut parsed = Vec::new();
    for pair in pairs {
        let (key, value) = pair
            .split_once('=')
            .filter(|(k, _)| !k.trim().is_empty())
            .ok_or_else(|| Failure::usage(format!("expected KEY=VALUE, got {pair:?}")))?;
        parsed.push((key.trim().to_owned(), value.to_owned()));
    }
    edit(path, |file, doc| {
        let exists = file.contexts.contains_key(name);
        match change {
            Change::Create if exists => {
                return Err(format!(
                    "context {name:?} exists (change it with `omsctl context set {name} KEY=VALUE`)"
                ))
            }
            Change::Set if !exists && builtin(name).is_none() => {
                return Err(format!(
                    "no context {name:?} (make it with `omsctl context create {name}`)"
                ))
            }
            _ => {}
        }
        if doc.get("contexts").is_none() {
            let mut contexts = toml_edit::Table::new();
            contexts.set_implicit(true);
            doc["contexts"] = toml_edit::Item::Table(contexts);
        }
        let contexts = doc["contexts"]
            .as_table_mut()
            .ok_or("`contexts` is not a table")?;
        if !contexts.contains_key(name) {
            contexts.insert(name, toml_edit::Item::Table(toml_edit::Table::new()));
        }
        let table = contexts[name]
            .as_table_mut()
            .ok_or_else(|| format!("contexts.{name} is not a table"))?;
        for (key, value) in &parsed {
            match key.split_once('.') {
                Some((outer, inner)) => {
                    if !table.contains_key(outer) {
                        table.insert(outer, toml_edit::Item::Table(toml_edit::Table::new()));
                    }
                    let sub = table[outer]
                        .as_table_mut()
                        .ok_or_else(|| format!("{outer} is not a table"))?;
                    sub[inner] = toml_edit::value(value.as_str());
                }
                None => table[key.as_str()] = toml_edit::value(value.as_str()),
            }
        }
        Ok(())
    })
}

/// Deletes context `name` from the file; refused for the one in use.
pub fn delete(path: &Path, name: &str) -> Result<(), Failure> {
    edit(path, |file, doc| {
        if !file.contexts.contains_key(name) {
            return Err(format!(
                "no context {name:?} in the file (contexts there: {})",
                file.contexts.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if file.current_context.as_deref() == Some(name) {
            return Err(format!(
                "context {name:?} is the current one: `omsctl context use` another first"
            ));
        }
        if let Some(contexts) = doc.get_mut("contexts").and_then(|c| c.as_table_mut()) {
            contexts.remove(name);
        }
        Ok(())
    })
}

/// Reads the config file at `path` (none: empty), lets `change` edit it, checks the result as a
/// config file and writes it atomically; any error writes nothing.
fn edit(
    path: &Path,
    change: impl FnOnce(&FileConfig, &mut toml_edit::DocumentMut) -> Result<(), String>,
) -> Result<(), Failure> {
    let at = |e: String| Failure::usage(format!("config file {}: {e}", path.display()));
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(at(e.to_string())),
    };
    let file = parse_file(&text).map_err(at)?;
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| at(format!("{e}")))?;
    change(&file, &mut doc).map_err(Failure::usage)?;
    let written = doc.to_string();
    parse_file(&written).map_err(|e| Failure::usage(format!("nothing written: {e}")))?;
    // A key added to a document that has tables goes first, where the top-level keys are.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::usage(format!("creating {}: {e}", dir.display())))?;
    }
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, written)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| Failure::usage(format!("writing {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
# the local context's settings
brokers = "127.0.0.1:19092"
current-context = "staging"

[contexts.staging]
target = "kubernetes"
brokers = "oms-kafka-kafka-bootstrap.oms.svc:9093"
namespace = "oms-staging"
token-command = "idp token"
[contexts.staging.kafka]
"security.protocol" = "SASL_SSL"
"sasl.mechanism" = "SCRAM-SHA-512"
[contexts.staging.endpoints]
order = "https://order.staging.example"

[contexts.compose]
compose-file = "/srv/oms/compose.yaml"
"#;

    #[test]
    fn a_context_layers_over_the_built_in_one_and_the_current_one_is_used_by_default() {
        let file = parse_file(FILE).expect("valid");
        let staging = resolve(&file, None).expect("valid");
        assert_eq!(staging.name, "staging");
        assert_eq!(
            staging.target,
            Target::Kubernetes {
                namespace: "oms-staging".into(),
                kube_context: None,
                kafka_cluster: "oms-kafka".into(),
                postgres_cluster: "oms-postgres".into(),
            }
        );
        assert_eq!(staging.config.kafka.len(), 2);
        let compose = resolve(&file, Some("compose")).expect("valid");
        assert_eq!(
            compose.target,
            Target::Compose {
                project: "oms".into(),
                file: Some("/srv/oms/compose.yaml".into()),
            }
        );
        assert_eq!(
            compose.config.brokers.as_deref(),
            Some(COMPOSE_HOST_BROKERS)
        );
        let local = resolve(&file, Some("local")).expect("valid");
        assert_eq!(local.target, Target::Local);
        assert_eq!(local.config.brokers.as_deref(), Some("127.0.0.1:19092"));
        assert_eq!(names(&file), ["compose", "local", "staging"]);
    }

    #[test]
    fn no_file_means_the_local_context() {
        let file = parse_file("").expect("valid");
        let r = resolve(&file, None).expect("valid");
        assert_eq!((r.name.as_str(), r.target), ("local", Target::Local));
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        for (text, needle) in [
            ("current-context = \"nope\"", "not a context"),
            ("[contexts.a]\ntarget = \"mesos\"", "unknown variant"),
            ("[contexts.a]\nbrokerz = \"x\"", "unknown field"),
            (
                "[contexts.a.kafka]\n\"group.id\" = \"g\"",
                "cannot be overridden",
            ),
            ("[contexts.a.endpoints]\nbilling = \"http://x\"", "billing"),
            ("[contexts.\"a b\"]\n", "context name"),
            ("target = \"compose\"", "top-level keys"),
            ("brokerz = \"x\"", "unknown field"),
        ] {
            let err = parse_file(text).expect_err(text);
            assert!(err.contains(needle), "{text}: {err}");
        }
        let file = parse_file("").expect("valid");
        let err = resolve(&file, Some("prod")).expect_err("refused");
        assert!(err.error.to_string().contains("no context \"prod\""));
    }

    #[test]
    fn use_keeps_the_file_and_its_comments() {
        let dir = tempfile::tempdir().expect("valid");
        let path = dir.path().join("omsctl/config.toml");
        set_current(&path, "compose").expect("valid");
        assert_eq!(
            parse_file(&std::fs::read_to_string(&path).expect("valid"))
                .expect("valid")
                .current_context
                .as_deref(),
            Some("compose")
        );
        std::fs::write(&path, FILE).expect("valid");
        set_current(&path, "local").expect("valid");
        let text = std::fs::read_to_string(&path).expect("valid");
        assert!(text.contains("# the local context's settings"), "{text}");
        let file = parse_file(&text).expect("valid");
        assert_eq!(file.current_context.as_deref(), Some("local"));
        assert_eq!(file.contexts.len(), 2);
        assert!(set_current(&path, "nope").is_err());
        assert_eq!(
            parse_file(&std::fs::read_to_string(&path).expect("valid"))
                .expect("valid")
                .current_context
                .as_deref(),
            Some("local")
        );
    }

    #[test]
    fn contexts_are_created_set_and_deleted_keeping_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "# mine\nbrokers = \"127.0.0.1:19092\"\n").expect("write");
        let kv = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        set_keys(
            &path,
            "shop",
            Change::Create,
            &kv(&[
                "target=compose",
                "brokers=127.0.0.1:29092",
                "endpoints.order=http://h:1",
            ]),
        )
        .expect("created");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.starts_with("# mine"), "{text}");
        let file = parse_file(&text).expect("valid");
        let shop = &file.contexts["shop"];
        assert_eq!(shop.target, Some(TargetKind::Compose));
        assert_eq!(
            shop.endpoints.get("order").map(String::as_str),
            Some("http://h:1")
        );
        // Again is refused; set changes it; a bad key or value writes nothing.
        assert!(set_keys(&path, "shop", Change::Create, &[]).is_err());
        set_keys(&path, "shop", Change::Set, &kv(&["topic-prefix=t1."])).expect("set");
        let before = std::fs::read_to_string(&path).expect("read");
        for bad in [&["brokrs=x"][..], &["target=moon"], &["nokey"]] {
            assert!(
                set_keys(&path, "shop", Change::Set, &kv(bad)).is_err(),
                "{bad:?}"
            );
            assert_eq!(std::fs::read_to_string(&path).ok(), Some(before.clone()));
        }
        assert!(set_keys(&path, "nope", Change::Set, &kv(&["brokers=x"])).is_err());
        assert!(set_keys(&path, "Bad Name", Change::Create, &[]).is_err());
        // The current context cannot be deleted; another can.
        set_current(&path, "shop").expect("use");
        assert!(delete(&path, "shop").is_err());
        set_current(&path, "local").expect("use");
        delete(&path, "shop").expect("deleted");
        let file = parse_file(&std::fs::read_to_string(&path).expect("read")).expect("valid");
        assert!(!file.contexts.contains_key("shop"));
        assert!(delete(&path, "shop").is_err());
    }
}
