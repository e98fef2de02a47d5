//! The saga orchestrator: owns the order process, not the data (docs/architecture.md, "The order saga").
//!
//! # Layout
//! - [`machine`]: the saga as a pure transition function, with its states and deadlines.
//! - [`store`]: sagas and their step history in PostgreSQL.
//! - this module: the consumer that feeds messages to the machine, the deadline sweeper, the HTTP
//!   API (`GET /sagas`, `GET /sagas/summary`, `GET /sagas/{orderId}`) and [`run`].
//!
//! Every command leaves through the outbox in the transaction that moves the saga, so a saga
//! never moves without its commands or sends commands without moving.

pub mod machine;
pub mod store;

use oms_contracts::api::{Page, Problem, SagaSummary, SagaView};
use oms_contracts::ServiceId;
use std::time::Duration;
use tracing::Instrument;
use utoipa::OpenApi as _;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use oms_contracts::Topics;
use oms_contracts::{Envelope, Message};
use oms_runtime::auth::Operator;
use oms_runtime::config::{parse_duration, RuntimeConfig};
use oms_runtime::http::{ApiError, ApiPath, ApiQuery};
use oms_runtime::service::RuntimeError;
use oms_runtime::{outbox, Handler, HandlerContext, HandlerError, Runtime};
use serde::Deserialize;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use machine::{Deadlines, Input, SagaState};
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

    /// How often the sweeper looks for sagas past their deadline.
    #[arg(long, env = "OMS_SAGA_SWEEP_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub sweep_interval: Duration,
}

impl Config {
    /// The step deadlines.
    pub fn deadlines(&self) -> Deadlines {
        Deadlines {
            reserve: self.reserve_timeout,
            payment: self.payment_timeout,
            release: self.release_timeout,
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
    let sweeper = Sweeper {
        pool: runtime.pool().clone(),
        topics: runtime.topics(),
        deadlines,
        interval: config.sweep_interval,
        metrics: metrics.clone(),
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
    let api = router(runtime.pool().clone());
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

    /// One transaction: time out what is due, send the compensations through the outbox.
    async fn sweep_once(&self) -> Result<usize, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let due = store::lock_due(&mut tx, SWEEP_BATCH).await?;
        let now = Utc::now();
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
                let step = machine::transition(saga, Input::DeadlinePassed, now, &self.deadlines);
                tracing::info!(order_id = %saga.order_id, from = %saga.state, to = %step.saga.state, note = %step.note, "saga deadline passed");
                let ended_after =
                    store::record(&mut tx, Some(saga), &step, "deadline", None).await?;
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
        for f in observe {
            f();
        }
        Ok(due.len())
    }
}

/// This service's routes, documented.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list_sagas, saga_summary, get_saga), tags((name = "sagas", description = "Sagas and their history")))]
pub struct ApiDoc;

/// The service's whole OpenAPI document (what `GET /openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    oms_runtime::http::openapi_document(SERVICE.name(), ApiDoc::openapi())
}

/// The HTTP API.
pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/sagas", get(list_sagas))
        .route("/sagas/summary", get(saga_summary))
        .route("/sagas/{order_id}", get(get_saga))
        .with_state(pool)
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
                errors.insert("state".to_owned(), e);
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
