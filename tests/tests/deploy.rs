//! The deployment files written by hand, checked against the topology (`SERVICES`) by reading
//! them, no infrastructure: the Dockerfile copies exactly the binaries a deployment runs, and
//! compose.yaml runs every service of the topology once, as the compose service of its name, on
//! its port. deploy/observability/prometheus.yml (a scrape job per service at `NAME:PORT` of the
//! compose network) is checked by omsctl's observability test; deploy/kubernetes by
//! kubernetes.rs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::Context;
use oms_contracts::topology::SERVICES;
use serde_norway::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

fn read(file: &str) -> anyhow::Result<String> {
    let path = root().join(file);
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// Every binary the Dockerfile copies out of `target/release/`, in order (comment lines left
/// out).
fn copied_binaries(dockerfile: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in dockerfile
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
    {
        for (i, m) in line.match_indices("target/release/") {
            out.push(
                line[i + m.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
                    .collect(),
            );
        }
    }
    out
}

/// One image holds every binary and each deployment names the one it runs: a service missing
/// from the copy is a container that cannot start, a binary copied that no crate builds any more
/// breaks the image's build.
#[test]
fn the_dockerfile_copies_omsctl_and_every_service_of_the_topology_and_nothing_else(
) -> anyhow::Result<()> {
    let copied = copied_binaries(&read("Dockerfile")?);
    let unique: BTreeSet<String> = copied.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        copied.len(),
        "a binary copied twice: {copied:?}"
    );
    let mut expected: BTreeSet<String> =
        SERVICES.iter().map(|s| format!("oms-{}", s.name)).collect();
    expected.insert("omsctl".to_owned());
    assert_eq!(
        unique, expected,
        "the Dockerfile's copied binaries (left), omsctl and oms-NAME for every service of the topology (right)"
    );
    Ok(())
}

/// The words of a compose `entrypoint` or `command` (a list, or a string split on whitespace).
fn words(v: &Value) -> Vec<String> {
    match v {
        Value::Sequence(s) => s
            .iter()
            .filter_map(|w| w.as_str().map(str::to_owned))
            .collect(),
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// The OMS binary a compose service of the OMS image runs: its entrypoint's (else its
/// command's) first word, the script's first word through `sh -c SCRIPT`, the image's `CMD`
/// (omsctl) when it names none. `None` for a service of another image.
fn oms_binary(service: &Value) -> Option<String> {
    let image = service["image"].as_str().unwrap_or_default();
    if !image.starts_with("oms:") && service.get("build").is_none() {
        return None;
    }
    let mut argv = words(&service["entrypoint"]);
    argv.extend(words(&service["command"]));
    Some(match argv.as_slice() {
        [sh, c, script, ..] if sh == "sh" && c == "-c" => script
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned(),
        [first, ..] => first.clone(),
        [] => "omsctl".to_owned(),
    })
}

/// compose.yaml's services that run an OMS binary run omsctl or `oms-NAME` of a service of the
/// topology, each exactly once and as the compose service `NAME` (Prometheus scrapes `NAME:PORT`,
/// omsctl's chaos verbs `docker compose stop NAME`), listening on the topology's port in the
/// compose network and published on the host's loopback at the same port (the `compose`
/// context reaches every service at `http://127.0.0.1:PORT`), its healthcheck on that port.
#[test]
fn every_service_of_the_topology_runs_once_in_compose_under_its_name_on_its_port(
) -> anyhow::Result<()> {
    let mut compose: Value = serde_norway::from_str(&read("compose.yaml")?)?;
    compose.apply_merge()?;
    let services = compose["services"]
        .as_mapping()
        .context("compose.yaml has no services")?;
    let mut runs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut tools = 0;
    for (key, service) in services {
        let key = key.as_str().unwrap_or_default().to_owned();
        let Some(binary) = oms_binary(service) else {
            continue;
        };
        if binary == "omsctl" {
            tools += 1;
            continue;
        }
        let name = binary.strip_prefix("oms-").unwrap_or_default();
        assert!(
            SERVICES.iter().any(|s| s.name == name),
            "compose service {key:?} runs {binary:?}, which is neither omsctl nor oms-NAME of a service of the topology"
        );
        runs.entry(name.to_owned()).or_default().push(key);
    }
    // issuer, topics, scrape-token and the omsctl tool.
    assert!(tools >= 1, "no compose service runs omsctl");
    for spec in SERVICES {
        let (name, port) = (spec.name, spec.port);
        let keys = runs.get(name).cloned().unwrap_or_default();
        assert_eq!(
            keys,
            [name],
            "compose services running oms-{name}: one, named {name}"
        );
        let service = &services[name];
        let listen = format!("OMS_{}_LISTEN", name.to_uppercase());
        assert_eq!(
            service["environment"][listen.as_str()].as_str(),
            Some(format!("0.0.0.0:{port}").as_str()),
            "{name}: {listen} (the default, 127.0.0.1, is unreachable from other containers)"
        );
        assert_eq!(
            words(&service["ports"]),
            [format!("127.0.0.1:{port}:{port}")],
            "{name}: published ports"
        );
        let health = words(&service["healthcheck"]["test"]).join(" ");
        assert!(
            health.contains(&format!("/dev/tcp/127.0.0.1/{port} ")),
            "{name}: the healthcheck does not probe port {port}: {health}"
        );
    }
    Ok(())
}
