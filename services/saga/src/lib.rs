//! The saga orchestrator: owns the order process, not the data (docs/architecture.md, "The order saga").
//!
//! # Layout
//! - [`machine`] (the `oms-saga-machine` crate, shared with omsctl): the saga as a pure
//!   transition function, with its states, deadlines and outage rule.
//! - [`store`]: sagas and their step history in PostgreSQL.
//! - this module: the consumer that feeds messages to the machine, the deadline sweeper (which
//!   gives back to running steps the time the broker was unreachable, within a budget), the
//!   HTTP API (`GET /sagas`, `GET /sagas/summary`, `GET /sagas/{orderId}`, and the operator's
//!   `POST /sagas/{orderId}/retry` and `/cancel`) and [`run`].
//!
//! Every command leaves through the outbox in the transaction that moves the saga, so a saga
//! never moves without its commands or sends commands without moving.

pub use oms_saga_machine as machine;
pub mod store;

use oms_contracts::api::{CancelSaga, Page, Problem, SagaAction, SagaSummary, SagaView};
use oms_contracts::routes;
use oms_contracts::ServiceId;
use std::time::Duration;
use tracing::Instrument;
use utoipa::OpenApi as _;

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use oms_contracts::Topics;
use oms_contracts::{Envelope, Message};
use oms_runtime::auth::Operator;
use oms_runtime::config::{parse_duration, RuntimeConfig};
use oms_runtime::http::{ApiError, ApiJson, ApiPath, ApiQuery};
use oms_runtime::service::RuntimeError;
use oms_runtime::{outbox, Handler, HandlerContext, HandlerError, Runtime};
use serde::Deserialize;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use machine::{Deadlines, Due, Input, Outage, OutagePolicy, SagaState};
use oms_runtime::metrics::OutcomeLabel;
use oms_runtime::prometheus_client::metrics::family::Family;
use oms_runtime::prometheus_client::metrics::gauge::Gauge;
use oms_runtime::prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use oms_runtime::prometheus_client::registry::Registry;

/// The service's name (logs, message source, database `oms_saga`).
pub const SERVICE: ServiceId = ServiceId::Saga;

/// Saga orchestrator settings.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "oms-saga", version, about = "OMS saga orchestrator")]
pub struct Config {
    /// Shared runtime settings.
    #[command(flatten)]
    pub runtime: RuntimeConfig,

    /// Address the HTTP API listens on.
    #[arg(long, env = "OMS_SAGA_LISTEN", default_value_t = oms_runtime::config::default_listen(SERVICE))]
    pub listen: String,

    /// How long inventory may take to answer a reservation.
    #[arg(long, env = "OMS_SAGA_RESERVE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub reserve_timeout: Duration,

    /// How long payment may take to answer an authorization; past it the payment is voided and
    /// the order cancelled with `TIMEOUT`.
    #[arg(long, env = "OMS_SAGA_PAYMENT_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub payment_timeout: Duration,

    /// How long inventory may take to confirm a release before it is asked again.
    #[arg(long, env = "OMS_SAGA_RELEASE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub release_timeout: Duration,

    /// How long each fulfillment step (pick, shipping, delivery, a cancellation, its refund and
    /// release) may wait before its command is sent again. Fulfillment never gives up by itself:
    /// goods may be on their way.
    #[arg(long, env = "OMS_SAGA_FULFILLMENT_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub fulfillment_timeout: Duration,

    /// How often the sweeper looks for sagas past their deadline.
    #[arg(long, env = "OMS_SAGA_SWEEP_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub sweep_interval: Duration,

    /// The most broker-outage time given back to one saga step: while the broker is unreachable
    /// no deadline expires, and afterwards each running step gets the outage time back, so an
    /// outage shorter than this cancels no order with TIMEOUT. `0s` turns it off.
    #[arg(long, env = "OMS_SAGA_OUTAGE_BUDGET", default_value = "120s", value_parser = parse_duration)]
    pub outage_budget: Duration,

    /// Given on top of the outage time, once, for the messages held up by it to arrive. On
    /// Apache Kafka a consumer group whose session lapsed during the outage rejoins and waits out
    /// its old members first (up to the session timeout, 10 s; docs/benchmarks.md), so this is
    /// twice that.
    #[arg(long, env = "OMS_SAGA_OUTAGE_GRACE", default_value = "20s", value_parser = parse_duration)]
    pub outage_grace: Duration,
}

impl Config {
    /// How deadlines treat broker outages.
    pub fn outage_policy(&self) -> OutagePolicy {
        OutagePolicy {
            budget: self.outage_budget,
            grace: self.outage_grace,
        }
    }

    /// The step deadlines.
    pub fn deadlines(&self) -> Deadlines {
        Deadlines {
            reserve: self.reserve_timeout,
            payment: self.payment_timeout,
            release: self.release_timeout,
            fulfillment: self.fulfillment_timeout,
        }
    }
}

/// The orchestrator's business metrics.
#[derive(Clone)]
pub struct SagaMetrics {
    /// From `order.created` to the saga's outcome, by outcome (`confirmed`, `cancelled`).
    duration: Family<OutcomeLabel, Histogram>,
    /// Sagas past their step deadline (the sweeper moves them within a sweep interval; a
    /// lasting count means the sweeper or the database is not keeping up).
    stuck: Gauge,
    /// Sagas not yet at an outcome.
    in_progress: Gauge,
}

fn saga_histogram() -> Histogram {
    // 5 ms .. ~80 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

impl Default for SagaMetrics {
    fn default() -> Self {
        Self {
            duration: Family::new_with_constructor(saga_histogram as fn() -> _),
            stuck: Gauge::default(),
            in_progress: Gauge::default(),
        }
    }
}

impl SagaMetrics {
    fn register(&self, registry: &mut Registry) {
        for state in SagaState::ALL.iter().filter(|s| s.is_terminal()) {
            drop(self.duration.get_or_create(&OutcomeLabel {
                outcome: state.as_str().to_ascii_lowercase(),
            }));
        }
        registry.register(
            "saga_duration_seconds",
            "Time from order.created to the saga's outcome, by outcome",
            self.duration.clone(),
        );
        registry.register(
            "sagas_stuck",
            "Sagas past their step deadline, not yet moved",
            self.stuck.clone(),
        );
        registry.register(
            "sagas_in_progress",
            "Sagas not yet at an outcome",
            self.in_progress.clone(),
        );
    }

    /// Observes, once the transaction commits, a saga that `step` ended `ended_after` seconds
    /// after it started.
    fn ended(
        &self,
        step: &machine::Step,
        ended_after: Option<f64>,
    ) -> Option<impl FnOnce() + Send> {
        let seconds = ended_after?;
        let outcome = step.saga.state.as_str().to_ascii_lowercase();
        let duration = self.duration.clone();
        Some(move || {
            duration
                .get_or_create(&OutcomeLabel { outcome })
                .observe(seconds);
        })
    }

    async fn refresh(&self, pool: &PgPool) -> Result<bool, sqlx::Error> {
        let (stuck, in_progress): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE deadline_at < now()), count(*) \
             FROM sagas WHERE deadline_at IS NOT NULL",
        )
        .fetch_one(pool)
        .await?;
        self.stuck.set(stuck);
        self.in_progress.set(in_progress);
        Ok(false)
    }
}

/// Runs the orchestrator until `shutdown`: consumer, sweeper, relay and HTTP on `listener`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), RuntimeError> {
    let deadlines = config.deadlines();
    let metrics = SagaMetrics::default();
    let mut runtime = Runtime::start(
        SERVICE.name(),
        config.runtime.clone(),
        Some(sqlx::migrate!("./migrations")),
        shutdown,
        |r| metrics.register(r),
    )
    .await?;
    runtime.consume(
        SERVICE.spec(),
        SagaHandler {
            deadlines,
            metrics: metrics.clone(),
        },
    )?;
    let topics = runtime.topics();
    let probe = runtime.broker_probe(&topics.name(oms_contracts::topics::INVENTORY_COMMANDS))?;
    let sweeper = Sweeper {
        pool: runtime.pool().clone(),
        topics: topics.clone(),
        deadlines,
        interval: config.sweep_interval,
        metrics: metrics.clone(),
        policy: config.outage_policy(),
        watch: OutageWatch::new(probe),
    };
    let token = runtime.shutdown().clone();
    runtime.spawn("deadline sweeper", sweeper.run(token));
    let (pool, token) = (runtime.pool().clone(), runtime.shutdown().clone());
    runtime.spawn("saga gauges", async move {
        oms_runtime::service::every("saga gauges", GAUGE_INTERVAL, token, || {
            metrics.refresh(&pool)
        })
        .await
    });
    let api = router(runtime.pool().clone(), topics, deadlines);
    runtime.serve(listener, api, ApiDoc::openapi()).await
}

/// How often the saga gauges are read from the database.
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);

/// Feeds every event about an order to its saga.
struct SagaHandler {
    deadlines: Deadlines,
    metrics: SagaMetrics,
}

impl Handler for SagaHandler {
    async fn handle(
        &self,
        ctx: &mut HandlerContext,
        envelope: &Envelope,
    ) -> Result<(), HandlerError> {
        let message = &envelope.message;
        if !self.interest(message.message_type()) {
            return Ok(());
        }
        let now = Utc::now();
        let existing = store::lock(ctx.tx(), message.order_id()).await?;
        let (before, step) = match (existing, message) {
            (None, Message::OrderCreated(created)) => (
                None,
                machine::start(created, envelope.correlation_id, now, &self.deadlines),
            ),
            (None, _) => {
                tracing::warn!(
                    order_id = %message.order_id(),
                    message_type = %message.message_type(),
                    "message for an order without a saga; ignored"
                );
                return Ok(());
            }
            (Some(saga), _) => {
                // A fact that cannot answer what the saga asked is dead-lettered, never applied.
                if let Some(why) = machine::refusal(&saga, message) {
                    tracing::error!(order_id = %message.order_id(), source = %envelope.source,
                        reason = %why, "saga input refused");
                    return Err(HandlerError::Rejected(why));
                }
                let step =
                    machine::transition(&saga, Input::Message(message), now, &self.deadlines);
                (Some(saga), step)
            }
        };
        if !step.applied {
            tracing::info!(order_id = %message.order_id(), note = %step.note, "saga input ignored");
        }
        let ended_after = store::record(
            ctx.tx(),
            before.as_ref(),
            &step,
            message.message_type().as_str(),
            Some(envelope.event_id),
        )
        .await?;
        if let Some(observe) = self.metrics.ended(&step, ended_after) {
            ctx.after_commit(observe);
        }
        for command in step.commands {
            ctx.emit(command).await?;
        }
        Ok(())
    }
}

/// Moves sagas whose step deadline has passed.
struct Sweeper {
    pool: PgPool,
    topics: Topics,
    deadlines: Deadlines,
    interval: Duration,
    metrics: SagaMetrics,
    policy: OutagePolicy,
    watch: OutageWatch,
}

/// The broker outages this process saw, from a probe before each sweep.
struct OutageWatch {
    probe: std::sync::Arc<oms_runtime::kafka::BrokerProbe>,
    seen: std::sync::Mutex<Vec<Outage>>,
}

/// Outages remembered (the oldest are forgotten; a step lasts minutes, not hours).
const OUTAGES_KEPT: usize = 32;

impl OutageWatch {
    fn new(probe: oms_runtime::kafka::BrokerProbe) -> Self {
        Self {
            probe: std::sync::Arc::new(probe),
            seen: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Probes the broker and returns the outages seen so far (the last one open while it lasts).
    async fn look(&self) -> Vec<Outage> {
        let probe = std::sync::Arc::clone(&self.probe);
        let up = tokio::task::spawn_blocking(move || probe.probe(Duration::from_secs(2)))
            .await
            .map(|r| r.is_ok())
            .unwrap_or(true);
        let now = Utc::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let open = seen.last().is_some_and(|o| o.end.is_none());
        match (up, open) {
            (false, false) => {
                tracing::warn!("broker unreachable: saga deadlines are held until it is back");
                seen.push(Outage {
                    start: now,
                    end: None,
                });
                let excess = seen.len().saturating_sub(OUTAGES_KEPT);
                seen.drain(..excess);
            }
            (true, true) => {
                if let Some(last) = seen.last_mut() {
                    last.end = Some(now);
                    let secs = (now - last.start).num_milliseconds() as f64 / 1000.0;
                    tracing::info!(
                        outage_seconds = secs,
                        "broker reachable again: running saga steps get the outage time back"
                    );
                }
            }
            _ => {}
        }
        seen.clone()
    }
}

/// Sagas handled per sweeper transaction.
const SWEEP_BATCH: i64 = 100;

impl Sweeper {
    async fn run(self, shutdown: CancellationToken) -> Result<(), String> {
        let interval = self.interval;
        oms_runtime::service::every("deadline sweeper", interval, shutdown, || async {
            // A full batch means more may be due: go again at once.
            self.sweep_once().await.map(|n| n as i64 == SWEEP_BATCH)
        })
        .await
    }

    /// One transaction: time out what is due (or give it back the time the broker was away),
    /// send the compensations through the outbox.
    async fn sweep_once(&self) -> Result<usize, sqlx::Error> {
        let outages = if self.policy.budget.is_zero() {
            Vec::new()
        } else {
            self.watch.look().await
        };
        let now = Utc::now();
        if machine::holding(&outages, now, &self.policy) {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await?;
        let due = store::lock_due(&mut tx, SWEEP_BATCH).await?;
        let mut observe = Vec::new();
        for (saga, traceparent) in &due {
            // The deadline is part of the order's journey: a span of its trace.
            let span = tracing::info_span!(
                "saga deadline",
                otel.name = "saga deadline",
                order_id = %saga.order_id,
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty,
            );
            oms_runtime::telemetry::set_parent(&span, traceparent.as_deref());
            async {
                let (step, input) =
                    match machine::due(saga, now, &outages, &self.policy, &self.deadlines) {
                        Due::Extend(step) => (*step, "outage"),
                        // Not reached while `holding` (the sweep stops before); left as it is.
                        Due::Hold => return Ok(()),
                        Due::TimeOut => (
                            machine::transition(saga, Input::DeadlinePassed, now, &self.deadlines),
                            "deadline",
                        ),
                    };
                tracing::info!(order_id = %saga.order_id, from = %saga.state, to = %step.saga.state, note = %step.note, "saga deadline passed");
                let ended_after = store::record(&mut tx, Some(saga), &step, input, None).await?;
                observe.extend(self.metrics.ended(&step, ended_after));
                for command in step.commands {
                    let envelope = Envelope::new(command, SERVICE.name(), saga.correlation_id);
                    outbox::enqueue_envelope(&mut *tx, &self.topics, &envelope)
                        .await
                        .map_err(sqlx::Error::from)?;
                }
                Ok::<_, sqlx::Error>(())
            }
            .instrument(span)
            .await?;
        }
        tx.commit().await?;
        if !due.is_empty() {
            outbox::notify(&self.pool).await;
        }
        for f in observe {
            f();
        }
        Ok(due.len())
    }
}

/// This service's routes, documented.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list_sagas, saga_summary, get_saga, retry_saga, cancel_saga), tags((name = "sagas", description = "Sagas and their history")))]
pub struct ApiDoc;

/// The service's whole OpenAPI document (what `GET /openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    oms_runtime::http::openapi_document(SERVICE.name(), ApiDoc::openapi())
}

/// What the API's handlers share.
#[derive(Clone)]
struct ApiState {
    pool: PgPool,
    topics: Topics,
    deadlines: Deadlines,
}

impl FromRef<ApiState> for PgPool {
    fn from_ref(state: &ApiState) -> Self {
        state.pool.clone()
    }
}

/// The HTTP API.
pub fn router(pool: PgPool, topics: Topics, deadlines: Deadlines) -> Router {
    Router::new()
        .route(routes::LIST_SAGAS.spec.path, get(list_sagas))
        .route(routes::SAGA_SUMMARY.spec.path, get(saga_summary))
        .route(routes::GET_SAGA.spec.path, get(get_saga))
        .route(routes::RETRY_SAGA.spec.path, post(retry_saga))
        .route(routes::CANCEL_SAGA.spec.path, post(cancel_saga))
        .with_state(ApiState {
            pool,
            topics,
            deadlines,
        })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only this state: RESERVING, AUTHORIZING, RELEASING, CONFIRMED or CANCELLED (any case).
    #[param(value_type = Option<SagaState>)]
    state: Option<String>,
    /// Only running sagas past their step deadline.
    #[serde(default)]
    stuck: bool,
    /// At most this many (1 to 1000; default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    cursor: Option<Uuid>,
}

/// Default and largest page size.
const PAGE: (i64, i64) = (50, 1000);

/// Sagas, newest first, paged by `nextCursor`.
#[utoipa::path(get, path = "/sagas", tag = "sagas", params(ListQuery), security(("bearer" = ["operator", "admin"])),
    responses(
        (status = 200, description = "A page of sagas", body = Page<SagaView>),
        (status = 400, description = "Bad filter", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_sagas(
    _: Operator,
    State(pool): State<PgPool>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<store::SagaView>>, ApiError> {
    let mut errors = std::collections::BTreeMap::new();
    let state = match q.state.as_deref() {
        None => None,
        Some(s) => match s.parse::<SagaState>() {
            Ok(state) => Some(state),
            Err(e) => {
                errors.insert("state".to_owned(), e.to_string());
                None
            }
        },
    };
    let limit = q.limit.unwrap_or(PAGE.0);
    if !(1..=PAGE.1).contains(&limit) {
        errors.insert("limit".into(), format!("must be between 1 and {}", PAGE.1));
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let filter = store::ListFilter {
        state,
        stuck: q.stuck,
        before: q.cursor,
        limit: limit + 1,
    };
    let mut items = store::list(&pool, &filter).await?;
    let next = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|v| v.order_id)
    } else {
        None
    };
    Ok(Json(Page {
        items,
        next_cursor: next,
    }))
}

/// Saga counts by state, and running sagas past their deadline.
#[utoipa::path(get, path = "/sagas/summary", tag = "sagas", security(("bearer" = ["operator", "admin"])),
    responses((status = 200, description = "Counts", body = SagaSummary)))]
async fn saga_summary(
    _: Operator,
    State(pool): State<PgPool>,
) -> Result<Json<store::Summary>, ApiError> {
    let mut conn = pool.acquire().await?;
    Ok(Json(store::summary(&mut conn).await?))
}

/// One saga with its step history.
#[utoipa::path(get, path = "/sagas/{order_id}", tag = "sagas", security(("bearer" = ["operator", "admin"])),
    params(("order_id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, description = "The saga and its steps", body = SagaView),
        (status = 400, description = "Not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No saga for this order", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_saga(
    _: Operator,
    State(pool): State<PgPool>,
    ApiPath(order_id): ApiPath<Uuid>,
) -> Result<Json<store::SagaView>, ApiError> {
    let mut conn = pool.acquire().await?;
    store::find(&mut conn, order_id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("No saga for order {order_id}")))
}

/// Applies an operator's input to one saga in one transaction: the step is recorded in its
/// history and its commands leave through the outbox, like any other input. `conflict` says,
/// for an input that does not apply, whether that is a conflict (409) rather than a no-op.
async fn operate(
    state: &ApiState,
    order_id: Uuid,
    input: Input<'_>,
    conflict: impl Fn(&machine::Saga) -> Option<String>,
) -> Result<Json<SagaAction>, ApiError> {
    let mut tx = state.pool.begin().await?;
    let saga = store::lock(&mut tx, oms_contracts::OrderId(order_id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("No saga for order {order_id}")))?;
    let step = machine::transition(&saga, input, Utc::now(), &state.deadlines);
    if !step.applied {
        if let Some(why) = conflict(&saga) {
            return Err(ApiError::new(StatusCode::CONFLICT, why));
        }
    }
    tracing::info!(order_id = %order_id, input = input.name(), applied = step.applied, note = %step.note, "operator action on a saga");
    store::record(&mut tx, Some(&saga), &step, input.name(), None).await?;
    let sent: Vec<String> = step
        .commands
        .iter()
        .map(|c| c.message_type().as_str().to_owned())
        .collect();
    for command in step.commands.iter().cloned() {
        let envelope = Envelope::new(command, SERVICE.name(), saga.correlation_id);
        outbox::enqueue_envelope(&mut *tx, &state.topics, &envelope)
            .await
            .map_err(|e| ApiError::internal(&e))?;
    }
    tx.commit().await?;
    outbox::notify(&state.pool).await;
    let mut conn = state.pool.acquire().await?;
    let view = store::find(&mut conn, order_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("No saga for order {order_id}")))?;
    Ok(Json(SagaAction {
        applied: step.applied,
        note: step.note,
        sent,
        saga: view,
    }))
}

fn who(caller: &oms_runtime::auth::Caller) -> String {
    caller
        .subject
        .clone()
        .unwrap_or_else(|| format!("{:?}", caller.role).to_lowercase())
}

/// Sends the current step's command again, with a fresh deadline (the services answer a repeated
/// command with what they did the first time). A finished saga has no step to retry: 409.
#[utoipa::path(post, path = "/sagas/{order_id}/retry", tag = "sagas", security(("bearer" = ["operator", "admin"])),
    params(("order_id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, description = "The step asked again, recorded in the history", body = SagaAction),
        (status = 400, description = "Not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No saga for this order", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The saga is finished: nothing to retry", body = Problem, content_type = "application/problem+json"),
    ))]
async fn retry_saga(
    Operator(caller): Operator,
    State(state): State<ApiState>,
    ApiPath(order_id): ApiPath<Uuid>,
) -> Result<Json<SagaAction>, ApiError> {
    let who = who(&caller);
    operate(&state, order_id, Input::Retry { who: &who }, |s| {
        s.is_finished().then(|| {
            let at = s
                .fulfillment
                .as_ref()
                .map_or(s.state.as_str(), |f| f.state.as_str());
            format!("The saga is {at}: there is no step to retry")
        })
    })
    .await
}

/// Cancels the order now, compensating whatever was done (the payment voided or refunded, the
/// stock released), with reason `OPERATOR_CANCELLED`. Asking again, or while it is already being
/// cancelled, changes nothing (200, `applied: false`). A confirmed order is not the saga's to
/// cancel: 409.
#[utoipa::path(post, path = "/sagas/{order_id}/cancel", tag = "sagas", security(("bearer" = ["operator", "admin"])),
    params(("order_id" = Uuid, Path, description = "Order id")),
    request_body = CancelSaga,
    responses(
        (status = 200, description = "Cancelling (or already cancelled), recorded in the history", body = SagaAction),
        (status = 400, description = "Not a UUID, or no reason", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No saga for this order", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The order is confirmed", body = Problem, content_type = "application/problem+json"),
    ))]
async fn cancel_saga(
    Operator(caller): Operator,
    State(state): State<ApiState>,
    ApiPath(order_id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<CancelSaga>,
) -> Result<Json<SagaAction>, ApiError> {
    let reason = body.reason.trim();
    if reason.is_empty() || body.reason.chars().count() > 200 {
        let mut errors = std::collections::BTreeMap::new();
        errors.insert(
            "reason".to_owned(),
            "must be 1 to 200 characters, not all blank".to_owned(),
        );
        return Err(ApiError::validation(errors));
    }
    let who = who(&caller);
    operate(&state, order_id, Input::Cancel { who: &who, reason }, |s| {
        (s.state == SagaState::Confirmed).then(|| {
            "The order is CONFIRMED: the saga cancels only orders it has not confirmed (the customer cancels a confirmed order before its pick: POST /orders/{id}/cancel)".to_owned()
        })
    })
    .await
}
