//! The deployment files written by hand, checked against the topology (`SERVICES`) by reading
//! them, no infrastructure: the Dockerfile copies exactly the binaries a deployment runs, and
//! compose.yaml runs every service of the topology once, as the compose service of its name, on
//! its port, with Kafbat UI on the in-network listener. deploy/observability/prometheus.yml (a
//! scrape job per service at `NAME:PORT` of the compose network) is checked by omsctl's
//! observability test; deploy/kubernetes's overlays by kubernetes.rs. Here, what ties the
//! Kubernetes manifests to the rest: the PrometheusRule carries compose's alert rules unchanged,
//! the ServiceMonitor scrapes exactly the topology's services and names each `job` as compose
//! does, the services' OTLP endpoint is the collector's receiver and its pipeline is complete,
//! the opt-in external Kafka listener and the in-cluster omsctl pod validate and use the operator's
//! own KafkaUser.

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

// --- compose: Kafbat UI --------------------------------------------------------------------------

/// The addresses compose's broker advertises, by listener name, with each one's security
/// protocol: (name, (host:port, protocol)).
fn advertised_listeners(kafka: &Value) -> BTreeMap<String, (String, String)> {
    let env = &kafka["environment"];
    let protocols: BTreeMap<&str, &str> = env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
        .as_str()
        .unwrap_or_default()
        .split(',')
        .filter_map(|pair| pair.split_once(':'))
        .collect();
    env["KAFKA_ADVERTISED_LISTENERS"]
        .as_str()
        .unwrap_or_default()
        .split(',')
        .filter_map(|l| l.split_once("://"))
        .map(|(name, address)| {
            let protocol = protocols.get(name).copied().unwrap_or_default();
            (name.to_owned(), (address.to_owned(), protocol.to_owned()))
        })
        .collect()
}

/// The UI is a client of the broker like the services: it must bootstrap from the listener the
/// broker advertises inside the compose network (the host's, 127.0.0.1:29092, is the UI
/// container's own loopback), in the protocol that listener speaks (the UI sets no SASL or TLS
/// property), read-only and behind a login, published on the host's loopback only.
#[test]
fn kafbat_ui_reads_the_broker_on_its_in_network_listener() -> anyhow::Result<()> {
    let mut compose: Value = serde_norway::from_str(&read("compose.yaml")?)?;
    compose.apply_merge()?;
    let services = &compose["services"];
    let listeners = advertised_listeners(&services["kafka"]);
    let ui = &services["kafka-ui"];
    assert!(
        ui["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("ghcr.io/kafbat/kafka-ui:v")),
        "kafka-ui: a pinned Kafbat UI release: {:?}",
        ui["image"]
    );
    let env = &ui["environment"];
    let bootstrap = env["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"]
        .as_str()
        .unwrap_or_default();
    let listener = listeners
        .iter()
        .find(|(_, (address, _))| address == bootstrap)
        .map(|(name, (_, protocol))| (name.clone(), protocol.clone()));
    let Some((name, protocol)) = listener else {
        anyhow::bail!("kafka-ui bootstraps from {bootstrap:?}, which the broker does not advertise ({listeners:?})");
    };
    assert!(
        !bootstrap.starts_with("127.0.0.1:") && !bootstrap.starts_with("localhost:"),
        "kafka-ui: {bootstrap} is the container's own loopback"
    );
    // The services use the same listener (x-oms-env's OMS_BROKERS).
    assert_eq!(
        services["order"]["environment"]["OMS_BROKERS"].as_str(),
        Some(bootstrap),
        "kafka-ui and the services read the broker on different listeners"
    );
    let secured = env
        .as_mapping()
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.as_str())
        .any(|k| k.starts_with("KAFKA_CLUSTERS_0_PROPERTIES_SECURITY"));
    assert_eq!(
        protocol == "PLAINTEXT",
        !secured,
        "kafka-ui: listener {name} speaks {protocol}; the UI's security properties must match"
    );
    assert_eq!(
        env["KAFKA_CLUSTERS_0_READONLY"], "true",
        "kafka-ui: read-only"
    );
    assert_eq!(env["AUTH_TYPE"], "LOGIN_FORM", "kafka-ui: a login");
    let ports = words(&ui["ports"]);
    assert!(
        !ports.is_empty() && ports.iter().all(|p| p.starts_with("127.0.0.1:")),
        "kafka-ui: published on the host's loopback only: {ports:?}"
    );
    Ok(())
}

// --- deploy/kubernetes ---------------------------------------------------------------------------

/// Every document of a multi-document YAML file.
fn documents(file: &str) -> anyhow::Result<Vec<Value>> {
    use serde::Deserialize;
    let text = read(file)?;
    let mut docs = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let value = Value::deserialize(doc).with_context(|| format!("parsing {file}"))?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// The objects of deploy/kubernetes/base, every file its kustomization lists.
fn base_objects() -> anyhow::Result<Vec<Value>> {
    let kustomization: Value =
        serde_norway::from_str(&read("deploy/kubernetes/base/kustomization.yaml")?)?;
    let mut objects = Vec::new();
    for file in kustomization["resources"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        objects.extend(documents(&format!("deploy/kubernetes/base/{file}"))?);
    }
    Ok(objects)
}

fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> anyhow::Result<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .with_context(|| format!("no {kind}/{name}"))
}

/// Whether every label of `wanted` (a mapping, not empty) holds in `labels`.
fn holds(wanted: &Value, labels: &Value) -> bool {
    wanted
        .as_mapping()
        .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// Whether a label selector's matchLabels select `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    holds(&selector["matchLabels"], labels)
}

/// The alerting rules of rule groups, by alert name.
fn alert_rules(groups: &Value) -> BTreeMap<String, Value> {
    groups
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|r| Some((r["alert"].as_str()?.to_owned(), r)))
        .collect()
}

/// compose's Prometheus loads deploy/observability/rules/oms-alerts.yml; a cluster's Prometheus
/// Operator loads the PrometheusRule. The same alerts must fire in both: same names, expressions,
/// durations, labels and annotations (runbook_url among them), in the same groups.
#[test]
fn the_prometheus_rule_carries_the_alert_rules_of_compose_unchanged() -> anyhow::Result<()> {
    let file: Value = serde_norway::from_str(&read("deploy/observability/rules/oms-alerts.yml")?)?;
    let docs = documents("deploy/kubernetes/monitoring/prometheus-rule.yaml")?;
    let [rule] = docs.as_slice() else {
        anyhow::bail!(
            "prometheus-rule.yaml: one object expected, {} found",
            docs.len()
        );
    };
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["kind"], "PrometheusRule");
    let wanted = alert_rules(&file["groups"]);
    let found = alert_rules(&rule["spec"]["groups"]);
    assert!(
        wanted.len() >= 5,
        "only {} alerts in oms-alerts.yml",
        wanted.len()
    );
    assert_eq!(
        found.keys().collect::<Vec<_>>(),
        wanted.keys().collect::<Vec<_>>(),
        "the PrometheusRule's alerts (left) vs oms-alerts.yml's (right)"
    );
    for (alert, want) in &wanted {
        let got = &found[alert];
        for field in ["expr", "for", "labels", "annotations"] {
            assert_eq!(
                got[field], want[field],
                "{alert}: {field} differs between the PrometheusRule (left) and oms-alerts.yml (right)"
            );
        }
        assert!(
            got["annotations"]["runbook_url"].is_string(),
            "{alert}: no runbook_url"
        );
        assert_eq!(got, want, "{alert}: the rules differ");
    }
    assert_eq!(
        rule["spec"]["groups"], file["groups"],
        "the rule groups (names, order, rules) differ"
    );
    Ok(())
}

/// The ServiceMonitor scrapes the Services of exactly the topology's services, on the port each
/// serves /metrics on, with a token (/metrics needs the metrics role), and names each target's
/// `job` after the service, as compose's scrape jobs are named: what the alert rules select.
#[test]
fn the_service_monitor_scrapes_every_service_of_the_topology_as_its_job() -> anyhow::Result<()> {
    let docs = documents("deploy/kubernetes/monitoring/service-monitor.yaml")?;
    let [monitor] = docs.as_slice() else {
        anyhow::bail!(
            "service-monitor.yaml: one object expected, {} found",
            docs.len()
        );
    };
    assert_eq!(monitor["kind"], "ServiceMonitor");
    let spec = &monitor["spec"];
    let endpoints = spec["endpoints"].as_sequence().cloned().unwrap_or_default();
    let [endpoint] = endpoints.as_slice() else {
        anyhow::bail!("one scrape endpoint expected: {endpoints:?}");
    };
    assert_eq!(endpoint["path"], "/metrics");
    let credentials = &endpoint["authorization"]["credentials"];
    assert_eq!(endpoint["authorization"]["type"], "Bearer");
    assert!(
        credentials["name"].is_string() && credentials["key"].is_string(),
        "no token Secret: {credentials:?}"
    );
    let port_name = endpoint["port"].as_str().unwrap_or_default();

    let objects = base_objects()?;
    let selected: BTreeSet<String> = objects
        .iter()
        .filter(|o| o["kind"] == "Service" && selects(&spec["selector"], &o["metadata"]["labels"]))
        .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    let wanted: BTreeSet<String> = SERVICES.iter().map(|s| format!("oms-{}", s.name)).collect();
    assert_eq!(
        selected, wanted,
        "the Services the ServiceMonitor selects (left), the topology's (right)"
    );
    for s in SERVICES {
        let service = object(&objects, "Service", &format!("oms-{}", s.name))?;
        let port = service["spec"]["ports"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == port_name)
            .with_context(|| format!("oms-{}: no port named {port_name}", s.name))?;
        assert_eq!(
            port["port"], s.port,
            "oms-{}: /metrics is on its API port",
            s.name
        );
    }

    // `job`: the Service's name without `oms-` (the operator would keep oms-order).
    let relabelings = endpoint["relabelings"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    let job = relabelings
        .iter()
        .filter(|r| r["targetLabel"] == "job")
        .collect::<Vec<_>>();
    let [job] = job.as_slice() else {
        anyhow::bail!("one relabeling of `job` expected: {relabelings:?}");
    };
    assert_eq!(
        words(&job["sourceLabels"]),
        ["__meta_kubernetes_service_name"]
    );
    assert!(
        matches!(job["action"].as_str(), None | Some("replace" | "Replace")),
        "{job:?}"
    );
    // Prometheus anchors the regex; `oms-(.+)` with `$1` leaves the topology's name.
    assert_eq!(job["regex"], "oms-(.+)", "{job:?}");
    assert_eq!(job["replacement"], "$1", "{job:?}");
    Ok(())
}

/// Deep-merges `over` into `base` as the collector merges its --config files: mappings key by
/// key, anything else (lists too) replaced.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// The services export to OMS_OTLP_ENDPOINT: it must be the collector's Service, on the port
/// that leads to the collector's OTLP/HTTP receiver, which the services' egress policy lets
/// them reach; the collector's configuration, its files merged as it merges them, must name
/// only components it defines, and batch the traces on their way to an exporter.
#[test]
fn the_services_export_traces_to_the_collector_whose_pipeline_is_complete() -> anyhow::Result<()> {
    let objects = base_objects()?;
    let endpoint = object(&objects, "ConfigMap", "oms-config")?["data"]["OMS_OTLP_ENDPOINT"]
        .as_str()
        .context("oms-config sets no OMS_OTLP_ENDPOINT")?
        .to_owned();
    let (host, port) = endpoint
        .strip_prefix("http://")
        .and_then(|a| a.split_once(':'))
        .with_context(|| format!("OMS_OTLP_ENDPOINT {endpoint} is not http://HOST:PORT"))?;
    let port: u64 = port.parse()?;
    let service = object(&objects, "Service", host)?;
    let service_port = service["spec"]["ports"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|p| p["port"] == port)
        .with_context(|| format!("Service {host} has no port {port}"))?;
    let deployment = objects
        .iter()
        .find(|o| {
            o["kind"] == "Deployment"
                && holds(
                    &service["spec"]["selector"],
                    &o["spec"]["template"]["metadata"]["labels"],
                )
        })
        .with_context(|| format!("no Deployment behind Service {host}"))?;
    let pod = &deployment["spec"]["template"];
    let container = &pod["spec"]["containers"][0];
    let target = &service_port["targetPort"];
    let container_port = container["ports"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == *target || p["containerPort"] == *target)
        .and_then(|p| p["containerPort"].as_u64())
        .with_context(|| format!("{host}: targetPort {target:?} is no port of the collector"))?;

    // The configuration: each --config file from the mounted ConfigMap, merged in order.
    let mount = container["volumeMounts"][0]["mountPath"]
        .as_str()
        .unwrap_or_default();
    let volume = &pod["spec"]["volumes"][0];
    assert_eq!(
        volume["name"], container["volumeMounts"][0]["name"],
        "the collector's configuration volume"
    );
    let config_map = object(
        &objects,
        "ConfigMap",
        volume["configMap"]["name"].as_str().unwrap_or_default(),
    )?;
    let mut config = Value::Mapping(Default::default());
    let mut files = 0;
    for arg in words(&container["args"]) {
        let Some(path) = arg.strip_prefix("--config=") else {
            continue;
        };
        let key = path
            .trim_start_matches("file:")
            .strip_prefix(&format!("{mount}/"))
            .with_context(|| format!("--config {path} is not in the mounted ConfigMap"))?;
        let text = config_map["data"][key]
            .as_str()
            .with_context(|| format!("the collector's ConfigMap has no {key}"))?;
        merge(&mut config, serde_norway::from_str(text)?);
        files += 1;
    }
    assert!(files >= 1, "the collector is given no --config");
    let pipelines = config["service"]["pipelines"]
        .as_mapping()
        .context("no pipelines")?;
    for (name, pipeline) in pipelines {
        for (list, section) in [
            ("receivers", "receivers"),
            ("processors", "processors"),
            ("exporters", "exporters"),
        ] {
            let used = words(&pipeline[list]);
            assert!(
                list == "processors" || !used.is_empty(),
                "pipeline {name:?}: no {list}"
            );
            for component in used {
                assert!(
                    config[section].get(component.as_str()).is_some(),
                    "pipeline {name:?} uses {section} {component}, which the configuration does not define"
                );
            }
        }
    }
    for extension in words(&config["service"]["extensions"]) {
        assert!(
            config["extensions"].get(extension.as_str()).is_some(),
            "extension {extension} is not defined"
        );
    }
    let traces = &config["service"]["pipelines"]["traces"];
    assert!(
        words(&traces["receivers"]).contains(&"otlp".to_owned()),
        "{traces:?}"
    );
    assert!(
        words(&traces["processors"]).contains(&"batch".to_owned()),
        "{traces:?}"
    );
    let http = config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
        .as_str()
        .unwrap_or_default();
    assert!(
        http.ends_with(&format!(":{container_port}")),
        "the OTLP/HTTP receiver listens on {http:?}, the Service sends to {container_port}"
    );

    // The services' egress reaches the collector's pods on that port.
    let egress = object(&objects, "NetworkPolicy", "oms-services-egress")?;
    let allowed = egress["spec"]["egress"]
        .as_sequence()
        .into_iter()
        .flatten()
        .any(|rule| {
            let to_collector = rule["to"].as_sequence().into_iter().flatten().any(|peer| {
                peer.get("namespaceSelector").is_none()
                    && selects(&peer["podSelector"], &pod["metadata"]["labels"])
            });
            let on_port = rule["ports"]
                .as_sequence()
                .into_iter()
                .flatten()
                .any(|p| p["port"] == container_port);
            to_collector && on_port
        });
    assert!(
        allowed,
        "oms-services-egress does not let the services reach the collector on {container_port}"
    );
    Ok(())
}

/// The in-cluster omsctl is the operator's KafkaUser, with the CA and listener settings the
/// services use and the password Secret the user operator writes for that user, and reaches
/// each service at its Service and topology port.
#[test]
fn the_omsctl_pod_logs_in_as_the_operators_kafka_user() -> anyhow::Result<()> {
    let objects = base_objects()?;
    let docs = documents("deploy/kubernetes/tools/omsctl-pod.yaml")?;
    let [pod] = docs.as_slice() else {
        anyhow::bail!("omsctl-pod.yaml: one object expected, {} found", docs.len());
    };
    let container = &pod["spec"]["containers"][0];
    let env: BTreeMap<String, Value> = container["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e["name"].as_str()?.to_owned(), e.clone())))
        .collect();
    let user = env
        .get("OMS_KAFKA_SASL_USERNAME")
        .and_then(|e| e["value"].as_str())
        .context("no OMS_KAFKA_SASL_USERNAME")?;
    let kafka_user = object(&objects, "KafkaUser", user)?;
    assert_eq!(
        kafka_user["spec"]["authentication"]["type"],
        "scram-sha-512"
    );
    let password = env
        .get("OMS_KAFKA_SASL_PASSWORD")
        .context("no OMS_KAFKA_SASL_PASSWORD")?;
    assert_eq!(
        password["valueFrom"]["secretKeyRef"]["name"], user,
        "the user operator writes KafkaUser {user}'s password into the Secret {user}"
    );
    let config = object(&objects, "ConfigMap", "oms-config")?;
    for (name, e) in &env {
        let from = &e["valueFrom"]["configMapKeyRef"];
        if from.is_null() {
            continue;
        }
        assert_eq!(from["name"], "oms-config", "{name}");
        let key = from["key"].as_str().unwrap_or_default();
        assert!(
            config["data"].get(key).is_some(),
            "{name}: oms-config has no {key}"
        );
    }
    for wanted in [
        "OMS_BROKERS",
        "OMS_KAFKA_SECURITY_PROTOCOL",
        "OMS_KAFKA_SSL_CA_LOCATION",
    ] {
        assert!(env.contains_key(wanted), "no {wanted}");
    }
    let kafka = object(&objects, "Kafka", "oms-kafka")?;
    let ca = &pod["spec"]["volumes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|v| v["secret"].is_mapping())
        .context("no CA volume")?["secret"]["secretName"];
    assert_eq!(
        ca.as_str(),
        Some(
            format!(
                "{}-cluster-ca-cert",
                kafka["metadata"]["name"].as_str().unwrap_or_default()
            )
            .as_str()
        )
    );
    for s in SERVICES {
        let var = format!("OMS_{}_URL", s.name.to_uppercase());
        let url = env.get(&var).and_then(|e| e["value"].as_str());
        assert_eq!(
            url,
            Some(format!("http://oms-{}:{}", s.name, s.port).as_str()),
            "{var}"
        );
    }
    Ok(())
}

fn check_py(args: &[&str]) -> anyhow::Result<std::process::Output> {
    let python = std::env::var("OMS_KUBE_VALIDATE").context(
        "OMS_KUBE_VALIDATE is not set: run through scripts/test.sh (scripts/deps.sh --test installs kubernetes-validate)",
    )?;
    Ok(std::process::Command::new(python)
        .arg(root().join("deploy/kubernetes/check.py"))
        .args(args)
        .current_dir(root().join("deploy/kubernetes"))
        .output()?)
}

/// What the overlays do not include, validated as kubernetes.rs validates them: the opt-in
/// external Kafka listener's overlay and the omsctl pod. The overlay keeps the tls listener the
/// services use as it is and adds one with TLS and the same SCRAM authentication.
#[test]
fn the_external_kafka_overlay_and_the_omsctl_pod_validate() -> anyhow::Result<()> {
    let out = check_py(&["validate", "overlays/production-external-kafka"])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(" 0 failure(s)"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = check_py(&["file", "tools/omsctl-pod.yaml"])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(" 0 failure(s)"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = check_py(&["render", "overlays/production-external-kafka"])?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)?;
    let kafka = rendered
        .iter()
        .find(|o| o["kind"] == "Kafka")
        .context("no Kafka")?;
    let base: Vec<Value> = documents("deploy/kubernetes/base/kafka.yaml")?;
    let base_kafka = object(&base, "Kafka", "oms-kafka")?;
    let internal: serde_json::Value =
        serde_json::to_value(&base_kafka["spec"]["kafka"]["listeners"])?;
    let listeners = kafka["spec"]["kafka"]["listeners"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let internal = internal.as_array().cloned().unwrap_or_default();
    assert_eq!(
        listeners.get(..internal.len()),
        Some(internal.as_slice()),
        "the base's listeners are kept as they are"
    );
    let added = &listeners[internal.len()..];
    let [external] = added else {
        anyhow::bail!("one listener added expected: {added:?}");
    };
    assert!(
        matches!(external["type"].as_str(), Some("loadbalancer" | "nodeport")),
        "{external}"
    );
    assert_eq!(external["tls"], true, "{external}");
    assert_eq!(
        external["authentication"], internal[0]["authentication"],
        "the external listener authenticates as the tls listener does"
    );
    assert_eq!(kafka["metadata"]["namespace"], "oms");
    Ok(())
}
