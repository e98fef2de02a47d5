//! omsctl as a user runs it (assert_cmd), against the six services running in-process on the
//! test PostgreSQL and broker (`scripts/test.sh`), each test with its own databases and topics.

use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use oms_contracts::api::{
    FulfillmentState, OrderAccepted, OrderStatus, OrderView, SagaState, SagaView,
};
use oms_contracts::auth::Role;
use oms_contracts::routes;
use oms_ops::auth::Minted;
use oms_ops::chaos::{Fault, Recorded, ServiceFault};
use oms_ops::cpu::CpuReport;
use oms_ops::dlq::audit::{Replay, ReplayState};
use oms_ops::dlq::entry::EntryView;
use oms_ops::dlq::replay::PlanReport;
use oms_ops::dlq::view::Shown;
use oms_ops::drill::report::Report as DrillReport;
use oms_ops::drill::view::{DrillRow, PlanView};
use oms_ops::place::LoadSummary;
use oms_ops::status::StackStatus;
use oms_ops::tail::TailLine;
use oms_ops::topics::{TopicDetail, TopicRow};
use oms_ops::trace::Trace;
use oms_ops::verify::{Outcome, VerifyView};
use oms_tests::eventually;
use oms_tests::stack::{Service, Stack, StackOptions};
use serde_json::{json, Value};

mod common;
use common::{code, json_of, omsctl, run, stderr, stdout};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn order_commands_create_follow_list_and_trace() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let s = Some(&stack);

    let out = run(
        omsctl(s)?,
        &[
            "order",
            "create",
            "--item",
            "mouse-01:2",
            "--item",
            "hub-01",
            "--customer",
            "cli",
            "--wait",
            "-o",
            "json",
        ],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let order: OrderView = json_of(&out)?;
    assert!(order.status.is_placed(), "{order:?}");
    assert_eq!(
        order.total.map(|t| t.amount_minor),
        Some(2 * 2499 + 3999),
        "{order:?}"
    );
    let confirmed = order.order_id.to_string();

    let out = run(
        omsctl(s)?,
        &[
            "order",
            "create",
            "--item",
            "stand-01",
            "--payment-token",
            "tok_chargeDeclined",
            "--wait",
        ],
    )
    .await?;
    assert_eq!(code(&out), 1, "a cancelled order exits 1");
    assert!(
        stderr(&out).contains("PAYMENT_DECLINED"),
        "{}",
        stderr(&out)
    );

    let out = run(omsctl(s)?, &["order", "create", "--item", "no-such-item"]).await?;
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("unknown item \"no-such-item\""),
        "{}",
        stderr(&out)
    );
    let out = run(omsctl(s)?, &["order", "create", "--item", "mouse-01:zero"]).await?;
    assert_eq!(code(&out), 2);

    let out = run(omsctl(s)?, &["order", "get", &confirmed, "-o", "json"]).await?;
    // The contract's order: orderId, status, customerId and createdAt must be there to
    // deserialize at all; a placed order has its lines, total, payment and completion too.
    let got: OrderView = json_of(&out)?;
    assert_eq!(got.order_id.to_string(), confirmed, "{got:?}");
    assert!(got.status.is_placed(), "{got:?}");
    assert!(
        got.lines.as_ref().is_some_and(|l| !l.is_empty())
            && got.total.is_some()
            && got.payment_id.is_some()
            && got.completed_at.is_some(),
        "order get lacks a placed order's fields: {got:?}"
    );
    let out = run(omsctl(s)?, &["order", "get", "nonsense"]).await?;
    assert_eq!(code(&out), 2);

    // Fulfillment takes it on to DELIVERED; from then on a cancellation is refused.
    let delivered = stack.settled(&confirmed, Duration::from_secs(60)).await?;
    assert_eq!(delivered.status, OrderStatus::Delivered, "{delivered:?}");
    // The plan first: from a script without --yes nothing is sent; --dry-run says what would
    // happen.
    let out = run(omsctl(s)?, &["order", "cancel", &confirmed]).await?;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    let out = run(omsctl(s)?, &["order", "cancel", &confirmed, "--dry-run"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("would be refused"),
        "{}",
        stdout(&out)
    );
    let out = run(omsctl(s)?, &["order", "cancel", &confirmed, "-y"]).await?;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("can no longer be cancelled"),
        "{}",
        stderr(&out)
    );
    let out = run(omsctl(s)?, &["order", "cancel", "nonsense"]).await?;
    assert_eq!(code(&out), 2);
    // Before the pick (a slow carrier holds it): cancelled and refunded.
    stack
        .set_carrier_faults(json!({"latencyMs": 20_000}))
        .await?;
    let held = stack
        .place(json!({"items": [{"productId": "stand-01", "quantity": 1}]}))
        .await?;
    let placed = stack.finished(&held, Duration::from_secs(60)).await?;
    assert!(placed.status.is_placed(), "{placed:?}");
    let out = run(
        omsctl(s)?,
        &["order", "cancel", &held, "--wait", "--yes", "-o", "json"],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let cancelled: OrderView = json_of(&out)?;
    assert_eq!(cancelled.status, OrderStatus::Cancelled, "{cancelled:?}");
    assert_eq!(
        cancelled.cancel_reason.as_deref(),
        Some("CUSTOMER_CANCELLED"),
        "{cancelled:?}"
    );
    stack.set_carrier_faults(json!({})).await?;

    let out = run(
        omsctl(s)?,
        &["order", "list", "--status", "delivered", "-o", "json"],
    )
    .await?;
    let listed: Vec<OrderView> = json_of(&out)?;
    let ids: Vec<String> = listed.iter().map(|o| o.order_id.to_string()).collect();
    assert_eq!(ids, [confirmed.as_str()], "{listed:?}");

    let out = run(omsctl(s)?, &["order", "trace", &confirmed, "-o", "json"]).await?;
    let trace: Trace = json_of(&out)?;
    assert!(
        trace.outbox_pending.is_empty(),
        "nothing should be waiting to be published: {:?}",
        trace.outbox_pending
    );
    assert!(
        ["CONFIRMED", "SHIPPED", "DELIVERED"]
            .iter()
            .any(|s| trace.verdict.starts_with(s)),
        "{}",
        trace.verdict
    );
    let types: Vec<String> = trace
        .messages
        .iter()
        .filter_map(|m| oms_contracts::Envelope::decode(m.value.as_deref()?.as_bytes()).ok())
        .map(|e| e.message_type().as_str().to_owned())
        .collect();
    for t in [
        "order.created",
        "inventory.reserve",
        "inventory.reserved",
        "payment.authorize",
        "payment.authorized",
        "order.confirmed",
        "fulfillment.ship",
        "fulfillment.picked",
        "fulfillment.delivered",
        "order.delivered",
    ] {
        assert!(types.iter().any(|x| x == t), "trace lacks {t}: {types:?}");
    }
    let out = run(omsctl(s)?, &["order", "trace", &confirmed]).await?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .last()
            .is_some_and(|l| l.starts_with("DELIVERED:")),
        "{text}"
    );

    // The order's trace id, and its page in a trace backend when one is configured.
    let trace_id = trace.trace_id.clone().unwrap_or_default();
    assert!(
        trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "no trace id: {:?}",
        trace.trace_id
    );
    assert_eq!(trace.trace_url, None);
    let out = run(
        omsctl(s)?,
        &[
            "order",
            "trace",
            &confirmed,
            "--trace-url",
            "http://jaeger.example:16686/",
        ],
    )
    .await?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "trace: {trace_id} http://jaeger.example:16686/trace/{trace_id}"
        )),
        "{text}"
    );
    let mut cmd = omsctl(s)?;
    cmd.env(
        "OMS_TRACE_URL",
        "https://grafana.example/explore?trace={traceId}",
    );
    let out = run(cmd, &["order", "trace", &confirmed, "-o", "json"]).await?;
    assert_eq!(
        json_of::<Trace>(&out)?.trace_url,
        Some(format!("https://grafana.example/explore?trace={trace_id}"))
    );
    let out = run(
        omsctl(s)?,
        &["order", "trace", &confirmed, "--trace-url", "jaeger:16686"],
    )
    .await?;
    assert_eq!(code(&out), 2, "a trace URL that is no URL is a usage error");
    assert!(stderr(&out).contains("trace backend"), "{}", stderr(&out));

    let out = run(
        omsctl(s)?,
        &[
            "order",
            "create",
            "--count",
            "6",
            "--concurrency",
            "3",
            "--rate",
            "50/s",
            "-o",
            "json",
        ],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let summary: LoadSummary = json_of(&out)?;
    assert_eq!(summary.requested, 6, "{summary:?}");
    assert_eq!(summary.created, 6, "{summary:?}");
    let cancelled: u32 = summary.cancelled.values().sum();
    assert_eq!(summary.confirmed + cancelled, 6, "{summary:?}");
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sagas_topics_tail_status_and_completions() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let s = Some(&stack);
    let id = stack
        .place(json!({"items": [{"productId": "keyboard-01", "quantity": 1}]}))
        .await?;
    stack.settled(&id, Duration::from_secs(60)).await?;

    let out = run(omsctl(s)?, &["saga", "list", "-o", "json"]).await?;
    let sagas: Vec<SagaView> = json_of(&out)?;
    let saga = sagas.first().ok_or_else(|| anyhow::anyhow!("no saga"))?;
    assert_eq!(saga.order_id.to_string(), id, "{saga:?}");
    assert_eq!(saga.state, SagaState::Confirmed, "{saga:?}");
    assert_eq!(
        saga.fulfillment.as_ref().map(|f| f.state),
        Some(FulfillmentState::Delivered),
        "{saga:?}"
    );
    let out = run(omsctl(s)?, &["saga", "show", &id, "-o", "json"]).await?;
    // Reserve, authorize, confirm; then picked, shipped, delivered.
    let shown: SagaView = json_of(&out)?;
    assert_eq!(shown.steps.as_ref().map(Vec::len), Some(6), "{shown:?}");
    let out = run(omsctl(s)?, &["saga", "list", "--state", "lost"]).await?;
    assert_eq!(code(&out), 2, "{}", stderr(&out));

    let out = run(omsctl(s)?, &["topics", "list", "-o", "json"]).await?;
    let topics: Vec<TopicRow> = json_of(&out)?;
    let order_events = topics
        .iter()
        .find(|t| t.topic == format!("{}oms.order.events", stack.prefix))
        .ok_or_else(|| anyhow::anyhow!("no order events topic: {topics:?}"))?;
    // created, confirmed, shipped, delivered.
    assert_eq!(order_events.messages, 4, "{order_events:?}");
    assert!(
        order_events
            .lag
            .contains_key(&format!("{}oms-saga", stack.prefix)),
        "{order_events:?}"
    );
    // One topic in full: every partition led, its copies in sync, the same messages counted.
    let out = run(
        omsctl(s)?,
        &["topic", "describe", "oms.order.events", "-o", "json"],
    )
    .await?;
    let detail: TopicDetail = json_of(&out)?;
    assert_eq!(detail.topic, order_events.topic);
    assert_eq!(
        detail.partitions.len(),
        order_events.partitions,
        "{detail:?}"
    );
    assert!(
        detail
            .partitions
            .iter()
            .all(|p| p.leader >= 0 && p.isr.contains(&p.leader) && p.start <= p.end),
        "{detail:?}"
    );
    let held: i64 = detail.partitions.iter().map(|p| p.end - p.start).sum();
    assert_eq!(held, order_events.messages, "{detail:?}");
    let out = run(omsctl(s)?, &["topics", "describe", "oms.nothing.here"]).await?;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("no topic"), "{}", stderr(&out));

    // NDJSON, one line per message of this order, lossless enough to produce again.
    let out = run(
        omsctl(s)?,
        &[
            "tail",
            "all",
            "--from",
            "beginning",
            "--exit",
            "--key",
            &id,
            "-o",
            "json",
        ],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<TailLine> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    // Six of the placement, six of fulfillment (ship, picked, shipped, delivered, and the
    // order's shipped and delivered).
    assert_eq!(lines.len(), 12, "{lines:?}");
    for l in &lines {
        assert_eq!(l.key.as_deref(), Some(id.as_str()), "{l:?}");
        let value = l.value.as_deref().unwrap_or_default();
        oms_contracts::Envelope::decode(value.as_bytes())?;
    }
    // Raw on purpose: the wire shape. Scripts and `produce` read these lines back by these
    // names, and a `TailLine` would take a missing `key` or `value` for null: every key must be
    // printed, null or not.
    for line in text.lines() {
        let raw: Value = serde_json::from_str(line)?;
        for field in [
            "topic",
            "partition",
            "offset",
            "timestamp",
            "key",
            "headers",
            "value",
        ] {
            assert!(raw.get(field).is_some(), "tail line lacks {field}: {raw}");
        }
    }
    let out = run(
        omsctl(s)?,
        &[
            "tail",
            "oms.order.events",
            "--from=-4",
            "--exit",
            "--type",
            "order.confirmed",
            "--max",
            "1",
        ],
    )
    .await?;
    assert!(String::from_utf8_lossy(&out.stdout).contains("order.confirmed"));
    let out = run(
        omsctl(s)?,
        &["tail", "oms.order.events", "--from", "yesterday", "--exit"],
    )
    .await?;
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("--from"), "{}", stderr(&out));
    let out = run(omsctl(s)?, &["tail", "no.such.topic", "--exit"]).await?;
    assert_eq!(code(&out), 2);

    let out = run(omsctl(s)?, &["stack", "status", "-o", "json"]).await?;
    let status: StackStatus = json_of(&out)?;
    assert!(status.ready, "{status:?}");
    assert_eq!(
        status.components.len(),
        oms_contracts::topology::SERVICES.len() + 1,
        "{status:?}"
    );

    let out = run(omsctl(None)?, &["completions", "bash"]).await?;
    assert!(String::from_utf8_lossy(&out.stdout).contains("_omsctl"));
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoints_and_bad_config_exit_2_naming_them() -> anyhow::Result<()> {
    let mut cmd = omsctl(None)?;
    cmd.env("OMS_ORDER_URL", "http://127.0.0.1:9");
    let out = run(cmd, &["order", "list"]).await?;
    assert_eq!(code(&out), 2);
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("order service unreachable at http://127.0.0.1:9"),
        "{}",
        stderr(&out)
    );

    let mut cmd = omsctl(None)?;
    cmd.env("OMS_BROKERS", "127.0.0.1:9");
    let out = run(cmd, &["topics", "list"]).await?;
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("broker unreachable at 127.0.0.1:9"),
        "{}",
        stderr(&out)
    );

    let dir = tempfile::tempdir()?;
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[endpoints]\norder = \"http://127.0.0.1:7\"\n")?;
    let mut cmd = omsctl(None)?;
    cmd.env("OMS_CONFIG", &config);
    let out = run(cmd, &["order", "list"]).await?;
    assert!(
        stderr(&out).contains("http://127.0.0.1:7"),
        "config file ignored: {}",
        stderr(&out)
    );
    let mut cmd = omsctl(None)?;
    cmd.env("OMS_CONFIG", &config)
        .env("OMS_ORDER_URL", "http://127.0.0.1:9");
    let out = run(cmd, &["order", "list"]).await?;
    assert!(
        stderr(&out).contains("http://127.0.0.1:9"),
        "env must beat the file: {}",
        stderr(&out)
    );

    std::fs::write(&config, "colour = true\n")?;
    let mut cmd = omsctl(None)?;
    cmd.env("OMS_CONFIG", &config);
    let out = run(cmd, &["order", "list"]).await?;
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("config file"), "{}", stderr(&out));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_refuses_a_picture_path_it_cannot_write_before_any_load() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let unreachable = |mut cmd: assert_cmd::Command| {
        cmd.env("OMS_INVENTORY_URL", "http://127.0.0.1:9")
            .env("OMS_ORDER_URL", "http://127.0.0.1:9")
            .env("OMS_BROKERS", "127.0.0.1:9");
        cmd
    };
    // The path is refused first: no stack is asked anything.
    let nowhere = dir.path().join("missing").join("run.svg");
    let nowhere = nowhere.to_string_lossy();
    let out = run(
        unreachable(omsctl(None)?),
        &["bench", "--duration", "1s", "--plot", &nowhere],
    )
    .await?;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("--plot {nowhere}: cannot write it")),
        "{}",
        stderr(&out)
    );
    let out = run(
        unreachable(omsctl(None)?),
        &["bench", "--hdr-log", &nowhere],
    )
    .await?;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("--hdr-log"), "{}", stderr(&out));
    let out = run(omsctl(None)?, &["bench", "--plot-baseline", "before.json"]).await?;
    assert_eq!(
        code(&out),
        2,
        "--plot-baseline needs --plot: {}",
        stderr(&out)
    );

    // Writable paths, but the stack is not there: the run fails and takes its files back.
    let (svg, log) = (dir.path().join("run.svg"), dir.path().join("run.hlog"));
    let out = run(
        unreachable(omsctl(None)?),
        &[
            "bench",
            "--duration",
            "1s",
            "--plot",
            &svg.to_string_lossy(),
            "--hdr-log",
            &log.to_string_lossy(),
        ],
    )
    .await?;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("inventory unreachable"),
        "{}",
        stderr(&out)
    );
    assert!(!svg.exists() && !log.exists());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_letter_round_trip_replays_once_and_completes_the_order() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let s = Some(&stack);
    stack.set_gateway_faults(json!({"errorRate": 1.0})).await?;

    let id = stack
        .place(json!({"items": [{"productId": "stand-01", "quantity": 1}]}))
        .await?;
    let entries = eventually(
        Duration::from_secs(60),
        "the authorize to be dead-lettered",
        || async {
            let out = run(omsctl(s)?, &["dlq", "list", "-o", "json"]).await?;
            let list: Vec<EntryView> = json_of(&out)?;
            Ok((!list.is_empty()).then_some(list))
        },
    )
    .await?;
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(entry.origin_topic, "oms.payment.commands", "{entry:?}");
    assert_eq!(entry.message_type, "payment.authorize", "{entry:?}");
    assert_eq!(entry.error_class, "handler.exhausted", "{entry:?}");
    assert_eq!(entry.key.as_deref(), Some(id.as_str()), "{entry:?}");
    assert!(!entry.replayed, "{entry:?}");
    let entry_id = entry.id.clone();

    let out = run(omsctl(s)?, &["dlq", "show", &entry_id, "-o", "json"]).await?;
    let shown: Shown = json_of(&out)?;
    assert!(shown.decode.ok, "{shown:?}");
    assert_eq!(
        shown.order.as_ref().map(|o| o.status),
        Some(OrderStatus::Pending),
        "{shown:?}"
    );

    let out = run(
        omsctl(s)?,
        &["dlq", "replay", &entry_id, "--dry-run", "-o", "json"],
    )
    .await?;
    assert_eq!(code(&out), 0);
    let plan: PlanReport = json_of(&out)?;
    assert_eq!(plan.plan.len(), 1, "{plan:?}");
    let out = run(omsctl(s)?, &["dlq", "audit", "-o", "json"]).await?;
    let audit: Vec<Replay> = json_of(&out)?;
    assert!(
        audit.is_empty(),
        "a dry run wrote an audit record: {audit:?}"
    );
    assert_eq!(
        stack.read(routes::GET_ORDER, &[&id]).await?.status,
        OrderStatus::Pending
    );

    // Fix the cause, replay: the order completes.
    stack.set_gateway_faults(json!({})).await?;
    let out = run(
        omsctl(s)?,
        &["dlq", "replay", &entry_id, "--yes", "-o", "json"],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let done = stack.finished(&id, Duration::from_secs(60)).await?;
    assert!(done.status.is_placed(), "{done:?}");

    let out = run(omsctl(s)?, &["dlq", "replay", &entry_id, "--yes"]).await?;
    assert_eq!(code(&out), 1, "a second replay must be refused");
    assert!(
        stderr(&out).contains("already replayed"),
        "{}",
        stderr(&out)
    );

    let out = run(omsctl(s)?, &["dlq", "audit", "-o", "json"]).await?;
    let audit: Vec<Replay> = json_of(&out)?;
    let replays: std::collections::BTreeSet<&str> =
        audit.iter().map(|a| a.audit_id.as_str()).collect();
    assert_eq!(replays.len(), 1, "{audit:?}");
    let finished = audit
        .iter()
        .find(|a| a.state == ReplayState::Finished)
        .ok_or_else(|| anyhow::anyhow!("no finished replay: {audit:?}"))?;
    assert_eq!(finished.planned, [entry_id.as_str()], "{finished:?}");
    assert_eq!(
        finished.results.first().map(|r| r.ok),
        Some(true),
        "{finished:?}"
    );
    let out = run(omsctl(s)?, &["dlq", "list", "-o", "json"]).await?;
    let listed: Vec<EntryView> = json_of(&out)?;
    assert_eq!(listed.first().map(|e| e.replayed), Some(true), "{listed:?}");
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_passes_on_a_healthy_stack_and_catches_broken_invariants() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let s = Some(&stack);
    let ok = stack
        .place(json!({"items": [{"productId": "mouse-01", "quantity": 1}]}))
        .await?;
    let declined = stack
        .place(json!({"items": [{"productId": "hub-01", "quantity": 1}], "paymentToken": "tok_chargeDeclined"}))
        .await?;
    stack.finished(&ok, Duration::from_secs(60)).await?;
    stack.finished(&declined, Duration::from_secs(60)).await?;
    eventually(Duration::from_secs(30), "stock to be sold", || async {
        Ok((stack.product("mouse-01").await?.sold == 1).then_some(()))
    })
    .await?;

    let out = run(omsctl(s)?, &["verify", "--settle", "0s", "-o", "json"]).await?;
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
    let verified: VerifyView = json_of(&out)?;
    assert!(verified.ok, "{verified:?}");

    // A charge without a confirmed order.
    let payments = stack.pool(Service::Payment).await?;
    sqlx::query("UPDATE payments SET status = 'AUTHORIZED' WHERE order_id = $1::uuid")
        .bind(&declined)
        .execute(&payments)
        .await?;
    let out = run(omsctl(s)?, &["verify", "--settle", "0s"]).await?;
    assert_eq!(code(&out), 1);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("no charge without a confirmed order"))
        .unwrap_or_default();
    assert!(line.contains("FAIL"), "{text}");
    assert!(
        text.contains(&declined),
        "the failure must name the order: {text}"
    );

    // Stock sold that no reservation accounts for (the row itself still adds up).
    sqlx::query("UPDATE payments SET status = 'DECLINED' WHERE order_id = $1::uuid")
        .bind(&declined)
        .execute(&payments)
        .await?;
    let inventory = stack.pool(Service::Inventory).await?;
    sqlx::query(
        "UPDATE products SET sold = sold + 1, adjusted = adjusted + 1 WHERE id = 'stand-01'",
    )
    .execute(&inventory)
    .await?;
    let out = run(omsctl(s)?, &["verify", "--settle", "0s", "-o", "json"]).await?;
    assert_eq!(code(&out), 1);
    let doc: VerifyView = json_of(&out)?;
    assert!(!doc.ok, "{doc:?}");
    let failed: Vec<&str> = doc
        .checks
        .iter()
        .filter(|c| c.result == Outcome::Fail)
        .map(|c| c.check.as_str())
        .collect();
    assert_eq!(failed, ["stock is conserved"], "{doc:?}");
    stack.shutdown().await
}

/// The process stack, as `omsctl stack up` runs it: its own state directory and ports, so it
/// never meets a development stack or the test cluster. The ports sit below Linux's ephemeral
/// range (32768+), where the other tests' listeners on port 0 land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_up_status_logs_and_down_supervise_the_local_stack() -> anyhow::Result<()> {
    let state = tempfile::tempdir()?;
    // Every service exports its traces here, as it would to Jaeger.
    let sink = oms_tests::otlp::OtlpSink::start("127.0.0.1:0", true).await?;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let ports = [
        ("ORDER", 18081),
        ("PAYMENT", 18082),
        ("INVENTORY", 18083),
        ("NOTIFICATION", 18084),
        ("SAGA", 18085),
    ];
    let mut envs: Vec<(String, String)> = vec![
        ("OMS_ROOT".into(), root.display().to_string()),
        ("OMS_STATE_DIR".into(), state.path().display().to_string()),
        ("OMS_PG_PORT".into(), "25434".into()),
        ("OMS_BROKER_PORT".into(), "19094".into()),
        ("OMS_BROKERS".into(), "127.0.0.1:19094".into()),
        // Short saga deadlines, so the drills' short forms can outlast them (stack.sh passes
        // OMS_* settings on to the services).
        ("OMS_SAGA_RESERVE_TIMEOUT".into(), "5s".into()),
        ("OMS_SAGA_PAYMENT_TIMEOUT".into(), "5s".into()),
        ("OMS_SAGA_RELEASE_TIMEOUT".into(), "5s".into()),
        ("OMS_OTLP_ENDPOINT".into(), sink.endpoint()),
        ("OMS_PROMETHEUS_PORT".into(), "29090".into()),
    ];
    for (name, port) in ports {
        envs.push((format!("OMS_{name}_PORT"), port.to_string()));
        envs.push((
            format!("OMS_{name}_URL"),
            format!("http://127.0.0.1:{port}"),
        ));
    }
    let with_stack = |cmd: &mut Command| {
        cmd.env_remove("OMS_TOPIC_PREFIX");
        for (k, v) in &envs {
            cmd.env(k, v);
        }
    };
    // Whatever happens (a failed assertion panics), the stack is wiped at the end.
    let _wipe = Wipe {
        omsctl: assert_cmd::cargo::cargo_bin("omsctl"),
        envs: envs.clone(),
    };
    let mut cmd = omsctl(None)?;
    with_stack(&mut cmd);
    cmd.timeout(Duration::from_secs(600));
    let up = run(
        cmd,
        &["stack", "up", "--no-smoke", "--debug", "--observability"],
    )
    .await?;
    let result = async {
        assert_eq!(code(&up), 0, "stack up failed: {}", stderr(&up));

        let mut cmd = omsctl(None)?;
        with_stack(&mut cmd);
        let out = run(cmd, &["stack", "status", "-o", "json"]).await?;
        let status: StackStatus = json_of(&out)?;
        assert!(status.ready, "{status:?}");
        for c in &status.components {
            assert!(c.pid.is_some(), "no pid recorded for {c:?}");
        }
        assert!(
            status
                .components
                .iter()
                .any(|c| c.component == "prometheus"),
            "{status:?}"
        );

        // --observability: Prometheus scrapes every service with the metrics role's token
        // (every target up) and has the OMS alert rules loaded.
        let prometheus = reqwest::Client::new();
        let targets = eventually(
            Duration::from_secs(90),
            "Prometheus to scrape every service",
            || async {
                let doc: Value = prometheus
                    .get("http://127.0.0.1:29090/api/v1/targets")
                    .send()
                    .await?
                    .json()
                    .await?;
                let active = doc["data"]["activeTargets"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let up = active.iter().all(|t| t["health"] == "up");
                Ok(
                    (up && active.len() == oms_contracts::topology::SERVICES.len())
                        .then_some(active),
                )
            },
        )
        .await?;
        let mut jobs: Vec<&str> = targets
            .iter()
            .filter_map(|t| t["labels"]["job"].as_str())
            .collect();
        jobs.sort_unstable();
        let mut names: Vec<&str> = oms_contracts::topology::SERVICES
            .iter()
            .map(|s| s.name)
            .collect();
        names.sort_unstable();
        assert_eq!(jobs, names);
        let rules: Value = prometheus
            .get("http://127.0.0.1:29090/api/v1/rules")
            .send()
            .await?
            .json()
            .await?;
        assert!(
            rules.to_string().contains("OmsServiceDown"),
            "no OMS alert rules loaded: {rules}"
        );

        // Tokens: the issuer's private key stays in the state directory (0600); the services
        // have only its public half (a JWKS); there is no shared secret any service could sign
        // with. A token names the person who asked for it, and the services take it.
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |name: &str| {
                std::fs::metadata(state.path().join(name))
                    .ok()
                    .map(|m| m.permissions().mode() & 0o777)
            };
            assert_eq!(mode("jwt-issuer.pem"), Some(0o600));
            assert_eq!(mode("jwks.json"), Some(0o644));
            assert_eq!(mode("jwt-secret"), None, "a shared secret was made");
            // Logs name customers and orders: not world-readable.
            assert_eq!(mode("services/order.log"), Some(0o640));
            // The database's password is the cluster's own, private, and what the services get.
            assert_eq!(mode("pg-password"), Some(0o600));
            // Local connections are trusted: only the cluster's owner may reach its socket.
            assert_eq!(mode("postgres/run"), Some(0o700));
            let password = std::fs::read_to_string(state.path().join("pg-password"))?;
            let mut cmd = omsctl(None)?;
            with_stack(&mut cmd);
            let env = run(cmd, &["stack", "env"]).await?;
            assert!(
                stdout(&env).contains(&format!("postgres://oms:{}@", password.trim())),
                "{}",
                stdout(&env)
            );
            assert!(password.trim().len() >= 32, "a short password");
        }
        let mut cmd = omsctl(None)?;
        with_stack(&mut cmd);
        cmd.env("USER", "alice");
        let out = run(
            cmd,
            &[
                "auth", "token", "--role", "operator", "--ttl", "10m", "-o", "json",
            ],
        )
        .await?;
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let issued: Minted = json_of(&out)?;
        assert_eq!(issued.subject, "alice", "{issued:?}");
        assert_eq!(issued.role, Role::Operator, "{issued:?}");
        assert!(
            issued.key_id.as_deref().is_some_and(|k| !k.is_empty()),
            "{issued:?}"
        );
        let mut cmd = omsctl(None)?;
        with_stack(&mut cmd);
        cmd.env("OMS_TOKEN", &issued.token);
        let out = run(cmd, &["order", "list", "-o", "json"]).await?;
        assert_eq!(code(&out), 0, "{}", stderr(&out));

        // The CPU of every component over a window: all eight are measured, the total adds up.
        let mut cmd = omsctl(None)?;
        with_stack(&mut cmd);
        let out = run(cmd, &["stack", "cpu", "--over", "1s", "-o", "json"]).await?;
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let cpu: CpuReport = json_of(&out)?;
        let mut names: Vec<&str> = cpu
            .components
            .iter()
            .map(|c| c.component.as_str())
            .collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "broker",
                "fulfillment",
                "inventory",
                "notification",
                "order",
                "payment",
                "postgres",
                "saga"
            ],
            "{cpu:?}"
        );
        let sum: f64 = cpu.components.iter().map(|c| c.cpu_seconds).sum();
        let total = cpu.total_cpu_seconds;
        assert!((sum - total).abs() < 1e-6 && total >= 0.0, "{cpu:?}");
        let mut cmd = omsctl(None)?;
        with_stack(&mut cmd);
        let out = run(cmd, &["stack", "cpu", "--over", "0s"]).await?;
        assert_eq!(code(&out), 2, "a zero window is a usage error");

        let mut cmd = omsctl(None)?;
        with_stack(&mut cmd);
        let out = run(
            cmd,
            &[
                "order", "create", "--item", "mouse-01", "--wait", "-o", "json",
            ],
        )
        .await?;
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let placed: OrderView = json_of(&out)?;
        let order_id = placed.order_id.to_string();

        // Its trace, as six processes exported it over OTLP: one trace id, every service (the
        // carrier's steps continue the trace of the shipment request).
        let mut cmd = omsctl(None)?;
        with_stack(&mut cmd);
        let out = run(cmd, &["order", "get", &order_id, "-o", "json"]).await?;
        let trace_id = json_of::<OrderView>(&out)?.trace_id.unwrap_or_default();
        assert_eq!(trace_id.len(), 32, "no trace id on order {order_id}");
        let services = eventually(
            Duration::from_secs(30),
            "every service's spans of the order at the OTLP receiver",
            || async {
                let services: std::collections::BTreeSet<String> = sink
                    .spans()
                    .into_iter()
                    .filter(|s| s.trace_id == trace_id)
                    .map(|s| s.service)
                    .collect();
                Ok((services.len() == oms_contracts::topology::SERVICES.len()).then_some(services))
            },
        )
        .await?;
        assert_eq!(
            services.into_iter().collect::<Vec<_>>(),
            [
                "oms-fulfillment",
                "oms-inventory",
                "oms-notification",
                "oms-order",
                "oms-payment",
                "oms-saga"
            ]
        );

        let mut cmd = omsctl(None)?;
        with_stack(&mut cmd);
        let out = run(cmd, &["stack", "logs", "saga"]).await?;
        let logs = String::from_utf8_lossy(&out.stdout);
        assert!(
            logs.contains("\"service\":\"saga\"") || logs.contains("serving HTTP"),
            "{logs}"
        );
        // A log line written while handling the order carries its trace id.
        let mut cmd = omsctl(None)?;
        with_stack(&mut cmd);
        let out = run(cmd, &["stack", "logs", "order"]).await?;
        let logs = String::from_utf8_lossy(&out.stdout);
        assert!(
            logs.lines().any(|l| l.contains("order accepted")
                && l.contains(&format!("\"trace_id\":\"{trace_id}\""))),
            "no `order accepted` line with trace id {trace_id}:\n{logs}"
        );
        let mut cmd = omsctl(None)?;
        with_stack(&mut cmd);
        let out = run(cmd, &["stack", "logs", "billing"]).await?;
        assert_eq!(code(&out), 2);

        chaos_on_the_process_stack(&with_stack, &envs).await?;
        drills_on_the_process_stack(&with_stack, state.path()).await?;
        // With replicas the URLs come from the stack's record (every replica's), not one each.
        let with_replicas = |cmd: &mut Command| {
            with_stack(cmd);
            for (name, _) in ports {
                cmd.env_remove(format!("OMS_{name}_URL"));
            }
        };
        replicas_on_the_process_stack(&with_replicas, state.path()).await?;
        // Three Kafka nodes: the bootstrap list comes from the stack's record (every node's),
        // not the one address of the environment. The saga keeps its own deadlines there: a
        // node's loss holds the partitions it led for the controller's session timeout and an
        // election (~10-15 s), which the 5 s deadlines above are too short for by design.
        let with_nodes = |cmd: &mut Command| {
            with_replicas(cmd);
            cmd.env_remove("OMS_BROKERS");
            for step in ["RESERVE", "PAYMENT", "RELEASE"] {
                cmd.env_remove(format!("OMS_SAGA_{step}_TIMEOUT"));
            }
        };
        brokers_on_the_process_stack(&with_nodes, state.path()).await
    }
    .await;

    let mut cmd = omsctl(None)?;
    with_stack(&mut cmd);
    cmd.timeout(Duration::from_secs(120));
    let down = run(cmd, &["stack", "down"]).await?;
    result?;
    assert_eq!(code(&down), 0, "{}", stderr(&down));
    let mut cmd = omsctl(None)?;
    with_stack(&mut cmd);
    let out = run(cmd, &["stack", "status", "-o", "json"]).await?;
    assert_eq!(code(&out), 1, "status after down must fail");
    Ok(())
}

/// Stops and deletes a process stack when dropped (its data may live in /var/tmp, see
/// omsctl's `local` module).
struct Wipe {
    omsctl: std::path::PathBuf,
    envs: Vec<(String, String)>,
}

impl Drop for Wipe {
    fn drop(&mut self) {
        let _ = std::process::Command::new(&self.omsctl)
            .args(["stack", "wipe", "--yes"])
            .env_remove("OMS_TOPIC_PREFIX")
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output();
    }
}

async fn in_stack(with_stack: &dyn Fn(&mut Command), args: &[&str]) -> anyhow::Result<Output> {
    let mut cmd = omsctl(None)?;
    with_stack(&mut cmd);
    run(cmd, args).await
}

/// Runs one drill in its short form, which must exit 0, and returns its report (`--report`).
async fn short_drill_report(
    with_stack: &dyn Fn(&mut Command),
    dir: &std::path::Path,
    drill: &str,
) -> anyhow::Result<DrillReport> {
    let report = dir.join(format!("{drill}.json"));
    let report_arg = report.display().to_string();
    let out = in_stack(
        with_stack,
        &["drill", "run", drill, "--short", "--report", &report_arg],
    )
    .await?;
    assert_eq!(
        code(&out),
        0,
        "{drill} failed:\n{}\n{}\nwhat the services said meanwhile:\n{}",
        stdout(&out),
        stderr(&out),
        service_warnings(dir)
    );
    Ok(serde_json::from_slice(&std::fs::read(&report)?)?)
}

/// The last warnings, errors and rebalances in the services' logs under the state directory
/// `dir`, oldest first: what a failed drill leaves to diagnose it by once the stack is wiped.
fn service_warnings(dir: &std::path::Path) -> String {
    let mut lines: Vec<String> = std::fs::read_dir(dir.join("services"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .flat_map(|text| {
            text.lines()
                .filter(|l| {
                    l.contains("\"level\":\"WARN\"")
                        || l.contains("\"level\":\"ERROR\"")
                        || l.contains("rebalance")
                })
                .map(|l| l.chars().take(400).collect::<String>())
                .collect::<Vec<_>>()
        })
        .collect();
    // Every line starts with its timestamp.
    lines.sort();
    let skip = lines.len().saturating_sub(80);
    lines.split_off(skip).join("\n")
}

/// The faults in force, as `chaos status -o json` lists them.
async fn faults(with_stack: &dyn Fn(&mut Command)) -> anyhow::Result<Vec<Recorded>> {
    let out = in_stack(with_stack, &["chaos", "status", "-o", "json"]).await?;
    json_of(&out)
}

/// `omsctl chaos` against the process stack `stack up` started.
async fn chaos_on_the_process_stack(
    with_stack: &dyn Fn(&mut Command),
    envs: &[(String, String)],
) -> anyhow::Result<()> {
    // A paused saga holds an order; reset resumes it and the order completes.
    let out = in_stack(with_stack, &["chaos", "service", "pause", "saga"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let f = faults(with_stack).await?;
    assert!(
        matches!(
            f.as_slice(),
            [Recorded {
                fault: Fault::Service {
                    target,
                    action: ServiceFault::Paused,
                    ..
                },
                ..
            }] if target == "saga"
        ),
        "{f:?}"
    );
    let out = in_stack(
        with_stack,
        &["order", "create", "--item", "hub-01", "-o", "json"],
    )
    .await?;
    let id = json_of::<OrderAccepted>(&out)?.order_id.to_string();
    let out = in_stack(with_stack, &["chaos", "reset"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(faults(with_stack).await?.is_empty());
    eventually(
        Duration::from_secs(60),
        "the held order to finish",
        || async {
            let out = in_stack(with_stack, &["order", "get", &id, "-o", "json"]).await?;
            Ok(json_of::<OrderView>(&out)?.status.is_placed().then_some(()))
        },
    )
    .await?;

    // A killed service is down until reset starts it again.
    let out = in_stack(with_stack, &["chaos", "service", "kill", "payment"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = in_stack(with_stack, &["stack", "status", "-o", "json"]).await?;
    assert_eq!(
        code(&out),
        1,
        "a killed payment service must show as not ready"
    );
    let out = in_stack(with_stack, &["chaos", "reset"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = in_stack(with_stack, &["stack", "status", "-o", "json"]).await?;
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));

    // The restarted payment service rejoins its consumer group (the killed member's session
    // has to expire first): wait until an order goes through again.
    eventually(
        Duration::from_secs(90),
        "orders to be confirmed again",
        || async {
            let out = in_stack(
                with_stack,
                &[
                    "order",
                    "create",
                    "--item",
                    "mouse-01",
                    "--wait",
                    "--timeout",
                    "20s",
                ],
            )
            .await?;
            Ok((code(&out) == 0).then_some(()))
        },
    )
    .await?;

    // Gateway knobs: every payment declined, then back to normal.
    in_stack(with_stack, &["chaos", "payment", "--decline-rate", "1"]).await?;
    let out = in_stack(
        with_stack,
        &["order", "create", "--item", "mouse-01", "--wait"],
    )
    .await?;
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("PAYMENT_DECLINED"),
        "{}",
        stderr(&out)
    );
    in_stack(with_stack, &["chaos", "payment"]).await?;
    assert!(faults(with_stack).await?.is_empty());

    // Poison lands in the DLQ, classified.
    let out = in_stack(
        with_stack,
        &[
            "chaos",
            "poison",
            "oms.payment.commands",
            "--count",
            "2",
            "--kind",
            "bad-json",
        ],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    eventually(Duration::from_secs(60), "the poison in the DLQ", || async {
        let out = in_stack(
            with_stack,
            &["dlq", "list", "oms.payment.commands", "-o", "json"],
        )
        .await?;
        let list: Vec<EntryView> = json_of(&out)?;
        let n = list
            .iter()
            .filter(|e| e.error_class == "poison.malformed")
            .count();
        Ok((n == 2).then_some(()))
    })
    .await?;

    // A lasting fault undoes itself.
    let out = in_stack(with_stack, &["chaos", "broker", "stop", "--for", "1s"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(faults(with_stack).await?.is_empty());

    // An omsctl killed while holding a fault: the record survives, reset undoes it.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_omsctl"));
    cmd.args(["chaos", "service", "pause", "inventory", "--for", "60s"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .env_remove("OMS_CONFIG")
        .env_remove("OMS_TOPIC_PREFIX")
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut holder = cmd.spawn()?;
    eventually(
        Duration::from_secs(30),
        "the pause to be recorded",
        || async { Ok((!faults(with_stack).await?.is_empty()).then_some(())) },
    )
    .await?;
    holder.kill()?;
    holder.wait()?;
    let f = faults(with_stack).await?;
    let targets: Vec<String> = f.iter().map(|r| r.fault.target()).collect();
    assert_eq!(targets, ["inventory"], "{f:?}");
    let out = in_stack(with_stack, &["chaos", "reset"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(faults(with_stack).await?.is_empty());
    let out = in_stack(with_stack, &["stack", "status"]).await?;
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));

    let out = in_stack(with_stack, &["chaos", "service", "pause", "billing"]).await?;
    assert_eq!(code(&out), 2);
    let out = in_stack(with_stack, &["chaos", "poison", "no.such.topic"]).await?;
    assert_eq!(code(&out), 2);
    Ok(())
}

/// The services of a stack with replicas, as `stack status -o json` lists them: (component,
/// pid, relay leader).
async fn service_rows(
    with_stack: &dyn Fn(&mut Command),
) -> anyhow::Result<Vec<(String, Option<u32>, bool)>> {
    let out = in_stack(with_stack, &["stack", "status", "-o", "json"]).await?;
    Ok(json_of::<StackStatus>(&out)?
        .components
        .into_iter()
        .filter(|c| c.service.is_some())
        .map(|c| (c.component, c.pid, c.relay_leader == Some(true)))
        .collect())
}

/// `stack up --replicas 2` on the running stack: two of each service, one relay leader each,
/// a replica named alone by chaos, the replica-failover drill's short form with its takeovers,
/// and back to one replica.
async fn replicas_on_the_process_stack(
    with_stack: &dyn Fn(&mut Command),
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    let mut cmd = omsctl(None)?;
    with_stack(&mut cmd);
    cmd.timeout(Duration::from_secs(300));
    let up = run(
        cmd,
        &["stack", "up", "--replicas", "2", "--no-smoke", "--debug"],
    )
    .await?;
    assert_eq!(code(&up), 0, "{}", stderr(&up));
    assert!(
        stderr(&up).contains("2 replicas of each service"),
        "{}",
        stderr(&up)
    );
    // Each service's two replicas run; the relay elects one leader per service.
    let rows = eventually(
        Duration::from_secs(30),
        "one relay leader per service",
        || async {
            let rows = service_rows(with_stack).await?;
            let leaders = rows.iter().filter(|r| r.2).count();
            let services = oms_contracts::topology::SERVICES.len();
            Ok((rows.len() == 2 * services && leaders == services).then_some(rows))
        },
    )
    .await?;
    for (name, pid, _) in &rows {
        assert!(pid.is_some(), "{name} has no pid: {rows:?}");
    }
    assert!(rows.iter().any(|r| r.0 == "saga-2"), "{rows:?}");
    // The group put each of the saga's partitions on exactly one replica (each replica's log
    // says what it holds after every rebalance), every partition of every topic it reads.
    eventually(
        Duration::from_secs(60),
        "the saga's partitions held once across its replicas",
        || async {
            let mut held: Vec<String> = Vec::new();
            for replica in ["saga-1", "saga-2"] {
                let out = in_stack(with_stack, &["stack", "logs", replica]).await?;
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                let Some(line) = text
                    .lines()
                    .rev()
                    .find(|l| l.contains("partitions assigned"))
                else {
                    return Ok(None);
                };
                // Raw: a service's own log line (its tracing JSON), not omsctl's output.
                let v: Value = serde_json::from_str(line)?;
                held.extend(
                    v["partitions"]
                        .as_str()
                        .unwrap_or_default()
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(str::to_owned),
                );
            }
            held.sort();
            let mut all: Vec<String> = oms_contracts::ServiceId::Saga
                .spec()
                .reads()
                .iter()
                .flat_map(|t| {
                    (0..oms_contracts::topics::PARTITIONS).map(move |p| format!("{t}/{p}"))
                })
                .collect();
            all.sort();
            Ok((held == all).then_some(()))
        },
    )
    .await?;
    let out = in_stack(with_stack, &["chaos", "service", "kill", "saga-3"]).await?;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("2 replica(s) of saga"),
        "{}",
        stderr(&out)
    );
    // An order goes through with either order replica (requests take turns).
    for _ in 0..2 {
        let out = in_stack(
            with_stack,
            &[
                "order", "create", "--item", "mouse-01", "--wait", "-o", "json",
            ],
        )
        .await?;
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }

    let doc = short_drill_report(with_stack, dir, "replica-failover").await?;
    assert!(doc.held, "{doc:?}");
    assert_eq!(doc.orders.lost, 0, "{doc:?}");
    let killed: Vec<&str> = doc.takeovers.iter().map(|t| t.replica.as_str()).collect();
    assert_eq!(killed, ["saga-1", "saga-2", "payment-1"], "{doc:?}");
    for t in &doc.takeovers {
        assert!(t.group_seconds.is_some_and(|s| s > 0.0), "{t:?}");
    }
    // saga-1 and saga-2 died in turn: whichever led the relay, a leader died and was replaced.
    assert!(
        doc.takeovers
            .iter()
            .any(|t| t.was_relay_leader && t.relay_seconds.is_some()),
        "{doc:?}"
    );

    let mut cmd = omsctl(None)?;
    with_stack(&mut cmd);
    cmd.timeout(Duration::from_secs(120));
    let out = run(
        cmd,
        &["stack", "up", "--replicas", "1", "--no-smoke", "--debug"],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rows = service_rows(with_stack).await?;
    let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let expected: Vec<&str> = oms_contracts::topology::SERVICES
        .iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, expected, "{rows:?}");
    Ok(())
}

/// Three secured Kafka nodes under the process stack: the size is kept until a wipe, every node
/// is named and ready, each service runs as its own Kafka user, and the broker-failover drill's
/// short form holds (the node leading the most partitions killed, new leaders elected).
async fn brokers_on_the_process_stack(
    with_stack: &dyn Fn(&mut Command),
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    let up = |args: &'static [&'static str]| async move {
        let mut cmd = omsctl(None)?;
        with_stack(&mut cmd);
        cmd.timeout(Duration::from_secs(600));
        run(cmd, args).await
    };
    let out = up(&[
        "stack",
        "up",
        "--broker-nodes",
        "3",
        "--no-smoke",
        "--debug",
    ])
    .await?;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("has 1 node(s); run `omsctl stack wipe` first"),
        "{}",
        stderr(&out)
    );
    // A wipe deletes data: planned with --dry-run, refused from a script without --yes.
    let out = in_stack(with_stack, &["stack", "wipe", "--dry-run"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("would stop"), "{}", stderr(&out));
    assert!(
        dir.join("pg-password").is_file(),
        "a dry run deleted the state directory"
    );
    let out = in_stack(with_stack, &["stack", "wipe"]).await?;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let out = in_stack(with_stack, &["stack", "wipe", "--yes"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // The wipe stopped everything the stack ran, Prometheus too.
    assert!(
        std::net::TcpStream::connect("127.0.0.1:29090").is_err(),
        "prometheus outlived the wipe"
    );
    let out = up(&[
        "stack",
        "up",
        "--broker-nodes",
        "3",
        "--secure",
        "--no-smoke",
        "--debug",
    ])
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Kafka secured: SASL_SSL with SCRAM-SHA-512"),
        "{}",
        stderr(&out)
    );
    // `stack env` names omsctl's Kafka user (a private file), as tools would use it.
    let printed = stdout(&out);
    let file = printed
        .lines()
        .find_map(|l| l.strip_prefix("export OMS_KAFKA_PROPERTIES_FILE="))
        .ok_or_else(|| anyhow::anyhow!("no properties file exported:\n{printed}"))?;
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(file)?.permissions());
    assert_eq!(mode & 0o077, 0, "{file} is readable by others");
    let out = in_stack(with_stack, &["stack", "status", "-o", "json"]).await?;
    let status: StackStatus = json_of(&out)?;
    assert!(status.ready, "{status:?}");
    let brokers: Vec<&str> = status
        .components
        .iter()
        .map(|c| c.component.as_str())
        .filter(|c| c.starts_with("broker"))
        .collect();
    assert_eq!(brokers, ["broker-1", "broker-2", "broker-3"], "{status:?}");
    // Each service connected as its own user: no authentication failed in any log. librdkafka
    // also names a connection to a node that is still starting a "SASL authentication error"
    // ("... Local: Broker transport failure"): that one is no verdict on the credentials.
    let out = in_stack(with_stack, &["stack", "logs"]).await?;
    let refused: Vec<String> = stdout(&out)
        .lines()
        .filter(|l| l.contains("SASL authentication error") && !l.contains("transport failure"))
        .map(str::to_owned)
        .collect();
    assert!(refused.is_empty(), "{refused:#?}");

    let doc = short_drill_report(with_stack, dir, "broker-failover").await?;
    assert!(doc.held, "{doc:?}");
    assert_eq!(doc.orders.lost, 0, "{doc:?}");
    assert_eq!(doc.failovers.len(), 1, "{doc:?}");
    let f = &doc.failovers[0];
    assert!(f.led_before > 0, "{f:?}");
    assert!(f.election_seconds.is_some_and(|s| s > 0.0), "{f:?}");
    assert!(f.back_at.is_some(), "{f:?}");

    // Back to plain: refused while anything runs secured; after `down` the stack comes up
    // plain and is reached without the secured stack's user.
    let out = up(&["stack", "up", "--plain", "--infra", "--debug"]).await?;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("run `omsctl stack down` first to switch it to plain"),
        "{}",
        stderr(&out)
    );
    let out = in_stack(with_stack, &["stack", "down"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = up(&["stack", "up", "--plain", "--infra", "--debug"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        !stdout(&out).contains("OMS_KAFKA_PROPERTIES_FILE"),
        "{}",
        stdout(&out)
    );
    let out = in_stack(with_stack, &["topics", "list", "-o", "json"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    Ok(())
}

/// Every shipped drill in its short form must hold; a drill whose hypothesis fails must say why
/// and exit 1; a faulty drill file must name its line and exit 2.
async fn drills_on_the_process_stack(
    with_stack: &dyn Fn(&mut Command),
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    let out = in_stack(with_stack, &["drill", "list", "-o", "json"]).await?;
    let names: Vec<String> = json_of::<Vec<DrillRow>>(&out)?
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names.len(), 12, "{names:?}");
    for name in &names {
        if name == "broker-failover" {
            // It needs three Kafka nodes: on one it refuses to start, and says so (it runs on
            // three in brokers_on_the_process_stack).
            let out = in_stack(with_stack, &["drill", "run", name, "--short"]).await?;
            assert_eq!(code(&out), 1, "{}", stderr(&out));
            assert!(
                stderr(&out).contains("brokers>=3: 1 broker(s) answer, 3 wanted"),
                "{}",
                stderr(&out)
            );
            continue;
        }
        if name == "replica-failover" {
            // It needs two replicas of every service: on one it refuses to start, and says so.
            let out = in_stack(with_stack, &["drill", "run", name, "--short"]).await?;
            assert_eq!(code(&out), 1, "{}", stderr(&out));
            assert!(
                stderr(&out).contains("replicas>=2: inventory has 1 replica(s), 2 wanted"),
                "{}",
                stderr(&out)
            );
            continue;
        }
        let doc = short_drill_report(with_stack, dir, name).await?;
        assert!(doc.held, "{doc:?}");
        assert_eq!(doc.orders.lost, 0, "{doc:?}");
        let orders = &doc.orders;
        if name == "customer-cancel-race" {
            // Both ends were reached: some delivered, some cancelled by their customer.
            assert!(orders.delivered > 0, "{orders:?}");
            assert!(
                orders
                    .cancelled
                    .get("CUSTOMER_CANCELLED")
                    .is_some_and(|n| *n > 0),
                "{orders:?}"
            );
            assert!(
                orders
                    .cancel_requests
                    .get("accepted")
                    .is_some_and(|n| *n > 0),
                "{orders:?}"
            );
        }
        if name == "carrier-outage" {
            assert_eq!(orders.delivered as usize, orders.created, "{orders:?}");
        }
        assert!(orders.created > 0, "{doc:?}");
        // The journal: every activity with its phase, times and status, in order.
        let journal = &doc.journal;
        let phases: Vec<&str> = journal.iter().map(|a| a.phase.as_str()).collect();
        assert_eq!(
            phases.first(),
            Some(&"steady-state-before"),
            "{name}: {phases:?}"
        );
        assert!(
            phases.contains(&"steady-state-after") || phases.contains(&"rollback"),
            "{name}: {phases:?}"
        );
        assert!(
            journal
                .iter()
                .all(|a| a.status == "succeeded" && a.start <= a.end),
            "{name}: {journal:?}"
        );
    }

    // Validate and a dry run: the plan, and nothing run.
    let out = in_stack(with_stack, &["drill", "validate", "broker-outage"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = in_stack(
        with_stack,
        &[
            "drill",
            "run",
            "broker-outage",
            "--short",
            "--dry-run",
            "-o",
            "json",
        ],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let plan: PlanView = json_of(&out)?;
    assert_eq!(
        plan.method.first().map(|m| m.action.as_str()),
        Some("chaos broker stop --for 5s"),
        "{plan:?}"
    );
    assert_eq!(
        plan.verify.max_cancelled.get("TIMEOUT"),
        Some(&0),
        "{plan:?}"
    );
    assert!(
        faults(with_stack).await?.is_empty(),
        "a dry run injected a fault"
    );

    // Probes during the method, recorded in the journal.
    let probing = dir.join("probing.toml");
    std::fs::write(
        &probing,
        "name = \"probing\"\ndescription = \"probes while orders flow\"\nhypothesis = \"fast enough\"\n\
         [load]\nrate = 4\nduration = \"6s\"\nitems = [\"mouse-01:1\"]\n\
         [[method]]\nat = \"4s\"\naction = \"probe p99<60s\"\n\
         [[method]]\nat = \"5s\"\naction = \"probe services-ready\"\n\
         [verify]\ndeadline = \"60s\"\n",
    )?;
    let report = dir.join("probing.json");
    let (path, report_arg) = (probing.display().to_string(), report.display().to_string());
    let out = in_stack(
        with_stack,
        &["drill", "run", &path, "--report", &report_arg],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc: DrillReport = serde_json::from_slice(&std::fs::read(&report)?)?;
    let probes: Vec<_> = doc.journal.iter().filter(|a| a.phase == "method").collect();
    assert_eq!(probes.len(), 2, "{doc:?}");
    assert_eq!(probes[0].activity, "probe p99<60s");
    assert_eq!(probes[0].status, "succeeded", "{doc:?}");

    let failing = dir.join("too-hopeful.toml");
    std::fs::write(
        &failing,
        "name = \"too-hopeful\"\ndescription = \"expects more than there is\"\nhypothesis = \"11 of 10 sell\"\n\
         setup = [\"stock keyboard-01 10\"]\nrollback = [\"stock keyboard-01 100000\"]\n\
         [load]\nburst = 15\nitems = [\"keyboard-01:1\"]\n[verify]\ndeadline = \"60s\"\nconfirmed = 11\n",
    )?;
    let path = failing.display().to_string();
    let out = in_stack(with_stack, &["drill", "run", &path]).await?;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("10 confirmed, expected exactly 11"),
        "{}",
        stderr(&out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAILED"));

    let broken = dir.join("broken.toml");
    std::fs::write(&broken, "name = \"broken\"\ndescription = \"d\"\nhypothesis = \"h\"\n[load]\nrate = \"fast\"\nitems = [\"mouse-01:1\"]\n[verify]\ndeadline = \"1s\"\n")?;
    let path = broken.display().to_string();
    let out = in_stack(with_stack, &["drill", "run", &path]).await?;
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("line 5"), "{}", stderr(&out));
    Ok(())
}
