//! The payment service: authorizes order totals through a (simulated) gateway, refunds or voids
//! them for compensation.
//!
//! # Layout
//! - [`gateway`]: the gateway trait and the simulated, token-deterministic gateway with knobs.
//! - this module: the consumer of `payment.authorize` / `payment.refund`, the HTTP API
//!   (`GET /payments`, `GET /payments/{orderId}`, `GET|PUT /gateway/faults`) and [`run`].
//!
//! Authorize is idempotent per order: the order id is the payment's key, so a redelivered or
//! replayed command answers with the recorded outcome and never charges twice. A refund of an
//! order with no payment yet voids it: a row says so, and a later authorization is not charged.

pub mod gateway;

use oms_contracts::api::{GatewayKnobs, Page, PaymentView, Problem};
use oms_contracts::routes;
use oms_contracts::ServiceId;
use utoipa::OpenApi as _;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use oms_contracts::messages::{
    CancelReason, DeclineReason, PaymentAuthorized, PaymentDeclined, PaymentRefunded, RefundOutcome,
};
use oms_contracts::{Currency, Envelope, Message, Money, OrderId};
use oms_runtime::auth::{Admin, Operator};
use oms_runtime::config::RuntimeConfig;
use oms_runtime::http::{list_filters, page_of, ApiError, ApiJson, ApiPath, ApiQuery};
use oms_runtime::metrics::OutcomeLabel;
use oms_runtime::prometheus_client::metrics::counter::Counter;
use oms_runtime::prometheus_client::metrics::family::Family;
use oms_runtime::service::RuntimeError;
use oms_runtime::{Handler, HandlerContext, HandlerError, Parallelism, Runtime};
use serde::Deserialize;
use sqlx::{PgConnection, PgPool};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use gateway::{AuthorizeRequest, Decision, Gateway, Knobs, Simulated};

/// The service's name (logs, message source, database `oms_payment`).
pub const SERVICE: ServiceId = ServiceId::Payment;

/// Payment settings.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "oms-payment", version, about = "OMS payment service")]
pub struct Config {
    /// Shared runtime settings.
    #[command(flatten)]
    pub runtime: RuntimeConfig,

    /// Address the HTTP API listens on.
    #[arg(long, env = "OMS_PAYMENT_LISTEN", default_value_t = oms_runtime::config::default_listen(SERVICE))]
    pub listen: String,
}

/// Runs the service until `shutdown`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), RuntimeError> {
    let outcomes = Family::<OutcomeLabel, Counter>::default();
    // Every outcome from zero, so the first of each shows as a rate, not a new series.
    for outcome in ["authorized", "declined", "refunded", "voided"] {
        drop(outcomes.get_or_create(&OutcomeLabel {
            outcome: outcome.to_owned(),
        }));
    }
    let mut runtime = Runtime::start(
        SERVICE.name(),
        config.runtime.clone(),
        Some(sqlx::migrate!("./migrations")),
        shutdown,
        |r| {
            r.register(
                "payments",
                "Payments by outcome (authorized, declined, refunded, voided)",
                outcomes.clone(),
            )
        },
    )
    .await?;
    let gateway = Simulated::default();
    runtime.consume(
        SERVICE.spec(),
        PaymentHandler {
            gateway: gateway.clone(),
            outcomes,
        },
    )?;
    let api = router(AppState {
        pool: runtime.pool().clone(),
        gateway,
    });
    runtime.serve(listener, api, ApiDoc::openapi()).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Authorized,
    Declined,
    Refunded,
    Voided,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Authorized => "AUTHORIZED",
            Status::Declined => "DECLINED",
            Status::Refunded => "REFUNDED",
            Status::Voided => "VOIDED",
        }
    }
}

struct Payment {
    payment_id: Uuid,
    status: Status,
    amount: Money,
    decline_reason: Option<DeclineReason>,
}

async fn lock_payment(
    conn: &mut PgConnection,
    order: OrderId,
) -> Result<Option<Payment>, sqlx::Error> {
    let Some(row) = sqlx::query_as::<_, PaymentRow>(
        "SELECT payment_id, status, amount_minor, currency, decline_reason FROM payments \
         WHERE order_id = $1 FOR UPDATE",
    )
    .bind(order.0)
    .fetch_optional(conn)
    .await?
    else {
        return Ok(None);
    };
    let bad = |what: String| sqlx::Error::Decode(what.into());
    let status = match row.status.as_str() {
        "AUTHORIZED" => Status::Authorized,
        "DECLINED" => Status::Declined,
        "REFUNDED" => Status::Refunded,
        "VOIDED" => Status::Voided,
        other => return Err(bad(format!("unknown payment status {other:?}"))),
    };
    let currency = Currency::try_from(row.currency.as_str()).map_err(|e| bad(e.0))?;
    let amount = Money::new(row.amount_minor, currency).map_err(|e| bad(e.0))?;
    let decline_reason = row.decline_reason.and_then(|r| r.parse().ok());
    Ok(Some(Payment {
        payment_id: row.payment_id,
        status,
        amount,
        decline_reason,
    }))
}

/// What [`lock_payment`] reads of a row of `payments`.
#[derive(sqlx::FromRow)]
struct PaymentRow {
    payment_id: Uuid,
    status: String,
    amount_minor: i64,
    currency: String,
    decline_reason: Option<String>,
}

struct PaymentHandler<G> {
    gateway: G,
    /// Payments by outcome: `authorized`, `declined`, `refunded`, `voided` (counted once, when
    /// the transaction that records it commits; an answer repeated to a retried command is not
    /// counted again).
    outcomes: Family<OutcomeLabel, Counter>,
}

impl<G> PaymentHandler<G> {
    fn count_after_commit(&self, ctx: &mut HandlerContext, outcome: &'static str) {
        oms_runtime::metrics::count_outcome_after_commit(&self.outcomes, ctx, outcome);
    }
}

impl<G: Gateway> Handler for PaymentHandler<G> {
    /// Each authorization calls the gateway: one message per transaction, so one slow or
    /// failing call never holds or undoes another order's charge, and several at once so a slow
    /// gateway does not queue every order behind one call.
    fn parallelism(&self) -> Parallelism {
        Parallelism {
            workers: 8,
            max_batch: 1,
        }
    }

    async fn handle(
        &self,
        ctx: &mut HandlerContext,
        envelope: &Envelope,
    ) -> Result<(), HandlerError> {
        match &envelope.message {
            Message::PaymentAuthorize(cmd) => {
                if let Some(existing) = lock_payment(ctx.tx(), cmd.order_id).await? {
                    // Asked again: the recorded outcome, never a second charge.
                    let answer: Option<Message> = match existing.status {
                        Status::Authorized => Some(
                            PaymentAuthorized {
                                order_id: cmd.order_id,
                                payment_id: existing.payment_id,
                                amount: existing.amount,
                            }
                            .into(),
                        ),
                        Status::Declined => Some(
                            PaymentDeclined {
                                order_id: cmd.order_id,
                                reason: existing
                                    .decline_reason
                                    .unwrap_or(DeclineReason::CardDeclined),
                            }
                            .into(),
                        ),
                        Status::Refunded | Status::Voided => None,
                    };
                    match answer {
                        Some(m) => {
                            ctx.emit(m).await?;
                        }
                        None => tracing::info!(
                            order_id = %cmd.order_id,
                            status = existing.status.as_str(),
                            "authorization requested after the payment was undone; not charged"
                        ),
                    }
                    return Ok(());
                }
                let decision = self
                    .gateway
                    .authorize(&AuthorizeRequest {
                        amount: cmd.amount,
                        token: cmd.payment_token.clone(),
                    })
                    .await
                    .map_err(|e| HandlerError::Retry(e.to_string()))?;
                let payment_id = Uuid::now_v7();
                let (status, reason) = match decision {
                    Decision::Approved => (Status::Authorized, None),
                    Decision::Declined(r) => (Status::Declined, Some(r)),
                };
                sqlx::query(
                    "INSERT INTO payments (order_id, payment_id, status, amount_minor, currency, \
                     customer_id, payment_token, decline_reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(cmd.order_id.0)
                .bind(payment_id)
                .bind(status.as_str())
                .bind(cmd.amount.amount_minor)
                .bind(cmd.amount.currency.as_str())
                .bind(cmd.customer_id.as_str())
                .bind(&cmd.payment_token)
                .bind(reason.map(DeclineReason::as_str))
                .execute(ctx.tx())
                .await?;
                let outcome = if reason.is_none() {
                    "authorized"
                } else {
                    "declined"
                };
                self.count_after_commit(ctx, outcome);
                match reason {
                    None => {
                        ctx.emit(PaymentAuthorized {
                            order_id: cmd.order_id,
                            payment_id,
                            amount: cmd.amount,
                        })
                        .await?;
                    }
                    Some(reason) => {
                        ctx.emit(PaymentDeclined {
                            order_id: cmd.order_id,
                            reason,
                        })
                        .await?;
                    }
                }
            }
            Message::PaymentRefund(cmd) => {
                let (outcome, amount) = match lock_payment(ctx.tx(), cmd.order_id).await? {
                    Some(p) if p.status == Status::Authorized => {
                        set_refunded(ctx.tx(), cmd.order_id, Status::Refunded, cmd.reason).await?;
                        self.count_after_commit(ctx, "refunded");
                        (RefundOutcome::Refunded, Some(p.amount))
                    }
                    Some(p) if p.status == Status::Refunded => {
                        (RefundOutcome::Refunded, Some(p.amount))
                    }
                    Some(p) if p.status == Status::Voided => (RefundOutcome::Voided, None),
                    Some(_) => (RefundOutcome::NothingToRefund, None),
                    None => {
                        sqlx::query(
                            "INSERT INTO payments (order_id, payment_id, status, amount_minor, currency, refund_reason) \
                             VALUES ($1, $2, 'VOIDED', 0, 'EUR', $3)",
                        )
                        .bind(cmd.order_id.0)
                        .bind(Uuid::now_v7())
                        .bind(cmd.reason.as_str())
                        .execute(ctx.tx())
                        .await?;
                        self.count_after_commit(ctx, "voided");
                        (RefundOutcome::Voided, None)
                    }
                };
                ctx.emit(PaymentRefunded {
                    order_id: cmd.order_id,
                    outcome,
                    amount,
                })
                .await?;
            }
            _ => {}
        }
        Ok(())
    }
}

async fn set_refunded(
    conn: &mut PgConnection,
    order: OrderId,
    to: Status,
    reason: CancelReason,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE payments SET status = $2, refund_reason = $3, updated_at = now() WHERE order_id = $1",
    )
    .bind(order.0)
    .bind(to.as_str())
    .bind(reason.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// This service's routes, documented.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list_payments, get_payment, get_faults, set_faults), tags(
    (name = "payments", description = "Payments and their outcome"),
    (name = "gateway", description = "The simulated gateway's fault knobs")))]
pub struct ApiDoc;

/// The service's whole OpenAPI document (what `GET /openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    oms_runtime::http::openapi_document(SERVICE.name(), ApiDoc::openapi())
}

#[derive(Clone)]
struct AppState {
    pool: PgPool,
    gateway: Simulated,
}

fn router(state: AppState) -> Router {
    Router::new()
        .route(routes::LIST_PAYMENTS.spec.path, get(list_payments))
        .route(routes::GET_PAYMENT.spec.path, get(get_payment))
        .route(
            routes::GET_GATEWAY_FAULTS.spec.path,
            get(get_faults).put(set_faults),
        )
        .with_state(state)
}

const PAYMENT_COLUMNS: &str = "order_id, payment_id, status, amount_minor, currency, customer_id, \
     decline_reason, refund_reason, created_at, updated_at";

/// The `PAYMENT_COLUMNS` of a row of `payments`.
#[derive(sqlx::FromRow)]
struct PaymentViewRow {
    order_id: Uuid,
    payment_id: Uuid,
    status: String,
    amount_minor: i64,
    currency: String,
    customer_id: Option<String>,
    decline_reason: Option<String>,
    refund_reason: Option<String>,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
}

fn payment_view(r: &PaymentViewRow) -> Result<PaymentView, ApiError> {
    Ok(PaymentView {
        order_id: r.order_id,
        payment_id: r.payment_id,
        status: r.status.clone(),
        amount: Money::from_parts(r.amount_minor, &r.currency)
            .map_err(|e| ApiError::internal(&e))?,
        customer_id: r.customer_id.clone(),
        decline_reason: r.decline_reason.clone(),
        refund_reason: r.refund_reason.clone(),
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

/// The payment of an order.
#[utoipa::path(get, path = "/payments/{order_id}", tag = "payments", security(("bearer" = ["operator", "admin"])),
    params(("order_id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, description = "The payment", body = PaymentView),
        (status = 400, description = "Not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No payment for this order", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_payment(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(order_id): ApiPath<Uuid>,
) -> Result<Json<PaymentView>, ApiError> {
    let row = sqlx::query_as::<_, PaymentViewRow>(&format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE order_id = $1"
    ))
    .bind(order_id)
    .fetch_optional(&state.pool)
    .await?;
    match row {
        Some(r) => Ok(Json(payment_view(&r)?)),
        None => Err(ApiError::not_found(format!(
            "No payment for order {order_id}"
        ))),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only this status: AUTHORIZED, DECLINED, REFUNDED or VOIDED (any case).
    #[param(pattern = "^(?i:AUTHORIZED|DECLINED|REFUNDED|VOIDED)$")]
    status: Option<String>,
    /// At most this many (1 to 10,000; default 100).
    #[param(minimum = 1, maximum = 10_000)]
    limit: Option<i64>,
    /// The `nextCursor` of the previous page: payments of older orders than this one.
    cursor: Option<Uuid>,
}

/// Payments of the newest orders first, paged by `nextCursor`.
#[utoipa::path(get, path = "/payments", tag = "payments", params(ListQuery), security(("bearer" = ["operator", "admin"])),
    responses(
        (status = 200, description = "A page of payments", body = Page<PaymentView>),
        (status = 400, description = "Bad filter", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_payments(
    _: Operator,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<PaymentView>>, ApiError> {
    let (status, limit) = list_filters(
        q.status,
        &["AUTHORIZED", "DECLINED", "REFUNDED", "VOIDED"],
        q.limit,
        (100, 10_000),
    )?;
    // Newest orders first (order ids are time-ordered UUIDv7), pages by order id.
    let rows = sqlx::query_as::<_, PaymentViewRow>(&format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments \
         WHERE ($1::text IS NULL OR status = $1) AND ($2::uuid IS NULL OR order_id < $2) \
         ORDER BY order_id DESC LIMIT $3"
    ))
    .bind(status)
    .bind(q.cursor)
    .bind(limit + 1)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(page_of(rows, limit, |r| r.order_id, payment_view)?))
}

/// The simulated gateway's fault knobs.
#[utoipa::path(get, path = "/gateway/faults", tag = "gateway", security(("bearer" = ["operator", "admin"])),
    responses((status = 200, description = "The knobs", body = GatewayKnobs)))]
async fn get_faults(_: Operator, State(state): State<AppState>) -> Json<Knobs> {
    Json(state.gateway.knobs())
}

/// Replaces the gateway's fault knobs (fields left out are zero).
#[utoipa::path(put, path = "/gateway/faults", tag = "gateway", request_body = GatewayKnobs, security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "The knobs now in force", body = GatewayKnobs),
        (status = 400, description = "A knob out of range, or an unknown one", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
    ))]
async fn set_faults(
    _: Admin,
    State(state): State<AppState>,
    ApiJson(knobs): ApiJson<Knobs>,
) -> Result<Json<Knobs>, ApiError> {
    ApiError::check(knobs.problems())?;
    state.gateway.set_knobs(knobs);
    tracing::warn!(?knobs, "gateway fault knobs changed");
    Ok(Json(knobs))
}
