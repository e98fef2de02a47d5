//! The secured local cluster (`omsctl stack up --secure`): clients connect over SASL_SSL with a
//! SCRAM-SHA-512 user each, the nodes talk to each other over mutual TLS, and a standard
//! authorizer allows each user only the ACLs of the security plan, derived from the topology.
//!
//! Files, in the cluster directory's `security/` (mode 0700; keys and passwords 0600):
//! - `ca.pem` (the local CA's certificate, what clients trust), `ca.key`;
//! - `node.pem` (the nodes' key and certificate chain, for Kafka's PEM key store), `node.key` and
//!   `node.crt` (the same, apart, for librdkafka); its subject `CN=oms-broker` is a super user, so
//!   the nodes and the tools holding the key need no password;
//! - `users/NAME.properties`: the librdkafka properties of user NAME (security protocol, SCRAM
//!   mechanism, name, password, CA), what a service or omsctl is started with (and kcat's `-F`);
//! - `users/NAME.jvm.properties`: the same for Java clients (Kafka's own tools'
//!   `--command-config`/`--consumer.config`, Kafbat, kafkactl's properties);
//! - `plan.txt`, `admin.properties`, `OmsSecurity.java`: what [`Security::apply`] hands Kafka's
//!   Admin API, as the super user over the nodes' own listener (the plan, which holds the
//!   passwords, is removed once applied).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use oms_contracts::topology::SERVICES;
use oms_contracts::Topics;
use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509Name, X509NameBuilder, X509};

use super::{io, Cluster, Install, NodeError};
use crate::Properties;

/// The user omsctl connects as: a super user (the operator may do anything).
pub const OPERATOR: &str = "omsctl";

/// The principal of the nodes' certificate, a super user.
pub const NODE_PRINCIPAL: &str = "User:CN=oms-broker";

/// The SASL mechanism of every user.
pub const MECHANISM: &str = "SCRAM-SHA-512";

/// How long the local certificates are valid (the CA/Browser Forum's old ceiling; a local stack
/// outlives few of them).
const VALID_DAYS: u32 = 825;

/// The Admin API program that applies a plan, run with Java's source launcher.
const PROGRAM: &str = include_str!("../../java/OmsSecurity.java");

/// One ALLOW ACL for any host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Acl {
    /// `User:NAME`.
    pub principal: String,
    /// Kafka's operation name (`READ`, `WRITE`).
    pub operation: String,
    /// Kafka's resource type (`TOPIC`, `GROUP`).
    pub resource_type: String,
    /// The resource, named literally.
    pub name: String,
}

impl Acl {
    /// Its line in a plan (and in what [`Security::apply`] reports back).
    pub fn line(&self) -> String {
        format!(
            "acl {} {} {} LITERAL {}",
            self.principal, self.operation, self.resource_type, self.name
        )
    }
}

/// The users and ACLs a secured cluster should have.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// SCRAM users, by name.
    pub users: Vec<String>,
    /// Every ACL of those users.
    pub acls: Vec<Acl>,
}

impl Plan {
    /// The OMS's plan for topics named by `topics`: the operator ([`OPERATOR`], a super user,
    /// so no ACLs) and one user per service of the topology with exactly its
    /// [`oms_contracts::ServiceSpec::grants`].
    pub fn for_topology(topics: &Topics) -> Self {
        let mut plan = Self {
            users: vec![OPERATOR.to_owned()],
            acls: Vec::new(),
        };
        for s in SERVICES {
            let user = s.kafka_user();
            for g in s.grants(topics) {
                plan.acls.push(Acl {
                    principal: format!("User:{user}"),
                    operation: g.operation.kafka_name().to_owned(),
                    resource_type: g.resource.kafka_type().to_owned(),
                    name: g.resource.name().to_owned(),
                });
            }
            plan.users.push(user);
        }
        plan
    }
}

/// The TLS material and users of a secured cluster, in its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Security {
    dir: PathBuf,
}

fn tls(e: openssl::error::ErrorStack) -> NodeError {
    NodeError::Tls(e.to_string())
}

impl Security {
    /// The security files in `dir` (nothing is read or made yet).
    pub fn at(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// The CA certificate clients trust.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The nodes' key and certificate chain in one PEM file (Kafka's key store).
    pub fn node_pem(&self) -> PathBuf {
        self.dir.join("node.pem")
    }

    /// User `user`'s librdkafka properties file.
    pub fn user_file(&self, user: &str) -> PathBuf {
        self.dir.join("users").join(format!("{user}.properties"))
    }

    /// User `user`'s properties file for Java clients (Kafka's own tools).
    pub fn jvm_user_file(&self, user: &str) -> PathBuf {
        self.dir
            .join("users")
            .join(format!("{user}.jvm.properties"))
    }

    /// Makes what is missing: the CA, the nodes' certificate (for 127.0.0.1 and localhost) and a
    /// password for each of `users`. What exists is kept.
    pub fn ensure(&self, users: &[String]) -> Result<(), NodeError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(self.dir.join("users"))
            .map_err(io("creating", &self.dir))?;
        if !self.ca().is_file() || !self.node_pem().is_file() {
            self.make_certificates()?;
        }
        for user in users {
            let path = self.user_file(user);
            if path.is_file() {
                if !self.jvm_user_file(user).is_file() {
                    self.write_jvm_file(user)?;
                }
                continue;
            }
            let mut secret = [0u8; 24];
            openssl::rand::rand_bytes(&mut secret).map_err(tls)?;
            use base64::Engine as _;
            let password = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
            let text = format!(
                "# librdkafka properties of Kafka user {user} on the local stack (a secret: keep it 0600)\n\
                 security.protocol=SASL_SSL\n\
                 sasl.mechanism={MECHANISM}\n\
                 sasl.username={user}\n\
                 sasl.password={password}\n\
                 ssl.ca.location={}\n",
                self.ca().display()
            );
            write_private(&path, text.as_bytes())?;
            self.write_jvm_file(user)?;
        }
        Ok(())
    }

    /// User `user`'s password, from its file.
    fn password(&self, user: &str) -> Result<String, NodeError> {
        self.client_properties(user)?
            .iter()
            .find(|(k, _)| *k == "sasl.password")
            .map(|(_, v)| v.to_owned())
            .ok_or_else(|| {
                NodeError::Tls(format!(
                    "{} has no password",
                    self.user_file(user).display()
                ))
            })
    }

    fn write_jvm_file(&self, user: &str) -> Result<(), NodeError> {
        let password = self.password(user)?;
        let text = format!(
            "# Java client properties of Kafka user {user} on the local stack (a secret: keep it 0600)\n\
             security.protocol=SASL_SSL\n\
             sasl.mechanism={MECHANISM}\n\
             sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{user}\" password=\"{password}\";\n\
             ssl.truststore.type=PEM\n\
             ssl.truststore.location={}\n",
            self.ca().display()
        );
        write_private(&self.jvm_user_file(user), text.as_bytes())
    }

    fn make_certificates(&self) -> Result<(), NodeError> {
        let ca_key = ec_key()?;
        let ca_name = name("OMS local CA")?;
        let mut ca = X509::builder().map_err(tls)?;
        ca.set_version(2).map_err(tls)?;
        let serial_ca = serial()?;
        ca.set_serial_number(&serial_ca).map_err(tls)?;
        ca.set_subject_name(&ca_name).map_err(tls)?;
        ca.set_issuer_name(&ca_name).map_err(tls)?;
        ca.set_pubkey(&ca_key).map_err(tls)?;
        set_validity(&mut ca)?;
        ca.append_extension(
            BasicConstraints::new()
                .critical()
                .ca()
                .build()
                .map_err(tls)?,
        )
        .map_err(tls)?;
        ca.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()
                .map_err(tls)?,
        )
        .map_err(tls)?;
        let ski = SubjectKeyIdentifier::new()
            .build(&ca.x509v3_context(None, None))
            .map_err(tls)?;
        ca.append_extension(ski).map_err(tls)?;
        ca.sign(&ca_key, MessageDigest::sha256()).map_err(tls)?;
        let ca = ca.build();

        let node_key = ec_key()?;
        let mut node = X509::builder().map_err(tls)?;
        node.set_version(2).map_err(tls)?;
        let (serial_node, subject) = (serial()?, name("oms-broker")?);
        node.set_serial_number(&serial_node).map_err(tls)?;
        node.set_subject_name(&subject).map_err(tls)?;
        node.set_issuer_name(ca.subject_name()).map_err(tls)?;
        node.set_pubkey(&node_key).map_err(tls)?;
        set_validity(&mut node)?;
        node.append_extension(BasicConstraints::new().critical().build().map_err(tls)?)
            .map_err(tls)?;
        node.append_extension(
            KeyUsage::new()
                .critical()
                .digital_signature()
                .key_agreement()
                .build()
                .map_err(tls)?,
        )
        .map_err(tls)?;
        node.append_extension(
            ExtendedKeyUsage::new()
                .server_auth()
                .client_auth()
                .build()
                .map_err(tls)?,
        )
        .map_err(tls)?;
        let san = SubjectAlternativeName::new()
            .dns("localhost")
            .ip("127.0.0.1")
            .build(&node.x509v3_context(Some(&ca), None))
            .map_err(tls)?;
        node.append_extension(san).map_err(tls)?;
        let aki = AuthorityKeyIdentifier::new()
            .keyid(false)
            .build(&node.x509v3_context(Some(&ca), None))
            .map_err(tls)?;
        node.append_extension(aki).map_err(tls)?;
        node.sign(&ca_key, MessageDigest::sha256()).map_err(tls)?;
        let node = node.build();

        let ca_pem = ca.to_pem().map_err(tls)?;
        let chain = [node.to_pem().map_err(tls)?, ca_pem.clone()].concat();
        let node_key_pem = node_key.private_key_to_pem_pkcs8().map_err(tls)?;
        write_private(
            &self.dir.join("ca.key"),
            &ca_key.private_key_to_pem_pkcs8().map_err(tls)?,
        )?;
        write_private(&self.dir.join("node.key"), &node_key_pem)?;
        write_private(&self.dir.join("node.crt"), &chain)?;
        write_private(&self.node_pem(), &[node_key_pem, chain].concat())?;
        // The CA certificate is public: clients of any user read it.
        write_file_mode(&self.ca(), &ca_pem, 0o644)
    }

    /// User `user`'s librdkafka properties (from its file).
    pub fn client_properties(&self, user: &str) -> Result<Properties, NodeError> {
        let mut p = Properties::new();
        p.merge_file(&self.user_file(user))
            .map_err(|e| NodeError::Tls(e.to_string()))?;
        Ok(p)
    }

    /// librdkafka properties that present the nodes' certificate over their own listener: the
    /// super user, before any SCRAM user exists (readiness, the first plan).
    pub fn node_identity(&self) -> Properties {
        let mut p = Properties::new();
        let set = |p: &mut Properties, k: &str, v: String| {
            // Every key here is a valid, unreserved property name.
            let _ = p.set(k, &v);
        };
        set(&mut p, "security.protocol", "SSL".into());
        set(&mut p, "ssl.ca.location", self.ca().display().to_string());
        set(
            &mut p,
            "ssl.certificate.location",
            self.dir.join("node.crt").display().to_string(),
        );
        set(
            &mut p,
            "ssl.key.location",
            self.dir.join("node.key").display().to_string(),
        );
        p
    }

    /// The `server.properties` lines of a secured node.
    pub(super) fn server_lines(&self) -> Vec<(&'static str, String)> {
        let jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;";
        vec![
            (
                "listener.security.protocol.map",
                "CLIENT:SASL_SSL,CONTROLLER:SSL,INTERNAL:SSL".into(),
            ),
            ("ssl.keystore.type", "PEM".into()),
            (
                "ssl.keystore.location",
                self.node_pem().display().to_string(),
            ),
            ("ssl.truststore.type", "PEM".into()),
            ("ssl.truststore.location", self.ca().display().to_string()),
            ("listener.name.internal.ssl.client.auth", "required".into()),
            (
                "listener.name.controller.ssl.client.auth",
                "required".into(),
            ),
            ("sasl.enabled.mechanisms", MECHANISM.into()),
            (
                "listener.name.client.sasl.enabled.mechanisms",
                MECHANISM.into(),
            ),
            (
                "listener.name.client.scram-sha-512.sasl.jaas.config",
                jaas.into(),
            ),
            (
                "authorizer.class.name",
                "org.apache.kafka.metadata.authorizer.StandardAuthorizer".into(),
            ),
            ("super.users", format!("{NODE_PRINCIPAL};User:{OPERATOR}")),
            ("allow.everyone.if.no.acl.found", "false".into()),
        ]
    }

    /// Applies `plan` to the running `cluster` through Kafka's Admin API: every user's SCRAM
    /// credential (its password from its file, made by [`Security::ensure`]), and exactly the
    /// plan's ACLs for those users (others of theirs are deleted). Connects as the nodes'
    /// certificate over their own listener. Returns what the program reports: a summary line,
    /// then every ACL of the plan's users as `acl` lines.
    pub fn apply(
        &self,
        cluster: &Cluster,
        install: &Install,
        plan: &Plan,
    ) -> Result<String, NodeError> {
        let mut lines = String::new();
        for user in &plan.users {
            lines.push_str(&format!("user {user} {}\n", self.password(user)?));
        }
        for acl in &plan.acls {
            lines.push_str(&acl.line());
            lines.push('\n');
        }
        let plan_file = self.dir.join("plan.txt");
        write_private(&plan_file, lines.as_bytes())?;
        let internal: Vec<String> = (1..=cluster.nodes())
            .filter_map(|k| cluster.ports(k).ok())
            .map(|p| format!("127.0.0.1:{}", p.internal))
            .collect();
        let admin = format!(
            "bootstrap.servers={}\nsecurity.protocol=SSL\nssl.keystore.type=PEM\nssl.keystore.location={}\nssl.truststore.type=PEM\nssl.truststore.location={}\n",
            internal.join(","),
            self.node_pem().display(),
            self.ca().display()
        );
        let admin_file = self.dir.join("admin.properties");
        write_private(&admin_file, admin.as_bytes())?;
        let program = self.dir.join("OmsSecurity.java");
        write_file_mode(&program, PROGRAM.as_bytes(), 0o644)?;
        let log4j = self.dir.join("log4j2.properties");
        write_file_mode(&log4j, QUIET_LOG4J2.as_bytes(), 0o644)?;
        let out = std::process::Command::new(Install::java())
            .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
            .arg("-cp")
            .arg(install.classpath())
            .arg(&program)
            .arg(&admin_file)
            .arg(&plan_file)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(io("running java for", &program))?;
        if !out.status.success() {
            return Err(NodeError::Tls(format!(
                "applying the security plan ({}) failed ({}): {}",
                plan_file.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        // It holds every user's password: kept only while it may explain a failure.
        std::fs::remove_file(&plan_file).map_err(io("removing", &plan_file))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// log4j2 of the Admin program: warnings and errors only, to standard error.
const QUIET_LOG4J2: &str = "\
status = warn
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = err
";

fn ec_key() -> Result<PKey<Private>, NodeError> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(tls)?;
    PKey::from_ec_key(EcKey::generate(&group).map_err(tls)?).map_err(tls)
}

fn name(common_name: &str) -> Result<X509Name, NodeError> {
    let mut n = X509NameBuilder::new().map_err(tls)?;
    n.append_entry_by_nid(Nid::COMMONNAME, common_name)
        .map_err(tls)?;
    Ok(n.build())
}

fn serial() -> Result<Asn1Integer, NodeError> {
    let mut bn = BigNum::new().map_err(tls)?;
    bn.rand(127, MsbOption::MAYBE_ZERO, false).map_err(tls)?;
    bn.to_asn1_integer().map_err(tls)
}

fn set_validity(b: &mut openssl::x509::X509Builder) -> Result<(), NodeError> {
    let (from, to) = (
        Asn1Time::days_from_now(0).map_err(tls)?,
        Asn1Time::days_from_now(VALID_DAYS).map_err(tls)?,
    );
    b.set_not_before(&from).map_err(tls)?;
    b.set_not_after(&to).map_err(tls)
}

/// Writes a secret: created 0600 (never readable by others, not even for a moment).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    write_file_mode(path, bytes, 0o600)
}

fn write_file_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), NodeError> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io("writing", &tmp))?;
    f.write_all(bytes).map_err(io("writing", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io("writing", path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_plan_gives_each_service_its_grants_and_the_operator_none() {
        let plan = Plan::for_topology(&Topics::new("t1."));
        assert_eq!(plan.users[0], OPERATOR);
        assert_eq!(plan.users.len(), 1 + SERVICES.len());
        assert!(plan.acls.iter().all(|a| a.principal != "User:omsctl"));
        let notification: Vec<String> = plan
            .acls
            .iter()
            .filter(|a| a.principal == "User:oms-notification")
            .map(Acl::line)
            .collect();
        assert_eq!(
            notification,
            [
                "acl User:oms-notification READ TOPIC LITERAL t1.oms.order.events",
                "acl User:oms-notification READ GROUP LITERAL t1.oms-notification",
                "acl User:oms-notification WRITE TOPIC LITERAL t1.oms.order.events.dlq",
            ]
        );
    }

    #[test]
    fn certificates_and_passwords_are_made_once_and_kept_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sec = Security::at(&dir.path().join("security"));
        let users = vec!["omsctl".to_owned(), "oms-order".to_owned()];
        sec.ensure(&users).expect("ensure");
        let mode = |p: &Path| {
            std::fs::metadata(p)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0)
        };
        assert_eq!(mode(&sec.node_pem()), 0o600);
        assert_eq!(mode(&sec.user_file("oms-order")), 0o600);
        assert_eq!(mode(&dir.path().join("security")), 0o700);
        let ca = X509::from_pem(&std::fs::read(sec.ca()).expect("ca")).expect("a certificate");
        let pem = std::fs::read(sec.node_pem()).expect("node.pem");
        let node =
            X509::from_pem(&std::fs::read(dir.path().join("security/node.crt")).expect("crt"))
                .expect("the node's certificate");
        // Signed by the CA, for 127.0.0.1.
        let ca_key = ca.public_key().expect("ca key");
        assert!(node.verify(&ca_key).expect("verify"));
        let ips: Vec<Vec<u8>> = node
            .subject_alt_names()
            .into_iter()
            .flatten()
            .filter_map(|n| n.ipaddress().map(<[u8]>::to_vec))
            .collect();
        assert_eq!(ips, [vec![127, 0, 0, 1]]);
        assert!(String::from_utf8_lossy(&pem).starts_with("-----BEGIN PRIVATE KEY-----"));
        let p = sec.client_properties("oms-order").expect("properties");
        let get = |k: &str| p.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_owned());
        assert_eq!(get("sasl.username").as_deref(), Some("oms-order"));
        assert_eq!(get("security.protocol").as_deref(), Some("SASL_SSL"));
        let password = get("sasl.password").expect("a password");
        assert!(password.len() >= 32);
        // Nothing is made again: the same password, the same CA.
        sec.ensure(&users).expect("again");
        assert_eq!(
            sec.client_properties("oms-order")
                .expect("properties")
                .iter()
                .find(|(n, _)| *n == "sasl.password")
                .map(|(_, v)| v.to_owned()),
            Some(password)
        );
        assert_eq!(
            X509::from_pem(&std::fs::read(sec.ca()).expect("ca"))
                .expect("ca")
                .to_der()
                .ok(),
            ca.to_der().ok()
        );
    }
}
