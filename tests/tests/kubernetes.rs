//! deploy/kubernetes, checked offline: both overlays render and every object validates against
//! the Kubernetes schemas and the CRD schemas (`deploy/kubernetes/check.py`, run with the
//! virtualenv `scripts/deps.sh --test` installs), and the rendered manifests agree with the
//! topology: a Deployment per service on its port with probes on the health endpoints, a
//! Service, PodDisruptionBudget and HorizontalPodAutoscaler each, a KafkaTopic with replication
//! 3 and min.insync.replicas 2 for every OMS and dead-letter topic, a SCRAM KafkaUser per
//! service holding exactly the ACLs its row of the topology grants (as the local stack's secured
//! Kafka has them), a database per service owned by its own role over TLS, and least privilege:
//! no service-account token, an fsGroup, no replicas beside an autoscaler, egress only to
//! PostgreSQL, Kafka, DNS and OTLP, the production image pinned by digest.
//!
//! check.py renders with a subset of kustomize of its own (its docstring says why `kubectl
//! kustomize` cannot be installed here); where a kubectl with kustomize v5 is there anyway (the
//! machine image of some kinds has one), its rendering of both overlays must be the same.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;
use oms_contracts::{topics, ServiceId};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

fn python() -> anyhow::Result<String> {
    std::env::var("OMS_KUBE_VALIDATE")
        .context("OMS_KUBE_VALIDATE is not set: run through scripts/test.sh (scripts/deps.sh --test installs kubernetes-validate)")
}

fn check(args: &[&str]) -> anyhow::Result<std::process::Output> {
    Ok(Command::new(python()?)
        .arg(root().join("deploy/kubernetes/check.py"))
        .args(args)
        .current_dir(root().join("deploy/kubernetes"))
        .output()?)
}

fn rendered(overlay: &str) -> anyhow::Result<Vec<Value>> {
    let out = check(&["render", overlay])?;
    anyhow::ensure!(
        out.status.success(),
        "render {overlay}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> anyhow::Result<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .with_context(|| format!("no {kind}/{name}"))
}

#[test]
fn both_overlays_render_and_validate_against_the_kubernetes_and_crd_schemas() -> anyhow::Result<()>
{
    let out = check(&["validate", "overlays/dev", "overlays/production"])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("0 failure(s)"), "{stdout}");
    Ok(())
}

#[test]
fn the_validator_fails_on_bad_objects_and_unrenderable_kustomizations() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: oms-order
spec:
  replicas: three
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers: [{name: order, image: oms}]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: oms-saga
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers: [{name: saga, image: oms, portz: []}]
---
apiVersion: kafka.strimzi.io/v1beta2
kind: KafkaTopic
metadata:
  name: oms-order-events
  labels: {strimzi.io/cluster: oms-kafka}
spec:
  replica: 3
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: w}
spec: {}
"#,
    )?;
    let out = check(&["file", &bad.display().to_string()])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("Deployment/oms-order: spec.replicas"), "{err}");
    assert!(
        err.contains("Deployment/oms-saga") && err.contains("portz"),
        "{err}"
    );
    assert!(err.contains("KafkaTopic/oms-order-events"), "{err}");
    assert!(err.contains("no schema for example.com/v1 Widget"), "{err}");

    let overlay = dir.path().join("overlay");
    std::fs::create_dir_all(&overlay)?;
    std::fs::write(
        overlay.join("kustomization.yaml"),
        "resources: [../bad.yaml]\nnamePrefix: x-\n",
    )?;
    let out = check(&["validate", &overlay.display().to_string()])?;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("namePrefix"));

    // kustomize's load restrictor: a file resource outside the kustomization's directory.
    std::fs::write(
        overlay.join("kustomization.yaml"),
        "resources: [../bad.yaml]\n",
    )?;
    let out = check(&["render", &overlay.display().to_string()])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("../bad.yaml is not in or below"), "{err}");
    Ok(())
}

/// A kustomization setting images every way the overlays may: what `kubectl kustomize`
/// (kustomize v5.5.0) renders for it is [`IMAGES_BY_KUSTOMIZE`].
fn images_fixture(dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    let h = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    let d = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    let k = dir.join("images");
    std::fs::create_dir_all(&k)?;
    std::fs::write(
        k.join("objects.yaml"),
        format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: oms-order}}
spec:
  selector: {{matchLabels: {{a: b}}}}
  template:
    metadata: {{labels: {{a: b}}}}
    spec:
      initContainers: [{{name: init, image: "a:1.0@{h}"}}]
      containers:
        - {{name: b, image: "b@{h}"}}
        - {{name: c, image: "c:1.0"}}
        - {{name: d, image: "reg.io:5000/d:1.0"}}
        - {{name: f, image: "other/a:1.0"}}
---
apiVersion: batch/v1
kind: CronJob
metadata: {{name: oms-sweep}}
spec:
  schedule: "0 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{{name: e, image: e}}]
"#
        ),
    )?;
    std::fs::write(
        k.join("kustomization.yaml"),
        format!(
            r#"namespace: images
resources: [objects.yaml]
images:
  - {{name: a, newTag: "9"}}
  - {{name: b, newName: x/b}}
  - {{name: c, newTag: "9", digest: {d}}}
  - {{name: reg.io:5000/d, digest: {d}}}
  - {{name: e, newName: ghcr.io/oms/e, newTag: "2"}}
"#
        ),
    )?;
    Ok(k)
}

/// (object, container, image) of the images fixture as `kubectl kustomize` renders it.
const IMAGES_BY_KUSTOMIZE: [(&str, &str, &str); 6] = [
    ("oms-order", "init", "a:9"),
    (
        "oms-order",
        "b",
        "x/b@sha256:1111111111111111111111111111111111111111111111111111111111111111",
    ),
    (
        "oms-order",
        "c",
        "c:9@sha256:2222222222222222222222222222222222222222222222222222222222222222",
    ),
    (
        "oms-order",
        "d",
        "reg.io:5000/d@sha256:2222222222222222222222222222222222222222222222222222222222222222",
    ),
    ("oms-order", "f", "other/a:1.0"),
    ("oms-sweep", "e", "ghcr.io/oms/e:2"),
];

#[test]
fn images_are_set_as_kustomize_sets_them() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let k = images_fixture(dir.path())?;
    let out = check(&["render", &k.display().to_string()])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let objects: Vec<Value> = serde_json::from_slice(&out.stdout)?;
    let mut images: Vec<(String, String, String)> = Vec::new();
    for o in &objects {
        let pod = if o["kind"] == "CronJob" {
            &o["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        } else {
            &o["spec"]["template"]["spec"]
        };
        for c in ["initContainers", "containers"]
            .iter()
            .flat_map(|list| pod[*list].as_array().cloned().unwrap_or_default())
        {
            images.push((
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                c["name"].as_str().unwrap_or_default().to_owned(),
                c["image"].as_str().unwrap_or_default().to_owned(),
            ));
        }
    }
    let wanted: Vec<(String, String, String)> = IMAGES_BY_KUSTOMIZE
        .iter()
        .map(|(o, c, i)| ((*o).to_owned(), (*c).to_owned(), (*i).to_owned()))
        .collect();
    assert_eq!(images, wanted);
    Ok(())
}

/// A kubectl whose kustomize is v5 or newer: `OMS_KUBECTL` when set (it must be one), else
/// `kubectl` on PATH when it is one; None when there is none to compare with.
fn kubectl() -> anyhow::Result<Option<String>> {
    let (bin, required) = match std::env::var("OMS_KUBECTL") {
        Ok(bin) if !bin.is_empty() => (bin, true),
        _ => ("kubectl".to_owned(), false),
    };
    let version = Command::new(&bin).args(["version", "--client"]).output();
    let text = match &version {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        _ => String::new(),
    };
    let kustomize_major = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Kustomize Version: v"))
        .and_then(|v| v.split('.').next()?.parse::<u32>().ok());
    match kustomize_major {
        Some(major) if major >= 5 => Ok(Some(bin)),
        _ if required => anyhow::bail!(
            "OMS_KUBECTL={bin} is not a kubectl with kustomize v5 or newer: {version:?}"
        ),
        _ => Ok(None),
    }
}

#[test]
fn the_renderer_agrees_with_kubectl_kustomize_where_there_is_one() -> anyhow::Result<()> {
    let Some(kubectl) = kubectl()? else {
        eprintln!(
            "no kubectl with kustomize v5 here (none can be installed: deploy/kubernetes/check.py \
             says why): check.py's renderer not compared with it"
        );
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let images = images_fixture(dir.path())?;
    let images = images.display().to_string();
    let out = check(&[
        "compare",
        &kubectl,
        "overlays/dev",
        "overlays/production",
        &images,
    ])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" 0 difference(s)"), "{stdout}");
    Ok(())
}

#[test]
fn the_rendered_manifests_agree_with_the_topology() -> anyhow::Result<()> {
    for (overlay, namespace, replicas) in [
        ("overlays/dev", "oms-dev", 1),
        ("overlays/production", "oms", 3),
    ] {
        let objects = rendered(overlay)?;
        for o in &objects {
            if o["kind"] != "Namespace" {
                assert_eq!(
                    o["metadata"]["namespace"], namespace,
                    "{overlay}: {}",
                    o["metadata"]["name"]
                );
            }
        }
        for svc in ServiceId::all() {
            let spec = svc.spec();
            let app = format!("oms-{}", svc.name());
            let d = find(&objects, "Deployment", &app)?;
            // The autoscaler owns the count: no replicas on the Deployment to fight it.
            assert!(d["spec"]["replicas"].is_null(), "{overlay} {app}: {d}");
            let pod = &d["spec"]["template"]["spec"];
            assert_eq!(pod["automountServiceAccountToken"], false, "{app}");
            assert_eq!(pod["securityContext"]["fsGroup"], 10001, "{app}");
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{app}");
            let c = &pod["containers"][0];
            if overlay.ends_with("production") {
                let image = c["image"].as_str().unwrap_or_default();
                assert!(image.contains("@sha256:"), "{app}: {image} is not pinned");
            }
            assert_eq!(c["command"][0], app.as_str());
            assert_eq!(c["ports"][0]["containerPort"], spec.port, "{app}");
            assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/health/ready");
            assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health/live");
            assert!(c["resources"]["requests"]["cpu"].is_string(), "{app}");
            let env: Vec<&str> = c["env"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["name"].as_str())
                .collect();
            for wanted in [
                "OMS_DATABASE_URL",
                "OMS_KAFKA_SASL_USERNAME",
                "OMS_KAFKA_SASL_PASSWORD",
            ] {
                assert!(env.contains(&wanted), "{app}: no {wanted}");
            }
            // Its own database role and Secret, over TLS.
            let var = |name: &str| {
                c["env"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|e| e["name"] == name)
                    .cloned()
                    .unwrap_or_default()
            };
            let role = format!("oms_{}", svc.name());
            let url = var("OMS_DATABASE_URL")["value"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(
                url.starts_with(&format!("postgres://{role}:")),
                "{app}: {url}"
            );
            assert!(url.ends_with("?sslmode=require"), "{app}: {url}");
            assert_eq!(
                var("OMS_DB_PASSWORD")["valueFrom"]["secretKeyRef"]["name"],
                format!("oms-db-{}", svc.name()),
                "{app}"
            );
            let listen = format!("OMS_{}_LISTEN", svc.name().to_uppercase());
            assert!(env.contains(&listen.as_str()), "{app}: no {listen}");
            let service = find(&objects, "Service", &app)?;
            assert_eq!(service["spec"]["ports"][0]["port"], spec.port);
            find(&objects, "PodDisruptionBudget", &app)?;
            let hpa = find(&objects, "HorizontalPodAutoscaler", &app)?;
            assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], app.as_str());
            assert_eq!(hpa["spec"]["minReplicas"], replicas, "{overlay} {app}");
            let user = find(&objects, "KafkaUser", &app)?;
            assert_eq!(user["spec"]["authentication"]["type"], "scram-sha-512");
            assert_eq!(app, spec.kafka_user());
            // Exactly the topology's grants: (type, name, operation), each literal.
            let mut acls: Vec<(String, String, String)> = Vec::new();
            for acl in user["spec"]["authorization"]["acls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let r = &acl["resource"];
                assert_eq!(r["patternType"], "literal", "{app}: {acl}");
                for op in acl["operations"].as_array().into_iter().flatten() {
                    acls.push((
                        r["type"].as_str().unwrap_or_default().to_uppercase(),
                        r["name"].as_str().unwrap_or_default().to_owned(),
                        op.as_str().unwrap_or_default().to_uppercase(),
                    ));
                }
            }
            let mut granted: Vec<(String, String, String)> = spec
                .grants(&oms_contracts::Topics::default())
                .into_iter()
                .map(|g| {
                    (
                        g.resource.kafka_type().to_owned(),
                        g.resource.name().to_owned(),
                        g.operation.kafka_name().to_owned(),
                    )
                })
                .collect();
            acls.sort();
            granted.sort();
            assert_eq!(acls, granted, "{overlay}: {app}'s ACLs vs the topology");
            // A database per service, owned by the service's role, which may do nothing else.
            let db = role.as_str();
            let has_db = objects.iter().any(|o| {
                (o["kind"] == "Database" && o["spec"]["name"] == db && o["spec"]["owner"] == db)
                    || (o["kind"] == "Cluster"
                        && o["spec"]["bootstrap"]["initdb"]["database"] == db
                        && o["spec"]["bootstrap"]["initdb"]["owner"] == db)
            });
            assert!(has_db, "{overlay}: no database {db} owned by {db}");
            let cluster = find(&objects, "Cluster", "oms-postgres")?;
            let managed = cluster["spec"]["managed"]["roles"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["name"] == db)
                .cloned()
                .unwrap_or_default();
            assert_eq!(managed["login"], true, "{db}: {managed}");
            assert_eq!(managed["superuser"], false, "{db}: {managed}");
            assert_eq!(managed["createdb"], false, "{db}: {managed}");
            assert_eq!(
                managed["passwordSecret"]["name"],
                format!("oms-db-{}", svc.name()),
                "{db}: {managed}"
            );
        }
        let mut wanted: Vec<String> = topics::ALL
            .iter()
            .flat_map(|t| [(*t).to_owned(), topics::dlq(t)])
            .collect();
        wanted.sort();
        let mut declared: Vec<String> = Vec::new();
        for t in objects.iter().filter(|o| o["kind"] == "KafkaTopic") {
            let name = t["spec"]["topicName"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert_eq!(t["spec"]["replicas"], 3, "{name}");
            assert_eq!(t["spec"]["config"]["min.insync.replicas"], 2, "{name}");
            assert_eq!(t["metadata"]["labels"]["strimzi.io/cluster"], "oms-kafka");
            declared.push(name);
        }
        declared.sort();
        assert_eq!(
            declared, wanted,
            "{overlay}: KafkaTopics vs the contracts' topics"
        );
        // No shared database role; password logins over TLS only.
        let cluster = find(&objects, "Cluster", "oms-postgres")?;
        let roles = cluster["spec"]["managed"]["roles"].as_array().map(Vec::len);
        assert_eq!(
            roles,
            Some(ServiceId::all().count()),
            "{overlay}: {cluster}"
        );
        let hba: Vec<&str> = cluster["spec"]["postgresql"]["pg_hba"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(
            hba,
            [
                "hostssl all all all scram-sha-256",
                "hostnossl all all all reject"
            ]
        );
        // The services reach PostgreSQL, Kafka's TLS listener, DNS and an OTLP collector only.
        let egress = find(&objects, "NetworkPolicy", "oms-services-egress")?;
        assert_eq!(
            egress["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/part-of"],
            "oms"
        );
        assert_eq!(egress["spec"]["policyTypes"], serde_json::json!(["Egress"]));
        let mut ports: Vec<i64> = egress["spec"]["egress"]
            .as_array()
            .into_iter()
            .flatten()
            .inspect(|rule| assert!(rule["to"].is_array(), "an egress rule to anywhere: {rule}"))
            .flat_map(|rule| rule["ports"].as_array().cloned().unwrap_or_default())
            .filter_map(|p| p["port"].as_i64())
            .collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports, [53, 4318, 5432, 9093], "{overlay}");
        let kafka = find(&objects, "Kafka", "oms-kafka")?;
        assert_eq!(
            kafka["spec"]["kafka"]["listeners"][0]["authentication"]["type"],
            "scram-sha-512"
        );
        assert_eq!(kafka["spec"]["kafka"]["config"]["min.insync.replicas"], 2);
    }
    Ok(())
}
