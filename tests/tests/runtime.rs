//! A whole service runtime in-process: HTTP operational routes, relay, consumer, shutdown.

use std::time::Duration;

use axum::Router;
use oms_contracts::api::{Problem, Readiness};
use oms_contracts::Envelope;
use oms_runtime::config::{DatabaseUrl, LogFormat, OutboxWakeup, RuntimeConfig};
use oms_runtime::{Handler, HandlerContext, HandlerError, Runtime};
use oms_tests::{database_url, eventually, fresh_order_events, TestBroker};
use tokio_util::sync::CancellationToken;

struct Ignore;

impl Handler for Ignore {
    async fn handle(
        &self,
        _ctx: &mut HandlerContext,
        _envelope: &Envelope,
    ) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn config(db: DatabaseUrl, brokers: &str) -> RuntimeConfig {
    RuntimeConfig {
        database_url: db,
        database_name: Some(format!("t_runtime_{}", oms_tests::unique())),
        database_max_connections: 5,
        brokers: brokers.to_owned(),
        kafka_properties: Vec::new(),
        kafka_properties_file: None,
        topic_prefix: String::new(),
        outbox_wakeup: OutboxWakeup::Notify,
        outbox_retention: Duration::from_secs(60),
        inbox_retention: Duration::from_secs(3600),
        outbox_batch_size: 100,
        outbox_max_backoff: Duration::from_secs(2),
        consumer_max_attempts: 3,
        consumer_fetch_wait: oms_runtime::kafka::DEFAULT_FETCH_WAIT,
        consumer_group_protocol: Default::default(),
        consumer_workers: None,
        consumer_max_batch: None,
        worker_threads: 1,
        log_format: LogFormat::Text,
        otlp_endpoint: None,
        tracing: true,
        log_filter: "warn".into(),
        auth: oms_runtime::auth::AuthConfig::off(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_reports_health_and_metrics_and_shuts_down_gracefully() -> anyhow::Result<()> {
    let mut broker = TestBroker::start().await?;
    let (prefix, topic) = fresh_order_events(&broker.brokers(), "runtime", 1).await?;
    let shutdown = CancellationToken::new();
    let mut runtime = Runtime::start(
        "runtime-test",
        RuntimeConfig {
            topic_prefix: prefix.clone(),
            ..config(database_url(), &broker.brokers())
        },
        None,
        shutdown.clone(),
        |_| {},
    )
    .await?;
    runtime.consume_topics(
        "runtime-test",
        &[oms_contracts::topics::ORDER_EVENTS],
        Ignore,
    )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(runtime.serve(
        listener,
        Router::new(),
        utoipa::openapi::OpenApiBuilder::new().build(),
    ));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;

    let live = http.get(format!("{base}/health/live")).send().await?;
    assert_eq!(live.status(), 200);
    // Oversized headers: 431 problem+json, on open routes too.
    let junk = "x".repeat(oms_runtime::http::MAX_HEADER_BYTES + 1);
    let big = http
        .get(format!("{base}/health/live"))
        .header("x-junk", junk)
        .send()
        .await?;
    assert_eq!(big.status(), 431);
    assert_eq!(
        big.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/problem+json"[..])
    );
    // A NUL byte anywhere in the URL: 400 problem+json before any handler (or database) sees it.
    for url in [
        format!("{base}/health/live?x=%00"),
        format!("{base}/outbox/pending?key=a%00b"),
        format!("{base}/no/such%00/route"),
    ] {
        let r = http.get(&url).send().await?;
        assert_eq!(r.status(), 400, "{url}");
        let problem: Problem = r.json().await?;
        assert!(problem.detail.contains("NUL"), "{url}: {problem:?}");
    }

    let ready: Readiness = eventually(Duration::from_secs(30), "readiness", || async {
        let r = http.get(format!("{base}/health/ready")).send().await?;
        Ok(if r.status() == 200 {
            Some(r.json().await?)
        } else {
            None
        })
    })
    .await?;
    assert!(ready.is_ready(), "{ready:?}");
    assert!(
        ready.database.ok && ready.broker.ok && ready.relay.ok,
        "{ready:?}"
    );
    assert_eq!(ready.outbox.map(|o| o.pending), Some(0), "{ready:?}");

    // One message through the consumer, so its per-group metrics exist.
    let order = oms_contracts::OrderId::new();
    let env = Envelope::new(
        oms_contracts::messages::OrderCancelled {
            order_id: order,
            reason: oms_contracts::messages::CancelReason::Timeout,
            detail: None,
            customer_id: None,
        },
        "saga",
        order.0,
    );
    let p = oms_tests::producer(&broker.brokers())?;
    oms_tests::produce(&p, &topic, &env.key(), &env.encode(), &[]).await?;
    let metrics = eventually(
        Duration::from_secs(30),
        "the message to be handled",
        || async {
            let text = http
                .get(format!("{base}/metrics"))
                .send()
                .await?
                .text()
                .await?;
            let handled = format!(
                r#"oms_messages_consumed_total{{group="{prefix}runtime-test",outcome="handled"}} 1"#
            );
            Ok(text.contains(&handled).then_some(text))
        },
    )
    .await?;
    for name in [
        "oms_outbox_backlog",
        "oms_outbox_published_total",
        "oms_outbox_retries_total",
        "oms_relay_leader",
        "oms_handler_duration_seconds",
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from /metrics:\n{metrics}"
        );
    }

    // With the broker gone, the service is live but not ready, and says why.
    broker.stop()?;
    let not_ready: Readiness = eventually(Duration::from_secs(30), "readiness to fail", || async {
        let r = http.get(format!("{base}/health/ready")).send().await?;
        Ok(if r.status() == 503 {
            Some(r.json().await?)
        } else {
            None
        })
    })
    .await?;
    assert!(!not_ready.is_ready(), "{not_ready:?}");
    assert!(!not_ready.broker.ok, "{not_ready:?}");
    assert!(not_ready.database.ok, "{not_ready:?}");
    assert_eq!(
        http.get(format!("{base}/health/live"))
            .send()
            .await?
            .status(),
        200
    );

    broker.start_again().await?;
    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(30), server).await??;
    assert!(stopped.is_ok(), "graceful shutdown reported {stopped:?}");
    assert!(
        http.get(format!("{base}/health/live"))
            .send()
            .await
            .is_err(),
        "still serving after shutdown"
    );
    Ok(())
}

/// The pool pings only connections idle for a second or more (a ping per transaction was a
/// round trip on every message): one whose server went away while it sat idle is found dead
/// and replaced before anybody gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_replaces_connections_the_server_dropped_while_they_sat_idle() -> anyhow::Result<()>
{
    let pool = oms_tests::fresh_db("idle_ping").await?;
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&pool)
        .await?;
    // Several connections in the pool, all idle afterwards.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(pool.acquire().await?);
    }
    drop(held);
    let admin = oms_tests::fresh_db("idle_ping_admin").await?;
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
    )
    .bind(&database)
    .fetch_all(&admin)
    .await?;
    assert!(
        terminated.len() >= 3,
        "the pool's connections: {terminated:?}"
    );
    eventually(Duration::from_secs(10), "the sessions to end", || async {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
                .bind(&database)
                .fetch_one(&admin)
                .await?;
        Ok((left == 0).then_some(()))
    })
    .await?;
    // The input here is the idle time itself: past it, every connection is pinged first.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for _ in 0..3 {
        let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&pool).await?;
        assert_eq!(one, 1);
    }
    Ok(())
}
