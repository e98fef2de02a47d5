//! Contexts and the chaos targets behind them, as a user runs omsctl: config files in a private
//! XDG config directory, and recording stand-ins for `docker` and `kubectl` on PATH that write
//! down every command line, so the compose and Kubernetes mappings are checked command by
//! command, in order, with their undo. No stack is needed.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use oms_ops::chaos::Recorded;
use oms_ops::context::ContextRow;
use oms_ops::ctx::{ContextView, TargetView};
use serde::de::DeserializeOwned;

/// A private home for omsctl: config and state directories, and a bin directory of stand-ins.
struct Home {
    dir: tempfile::TempDir,
}

const STAND_IN: &str = r#"#!/bin/sh
# Records its command line; prints a replica count when asked for one; fails on demand.
echo "$(basename "$0") $*" >> "$OMS_RECORD"
if [ -n "$OMS_FAIL_ON" ] && echo "$*" | grep -q -- "$OMS_FAIL_ON"; then
  echo "error: the cluster said no" >&2
  exit 1
fi
case "$*" in *jsonpath=*) echo 3 ;; esac
exit 0
"#;

impl Home {
    fn new(config: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("config/omsctl"))?;
        std::fs::write(dir.path().join("config/omsctl/config.toml"), config)?;
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin)?;
        for tool in ["docker", "kubectl"] {
            let path = bin.join(tool);
            std::fs::write(&path, STAND_IN)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
        Ok(Self { dir })
    }

    fn config_file(&self) -> PathBuf {
        self.dir.path().join("config/omsctl/config.toml")
    }

    fn record(&self) -> PathBuf {
        self.dir.path().join("record.log")
    }

    /// The command lines the stand-ins recorded since the last call.
    fn recorded(&self) -> anyhow::Result<Vec<String>> {
        let text = std::fs::read_to_string(self.record()).unwrap_or_default();
        std::fs::write(self.record(), "")?;
        Ok(text.lines().map(str::to_owned).collect())
    }

    fn omsctl(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.omsctl_failing(args, "")
    }

    /// omsctl with the stand-ins failing every command line that contains `fail_on`.
    fn omsctl_failing(&self, args: &[&str], fail_on: &str) -> anyhow::Result<Output> {
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::cargo_bin("omsctl")?;
        cmd.env_clear()
            .env("PATH", path)
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("XDG_STATE_HOME", self.dir.path().join("state"))
            .env("OMS_RECORD", self.record())
            .env("OMS_FAIL_ON", fail_on)
            .args(args)
            .timeout(Duration::from_secs(60));
        Ok(cmd.output()?)
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ok(out: &Output) -> anyhow::Result<()> {
    anyhow::ensure!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
    Ok(())
}

/// Standard output of a successful run as `T` (the library's type; `Value` where there is none).
fn json<T: DeserializeOwned>(out: &Output) -> anyhow::Result<T> {
    ok(out)?;
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The targets of the faults in force, as `chaos status -o json` lists them.
fn fault_targets(out: &Output) -> anyhow::Result<Vec<String>> {
    let faults: Vec<Recorded> = json(out)?;
    Ok(faults.iter().map(|r| r.fault.target()).collect())
}

const CONFIG: &str = r#"# contexts of the test
[contexts.staging]
target = "kubernetes"
brokers = "oms-kafka-kafka-bootstrap.oms-staging.svc:9093"
namespace = "oms-staging"
kube-context = "staging-cluster"
token = "a-literal-token"
[contexts.staging.kafka]
"security.protocol" = "SASL_SSL"
"sasl.mechanism" = "SCRAM-SHA-512"
"sasl.username" = "omsctl"
"sasl.password" = "hunter2-secret"
[contexts.staging.endpoints]
order = "https://order.staging.example"

[contexts.shop]
target = "compose"
compose-project = "shop"
compose-file = "/srv/shop/compose.yaml"
brokers = "127.0.0.1:29092"
"#;

#[test]
fn contexts_are_listed_switched_and_shown_without_their_secrets() -> anyhow::Result<()> {
    let home = Home::new(CONFIG)?;
    let list: Vec<ContextRow> = json(&home.omsctl(&["context", "list", "-o", "json"])?)?;
    let names: Vec<(&str, &str, bool)> = list
        .iter()
        .map(|c| (c.name.as_str(), c.target.as_str(), c.current))
        .collect();
    assert_eq!(
        names,
        [
            ("compose", "compose", false),
            ("local", "local", true),
            ("shop", "compose", false),
            ("staging", "kubernetes", false),
        ]
    );

    ok(&home.omsctl(&["context", "use", "staging"])?)?;
    let text = std::fs::read_to_string(home.config_file())?;
    assert!(text.contains("current-context = \"staging\""), "{text}");
    assert!(
        text.contains("# contexts of the test"),
        "comments kept: {text}"
    );

    let out = home.omsctl(&["context", "show", "-o", "json"])?;
    let shown: ContextView = json(&out)?;
    assert_eq!(shown.context, "staging", "{shown:?}");
    assert!(
        matches!(
            &shown.target,
            TargetView::Kubernetes { namespace, kube_context, .. }
                if namespace == "oms-staging" && kube_context.as_deref() == Some("staging-cluster")
        ),
        "{shown:?}"
    );
    assert_eq!(
        shown.brokers, "oms-kafka-kafka-bootstrap.oms-staging.svc:9093",
        "{shown:?}"
    );
    let kafka = |key: &str| shown.kafka.get(key).map(String::as_str);
    assert_eq!(kafka("sasl.mechanism"), Some("SCRAM-SHA-512"), "{shown:?}");
    assert_eq!(kafka("sasl.password"), Some("***"), "{shown:?}");
    let endpoint = |service: &str| shown.endpoints.get(service).map(String::as_str);
    assert_eq!(
        endpoint("order"),
        Some("https://order.staging.example"),
        "{shown:?}"
    );
    assert_eq!(endpoint("saga"), Some("http://127.0.0.1:8085"), "{shown:?}");
    let table = home.omsctl(&["context", "show"])?;
    ok(&table)?;
    for out in [&out, &table] {
        let all = format!("{}{}", stdout(out), stderr(out));
        assert!(!all.contains("hunter2-secret"), "a secret printed: {all}");
        assert!(!all.contains("a-literal-token"), "a token printed: {all}");
    }

    // Made, changed and deleted from the command line; the file's comments stay.
    ok(&home.omsctl(&[
        "context",
        "create",
        "qa",
        "target=compose",
        "brokers=127.0.0.1:39092",
        "endpoints.order=http://127.0.0.1:18081",
    ])?)?;
    ok(&home.omsctl(&["contexts", "set", "qa", "topic-prefix=qa."])?)?;
    let qa: ContextView =
        json(&home.omsctl(&["--context", "qa", "context", "show", "-o", "json"])?)?;
    assert_eq!(qa.brokers, "127.0.0.1:39092", "{qa:?}");
    assert_eq!(qa.topic_prefix, "qa.", "{qa:?}");
    assert!(matches!(qa.target, TargetView::Compose { .. }), "{qa:?}");
    let refused = home.omsctl(&["context", "set", "qa", "brokrs=x"])?;
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("brokrs"), "{}", stderr(&refused));
    let in_use = home.omsctl(&["context", "delete", "staging"])?;
    assert_eq!(in_use.status.code(), Some(2), "{}", stderr(&in_use));
    // Deleting confirms first: from a script without --yes nothing changes.
    let out = home.omsctl(&["context", "delete", "qa"])?;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let rows: Vec<ContextRow> = json(&home.omsctl(&["context", "list", "-o", "json"])?)?;
    assert!(
        rows.iter().any(|r| r.name == "qa"),
        "deleted unasked: {rows:?}"
    );
    ok(&home.omsctl(&["context", "delete", "qa", "--yes"])?)?;
    let rows: Vec<ContextRow> = json(&home.omsctl(&["context", "list", "-o", "json"])?)?;
    assert!(rows.iter().all(|r| r.name != "qa"), "{rows:?}");
    let text = std::fs::read_to_string(home.config_file())?;
    assert!(
        text.contains("# contexts of the test"),
        "comments kept: {text}"
    );

    // Another context by name, and the flag over the file's current one.
    let shop: ContextView =
        json(&home.omsctl(&["--context", "shop", "context", "show", "-o", "json"])?)?;
    assert_eq!(
        shop.target,
        TargetView::Compose {
            project: "shop".into(),
            file: Some("/srv/shop/compose.yaml".into()),
        },
        "{shop:?}"
    );
    let local: ContextView = json(&home.omsctl(&["context", "show", "local", "-o", "json"])?)?;
    assert_eq!(local.target, TargetView::Local, "{local:?}");
    assert_eq!(local.brokers, "127.0.0.1:19092", "{local:?}");

    // The local stack's verbs refuse another target, naming it.
    let out = home.omsctl(&["stack", "down"])?;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("context staging is a kubernetes target"),
        "{}",
        stderr(&out)
    );
    Ok(())
}

#[test]
fn bad_contexts_and_properties_are_refused_with_one_line() -> anyhow::Result<()> {
    let home = Home::new(CONFIG)?;
    for (args, needle) in [
        (
            vec!["--context", "prod", "context", "show"],
            "no context \"prod\"",
        ),
        (vec!["context", "use", "prod"], "no context \"prod\""),
        (
            vec!["-X", "group.id=mine", "topics", "list"],
            "cannot be overridden",
        ),
        (vec!["-X", "sasl.mechanism", "topics", "list"], "KEY=VALUE"),
        // A property librdkafka does not know reaches it, and it says so.
        (
            vec!["-X", "no.such.property=1", "topics", "list"],
            "no.such.property",
        ),
    ] {
        let out = home.omsctl(&args)?;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
    }
    // The file was not changed by the refused `use`.
    assert_eq!(std::fs::read_to_string(home.config_file())?, CONFIG);

    std::fs::write(home.config_file(), "[contexts.x]\ntarget = \"nomad\"\n")?;
    let out = home.omsctl(&["context", "list"])?;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("config file"), "{}", stderr(&out));
    Ok(())
}

#[test]
fn compose_chaos_runs_docker_compose_and_reset_undoes_it_in_order() -> anyhow::Result<()> {
    let home = Home::new(CONFIG)?;
    let compose = |args: &[&str]| {
        let mut all = vec!["--context", "shop", "chaos"];
        all.extend_from_slice(args);
        home.omsctl(&all)
    };
    let base = "docker compose -p shop -f /srv/shop/compose.yaml";
    ok(&compose(&["service", "kill", "order"])?)?;
    ok(&compose(&["service", "pause", "saga"])?)?;
    ok(&compose(&["broker", "stop"])?)?;
    ok(&compose(&["db", "stop"])?)?;
    assert_eq!(
        home.recorded()?,
        [
            format!("{base} kill order"),
            format!("{base} pause saga"),
            format!("{base} stop kafka"),
            format!("{base} stop postgres"),
        ]
    );
    let targets = fault_targets(&compose(&["status", "-o", "json"])?)?;
    assert_eq!(targets, ["order", "saga", "broker", "db"]);
    // The local stack's fault file is not this context's.
    let local =
        fault_targets(&home.omsctl(&["--context", "local", "chaos", "status", "-o", "json"])?)?;
    assert!(local.is_empty(), "{local:?}");

    ok(&compose(&["reset"])?)?;
    assert_eq!(
        home.recorded()?,
        [
            format!("{base} up -d --no-deps --wait postgres"),
            format!("{base} up -d --no-deps --wait kafka"),
            format!("{base} up -d --no-deps --wait order"),
            format!("{base} unpause saga"),
        ]
    );
    let status = fault_targets(&compose(&["status", "-o", "json"])?)?;
    assert!(status.is_empty(), "{status:?}");

    ok(&compose(&["service", "restart", "payment"])?)?;
    assert_eq!(
        home.recorded()?,
        [
            format!("{base} restart payment"),
            format!("{base} up -d --no-deps --wait payment"),
        ]
    );
    Ok(())
}

#[test]
fn kubernetes_chaos_runs_kubectl_restores_replicas_and_refuses_pause() -> anyhow::Result<()> {
    let home = Home::new(CONFIG)?;
    let kube = |args: &[&str]| {
        let mut all = vec!["--context", "staging", "chaos"];
        all.extend_from_slice(args);
        home.omsctl(&all)
    };
    let base = "kubectl --context staging-cluster -n oms-staging";
    ok(&kube(&["service", "stop", "payment"])?)?;
    ok(&kube(&["service", "kill", "order"])?)?;
    ok(&kube(&["broker", "stop"])?)?;
    ok(&kube(&["db", "stop"])?)?;
    assert_eq!(
        home.recorded()?,
        [
            format!("{base} get deployment/oms-payment -o jsonpath={{.spec.replicas}}"),
            format!("{base} scale deployment/oms-payment --replicas=0"),
            format!("{base} delete pod -l app.kubernetes.io/name=oms-order --grace-period=0 --force --wait=false"),
            format!("{base} delete pod -l strimzi.io/cluster=oms-kafka,strimzi.io/broker-role=true --wait=false"),
            format!("{base} annotate cluster.postgresql.cnpg.io/oms-postgres cnpg.io/hibernation=on --overwrite"),
        ]
    );

    // Pause has no meaning there: refused, nothing run, nothing recorded.
    let out = kube(&["service", "pause", "saga"])?;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("pause is not available"),
        "{}",
        stderr(&out)
    );
    assert!(home.recorded()?.is_empty());

    ok(&kube(&["reset"])?)?;
    assert_eq!(
        home.recorded()?,
        [
            format!("{base} annotate cluster.postgresql.cnpg.io/oms-postgres cnpg.io/hibernation=off --overwrite"),
            format!("{base} wait cluster.postgresql.cnpg.io/oms-postgres --for=condition=Ready --timeout=300s"),
            format!("{base} wait kafka.kafka.strimzi.io/oms-kafka --for=condition=Ready --timeout=300s"),
            // The replica count read before the stop comes back.
            format!("{base} scale deployment/oms-payment --replicas=3"),
            format!("{base} rollout status deployment/oms-payment --timeout=300s"),
            format!("{base} rollout status deployment/oms-order --timeout=300s"),
        ]
    );

    // A command the cluster refuses: exit 2 naming the command line, and no fault left recorded.
    let out = home.omsctl_failing(
        &["--context", "staging", "chaos", "service", "stop", "saga"],
        "scale",
    )?;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("scale deployment/oms-saga --replicas=0` failed"),
        "{err}"
    );
    assert!(err.contains("the cluster said no"), "{err}");
    let status = fault_targets(&kube(&["status", "-o", "json"])?)?;
    assert!(status.is_empty(), "{status:?}");
    Ok(())
}

#[test]
fn a_service_refuses_a_reserved_or_malformed_kafka_property_before_starting() -> anyhow::Result<()>
{
    let bin = |name: &str| -> anyhow::Result<PathBuf> {
        let omsctl = assert_cmd::cargo::cargo_bin("omsctl");
        let dir = omsctl.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(dir.join(name))
    };
    let order = bin("oms-order")?;
    anyhow::ensure!(
        order.exists(),
        "{} missing: cargo build --bins first",
        order.display()
    );
    for (flag, needle) in [
        ("enable.auto.offset.store=true", "cannot be overridden"),
        ("sasl.mechanism", "KEY=VALUE"),
    ] {
        let out = std::process::Command::new(&order)
            .args(["-X", flag])
            .env_clear()
            .output()?;
        assert_eq!(out.status.code(), Some(2), "{flag}");
        assert!(stderr(&out).contains(needle), "{flag}: {}", stderr(&out));
    }
    // The environment is read too: a reserved property there stops start-up with its name.
    let out = std::process::Command::new(&order)
        .env_clear()
        .env("OMS_KAFKA_GROUP_ID", "someone-elses")
        .env(
            "OMS_DATABASE_URL",
            "postgres://oms:oms@127.0.0.1:1/postgres",
        )
        .output()?;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("group.id"), "{}", stderr(&out));
    Ok(())
}
