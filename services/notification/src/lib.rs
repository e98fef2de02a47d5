//! The notification service: records one notification per order outcome (confirmed, or
//! cancelled with its reason), idempotently, and lists them (`GET /notifications?orderId=`).
//! Sending e-mail or SMS would hang off the same table; the OMS only records.

use oms_contracts::api::{NotificationView, Page, Problem};
use oms_contracts::routes;
use oms_contracts::ServiceId;
use std::collections::BTreeMap;
use utoipa::OpenApi as _;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use oms_contracts::CustomerId;
use oms_contracts::{Envelope, Message};
use oms_runtime::auth::Caller;
use oms_runtime::config::RuntimeConfig;
use oms_runtime::http::{ApiError, ApiQuery};
use oms_runtime::service::RuntimeError;
use oms_runtime::{Handler, HandlerContext, HandlerError, Runtime};
use serde::Deserialize;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The service's name (logs, database `oms_notification`).
pub const SERVICE: ServiceId = ServiceId::Notification;

/// Notification settings.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "oms-notification", version, about = "OMS notification service")]
pub struct Config {
    /// Shared runtime settings.
    #[command(flatten)]
    pub runtime: RuntimeConfig,

    /// Address the HTTP API listens on.
    #[arg(
        long,
        env = "OMS_NOTIFICATION_LISTEN",
        default_value_t = oms_runtime::config::default_listen(SERVICE)
    )]
    pub listen: String,
}

/// Runs the service until `shutdown`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), RuntimeError> {
    let mut runtime = Runtime::start(
        SERVICE.name(),
        config.runtime.clone(),
        Some(sqlx::migrate!("./migrations")),
        shutdown,
        |_| {},
    )
    .await?;
    runtime.consume(SERVICE.spec(), Notifier)?;
    let api = Router::new()
        .route(
            routes::LIST_NOTIFICATIONS.spec.path,
            get(list_notifications),
        )
        .with_state(runtime.pool().clone());
    runtime.serve(listener, api, ApiDoc::openapi()).await
}

/// This service's routes, documented.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list_notifications), tags((name = "notifications", description = "What customers were told")))]
pub struct ApiDoc;

/// The service's whole OpenAPI document (what `GET /openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    oms_runtime::http::openapi_document(SERVICE.name(), ApiDoc::openapi())
}

struct Notifier;

impl Handler for Notifier {
    async fn handle(
        &self,
        ctx: &mut HandlerContext,
        envelope: &Envelope,
    ) -> Result<(), HandlerError> {
        let (order_id, customer, kind, reason, text) = match &envelope.message {
            Message::OrderConfirmed(m) => (
                m.order_id,
                m.customer_id.as_ref(),
                "ORDER_CONFIRMED",
                None,
                format!(
                    "Your order {} is confirmed. Total: {}.",
                    m.order_id, m.total
                ),
            ),
            Message::OrderCancelled(m) => {
                let reason = m.reason.as_str().to_owned();
                let why = m.detail.clone().unwrap_or_else(|| reason.clone());
                (
                    m.order_id,
                    m.customer_id.as_ref(),
                    "ORDER_CANCELLED",
                    Some(reason),
                    format!("Your order {} was cancelled: {why}.", m.order_id),
                )
            }
            Message::OrderShipped(m) => (
                m.order_id,
                Some(&m.customer_id),
                "ORDER_SHIPPED",
                None,
                format!(
                    "Your order {} is on its way. Tracking number: {}.",
                    m.order_id, m.tracking_number
                ),
            ),
            Message::OrderDelivered(m) => (
                m.order_id,
                Some(&m.customer_id),
                "ORDER_DELIVERED",
                None,
                format!("Your order {} was delivered.", m.order_id),
            ),
            _ => return Ok(()),
        };
        let inserted = sqlx::query(
            "INSERT INTO notifications (order_id, customer_id, kind, reason, message, cause_event_id) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (order_id, kind) DO NOTHING",
        )
        .bind(order_id.0)
        .bind(customer.map(CustomerId::as_str))
        .bind(kind)
        .bind(reason)
        .bind(&text)
        .bind(envelope.event_id)
        .execute(ctx.tx())
        .await?
        .rows_affected();
        if inserted == 1 {
            tracing::info!(%order_id, kind, "notification recorded");
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only this order's notifications.
    order_id: Option<Uuid>,
    /// At most this many (1 to 1000; default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// Notifications sent, newest first (to a customer: its own only).
#[utoipa::path(get, path = "/notifications", tag = "notifications", params(ListQuery),
    security(("bearer" = ["customer", "operator", "admin"])),
    responses(
        (status = 200, description = "Notifications", body = Page<NotificationView>),
        (status = 400, description = "Bad filter", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_notifications(
    caller: Caller,
    State(pool): State<PgPool>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<NotificationView>>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        let mut errors = BTreeMap::new();
        errors.insert("limit".to_owned(), "must be between 1 and 1000".to_owned());
        return Err(ApiError::validation(errors));
    }
    let rows = sqlx::query_as::<_, NotificationRow>(
        "SELECT id, order_id, customer_id, kind, reason, message, cause_event_id, created_at \
         FROM notifications \
         WHERE ($1::uuid IS NULL OR order_id = $1) AND ($2::text IS NULL OR customer_id = $2) \
         ORDER BY id DESC LIMIT $3",
    )
    .bind(q.order_id)
    .bind(caller.customer())
    .bind(limit)
    .fetch_all(&pool)
    .await?;
    let items = rows
        .into_iter()
        .map(|r| NotificationView {
            id: r.id,
            order_id: r.order_id,
            customer_id: r.customer_id.and_then(|c| CustomerId::try_from(c).ok()),
            kind: r.kind,
            reason: r.reason,
            message: r.message,
            cause_event_id: r.cause_event_id,
            created_at: r.created_at,
        })
        .collect();
    Ok(Json(Page::all(items)))
}

/// A row of `notifications` as [`list_notifications`] reads it.
#[derive(sqlx::FromRow)]
struct NotificationRow {
    id: i64,
    order_id: Uuid,
    customer_id: Option<String>,
    kind: String,
    reason: Option<String>,
    message: String,
    cause_event_id: Uuid,
    created_at: chrono::DateTime<chrono::Utc>,
}
