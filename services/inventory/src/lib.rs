//! The inventory service: owns the catalog (products, prices, stock) and the reservations.
//!
//! # Layout
//! - [`stock`]: products and reservations in PostgreSQL.
//! - this module: the consumer of `inventory.reserve` / `inventory.release` commands and of
//!   `order.confirmed` (which sells the held stock), the reservation expiry sweeper, the HTTP API
//!   (`GET /products`, `GET /products/{id}`, `PUT /products/{id}/stock`,
//!   `GET /reservations/{orderId}`) and [`run`].
//!
//! Reserve is all-or-nothing across lines and never oversells; release and commit are idempotent;
//! a reservation that outlives its TTL is given back and reported as `inventory.released`
//! with reason `EXPIRED`.

pub mod stock;

use oms_contracts::api::{Page, Problem, ProductView, ReservationView, SetStock};
use oms_contracts::routes;
use oms_contracts::{ProductId, ServiceId};
use std::collections::BTreeMap;
use std::time::Duration;
use utoipa::OpenApi as _;

use axum::extract::State;
use axum::routing::{get, put};
use axum::{Json, Router};
use oms_contracts::messages::{ReleaseReason, StockRejected, StockReleased, StockReserved};
use oms_contracts::Topics;
use oms_contracts::{Envelope, Message};
use oms_runtime::auth::{Admin, Caller, Operator};
use oms_runtime::config::{parse_duration, RuntimeConfig};
use oms_runtime::http::{ApiError, ApiJson, ApiPath};
use oms_runtime::service::RuntimeError;
use oms_runtime::{outbox, Handler, HandlerContext, HandlerError, Parallelism, Runtime};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::Deserialize;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use stock::{Reservation, Status, StockError};

/// The service's name (logs, message source, database `oms_inventory`).
pub const SERVICE: ServiceId = ServiceId::Inventory;

/// Inventory settings.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "oms-inventory", version, about = "OMS inventory service")]
pub struct Config {
    /// Shared runtime settings.
    #[command(flatten)]
    pub runtime: RuntimeConfig,

    /// Address the HTTP API listens on.
    #[arg(long, env = "OMS_INVENTORY_LISTEN", default_value_t = oms_runtime::config::default_listen(SERVICE))]
    pub listen: String,

    /// How long a reservation holds stock unless its order is confirmed (a confirmed order's
    /// stock is held until its shipment is picked, then sold). Keep it longer than the saga's
    /// reserve and payment timeouts together.
    #[arg(long, env = "OMS_INVENTORY_RESERVATION_TTL", default_value = "15m", value_parser = parse_duration)]
    pub reservation_ttl: Duration,

    /// How often expired reservations are looked for.
    #[arg(long, env = "OMS_INVENTORY_EXPIRY_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub expiry_interval: Duration,
}

/// Runs the service until `shutdown`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), RuntimeError> {
    let stock = Family::<StockLabels, Gauge>::default();
    let mut runtime = Runtime::start(
        SERVICE.name(),
        config.runtime.clone(),
        Some(sqlx::migrate!("./migrations")),
        shutdown,
        |r| {
            r.register(
                "stock_units",
                "Units of each product, by state (available, reserved, sold)",
                stock.clone(),
            )
        },
    )
    .await?;
    let (pool, token) = (runtime.pool().clone(), runtime.shutdown().clone());
    runtime.spawn("stock gauges", async move {
        oms_runtime::service::every("stock gauges", GAUGE_INTERVAL, token, || {
            refresh_stock(&pool, &stock)
        })
        .await
    });
    runtime.consume(
        SERVICE.spec(),
        InventoryHandler {
            ttl: config.reservation_ttl,
        },
    )?;
    let expiry = Expiry {
        pool: runtime.pool().clone(),
        topics: runtime.topics(),
        interval: config.expiry_interval,
    };
    let token = runtime.shutdown().clone();
    runtime.spawn("reservation expiry", expiry.run(token));
    let api = router(runtime.pool().clone());
    runtime.serve(listener, api, ApiDoc::openapi()).await
}

/// How often the stock gauges are read from the database.
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);

/// Labels of the stock gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StockLabels {
    product: String,
    state: &'static str,
}

async fn refresh_stock(
    pool: &PgPool,
    stock: &Family<StockLabels, Gauge>,
) -> Result<bool, sqlx::Error> {
    let rows: Vec<(String, i32, i32, i32)> =
        sqlx::query_as("SELECT id, available, reserved, sold FROM products")
            .fetch_all(pool)
            .await?;
    for (product, available, reserved, sold) in rows {
        for (state, units) in [
            ("available", available),
            ("reserved", reserved),
            ("sold", sold),
        ] {
            stock
                .get_or_create(&StockLabels {
                    product: product.clone(),
                    state,
                })
                .set(i64::from(units));
        }
    }
    Ok(false)
}

impl From<StockError> for HandlerError {
    fn from(e: StockError) -> Self {
        match e {
            StockError::Db(e) => HandlerError::Database(e),
            StockError::Invalid(reason) => HandlerError::Rejected(reason),
        }
    }
}

fn outcome_message(order_id: oms_contracts::OrderId, outcome: Reservation) -> Message {
    match outcome {
        Reservation::Reserved {
            lines,
            total,
            expires_at,
        } => StockReserved {
            order_id,
            lines,
            total,
            expires_at,
        }
        .into(),
        Reservation::Rejected {
            reason,
            product_ids,
        } => StockRejected {
            order_id,
            reason,
            product_ids,
        }
        .into(),
    }
}

struct InventoryHandler {
    ttl: Duration,
}

impl Handler for InventoryHandler {
    /// Every reservation locks the same few product rows: one worker, so batches never lock
    /// them in opposite orders (a deadlock), and batches so those rows are locked once per commit
    /// rather than once per message.
    fn parallelism(&self) -> Parallelism {
        Parallelism {
            workers: 1,
            max_batch: 32,
        }
    }

    async fn handle(
        &self,
        ctx: &mut HandlerContext,
        envelope: &Envelope,
    ) -> Result<(), HandlerError> {
        match &envelope.message {
            Message::InventoryReserve(cmd) => {
                match stock::lock_reservation(ctx.tx(), cmd.order_id).await? {
                    // Asked again: answer as before, change nothing.
                    Some(stored) => match stored.outcome {
                        Some(outcome) => {
                            ctx.emit(outcome_message(cmd.order_id, outcome)).await?;
                        }
                        None => tracing::info!(
                            order_id = %cmd.order_id,
                            status = stored.status.as_str(),
                            "reservation requested again after it ended; ignored"
                        ),
                    },
                    None => {
                        let outcome = stock::reserve(
                            ctx.tx(),
                            cmd.order_id,
                            envelope.correlation_id,
                            &cmd.items,
                            self.ttl,
                        )
                        .await?;
                        ctx.emit(outcome_message(cmd.order_id, outcome)).await?;
                    }
                }
            }
            Message::InventoryRelease(cmd) => {
                match stock::lock_reservation(ctx.tx(), cmd.order_id).await? {
                    Some(stored) if stored.status == Status::Reserved => {
                        stock::give_back(ctx.tx(), cmd.order_id, &stored.lines, Status::Released)
                            .await?;
                    }
                    Some(stored) if stored.status == Status::Committed => {
                        return Err(HandlerError::Rejected(format!(
                            "order {} was picked; its sold stock cannot be released",
                            cmd.order_id
                        )));
                    }
                    Some(_) => {}
                    None => {
                        stock::tombstone(ctx.tx(), cmd.order_id, envelope.correlation_id).await?
                    }
                }
                // Released (now or before): say so, so the saga can finish.
                ctx.emit(StockReleased {
                    order_id: cmd.order_id,
                    reason: ReleaseReason::Compensation,
                })
                .await?;
            }
            // Confirmed: the hold lasts until the pick (no expiry) or a release.
            Message::OrderConfirmed(event) => {
                match stock::lock_reservation(ctx.tx(), event.order_id).await? {
                    Some(stored) if stored.status == Status::Reserved => {
                        stock::hold(ctx.tx(), event.order_id).await?;
                    }
                    Some(stored) if stored.status == Status::Committed => {}
                    Some(stored) if matches!(stored.status, Status::Expired | Status::Released) => {
                        if !stock::take_lapsed(
                            ctx.tx(),
                            event.order_id,
                            &event.lines,
                            Status::Reserved,
                        )
                        .await?
                        {
                            return Err(HandlerError::Rejected(format!(
                                "order {} was confirmed after its reservation {} and the stock is gone",
                                event.order_id,
                                stored.status.as_str().to_lowercase()
                            )));
                        }
                        tracing::warn!(order_id = %event.order_id, "order confirmed after its reservation lapsed; stock held again");
                    }
                    _ => {
                        return Err(HandlerError::Rejected(format!(
                            "order {} was confirmed without a reservation",
                            event.order_id
                        )))
                    }
                }
            }
            // Picked: the held stock is sold.
            Message::FulfillmentPicked(event) => {
                match stock::lock_reservation(ctx.tx(), event.order_id).await? {
                    Some(stored) if stored.status == Status::Reserved => {
                        stock::commit(ctx.tx(), event.order_id, &stored.lines).await?;
                    }
                    Some(stored) if stored.status == Status::Committed => {}
                    // Released is a cancellation's compensation: fulfillment confirmed the
                    // shipment would never leave, so a pick now is a stale or forged fact.
                    Some(stored) if stored.status == Status::Released => {
                        return Err(HandlerError::Rejected(format!(
                            "order {} was picked after its stock was released for a cancellation; nothing sold",
                            event.order_id
                        )));
                    }
                    Some(stored) if stored.status == Status::Expired => {
                        if !stock::take_lapsed(
                            ctx.tx(),
                            event.order_id,
                            &event.lines,
                            Status::Committed,
                        )
                        .await?
                        {
                            return Err(HandlerError::Rejected(format!(
                                "order {} was picked after its reservation was {} and the stock is gone",
                                event.order_id,
                                stored.status.as_str().to_lowercase()
                            )));
                        }
                        tracing::warn!(order_id = %event.order_id, "shipment picked after its reservation lapsed; stock taken again");
                    }
                    _ => {
                        return Err(HandlerError::Rejected(format!(
                            "order {} was picked without a reservation",
                            event.order_id
                        )))
                    }
                }
            }
            // Other order events and other services' messages are not ours.
            _ => {}
        }
        Ok(())
    }
}

/// Gives back reservations that outlived their TTL, one per transaction.
struct Expiry {
    pool: PgPool,
    topics: Topics,
    interval: Duration,
}

impl Expiry {
    async fn run(self, shutdown: CancellationToken) -> Result<(), String> {
        let interval = self.interval;
        oms_runtime::service::every("reservation expiry", interval, shutdown, || {
            self.expire_one()
        })
        .await
    }

    async fn expire_one(&self) -> Result<bool, StockError> {
        let mut tx = self.pool.begin().await?;
        let Some((order_id, correlation_id, lines)) = stock::lock_one_expired(&mut tx).await?
        else {
            return Ok(false);
        };
        stock::give_back(&mut tx, order_id, &lines, Status::Expired).await?;
        let envelope = Envelope::new(
            StockReleased {
                order_id,
                reason: ReleaseReason::Expired,
            },
            SERVICE.name(),
            correlation_id,
        );
        outbox::enqueue_envelope(&mut *tx, &self.topics, &envelope)
            .await
            .map_err(sqlx::Error::from)?;
        tx.commit().await?;
        outbox::notify(&self.pool).await;
        tracing::info!(%order_id, "reservation expired; stock given back");
        Ok(true)
    }
}

/// This service's routes, documented.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list_products, get_product, set_stock, list_reservations, get_reservation), tags(
    (name = "products", description = "The catalog and its stock"),
    (name = "reservations", description = "Stock held for orders")))]
pub struct ApiDoc;

/// The service's whole OpenAPI document (what `GET /openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    oms_runtime::http::openapi_document(SERVICE.name(), ApiDoc::openapi())
}

/// The HTTP API.
pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route(routes::LIST_PRODUCTS.spec.path, get(list_products))
        .route(routes::GET_PRODUCT.spec.path, get(get_product))
        .route(routes::SET_STOCK.spec.path, put(set_stock))
        .route(routes::LIST_RESERVATIONS.spec.path, get(list_reservations))
        .route(routes::GET_RESERVATION.spec.path, get(get_reservation))
        .with_state(pool)
}

/// The whole catalog.
#[utoipa::path(get, path = "/products", tag = "products", security(("bearer" = ["customer", "operator", "admin"])),
    responses((status = 200, description = "Every product", body = Page<ProductView>)))]
async fn list_products(
    _: Caller,
    State(pool): State<PgPool>,
) -> Result<Json<Page<ProductView>>, ApiError> {
    let mut conn = pool.acquire().await?;
    Ok(Json(Page::all(stock::products(&mut conn).await?)))
}

/// A product id from a path: malformed is 400 (like a malformed UUID elsewhere), well-formed
/// but unknown is the handler's 404.
fn product_id(id: String) -> Result<ProductId, ApiError> {
    ProductId::try_from(id).map_err(|e| ApiError::bad_request(format!("Not a product id: {}", e.0)))
}

/// One product.
#[utoipa::path(get, path = "/products/{id}", tag = "products", security(("bearer" = ["customer", "operator", "admin"])),
    params(("id" = String, Path, description = "Product id", pattern = r"^[a-z0-9._-]{1,64}$")),
    responses(
        (status = 200, description = "The product", body = ProductView),
        (status = 400, description = "Not a product id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_product(
    _: Caller,
    State(pool): State<PgPool>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ProductView>, ApiError> {
    let id = product_id(id)?;
    let mut conn = pool.acquire().await?;
    stock::product(&mut conn, id.as_str())
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("No product {id:?}")))
}

/// Largest stock an operator may set for one product.
const MAX_STOCK: i64 = 1_000_000;

/// Sets a product's available stock (the difference is recorded as adjusted).
#[utoipa::path(put, path = "/products/{id}/stock", tag = "products", security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "Product id", pattern = r"^[a-z0-9._-]{1,64}$")),
    request_body = SetStock,
    responses(
        (status = 200, description = "The product now", body = ProductView),
        (status = 400, description = "Not a product id, out of range, or not a stock body", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
    ))]
async fn set_stock(
    _: Admin,
    State(pool): State<PgPool>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<SetStock>,
) -> Result<Json<ProductView>, ApiError> {
    let id = product_id(id)?;
    if !(0..=MAX_STOCK).contains(&body.available) {
        let mut errors = BTreeMap::new();
        errors.insert(
            "available".to_owned(),
            format!("must be between 0 and {MAX_STOCK}"),
        );
        return Err(ApiError::validation(errors));
    }
    let mut conn = pool.acquire().await?;
    let view = stock::set_available(&mut conn, id.as_str(), body.available as i32)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("No product {id:?}")))?;
    tracing::info!(product_id = %id, available = body.available, "stock set");
    Ok(Json(view))
}

/// The reservation of an order.
#[utoipa::path(get, path = "/reservations/{order_id}", tag = "reservations", security(("bearer" = ["operator", "admin"])),
    params(("order_id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, description = "The reservation", body = ReservationView),
        (status = 400, description = "Not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No reservation for this order", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_reservation(
    _: Operator,
    State(pool): State<PgPool>,
    ApiPath(order_id): ApiPath<Uuid>,
) -> Result<Json<ReservationView>, ApiError> {
    let mut conn = pool.acquire().await?;
    stock::reservation_view(&mut conn, order_id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("No reservation for order {order_id}")))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ReservationQuery {
    /// Only this status: RESERVED, COMMITTED, RELEASED, EXPIRED or REJECTED (any case).
    #[param(pattern = "^(?i:RESERVED|COMMITTED|RELEASED|EXPIRED|REJECTED)$")]
    status: Option<String>,
    /// At most this many (1 to 100,000; default 1000).
    #[param(minimum = 1, maximum = 100_000)]
    limit: Option<i64>,
}

/// Reservations, newest first.
#[utoipa::path(get, path = "/reservations", tag = "reservations", params(ReservationQuery), security(("bearer" = ["operator", "admin"])),
    responses(
        (status = 200, description = "Reservations", body = Page<ReservationView>),
        (status = 400, description = "Bad filter", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_reservations(
    _: Operator,
    State(pool): State<PgPool>,
    oms_runtime::http::ApiQuery(q): oms_runtime::http::ApiQuery<ReservationQuery>,
) -> Result<Json<Page<ReservationView>>, ApiError> {
    let limit = q.limit.unwrap_or(1000);
    let mut errors = BTreeMap::new();
    if !(1..=100_000).contains(&limit) {
        errors.insert(
            "limit".to_owned(),
            "must be between 1 and 100000".to_owned(),
        );
    }
    let status = q.status.map(|s| s.to_ascii_uppercase());
    if let Some(s) = &status {
        if !["RESERVED", "COMMITTED", "RELEASED", "EXPIRED", "REJECTED"].contains(&s.as_str()) {
            errors.insert(
                "status".to_owned(),
                "expected RESERVED, COMMITTED, RELEASED, EXPIRED or REJECTED".to_owned(),
            );
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let mut conn = pool.acquire().await?;
    let items = stock::reservation_list(&mut conn, status.as_deref(), limit).await?;
    Ok(Json(Page::all(items)))
}
