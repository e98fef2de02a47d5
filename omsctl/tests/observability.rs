//! Observability end to end, on the six services in-process (real PostgreSQL and broker):
//! one order is one trace across every service and Kafka hop, a DLQ replay starts a trace linked
//! to the original, and every metric the dashboard and the alert rules query is exported.
//!
//! This binary installs its own subscriber with an in-memory span exporter before any service
//! starts (the services' spans then land in it); the stack keeps it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use assert_cmd::Command;
use oms_contracts::api::OrderAccepted;
use oms_ops::dlq::entry::EntryView;
use oms_tests::eventually;
use oms_tests::stack::{Service, Stack, StackOptions};
use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::{json, Value};
use tracing_subscriber::layer::SubscriberExt;

/// The exporter every span of this process goes to.
fn spans() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<(InMemorySpanExporter, SdkTracerProvider)> = OnceLock::new();
    let (exporter, _) = EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("info"))
            .with(oms_runtime::telemetry::otel_layer(&provider));
        if tracing::subscriber::set_global_default(subscriber).is_err() {
            panic!("a subscriber was installed before this test's");
        }
        (exporter, provider)
    });
    exporter
}

fn finished_spans() -> Vec<SpanData> {
    spans().get_finished_spans().unwrap_or_default()
}

fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

/// What follows the verb in a span name (`process oms.orders` -> `oms.orders`).
fn topic_of(span: &SpanData) -> &str {
    span.name.split_once(' ').map_or("", |(_, t)| t)
}

fn describe(span: &SpanData) -> String {
    format!(
        "{} [{:?}] {} <- {}",
        span.name,
        span.span_kind,
        span.span_context.span_id(),
        span.parent_span_id
    )
}

/// Checks the parent links of one trace, rooted at `root_parent` (the caller's span, not
/// exported): every span's parent is in the trace, a consumer's parent is the publish span of
/// its topic, a publish span's parent the enqueue span of its topic, an enqueue span's parent a
/// request, a consumed message or a saga deadline. Returns the services seen.
fn check_links(
    trace: &[&SpanData],
    root_parent: Option<SpanId>,
) -> Result<BTreeSet<String>, String> {
    let by_id: std::collections::HashMap<SpanId, &SpanData> = trace
        .iter()
        .map(|s| (s.span_context.span_id(), *s))
        .collect();
    let mut services = BTreeSet::new();
    for span in trace {
        if let Some(service) = attr(span, "service") {
            services.insert(service);
        }
        let parent = by_id.get(&span.parent_span_id);
        let fail = |why: &str| Err(format!("{why}: {}", describe(span)));
        match (span.span_kind.clone(), parent) {
            (SpanKind::Server, _) if Some(span.parent_span_id) == root_parent => {}
            (_, None) if span.parent_span_id == SpanId::INVALID && root_parent.is_none() => {}
            (_, None) => return fail("parent not in the trace"),
            (SpanKind::Consumer, Some(p))
                if p.span_kind != SpanKind::Producer || topic_of(p) != topic_of(span) =>
            {
                return fail(&format!(
                    "consumed, but not from a publish of its topic ({})",
                    describe(p)
                ));
            }
            (SpanKind::Producer, Some(p))
                if !p.name.starts_with("enqueue ") || topic_of(p) != topic_of(span) =>
            {
                return fail(&format!(
                    "published, but not from an enqueue of its topic ({})",
                    describe(p)
                ));
            }
            (SpanKind::Internal, Some(p)) if span.name.starts_with("enqueue ") => {
                // The nearest request, message or deadline above it (handlers may add spans).
                let mut up = Some(*p);
                while let Some(a) =
                    up.filter(|a| a.span_kind == SpanKind::Internal && a.name != "saga deadline")
                {
                    up = by_id.get(&a.parent_span_id).copied();
                }
                if up.is_none() {
                    return fail(&format!(
                        "enqueued outside a request or message ({})",
                        describe(p)
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(services)
}

fn omsctl(stack: &Stack) -> anyhow::Result<Command> {
    let mut cmd = Command::cargo_bin("omsctl")?;
    cmd.env_remove("OMS_CONFIG")
        .env_remove("OMS_STATE_DIR")
        .env("HOME", std::env::temp_dir())
        .timeout(Duration::from_secs(120))
        .envs(stack.omsctl_env()?);
    Ok(cmd)
}

async fn run(mut cmd: Command, args: &[&str]) -> anyhow::Result<std::process::Output> {
    cmd.args(args);
    Ok(tokio::task::spawn_blocking(move || cmd.output()).await??)
}

/// Places an order as part of the caller's trace `trace_id` (its span `parent`).
async fn place_traced(
    stack: &Stack,
    trace_id: TraceId,
    parent: SpanId,
    product: &str,
) -> anyhow::Result<String> {
    let answer: OrderAccepted = stack
        .http
        .post(format!("{}/orders", stack.url(Service::Order)?))
        .header("traceparent", format!("00-{trace_id}-{parent}-01"))
        .json(&json!({"items": [{"productId": product, "quantity": 1}]}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(answer.order_id.to_string())
}

fn trace_of(all: &[SpanData], id: TraceId) -> Vec<&SpanData> {
    all.iter()
        .filter(|s| s.span_context.trace_id() == id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_order_is_one_trace_across_every_service_and_a_replay_links_to_it() -> anyhow::Result<()>
{
    spans();
    let stack = Stack::start(StackOptions::default()).await?;
    let every_service: BTreeSet<String> = Service::all().map(|s| s.name().to_owned()).collect();

    // A confirmed order: one trace, the caller's, through all six services.
    let trace = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736")?;
    let caller = SpanId::from_hex("00f067aa0ba902b7")?;
    let id = place_traced(&stack, trace, caller, "mouse-01").await?;
    let done = stack.finished(&id, Duration::from_secs(60)).await?;
    assert!(done.status.is_placed(), "{done:?}");
    assert_eq!(
        done.trace_id,
        Some(trace.to_string()),
        "the order keeps its trace id"
    );
    let services = eventually(
        Duration::from_secs(30),
        "spans of all six services in the order's trace",
        || async {
            let all = finished_spans();
            let services =
                check_links(&trace_of(&all, trace), Some(caller)).map_err(anyhow::Error::msg)?;
            Ok((services == every_service).then_some(services))
        },
    )
    .await?;
    assert_eq!(services, every_service);
    let all = finished_spans();
    let in_trace = trace_of(&all, trace);
    let hops = in_trace
        .iter()
        .filter(|s| s.span_kind == SpanKind::Consumer)
        .count();
    assert!(
        hops >= 6,
        "expected a consumer span per Kafka hop, got {hops}"
    );
    let roots: Vec<_> = in_trace
        .iter()
        .filter(|s| s.parent_span_id == caller)
        .map(|s| describe(s))
        .collect();
    assert_eq!(roots.len(), 1, "one span continues the caller's: {roots:?}");
    assert!(roots[0].starts_with("POST /orders [Server]"), "{roots:?}");

    // A dead-lettered authorization, replayed: the replay's handling starts a trace of its own,
    // linked to the span the message was dead-lettered in, and the order's journey goes on in it.
    stack.set_gateway_faults(json!({"errorRate": 1.0})).await?;
    let failed = TraceId::from_hex("5bf92f3577b34da6a3ce929d0e0e4737")?;
    let id = place_traced(&stack, failed, caller, "stand-01").await?;
    let entry = eventually(Duration::from_secs(60), "the dead letter", || async {
        let out = run(omsctl(&stack)?, &["dlq", "list", "-o", "json"]).await?;
        let list: Vec<EntryView> = serde_json::from_slice(&out.stdout)?;
        Ok(list
            .into_iter()
            .find(|e| e.key.as_deref() == Some(id.as_str()))
            .map(|e| e.id))
    })
    .await?;
    stack.set_gateway_faults(json!({})).await?;
    let out = run(omsctl(&stack)?, &["dlq", "replay", &entry, "--yes"]).await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = stack.finished(&id, Duration::from_secs(60)).await?;
    assert!(done.status.is_placed(), "{done:?}");

    let (replay, link) = eventually(
        Duration::from_secs(30),
        "the replayed message's span, linked to the original trace",
        || async {
            let all = finished_spans();
            Ok(all.iter().find_map(|s| {
                let link = s
                    .links
                    .iter()
                    .find(|l| l.span_context.trace_id() == failed)?;
                (s.span_kind == SpanKind::Consumer)
                    .then(|| (s.span_context.trace_id(), link.span_context.span_id()))
            }))
        },
    )
    .await?;
    assert_ne!(
        replay, failed,
        "the replay continued the old trace instead of linking to it"
    );
    let all = finished_spans();
    let original = trace_of(&all, failed);
    let linked = original
        .iter()
        .find(|s| s.span_context.span_id() == link)
        .map(|s| describe(s))
        .unwrap_or_default();
    assert!(
        linked.starts_with("publish ") && linked.contains(".dlq [Producer]"),
        "the link names the dead letter's publish span, got {linked:?}"
    );
    let original_services = check_links(&original, Some(caller)).map_err(anyhow::Error::msg)?;
    assert!(
        original_services.contains("payment"),
        "{original_services:?}"
    );
    let after = eventually(
        Duration::from_secs(30),
        "the rest of the journey in the replay's trace",
        || async {
            let all = finished_spans();
            let services =
                check_links(&trace_of(&all, replay), None).map_err(anyhow::Error::msg)?;
            let expected = ["payment", "saga", "inventory", "order", "notification"];
            Ok(expected
                .iter()
                .all(|s| services.contains(*s))
                .then_some(services))
        },
    )
    .await?;
    assert!(after.contains("order"), "{after:?}");
    stack.shutdown().await
}

// --- dashboards and alert rules -----------------------------------------------------------------
//
// The documents below are read by key on purpose: they are Prometheus's configuration, Grafana's
// dashboards and data sources, and the alert rules, in those tools' own formats; no type of ours
// describes them, and omsctl prints none of them.

fn observability_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/observability")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from("../deploy/observability"))
}

/// The alternatives of every `job=~"a|b"` selector in `text` (a YAML rule file, or a dashboard
/// whose JSON escapes the quotes).
fn job_selectors(text: &str) -> Vec<BTreeSet<String>> {
    text.match_indices("job=~")
        .filter_map(|(i, m)| {
            let rest = &text[i + m.len()..];
            let rest = rest
                .strip_prefix("\\\"")
                .or_else(|| rest.strip_prefix('"'))?;
            let end = rest.find(['"', '\\'])?;
            Some(rest[..end].split('|').map(str::to_owned).collect())
        })
        .collect()
}

/// A service missing from a `job=~` selector is one whose death nobody sees (fulfillment was).
#[test]
fn every_job_selector_of_the_alerts_and_dashboards_names_every_service() -> anyhow::Result<()> {
    let services: BTreeSet<String> = Service::all().map(|s| s.name().to_owned()).collect();
    let dir = observability_dir();
    let mut files = vec![dir.join("rules/oms-alerts.yml")];
    for entry in std::fs::read_dir(dir.join("grafana/dashboards"))? {
        files.push(entry?.path());
    }
    let mut selectors = 0;
    for file in &files {
        for jobs in job_selectors(&std::fs::read_to_string(file)?) {
            assert_eq!(jobs, services, "{}", file.display());
            selectors += 1;
        }
    }
    // The service-down alert and the dashboard's "up" panel, at least.
    assert!(selectors >= 2, "{selectors} job selectors in {files:?}");
    Ok(())
}

/// deploy/observability/prometheus.yml, parsed.
fn prometheus_config() -> anyhow::Result<Value> {
    let path = observability_dir().join("prometheus.yml");
    Ok(serde_norway::from_str(&std::fs::read_to_string(path)?)?)
}

/// Every alert links to its runbook: `runbook_url` is `docs/runbooks.md#ANCHOR`, and the page
/// has a section whose heading makes that anchor (GitHub's: lower case, spaces to dashes).
#[test]
fn every_alert_links_to_a_section_of_the_runbooks() -> anyhow::Result<()> {
    let dir = observability_dir();
    let rules: Value =
        serde_norway::from_str(&std::fs::read_to_string(dir.join("rules/oms-alerts.yml"))?)?;
    let page = std::fs::read_to_string(dir.join("../../docs/runbooks.md"))?;
    let anchors: BTreeSet<String> = page
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| {
            h.trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect();
    let mut checked = 0;
    for group in rules["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            let Some(alert) = rule["alert"].as_str() else {
                continue;
            };
            let url = rule["annotations"]["runbook_url"]
                .as_str()
                .unwrap_or_default();
            let anchor = url.strip_prefix("docs/runbooks.md#");
            assert!(
                anchor.is_some_and(|a| anchors.contains(a)),
                "{alert}: runbook_url {url:?} is not a section of docs/runbooks.md ({anchors:?})"
            );
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} alerts read");
    Ok(())
}

/// Prometheus scrapes the compose stack: one job per service, named as the service (what the
/// `job=~` selectors above match), each target `NAME:PORT`, the compose service of that name (a
/// host in the compose network) on the port it listens on there, with the metrics role's token.
/// The topology knows the name and the port; that compose.yaml's service of that name runs
/// `oms-NAME` listening on that port is checked by `tests/tests/deploy.rs`.
#[test]
fn every_service_has_one_scrape_job_named_after_it_on_its_topology_port() -> anyhow::Result<()> {
    let prometheus = prometheus_config()?;
    let mut jobs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for job in prometheus["scrape_configs"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = job["job_name"].as_str().unwrap_or_default().to_owned();
        assert_eq!(
            job["authorization"]["credentials_file"], "/run/scrape/token",
            "job {name:?}: /metrics needs an operator's token"
        );
        let targets: Vec<String> = job["static_configs"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["targets"].as_array().into_iter().flatten())
            .map(|t| t.as_str().unwrap_or_default().to_owned())
            .collect();
        assert!(
            jobs.insert(name.clone(), targets).is_none(),
            "two scrape jobs named {name:?}"
        );
    }
    let services: BTreeSet<String> = Service::all().map(|s| s.name().to_owned()).collect();
    let named: BTreeSet<String> = jobs.keys().cloned().collect();
    assert_eq!(
        named, services,
        "prometheus.yml's scrape jobs are not the topology's services"
    );
    for service in Service::all() {
        let want = format!("{}:{}", service.name(), service.spec().port);
        let targets = jobs.get(service.name()).cloned().unwrap_or_default();
        assert!(
            !targets.is_empty() && targets.iter().all(|t| *t == want),
            "job {}: targets {targets:?}, the topology says {want:?}",
            service.name()
        );
    }
    Ok(())
}

/// The metric names `expr` selects (after checking that it parses).
fn metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    use promql_parser::parser::Expr;
    fn walk(e: &Expr, out: &mut BTreeSet<String>) {
        match e {
            Expr::Aggregate(a) => {
                walk(&a.expr, out);
                if let Some(p) = &a.param {
                    walk(p, out);
                }
            }
            Expr::Unary(u) => walk(&u.expr, out),
            Expr::Binary(b) => {
                walk(&b.lhs, out);
                walk(&b.rhs, out);
            }
            Expr::Paren(p) => walk(&p.expr, out),
            Expr::Subquery(s) => walk(&s.expr, out),
            Expr::VectorSelector(v) => out.extend(v.name.clone()),
            Expr::MatrixSelector(m) => out.extend(m.vs.name.clone()),
            Expr::Call(c) => c.args.args.iter().for_each(|a| walk(a, out)),
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }
    let parsed = promql_parser::parser::parse(expr).map_err(|e| format!("{expr:?}: {e}"))?;
    let mut out = BTreeSet::new();
    walk(&parsed, &mut out);
    if out.is_empty() {
        return Err(format!("{expr:?} selects no metric"));
    }
    Ok(out)
}

/// Every query of the dashboard (panel title -> expression), after checking its structure:
/// unique panel ids, a provisioned data source on every panel and target.
fn dashboard_queries(dashboard: &Value, sources: &BTreeSet<String>) -> Vec<(String, String)> {
    let mut panels: Vec<&Value> = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        panels.push(p);
        panels.extend(p["panels"].as_array().into_iter().flatten());
    }
    let mut ids = BTreeSet::new();
    let mut queries = Vec::new();
    for p in panels {
        let title = p["title"].as_str().unwrap_or_default().to_owned();
        assert!(!title.is_empty(), "a panel without a title: {p}");
        assert!(
            ids.insert(p["id"].to_string()),
            "panel id {} twice",
            p["id"]
        );
        if p["type"] == "row" {
            continue;
        }
        let uid = p["datasource"]["uid"].as_str().unwrap_or_default();
        assert!(
            sources.contains(uid),
            "{title}: data source {uid:?} is not provisioned"
        );
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            let uid = t["datasource"]["uid"].as_str().unwrap_or(uid);
            assert!(
                sources.contains(uid),
                "{title}: data source {uid:?} is not provisioned"
            );
            let expr = t["expr"].as_str().unwrap_or_default().to_owned();
            queries.push((title.clone(), expr));
        }
    }
    queries
}

/// Every metric name a service's exposition declares, with the sample suffixes of its type.
fn exported_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_metric_of_the_dashboard_and_the_alerts_is_exported() -> anyhow::Result<()> {
    spans();
    let dir = observability_dir();

    // What Prometheus loads: the rules file (its scrape jobs are
    // `every_service_has_one_scrape_job_named_after_it_on_its_topology_port`'s).
    let prometheus = prometheus_config()?;
    let rule_files: Vec<&str> = prometheus["rule_files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(rule_files, ["rules/oms-alerts.yml"]);

    // The queries: of every dashboard panel, every alert rule.
    let datasources: Value = serde_norway::from_str(&std::fs::read_to_string(
        dir.join("grafana/provisioning/datasources/oms.yaml"),
    )?)?;
    let sources: BTreeSet<String> = datasources["datasources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["uid"].as_str().map(str::to_owned))
        .collect();
    let mut queries = Vec::new();
    for entry in std::fs::read_dir(dir.join("grafana/dashboards"))? {
        let path = entry?.path();
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        assert!(dashboard["uid"].is_string(), "{}: no uid", path.display());
        queries.extend(dashboard_queries(&dashboard, &sources));
    }
    assert!(queries.len() >= 10, "{queries:?}");
    let rules: Value =
        serde_norway::from_str(&std::fs::read_to_string(dir.join("rules/oms-alerts.yml"))?)?;
    let mut alerts = BTreeSet::new();
    for group in rules["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            let name = rule["alert"].as_str().unwrap_or_default().to_owned();
            assert!(!name.is_empty(), "a rule without an alert name: {rule}");
            assert!(
                matches!(
                    rule["labels"]["severity"].as_str(),
                    Some("warning" | "critical")
                ),
                "{name}: severity"
            );
            assert!(
                rule["annotations"]["summary"].is_string(),
                "{name}: summary"
            );
            queries.push((
                name.clone(),
                rule["expr"].as_str().unwrap_or_default().to_owned(),
            ));
            alerts.insert(name);
        }
    }
    for wanted in [
        "OmsServiceDown",
        "OmsOutboxStale",
        "OmsConsumerLagHigh",
        "OmsDeadLettersGrowing",
        "OmsSagasStuck",
    ] {
        assert!(alerts.contains(wanted), "no alert {wanted}: {alerts:?}");
    }
    let mut wanted: BTreeMap<String, String> = BTreeMap::new();
    for (title, expr) in &queries {
        for name in metric_names(expr).map_err(|e| anyhow::anyhow!("{title}: {e}"))? {
            wanted.entry(name).or_insert_with(|| title.clone());
        }
    }

    // What the running services export, after an order went through.
    let stack = Stack::start(StackOptions::default()).await?;
    let id = stack
        .place(json!({"items": [{"productId": "mouse-01", "quantity": 1}]}))
        .await?;
    stack.finished(&id, Duration::from_secs(60)).await?;
    // Consumer lag comes with librdkafka's statistics, every 5 s: poll for it.
    let scrape = || async {
        let mut exported = BTreeSet::new();
        for service in Service::all() {
            let text = stack
                .http
                .get(format!("{}/metrics", stack.url(service)?))
                .send()
                .await?
                .error_for_status()?
                .text()
                .await?;
            assert!(
                !text.contains("service=\""),
                "{}: a constant service label is back",
                service.name()
            );
            exported.extend(exported_names(&text));
        }
        // `up` is Prometheus' own.
        let missing: Vec<String> = wanted
            .iter()
            .filter(|(name, _)| name.as_str() != "up" && !exported.contains(*name))
            .map(|(name, title)| format!("{name} (in {title:?})"))
            .collect();
        anyhow::Ok(missing)
    };
    let missing = eventually(Duration::from_secs(30), "every queried metric", || async {
        let missing = scrape().await?;
        if missing.is_empty() {
            Ok(Some(missing))
        } else {
            Err(anyhow::anyhow!("queried but not exported: {missing:?}"))
        }
    })
    .await?;
    assert!(missing.is_empty());
    for business in [
        "oms_orders_created_total",
        "oms_orders_confirmed_total",
        "oms_orders_cancelled_total",
        "oms_saga_duration_seconds_bucket",
        "oms_sagas_stuck",
        "oms_payments_total",
        "oms_stock_units",
        "oms_http_requests_total",
        "oms_http_request_duration_seconds_bucket",
    ] {
        assert!(
            wanted.contains_key(business),
            "the dashboard does not show {business}"
        );
    }
    stack.shutdown().await
}

#[test]
fn the_metric_name_walk_finds_every_selector_and_refuses_bad_promql() {
    let names = metric_names(
        "histogram_quantile(0.99, sum by (le) (rate(a_bucket[5m]))) / on() group_left b + (c offset 1m)",
    );
    assert_eq!(
        names,
        Ok(["a_bucket", "b", "c"]
            .map(str::to_owned)
            .into_iter()
            .collect())
    );
    assert!(metric_names("sum(rate(x[5m])").is_err());
    assert!(metric_names("1 + 2").is_err());
    let text = "# HELP oms_x_total X.\n# TYPE oms_x counter\noms_x_total 1\n# TYPE oms_h histogram\n# TYPE oms_g gauge\n";
    let names = exported_names(text);
    for n in [
        "oms_x_total",
        "oms_h_bucket",
        "oms_h_count",
        "oms_h_sum",
        "oms_g",
    ] {
        assert!(names.contains(n), "{n} in {names:?}");
    }
}
