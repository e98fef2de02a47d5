//! The order service: accepts orders and follows each to `CONFIRMED` or `CANCELLED`.
//!
//! # Layout
//! - [`validate`]: the rules of `POST /orders` bodies.
//! - this module: the HTTP API (`POST /orders` with `Idempotency-Key`, `GET /orders/{id}`,
//!   `GET /orders`), the consumer of the saga's outcome events, and [`run`].
//!
//! An accepted order and its `order.created` commit in one transaction (the outbox). A rejected
//! request changes nothing.

pub mod validate;

use oms_contracts::api::{
    CreateOrder, OrderAccepted, OrderStatus, OrderView, Page, Problem, UnknownOrderStatus,
};
use oms_contracts::routes;
use oms_contracts::{CustomerId, Money, ServiceId};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use utoipa::OpenApi as _;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use oms_contracts::auth::Role;
use oms_contracts::messages::{CancelReason, CancelRequested, OrderCreated};
use oms_contracts::Topics;
use oms_contracts::{Envelope, Message, OrderId};
use oms_runtime::auth::Caller;
use oms_runtime::config::RuntimeConfig;
use oms_runtime::http::{list_filters, page_of, ApiError, ApiPath, ApiQuery};
use oms_runtime::metrics::ReasonLabel;
use oms_runtime::prometheus_client::metrics::counter::Counter;
use oms_runtime::prometheus_client::metrics::family::Family;
use oms_runtime::prometheus_client::registry::Registry;
use oms_runtime::service::RuntimeError;
use oms_runtime::{outbox, Handler, HandlerContext, HandlerError, Runtime};
use serde::Deserialize;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use validate::{NewOrder, Rules};

/// The service's name (logs, message source, database `oms_order`).
pub const SERVICE: ServiceId = ServiceId::Order;

/// The header that makes `POST /orders` safe to retry.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Order service settings.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "oms-order", version, about = "OMS order service")]
pub struct Config {
    /// Shared runtime settings.
    #[command(flatten)]
    pub runtime: RuntimeConfig,

    /// Address the HTTP API listens on.
    #[arg(long, env = "OMS_ORDER_LISTEN", default_value_t = oms_runtime::config::default_listen(SERVICE))]
    pub listen: String,

    /// Most lines in one order.
    #[arg(long, env = "OMS_ORDER_MAX_LINES", default_value_t = 50)]
    pub max_lines: usize,

    /// Most units of one product in one order.
    #[arg(long, env = "OMS_ORDER_MAX_QUANTITY", default_value_t = 1000)]
    pub max_quantity: u32,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "OMS_ORDER_MAX_BODY", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,

    /// How long an `Idempotency-Key` is remembered.
    #[arg(long, env = "OMS_ORDER_IDEMPOTENCY_RETENTION", default_value = "24h",
          value_parser = oms_runtime::config::parse_duration)]
    pub idempotency_retention: Duration,

    /// `POST /orders` per token subject (per client address with auth off): `N/s` (bursts of
    /// up to twice that), `N/s:BURST`, or `off`. A request over it is answered 429 with
    /// `Retry-After` and creates nothing. Per replica.
    // The full path keeps clap from reading `Option` as "the flag may be left out": the parser
    // itself answers `None` for `off`.
    #[arg(long, env = "OMS_ORDER_RATE_LIMIT", default_value = "500/s", value_parser = parse_rate_limit)]
    pub rate_limit: std::option::Option<RateLimit>,

    /// `POST /orders` of one customer (a customer token's subject), on top of `--rate-limit`:
    /// what a person never meets and a script does. Same forms; per replica.
    #[arg(long, env = "OMS_ORDER_CUSTOMER_RATE_LIMIT", default_value = "2/s:10", value_parser = parse_rate_limit)]
    pub customer_rate_limit: std::option::Option<RateLimit>,
}

pub use oms_runtime::limit::{parse_rate_limit, RateLimit};

/// Whom a rate limit counts: the token's subject, else (auth off) the client's address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Client {
    Subject(String),
    Address(std::net::IpAddr),
}

type Limiter = oms_runtime::limit::Limiter<Client>;

/// Runs the service until `shutdown`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), RuntimeError> {
    let metrics = OrderMetrics::default();
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
        OutcomeHandler {
            metrics: metrics.clone(),
        },
    )?;
    let pool = runtime.pool().clone();
    let retention = config.idempotency_retention;
    let token = runtime.shutdown().clone();
    runtime.spawn(
        "idempotency key pruning",
        prune_idempotency_keys(pool, retention, token),
    );
    let limiter = config.rate_limit.and_then(Limiter::new).map(Arc::new);
    let customer_limiter = config
        .customer_rate_limit
        .and_then(oms_runtime::limit::Limiter::new)
        .map(Arc::new);
    // Forget clients that have been quiet long enough to be back at a full burst.
    if let Some(l) = &limiter {
        let token = runtime.shutdown().clone();
        runtime.spawn("rate limiter upkeep", Arc::clone(l).upkeep(token));
    }
    if let Some(l) = &customer_limiter {
        let token = runtime.shutdown().clone();
        runtime.spawn("customer rate limiter upkeep", Arc::clone(l).upkeep(token));
    }
    let state = AppState {
        metrics,
        limiter,
        customer_limiter,
        pool: runtime.pool().clone(),
        topics: runtime.topics(),
        rules: Arc::new(Rules {
            max_lines: config.max_lines,
            max_quantity: config.max_quantity,
            ..Rules::default()
        }),
    };
    runtime
        .serve(
            listener,
            router(state, config.max_body_bytes),
            ApiDoc::openapi(),
        )
        .await
}

async fn prune_idempotency_keys(
    pool: PgPool,
    retention: Duration,
    shutdown: CancellationToken,
) -> Result<(), String> {
    loop {
        let secs = retention.as_secs_f64();
        match sqlx::query(
            "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)",
        )
        .bind(secs)
        .execute(&pool)
        .await
        {
            Ok(done) if done.rows_affected() > 0 => {
                tracing::info!(pruned = done.rows_affected(), "idempotency keys pruned")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "idempotency key pruning failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(600)) => {}
        }
    }
}

/// The order service's business metrics: orders accepted, and their outcomes (counted once,
/// after the transaction that records them commits).
#[derive(Clone, Default)]
pub struct OrderMetrics {
    created: Counter,
    confirmed: Counter,
    cancelled: Family<ReasonLabel, Counter>,
}

impl OrderMetrics {
    fn register(&self, registry: &mut Registry) {
        // Every reason from zero, so a first cancellation shows as a rate, not a new series.
        for reason in CancelReason::ALL {
            drop(self.cancelled.get_or_create(&ReasonLabel {
                reason: reason.as_str().to_owned(),
            }));
        }
        registry.register(
            "orders_created",
            "Orders accepted (PENDING)",
            self.created.clone(),
        );
        registry.register(
            "orders_confirmed",
            "Orders confirmed",
            self.confirmed.clone(),
        );
        registry.register(
            "orders_cancelled",
            "Orders cancelled, by reason",
            self.cancelled.clone(),
        );
    }
}

/// Records a step of the order's life after confirmation (shipped, delivered, picked). A
/// duplicate or one overtaken by a later step changes nothing.
async fn progress(
    ctx: &mut HandlerContext,
    order_id: OrderId,
    update: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    what: &str,
) -> Result<(), HandlerError> {
    let done = update.execute(ctx.tx()).await?;
    if done.rows_affected() == 1 {
        tracing::info!(%order_id, step = what, "order moved on");
    } else {
        tracing::info!(%order_id, step = what, "order step already recorded or overtaken; unchanged");
    }
    Ok(())
}

/// Records the saga's outcome on the order.
struct OutcomeHandler {
    metrics: OrderMetrics,
}

impl Handler for OutcomeHandler {
    async fn handle(
        &self,
        ctx: &mut HandlerContext,
        envelope: &Envelope,
    ) -> Result<(), HandlerError> {
        let (order_id, status, updated, reason) = match &envelope.message {
            Message::OrderConfirmed(m) => {
                let lines = serde_json::to_value(&m.lines)
                    .map_err(|e| HandlerError::Rejected(e.to_string()))?;
                let done = sqlx::query(
                    "UPDATE orders SET status = 'CONFIRMED', lines = $2, total_minor = $3, currency = $4, \
                     payment_id = $5, updated_at = now(), completed_at = now() \
                     WHERE id = $1 AND status = 'PENDING'",
                )
                .bind(m.order_id.0)
                .bind(lines)
                .bind(m.total.amount_minor)
                .bind(m.total.currency.as_str())
                .bind(m.payment_id)
                .execute(ctx.tx())
                .await?;
                (m.order_id, "CONFIRMED", done.rows_affected(), None)
            }
            Message::OrderCancelled(m) => {
                let reason = Some(m.reason.as_str().to_owned());
                // Before shipping only: the saga cancels a confirmed order only once fulfillment
                // confirmed its shipment will never leave.
                let done = sqlx::query(
                    "UPDATE orders SET status = 'CANCELLED', cancel_reason = $2, cancel_detail = $3, \
                     updated_at = now(), completed_at = now() \
                     WHERE id = $1 AND status IN ('PENDING', 'CONFIRMED') AND picked_at IS NULL",
                )
                .bind(m.order_id.0)
                .bind(&reason)
                .bind(&m.detail)
                .execute(ctx.tx())
                .await?;
                (m.order_id, "CANCELLED", done.rows_affected(), reason)
            }
            Message::OrderShipped(m) => {
                let q = sqlx::query(
                    "UPDATE orders SET status = 'SHIPPED', tracking_number = $2, \
                     shipped_at = now(), updated_at = now() WHERE id = $1 AND status = 'CONFIRMED'",
                )
                .bind(m.order_id.0)
                .bind(&m.tracking_number);
                return progress(ctx, m.order_id, q, "shipped").await;
            }
            Message::OrderDelivered(m) => {
                let q = sqlx::query(
                    "UPDATE orders SET status = 'DELIVERED', delivered_at = now(), \
                     shipped_at = coalesce(shipped_at, now()), updated_at = now() \
                     WHERE id = $1 AND status IN ('CONFIRMED', 'SHIPPED')",
                )
                .bind(m.order_id.0);
                return progress(ctx, m.order_id, q, "delivered").await;
            }
            Message::FulfillmentPicked(m) => {
                let q = sqlx::query(
                    "UPDATE orders SET picked_at = now(), updated_at = now() \
                     WHERE id = $1 AND picked_at IS NULL AND status <> 'CANCELLED'",
                )
                .bind(m.order_id.0);
                return progress(ctx, m.order_id, q, "picked").await;
            }
            _ => return Ok(()),
        };
        if updated == 1 {
            tracing::info!(%order_id, status, "order finished");
            let metrics = self.metrics.clone();
            ctx.after_commit(move || match reason {
                None => {
                    metrics.confirmed.inc();
                }
                Some(reason) => {
                    metrics
                        .cancelled
                        .get_or_create(&ReasonLabel { reason })
                        .inc();
                }
            });
            return Ok(());
        }
        let current: Option<(String, Option<Uuid>)> =
            sqlx::query_as("SELECT status, payment_id FROM orders WHERE id = $1")
                .bind(order_id.0)
                .fetch_optional(ctx.tx())
                .await?;
        // The same confirmation again, after the order moved on (shipped, delivered, or
        // cancelled by its customer): a duplicate, not a conflict.
        let confirmed_before = match &envelope.message {
            Message::OrderConfirmed(m) => current
                .as_ref()
                .is_some_and(|(_, paid)| *paid == Some(m.payment_id)),
            _ => false,
        };
        match current {
            None => Err(HandlerError::Rejected(format!("no order {order_id}"))),
            Some((s, _)) if s == status || confirmed_before => Ok(()),
            Some((s, _)) => {
                tracing::error!(%order_id, current = %s, outcome = status, "conflicting outcome for a finished order; kept the first");
                Ok(())
            }
        }
    }
}

#[derive(Clone)]
struct AppState {
    metrics: OrderMetrics,
    pool: PgPool,
    topics: Topics,
    rules: Arc<Rules>,
    limiter: Option<Arc<Limiter>>,
    customer_limiter: Option<Arc<oms_runtime::limit::Limiter<String>>>,
}

fn router(state: AppState, max_body: usize) -> Router {
    Router::new()
        .route(
            routes::LIST_ORDERS.spec.path,
            get(list_orders).post(create_order),
        )
        .route(routes::GET_ORDER.spec.path, get(get_order))
        .route(routes::CANCEL_ORDER.spec.path, post(cancel_order))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(key.to_owned()))
        }
        _ => {
            let mut errors = BTreeMap::new();
            errors.insert(
                "Idempotency-Key".to_owned(),
                "must be 1 to 255 visible ASCII characters".to_owned(),
            );
            Err(ApiError::validation(errors))
        }
    }
}

/// This service's routes, documented.
#[derive(utoipa::OpenApi)]
#[openapi(paths(create_order, get_order, cancel_order, list_orders), tags((name = "orders", description = "Orders and their status")))]
pub struct ApiDoc;

/// The service's whole OpenAPI document (what `GET /openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    oms_runtime::http::openapi_document(SERVICE.name(), ApiDoc::openapi())
}

#[tracing::instrument(skip_all)]
/// Place an order: validated field by field, committed with its `order.created` event.
#[utoipa::path(post, path = "/orders", tag = "orders", security(("bearer" = ["customer", "admin"])),
    request_body = CreateOrder,
    params(("Idempotency-Key" = Option<String>, Header, pattern = r"^[\x21-\x7e]{1,255}$",
        description = "1 to 255 visible ASCII characters. Retrying with the same key and body answers the first response; another body is 409")),
    responses(
        (status = 201, description = "Accepted (PENDING); the saga runs", body = OrderAccepted,
            headers(("location" = String, description = "/orders/{orderId}"))),
        (status = 200, description = "The first answer again (same Idempotency-Key and body)", body = OrderAccepted),
        (status = 400, description = "Invalid order (errors per field)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Idempotency-Key used with another body, or still in flight", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "An operator's token, or a customer naming another customerId; nothing was created",
            body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over the rate limit of this client (token subject); nothing was created",
            body = Problem, content_type = "application/problem+json",
            headers(("retry-after" = u64, description = "Seconds until a request is accepted again"))),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_order(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(address): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    if caller.role == Role::Operator {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Operators read; orders are placed by customers (for themselves) or admins",
        ));
    }
    if let Some(limiter) = &state.limiter {
        let client = match &caller.subject {
            Some(s) => Client::Subject(s.clone()),
            None => Client::Address(address.ip()),
        };
        if let Err(wait) = limiter.check(&client) {
            return Err(oms_runtime::http::too_many("orders from this client", wait));
        }
    }
    if let (Some(limiter), Some(customer)) = (&state.customer_limiter, caller.customer()) {
        if let Err(wait) = limiter.check(&customer.to_owned()) {
            return Err(oms_runtime::http::too_many(
                "orders from this customer",
                wait,
            ));
        }
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")
        } else {
            ApiError::bad_request(e.body_text())
        }
    })?;
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let json = ct
            .to_str()
            .map(|s| s.to_ascii_lowercase().contains("json"))
            .unwrap_or(false);
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Expected Content-Type: application/json",
            ));
        }
    }
    let key = idempotency_key(&headers)?;
    let order = match caller.customer() {
        // A customer's order is its own: the subject is the default, and the only customer id.
        Some(me) => {
            let rules = Rules {
                default_customer: me.to_owned(),
                ..state.rules.as_ref().clone()
            };
            let order = validate::parse_order(&body, &rules).map_err(ApiError::validation)?;
            if order.customer_id.as_str() != me {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "A customer places orders for itself only: customerId differs from the token's subject",
                ));
            }
            order
        }
        None => validate::parse_order(&body, &state.rules).map_err(ApiError::validation)?,
    };
    let request = serde_json::to_value(&order).map_err(|e| ApiError::internal(&e))?;

    let order_id = OrderId::new();
    let now = Utc::now();
    let accepted = OrderAccepted {
        order_id: order_id.0,
        status: OrderStatus::Pending,
        customer_id: order.customer_id.clone(),
        items: order.items.clone(),
        created_at: now,
    };
    let response = serde_json::to_value(&accepted).map_err(|e| ApiError::internal(&e))?;

    let mut tx = state.pool.begin().await?;
    // Keys are scoped by the caller: another caller's key of the same text is not this one.
    let subject = caller.subject.as_deref().unwrap_or_default();
    if let Some(key) = &key {
        // A second request with this key waits here until the first commits, then finds its row.
        let claimed = sqlx::query(
            "INSERT INTO idempotency_keys (subject, key, request, order_id, response) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (subject, key) DO NOTHING",
        )
        .bind(subject)
        .bind(key)
        .bind(&request)
        .bind(order_id.0)
        .bind(&response)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            tx.rollback().await?;
            return replay(&state.pool, subject, key, &request).await;
        }
    }
    insert_order(&mut tx, &state.topics, order_id, &order, now).await?;
    tx.commit().await?;
    outbox::notify(&state.pool).await;
    state.metrics.created.inc();
    tracing::info!(%order_id, customer_id = %order.customer_id, lines = order.items.len(), "order accepted");
    Ok((StatusCode::CREATED, location(order_id), Json(accepted)).into_response())
}

/// 429 with `Retry-After` in whole seconds (at least 1).
fn location(order_id: OrderId) -> [(header::HeaderName, HeaderValue); 1] {
    let value = HeaderValue::from_str(&format!("/orders/{order_id}"))
        .unwrap_or_else(|_| HeaderValue::from_static("/orders"));
    [(header::LOCATION, value)]
}

async fn insert_order(
    tx: &mut sqlx::PgConnection,
    topics: &Topics,
    order_id: OrderId,
    order: &NewOrder,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT INTO orders (id, customer_id, status, items, payment_token, created_at, updated_at, trace_id, \
         shipping_address) VALUES ($1, $2, 'PENDING', $3, $4, $5, $5, $6, $7)",
    )
    .bind(order_id.0)
    .bind(order.customer_id.as_str())
    .bind(serde_json::to_value(&order.items).map_err(|e| ApiError::internal(&e))?)
    .bind(&order.payment_token)
    .bind(now)
    // The trace of the request that placed it: where its journey is found in a trace backend.
    .bind(oms_runtime::telemetry::trace_id(&tracing::Span::current()))
    .bind(
        order
            .shipping_address
            .as_ref()
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| ApiError::internal(&e))?,
    )
    .execute(&mut *tx)
    .await?;
    let created = OrderCreated {
        order_id,
        customer_id: order.customer_id.clone(),
        items: order.items.clone(),
        payment_token: order.payment_token.clone(),
        shipping_address: order.shipping_address.clone(),
    };
    // The order's journey is correlated by its id.
    let envelope = Envelope::new(created, SERVICE.name(), order_id.0);
    outbox::enqueue_envelope(&mut *tx, topics, &envelope)
        .await
        .map_err(|e| ApiError::from(sqlx::Error::from(e)))?;
    Ok(())
}

/// The answer to a key `subject` used before: the first response for the same request, 409
/// otherwise.
async fn replay(
    pool: &PgPool,
    subject: &str,
    key: &str,
    request: &serde_json::Value,
) -> Result<Response, ApiError> {
    let row = sqlx::query_as::<_, IdempotencyRow>(
        "SELECT request, response FROM idempotency_keys WHERE subject = $1 AND key = $2",
    )
    .bind(subject)
    .bind(key)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "Idempotency-Key is being used by a request that did not finish; retry",
        )
    })?;
    if row.request != *request {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "Idempotency-Key was already used with a different request",
        ));
    }
    let response: OrderAccepted =
        serde_json::from_value(row.response).map_err(|e| ApiError::internal(&e))?;
    Ok((
        StatusCode::OK,
        [(
            header::HeaderName::from_static("idempotent-replayed"),
            HeaderValue::from_static("true"),
        )],
        Json(response),
    )
        .into_response())
}

const ORDER_COLUMNS: &str =
    "id, customer_id, status, items, lines, total_minor, currency, payment_id, \
     cancel_reason, cancel_detail, created_at, updated_at, completed_at, trace_id, \
     shipping_address, picked_at, shipped_at, delivered_at, tracking_number, cancel_requested_at";

/// The `ORDER_COLUMNS` of a row of `orders`.
#[derive(sqlx::FromRow)]
struct OrderRow {
    id: Uuid,
    customer_id: String,
    status: String,
    items: serde_json::Value,
    lines: Option<serde_json::Value>,
    total_minor: Option<i64>,
    currency: Option<String>,
    payment_id: Option<Uuid>,
    cancel_reason: Option<String>,
    cancel_detail: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    trace_id: Option<String>,
    shipping_address: Option<serde_json::Value>,
    picked_at: Option<DateTime<Utc>>,
    shipped_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
    tracking_number: Option<String>,
    cancel_requested_at: Option<DateTime<Utc>>,
}

/// The request and first answer an `Idempotency-Key` was used with.
#[derive(sqlx::FromRow)]
struct IdempotencyRow {
    request: serde_json::Value,
    response: serde_json::Value,
}

fn order_view(r: &OrderRow) -> Result<OrderView, ApiError> {
    let total = match r.total_minor.zip(r.currency.as_deref()) {
        Some((a, c)) => Some(Money::from_parts(a, c).map_err(|e| ApiError::internal(&e))?),
        None => None,
    };
    let json = |e: serde_json::Error| ApiError::internal(&e);
    Ok(OrderView {
        order_id: r.id,
        customer_id: CustomerId::try_from(r.customer_id.clone())
            .map_err(|e| ApiError::internal(&e))?,
        status: r
            .status
            .parse()
            .map_err(|e: UnknownOrderStatus| ApiError::internal(&e))?,
        items: Deserialize::deserialize(&r.items).map_err(json)?,
        lines: r
            .lines
            .as_ref()
            .map(Deserialize::deserialize)
            .transpose()
            .map_err(json)?,
        total,
        payment_id: r.payment_id,
        cancel_reason: r.cancel_reason.clone(),
        cancel_detail: r.cancel_detail.clone(),
        created_at: r.created_at,
        updated_at: r.updated_at,
        completed_at: r.completed_at,
        shipping_address: r
            .shipping_address
            .as_ref()
            .map(Deserialize::deserialize)
            .transpose()
            .map_err(json)?,
        picked_at: r.picked_at,
        shipped_at: r.shipped_at,
        delivered_at: r.delivered_at,
        tracking_number: r.tracking_number.clone(),
        cancel_requested_at: r.cancel_requested_at,
        trace_id: r.trace_id.clone(),
    })
}

/// One order.
#[utoipa::path(get, path = "/orders/{id}", tag = "orders", security(("bearer" = ["customer", "operator", "admin"])),
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 400, description = "Not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order (or, to a customer, not its own)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_order(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<OrderView>, ApiError> {
    // Another customer's order is as absent as a missing one: its existence does not leak.
    let row = sqlx::query_as::<_, OrderRow>(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1 AND ($2::text IS NULL OR customer_id = $2)"
    ))
    .bind(id)
    .bind(caller.customer())
    .fetch_optional(&state.pool)
    .await?;
    match row {
        Some(r) => Ok(Json(order_view(&r)?)),
        None => Err(ApiError::not_found(format!("No order {id}"))),
    }
}

/// What `POST /orders/{id}/cancel` reads of the order it locks.
#[derive(sqlx::FromRow)]
struct CancelRow {
    customer_id: String,
    status: String,
    picked_at: Option<DateTime<Utc>>,
    shipped_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
    cancel_requested_at: Option<DateTime<Utc>>,
}

/// Cancels an order before its shipment is picked (idempotent). The answer is 202 with the
/// order while the saga refunds, releases and cancels it (`cancelRequestedAt` is set; poll
/// `GET /orders/{id}` for `CANCELLED`), 200 once it is cancelled, and 409 once it was picked.
/// Fulfillment owns the pick: a cancellation accepted here can still lose the race to a pick
/// under way, and the order then ships (its saga records the refusal).
#[utoipa::path(post, path = "/orders/{id}/cancel", tag = "orders", security(("bearer" = ["customer", "admin"])),
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, description = "Already cancelled", body = OrderView),
        (status = 202, description = "Cancellation requested (or requested before)", body = OrderView),
        (status = 400, description = "Not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Operators read; orders are cancelled by their customer or an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order (or, to a customer, not its own)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Too late: the order was picked, shipped or delivered", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
async fn cancel_order(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    if caller.role == Role::Operator {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Operators read; orders are cancelled by their customer or an admin (operators cancel sagas: POST /sagas/{id}/cancel)",
        ));
    }
    let mut tx = state.pool.begin().await?;
    let row = sqlx::query_as::<_, CancelRow>(
        "SELECT customer_id, status, picked_at, shipped_at, delivered_at, cancel_requested_at, correlation          FROM (SELECT *, id AS correlation FROM orders) o          WHERE id = $1 AND ($2::text IS NULL OR customer_id = $2) FOR UPDATE",
    )
    .bind(id)
    .bind(caller.customer())
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::not_found(format!("No order {id}")))?;
    let too_late = |what: &str, when: Option<DateTime<Utc>>| {
        let when = when.map(|w| {
            format!(
                " at {}",
                w.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )
        });
        ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "Order {id} was {what}{}; it can no longer be cancelled",
                when.unwrap_or_default()
            ),
        )
    };
    let status: OrderStatus = row
        .status
        .parse()
        .map_err(|e: UnknownOrderStatus| ApiError::internal(&e))?;
    let code = match status {
        OrderStatus::Cancelled => StatusCode::OK,
        OrderStatus::Delivered => return Err(too_late("delivered", row.delivered_at)),
        OrderStatus::Shipped => return Err(too_late("shipped", row.shipped_at)),
        _ if row.picked_at.is_some() => return Err(too_late("picked", row.picked_at)),
        _ if row.cancel_requested_at.is_some() => StatusCode::ACCEPTED,
        OrderStatus::Pending | OrderStatus::Confirmed => {
            let customer_id =
                CustomerId::try_from(row.customer_id).map_err(|e| ApiError::internal(&e))?;
            let requested_by = caller
                .subject
                .clone()
                .unwrap_or_else(|| customer_id.as_str().to_owned());
            sqlx::query(
                "UPDATE orders SET cancel_requested_at = now(), cancel_requested_by = $2, \
                 updated_at = now() WHERE id = $1",
            )
            .bind(id)
            .bind(&requested_by)
            .execute(&mut *tx)
            .await?;
            let requested = CancelRequested {
                order_id: OrderId(id),
                customer_id,
                requested_by,
            };
            let envelope = Envelope::new(requested, SERVICE.name(), id);
            outbox::enqueue_envelope(&mut *tx, &state.topics, &envelope)
                .await
                .map_err(|e| ApiError::from(sqlx::Error::from(e)))?;
            tracing::info!(order_id = %id, "cancellation requested");
            StatusCode::ACCEPTED
        }
    };
    let view =
        sqlx::query_as::<_, OrderRow>(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
    let view = order_view(&view)?;
    tx.commit().await?;
    if code == StatusCode::ACCEPTED {
        outbox::notify(&state.pool).await;
    }
    Ok((code, Json(view)).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only this status: PENDING, CONFIRMED, SHIPPED, DELIVERED or CANCELLED (any case).
    #[param(value_type = Option<OrderStatus>)]
    status: Option<String>,
    /// Only this customer's orders (a customer's token sees its own only, whatever this says);
    /// no NUL byte.
    #[param(pattern = r"^[^\x00]*$")]
    customer_id: Option<String>,
    /// At most this many (1 to 1000; default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    cursor: Option<Uuid>,
}

/// Orders, newest first, paged by `nextCursor`.
#[utoipa::path(get, path = "/orders", tag = "orders", params(ListQuery), security(("bearer" = ["customer", "operator", "admin"])),
    responses(
        (status = 200, description = "A page of orders", body = Page<OrderView>),
        (status = 400, description = "Bad filter", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_orders(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<OrderView>>, ApiError> {
    // A customer lists its own orders: asking for someone else's finds none.
    let customer = match (caller.customer(), q.customer_id) {
        (Some(me), Some(asked)) if asked != me => return Ok(Json(Page::all(Vec::new()))),
        (Some(me), _) => Some(me.to_owned()),
        (None, asked) => asked,
    };
    let (status, limit) = list_filters(
        q.status,
        &OrderStatus::ALL.map(OrderStatus::as_str),
        q.limit,
        (50, 1000),
    )?;
    let rows = sqlx::query_as::<_, OrderRow>(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders \
         WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR customer_id = $2) \
           AND ($3::uuid IS NULL OR id < $3) \
         ORDER BY id DESC LIMIT $4"
    ))
    .bind(status)
    .bind(customer)
    .bind(q.cursor)
    .bind(limit + 1)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(page_of(rows, limit, |r| r.id, order_view)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn the_rate_limit_flags_parse_with_their_defaults() {
        // The flags as the service reads them, defaults included (the forms are the runtime's
        // `parse_rate_limit`, tested there).
        let c = Config::try_parse_from(["oms-order"]).ok();
        let limits = c.map(|c| (c.rate_limit, c.customer_rate_limit));
        assert_eq!(
            limits,
            Some((
                Some(RateLimit {
                    per_second: 500,
                    burst: 1000
                }),
                Some(RateLimit {
                    per_second: 2,
                    burst: 10
                })
            ))
        );
        let off = Config::try_parse_from(["oms-order", "--customer-rate-limit", "off"])
            .map(|c| c.customer_rate_limit);
        assert_eq!(off.ok(), Some(None));
        assert!(Config::try_parse_from(["oms-order", "--rate-limit", "soon"]).is_err());
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        let too_many = oms_runtime::http::too_many;
        let e = too_many("orders", Duration::from_millis(1200));
        assert_eq!((e.problem.status, e.retry_after), (429, Some(2)));
        assert_eq!(too_many("orders", Duration::ZERO).retry_after, Some(1));
    }
}
