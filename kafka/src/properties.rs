//! librdkafka properties passed through to every client, so services and omsctl reach a secured
//! cluster (SASL/SCRAM, TLS) without a setting of their own for each property.
//!
//! They come from, lowest precedence first: a Java-style properties file (`key=value` lines,
//! `#` or `!` comments), `OMS_KAFKA_<PROPERTY>` variables (`OMS_KAFKA_SASL_MECHANISM=SCRAM-SHA-512`
//! is `sasl.mechanism`: the name lower-cased, `_` read as `.`), then `-X key=value` flags. A few
//! properties the OMS's guarantees rest on are refused (see [`RESERVED`]); values of secret
//! properties never print (see [`Properties::redacted`]).

use std::collections::BTreeMap;
use std::path::Path;

use rdkafka::config::ClientConfig;

/// The environment variable prefix of a property.
pub const ENV_PREFIX: &str = "OMS_KAFKA_";

/// The environment variable naming a properties file (not itself a property).
pub const ENV_FILE: &str = "OMS_KAFKA_PROPERTIES_FILE";

/// Properties that cannot be passed through: the brokers and the group protocol have settings of
/// their own, and the rest carry the at-least-once-in, exactly-once-effect design (offsets stored
/// only after the transaction commits; an idempotent, acks=all producer; one group per service).
pub const RESERVED: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "group.protocol",
    "enable.auto.offset.store",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "transactional.id",
];

/// A property that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PropertyError {
    /// Not `key=value`.
    #[error("kafka property {0:?}: expected KEY=VALUE (e.g. security.protocol=SASL_SSL)")]
    Malformed(String),
    /// The key is not a librdkafka property name.
    #[error("kafka property {0:?}: a name is lower-case letters, digits, '.' and '_'")]
    BadName(String),
    /// The key is one the OMS sets itself.
    #[error("kafka property {0:?} is set by the OMS itself and cannot be overridden")]
    Reserved(String),
    /// The properties file cannot be read or has a bad line.
    #[error("kafka properties file {path}: {why}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
}

/// librdkafka properties, by name (a later setting of a name replaces an earlier one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties(BTreeMap<String, String>);

impl Properties {
    /// No properties.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`, checking the name.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), PropertyError> {
        let key = key.trim();
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_')
        {
            return Err(PropertyError::BadName(key.to_owned()));
        }
        if RESERVED.contains(&key) {
            return Err(PropertyError::Reserved(key.to_owned()));
        }
        self.0.insert(key.to_owned(), value.trim().to_owned());
        Ok(())
    }

    /// Sets a `key=value` pair (a `-X` flag).
    pub fn set_pair(&mut self, pair: &str) -> Result<(), PropertyError> {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| PropertyError::Malformed(pair.to_owned()))?;
        self.set(key, value)
    }

    /// Adds every `key=value` line of a properties file's text; `source` names it in errors.
    pub fn merge_file_text(&mut self, text: &str, source: &str) -> Result<(), PropertyError> {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let file_error = |why: String| PropertyError::File {
                path: source.to_owned(),
                why: format!("line {}: {why}", n + 1),
            };
            self.set_pair(line).map_err(|e| file_error(e.to_string()))?;
        }
        Ok(())
    }

    /// Adds a properties file.
    pub fn merge_file(&mut self, path: &Path) -> Result<(), PropertyError> {
        let text = std::fs::read_to_string(path).map_err(|e| PropertyError::File {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        self.merge_file_text(&text, &path.display().to_string())
    }

    /// Adds the `OMS_KAFKA_<PROPERTY>` variables among `vars` (the file variable excepted).
    pub fn merge_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), PropertyError> {
        for (name, value) in vars {
            if name == ENV_FILE {
                continue;
            }
            if let Some(rest) = name.strip_prefix(ENV_PREFIX) {
                let key = rest.to_ascii_lowercase().replace('_', ".");
                self.set(&key, &value)?;
            }
        }
        Ok(())
    }

    /// Everything the process was given: the file named by `file` (else by
    /// `OMS_KAFKA_PROPERTIES_FILE`), the `OMS_KAFKA_*` environment, then `flags`.
    pub fn gather(file: Option<&Path>, flags: &[String]) -> Result<Self, PropertyError> {
        let mut props = Self::new();
        let env_file = std::env::var_os(ENV_FILE).filter(|f| !f.is_empty());
        if let Some(path) = file.map(Path::to_path_buf).or(env_file.map(Into::into)) {
            props.merge_file(&path)?;
        }
        props.merge_env(std::env::vars())?;
        for flag in flags {
            props.set_pair(flag)?;
        }
        Ok(props)
    }

    /// Adds `other`'s properties over these.
    pub fn extend(&mut self, other: &Properties) {
        for (k, v) in &other.0 {
            self.0.insert(k.clone(), v.clone());
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The properties by name, values as given.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The properties by name, secret values (passwords, keys, tokens) replaced by `***`: what
    /// may be printed or logged.
    pub fn redacted(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .map(|(k, v)| {
                let shown = if is_secret(k) {
                    "***".to_owned()
                } else {
                    v.clone()
                };
                (k.clone(), shown)
            })
            .collect()
    }

    /// Sets every property on `config` (over what it already has).
    pub fn apply(&self, config: &mut ClientConfig) {
        for (k, v) in &self.0 {
            config.set(k, v);
        }
    }
}

/// Whether a property's value is a secret: a password, a private key or its PEM, a token.
pub fn is_secret(key: &str) -> bool {
    key.contains("password")
        || key.contains("secret")
        || key.ends_with(".key.pem")
        || key == "ssl.key.pem"
        || key.contains("token")
        || key.ends_with("jaas.config")
}

/// A client config for `brokers` with `props` applied: the start of every client the OMS makes.
pub fn client_config(brokers: &str, props: &Properties) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    props.apply(&mut config);
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn flags_override_the_environment_which_overrides_the_file() {
        let mut p = Properties::new();
        p.merge_file_text(
            "# comment\n! also a comment\n\nsecurity.protocol = SASL_SSL\nsasl.mechanism=PLAIN\n",
            "test.properties",
        )
        .expect("valid");
        p.merge_env(env(&[
            ("OMS_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("OMS_KAFKA_PROPERTIES_FILE", "/ignored"),
            ("OMS_BROKERS", "not.a.property:9092"),
        ]))
        .expect("valid");
        p.set_pair("sasl.username=oms-order").expect("valid");
        p.set_pair("sasl.mechanism=SCRAM-SHA-256").expect("valid");
        let got: Vec<(&str, &str)> = p.iter().collect();
        assert_eq!(
            got,
            [
                ("sasl.mechanism", "SCRAM-SHA-256"),
                ("sasl.username", "oms-order"),
                ("security.protocol", "SASL_SSL"),
            ]
        );
    }

    #[test]
    fn bad_and_reserved_properties_are_refused_with_the_reason() {
        let mut p = Properties::new();
        assert_eq!(
            p.set_pair("security.protocol"),
            Err(PropertyError::Malformed("security.protocol".into()))
        );
        assert_eq!(
            p.set_pair("Security Protocol=x"),
            Err(PropertyError::BadName("Security Protocol".into()))
        );
        assert_eq!(
            p.set_pair("enable.auto.offset.store=true"),
            Err(PropertyError::Reserved("enable.auto.offset.store".into()))
        );
        assert_eq!(
            p.merge_env(env(&[("OMS_KAFKA_GROUP_ID", "other")])),
            Err(PropertyError::Reserved("group.id".into()))
        );
        let err = p
            .merge_file_text("ssl.ca.location=/ca.pem\nbroken line\n", "k.properties")
            .expect_err("refused");
        assert!(err.to_string().contains("k.properties: line 2"), "{err}");
        assert!(p.is_empty() || p.iter().all(|(k, _)| k == "ssl.ca.location"));
    }

    #[test]
    fn secrets_never_print() {
        let mut p = Properties::new();
        p.set_pair("sasl.password=hunter2").expect("valid");
        p.set_pair("ssl.key.password=k").expect("valid");
        p.set_pair("sasl.oauthbearer.client.secret=s")
            .expect("valid");
        p.set_pair("sasl.username=oms").expect("valid");
        let shown = p.redacted();
        assert!(shown
            .iter()
            .all(|(_, v)| v != "hunter2" && v != "k" && v != "s"));
        assert!(shown.contains(&("sasl.username".into(), "oms".into())));
    }

    #[test]
    fn a_client_config_carries_the_brokers_and_every_property() {
        let mut p = Properties::new();
        p.set_pair("socket.timeout.ms=1234").expect("valid");
        let c = client_config("b:9092", &p);
        assert_eq!(c.get("bootstrap.servers"), Some("b:9092"));
        assert_eq!(c.get("socket.timeout.ms"), Some("1234"));
    }
}
