//! Stock and reservations in PostgreSQL. Rows of `products` are always locked in product-id order
//! (one reservation per transaction), so concurrent reservations never deadlock; the table's
//! CHECKs make overselling and losing stock impossible even for a bug here.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use oms_contracts::messages::RejectReason;
use oms_contracts::{Currency, Money, OrderId, OrderLine, PricedLine, ProductId};
use sqlx::PgConnection;
use uuid::Uuid;

/// What a reservation attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Every line is held.
    Reserved {
        /// Lines priced from the catalog, one per product, in product order.
        lines: Vec<PricedLine>,
        /// Their sum.
        total: Money,
        /// When the hold lapses unless the order is confirmed.
        expires_at: DateTime<Utc>,
    },
    /// Nothing is held.
    Rejected {
        /// Why.
        reason: RejectReason,
        /// Which products.
        product_ids: Vec<ProductId>,
    },
}

/// Why stock could not be moved.
#[derive(Debug, thiserror::Error)]
pub enum StockError {
    /// The database.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// A rule that holds for every well-formed message was broken: do not retry.
    #[error("{0}")]
    Invalid(String),
}

/// Status of an order's reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Held for the order.
    Reserved,
    /// Sold: the order was confirmed.
    Committed,
    /// Given back by the saga's compensation.
    Released,
    /// Given back because it outlived its TTL.
    Expired,
    /// Never held.
    Rejected,
}

impl Status {
    fn parse(s: &str) -> Result<Self, sqlx::Error> {
        Ok(match s {
            "RESERVED" => Status::Reserved,
            "COMMITTED" => Status::Committed,
            "RELEASED" => Status::Released,
            "EXPIRED" => Status::Expired,
            "REJECTED" => Status::Rejected,
            other => {
                return Err(sqlx::Error::Decode(
                    format!("unknown reservation status {other:?}").into(),
                ))
            }
        })
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Reserved => "RESERVED",
            Status::Committed => "COMMITTED",
            Status::Released => "RELEASED",
            Status::Expired => "EXPIRED",
            Status::Rejected => "REJECTED",
        }
    }
}

/// A stored reservation.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Status.
    pub status: Status,
    /// The order's journey.
    pub correlation_id: Uuid,
    /// Held (or once held) lines.
    pub lines: Vec<PricedLine>,
    /// What it came to as a reservation outcome (for answering a repeated request).
    pub outcome: Option<Reservation>,
}

/// Loads and locks an order's reservation.
pub async fn lock_reservation(
    conn: &mut PgConnection,
    order: OrderId,
) -> Result<Option<Stored>, sqlx::Error> {
    let Some(row) = sqlx::query_as::<_, ReservationRow>(
        "SELECT status, correlation_id, lines, total_minor, currency, reject_reason, rejected_ids, expires_at \
         FROM reservations WHERE order_id = $1 FOR UPDATE",
    )
    .bind(order.0)
    .fetch_optional(conn)
    .await?
    else {
        return Ok(None);
    };
    let status = Status::parse(&row.status)?;
    let lines: Vec<PricedLine> =
        serde_json::from_value(row.lines).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let outcome = match status {
        Status::Reserved => {
            let total = row
                .currency
                .as_deref()
                .and_then(|c| Currency::try_from(c).ok())
                .and_then(|c| Money::new(row.total_minor?, c).ok());
            match (total, row.expires_at) {
                (Some(total), Some(expires_at)) => Some(Reservation::Reserved {
                    lines: lines.clone(),
                    total,
                    expires_at,
                }),
                _ => None,
            }
        }
        Status::Rejected => {
            let reason = row
                .reject_reason
                .as_deref()
                .and_then(|r| r.parse().ok())
                .unwrap_or(RejectReason::OutOfStock);
            Some(Reservation::Rejected {
                reason,
                product_ids: row
                    .rejected_ids
                    .into_iter()
                    .filter_map(|id| ProductId::try_from(id).ok())
                    .collect(),
            })
        }
        _ => None,
    };
    Ok(Some(Stored {
        status,
        correlation_id: row.correlation_id,
        lines,
        outcome,
    }))
}

/// What [`lock_reservation`] reads of a row of `reservations`.
#[derive(sqlx::FromRow)]
struct ReservationRow {
    status: String,
    correlation_id: Uuid,
    lines: serde_json::Value,
    total_minor: Option<i64>,
    currency: Option<String>,
    reject_reason: Option<String>,
    rejected_ids: Vec<String>,
    expires_at: Option<DateTime<Utc>>,
}

struct Locked {
    id: String,
    price: Money,
    available: i32,
}

/// Locks the given products in id order; returns those that exist.
async fn lock_products(conn: &mut PgConnection, ids: &[&str]) -> Result<Vec<Locked>, StockError> {
    let rows = sqlx::query_as::<_, ProductRow>(
        "SELECT id, unit_price_minor, currency, available FROM products \
         WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind(ids)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            let currency = Currency::try_from(r.currency.as_str())
                .map_err(|e| StockError::Invalid(e.to_string()))?;
            let price = Money::new(r.unit_price_minor, currency)
                .map_err(|e| StockError::Invalid(e.to_string()))?;
            Ok(Locked {
                id: r.id,
                price,
                available: r.available,
            })
        })
        .collect()
}

/// What [`lock_products`] reads of a row of `products`.
#[derive(sqlx::FromRow)]
struct ProductRow {
    id: String,
    unit_price_minor: i64,
    currency: String,
    available: i32,
}

/// Moves `quantity` of a (locked) product between the stock columns.
async fn shift(
    conn: &mut PgConnection,
    product: &str,
    available: i64,
    reserved: i64,
    sold: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE products SET available = available + $2, reserved = reserved + $3, \
         sold = sold + $4, updated_at = now() WHERE id = $1",
    )
    .bind(product)
    .bind(available as i32)
    .bind(reserved as i32)
    .bind(sold as i32)
    .execute(conn)
    .await?;
    Ok(())
}

/// Reserves every line of `items` or none, pricing them from the catalog, and records the outcome.
pub async fn reserve(
    conn: &mut PgConnection,
    order: OrderId,
    correlation_id: Uuid,
    items: &[OrderLine],
    ttl: std::time::Duration,
) -> Result<Reservation, StockError> {
    // One line per product, in id order: the lock order, and what the reservation records.
    let mut wanted: BTreeMap<&str, u64> = BTreeMap::new();
    for line in items {
        *wanted.entry(line.product_id.as_str()).or_default() += u64::from(line.quantity);
    }
    let ids: Vec<&str> = wanted.keys().copied().collect();
    let products = lock_products(conn, &ids).await?;
    let unknown: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| !products.iter().any(|p| p.id == *id))
        .collect();
    let short: Vec<&str> = products
        .iter()
        .filter(|p| wanted.get(p.id.as_str()).copied().unwrap_or(0) > p.available.max(0) as u64)
        .map(|p| p.id.as_str())
        .collect();
    let rejection = if !unknown.is_empty() {
        Some((RejectReason::UnknownProduct, unknown))
    } else if !short.is_empty() {
        Some((RejectReason::OutOfStock, short))
    } else {
        None
    };
    if let Some((reason, ids)) = rejection {
        let product_ids: Vec<ProductId> = ids
            .iter()
            .filter_map(|id| ProductId::try_from(*id).ok())
            .collect();
        sqlx::query(
            "INSERT INTO reservations (order_id, correlation_id, status, reject_reason, rejected_ids) \
             VALUES ($1, $2, 'REJECTED', $3, $4)",
        )
        .bind(order.0)
        .bind(correlation_id)
        .bind(reason.as_str())
        .bind(&ids)
        .execute(&mut *conn)
        .await?;
        return Ok(Reservation::Rejected {
            reason,
            product_ids,
        });
    }

    let mut lines = Vec::with_capacity(products.len());
    let mut total: Option<Money> = None;
    for p in &products {
        let quantity = wanted.get(p.id.as_str()).copied().unwrap_or(0);
        let quantity = u32::try_from(quantity)
            .map_err(|_| StockError::Invalid(format!("quantity of {} overflows", p.id)))?;
        let line_total = p
            .price
            .checked_mul(quantity)
            .ok_or_else(|| StockError::Invalid(format!("price of {} overflows", p.id)))?;
        total = Some(match total {
            None => line_total,
            Some(t) => t.checked_add(line_total).ok_or_else(|| {
                StockError::Invalid("lines overflow or mix currencies".to_owned())
            })?,
        });
        shift(conn, &p.id, -i64::from(quantity), i64::from(quantity), 0).await?;
        lines.push(PricedLine {
            product_id: ProductId::try_from(p.id.as_str())
                .map_err(|e| StockError::Invalid(e.to_string()))?,
            quantity,
            unit_price: p.price,
        });
    }
    let total =
        total.ok_or_else(|| StockError::Invalid("an order needs at least one line".into()))?;
    let expires_at = Utc::now()
        + chrono::TimeDelta::from_std(ttl).map_err(|e| StockError::Invalid(e.to_string()))?;
    sqlx::query(
        "INSERT INTO reservations (order_id, correlation_id, status, lines, total_minor, currency, expires_at) \
         VALUES ($1, $2, 'RESERVED', $3, $4, $5, $6)",
    )
    .bind(order.0)
    .bind(correlation_id)
    .bind(serde_json::to_value(&lines).map_err(|e| StockError::Invalid(e.to_string()))?)
    .bind(total.amount_minor)
    .bind(total.currency.as_str())
    .bind(expires_at)
    .execute(&mut *conn)
    .await?;
    Ok(Reservation::Reserved {
        lines,
        total,
        expires_at,
    })
}

/// Gives a held reservation's stock back and marks it `to` (RELEASED or EXPIRED).
pub async fn give_back(
    conn: &mut PgConnection,
    order: OrderId,
    lines: &[PricedLine],
    to: Status,
) -> Result<(), StockError> {
    let ids: Vec<&str> = lines.iter().map(|l| l.product_id.as_str()).collect();
    lock_products(conn, &ids).await?;
    for line in sorted(lines) {
        let q = i64::from(line.quantity);
        shift(conn, line.product_id.as_str(), q, -q, 0).await?;
    }
    set_status(conn, order, to).await?;
    Ok(())
}

/// Sells a held reservation's stock.
pub async fn commit(
    conn: &mut PgConnection,
    order: OrderId,
    lines: &[PricedLine],
) -> Result<(), StockError> {
    let ids: Vec<&str> = lines.iter().map(|l| l.product_id.as_str()).collect();
    lock_products(conn, &ids).await?;
    for line in sorted(lines) {
        let q = i64::from(line.quantity);
        shift(conn, line.product_id.as_str(), 0, -q, q).await?;
    }
    set_status(conn, order, Status::Committed).await?;
    Ok(())
}

/// Keeps a confirmed order's reservation until its shipment is picked: no expiry any more.
pub async fn hold(conn: &mut PgConnection, order: OrderId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE reservations SET expires_at = NULL, updated_at = now() WHERE order_id = $1",
    )
    .bind(order.0)
    .execute(conn)
    .await?;
    Ok(())
}

/// Takes stock whose hold had lapsed again, if it is still there, as `to` (held without expiry,
/// or sold); `Ok(false)` when it is not.
pub async fn take_lapsed(
    conn: &mut PgConnection,
    order: OrderId,
    lines: &[PricedLine],
    to: Status,
) -> Result<bool, StockError> {
    let ids: Vec<&str> = lines.iter().map(|l| l.product_id.as_str()).collect();
    let products = lock_products(conn, &ids).await?;
    let enough = sorted(lines).iter().all(|l| {
        products
            .iter()
            .any(|p| p.id == l.product_id.as_str() && p.available >= l.quantity as i32)
    });
    if !enough {
        return Ok(false);
    }
    let sold = to == Status::Committed;
    for line in sorted(lines) {
        let q = i64::from(line.quantity);
        let (held, out) = if sold { (0, q) } else { (q, 0) };
        shift(conn, line.product_id.as_str(), -q, held, out).await?;
    }
    let lines = serde_json::to_value(lines).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "UPDATE reservations SET status = $2, expires_at = NULL, updated_at = now(), \
         lines = CASE WHEN lines = '[]'::jsonb THEN $3 ELSE lines END WHERE order_id = $1",
    )
    .bind(order.0)
    .bind(to.as_str())
    .bind(lines)
    .execute(conn)
    .await?;
    Ok(true)
}

/// Records that an order's stock was released although nothing was ever held for it, so a late
/// reservation request for that order is not honoured.
pub async fn tombstone(
    conn: &mut PgConnection,
    order: OrderId,
    correlation_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO reservations (order_id, correlation_id, status) VALUES ($1, $2, 'RELEASED') \
         ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(order.0)
    .bind(correlation_id)
    .execute(conn)
    .await?;
    Ok(())
}

fn sorted(lines: &[PricedLine]) -> Vec<&PricedLine> {
    let mut v: Vec<&PricedLine> = lines.iter().collect();
    v.sort_by(|a, b| a.product_id.cmp(&b.product_id));
    v
}

async fn set_status(
    conn: &mut PgConnection,
    order: OrderId,
    to: Status,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE reservations SET status = $2, updated_at = now() WHERE order_id = $1")
        .bind(order.0)
        .bind(to.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// Locks one held reservation past its expiry, if any: (order, correlation id, lines).
pub async fn lock_one_expired(
    conn: &mut PgConnection,
) -> Result<Option<(OrderId, Uuid, Vec<PricedLine>)>, sqlx::Error> {
    let Some(row) = sqlx::query_as::<_, ExpiredRow>(
        "SELECT order_id, correlation_id, lines FROM reservations \
         WHERE status = 'RESERVED' AND expires_at <= now() \
         ORDER BY expires_at LIMIT 1 FOR UPDATE SKIP LOCKED",
    )
    .fetch_optional(conn)
    .await?
    else {
        return Ok(None);
    };
    let lines = serde_json::from_value(row.lines).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(Some((OrderId(row.order_id), row.correlation_id, lines)))
}

/// What [`lock_one_expired`] reads of a row of `reservations`.
#[derive(sqlx::FromRow)]
struct ExpiredRow {
    order_id: Uuid,
    correlation_id: Uuid,
    lines: serde_json::Value,
}

pub use oms_contracts::api::{ProductView, ReservationView};

const PRODUCT_COLUMNS: &str =
    "id, name, unit_price_minor, currency, available, reserved, sold, initial, adjusted, updated_at";

fn money(amount_minor: i64, currency: &str) -> Result<Money, sqlx::Error> {
    Money::from_parts(amount_minor, currency).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// The `PRODUCT_COLUMNS` of a row of `products`.
#[derive(sqlx::FromRow)]
struct ProductViewRow {
    id: String,
    name: String,
    unit_price_minor: i64,
    currency: String,
    available: i32,
    reserved: i32,
    sold: i32,
    initial: i32,
    adjusted: i32,
    updated_at: DateTime<Utc>,
}

fn product_view(r: ProductViewRow) -> Result<ProductView, sqlx::Error> {
    Ok(ProductView {
        product_id: r.id,
        name: r.name,
        unit_price: money(r.unit_price_minor, &r.currency)?,
        available: r.available,
        reserved: r.reserved,
        sold: r.sold,
        on_hand: r.available + r.reserved,
        initial: r.initial,
        adjusted: r.adjusted,
        updated_at: r.updated_at,
    })
}

/// The whole catalog, by id.
pub async fn products(conn: &mut PgConnection) -> Result<Vec<ProductView>, sqlx::Error> {
    let rows = sqlx::query_as::<_, ProductViewRow>(&format!(
        "SELECT {PRODUCT_COLUMNS} FROM products ORDER BY id"
    ))
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(product_view).collect()
}

/// One product.
pub async fn product(
    conn: &mut PgConnection,
    id: &str,
) -> Result<Option<ProductView>, sqlx::Error> {
    let row = sqlx::query_as::<_, ProductViewRow>(&format!(
        "SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(product_view).transpose()
}

/// Sets a product's available stock, recording the difference as an adjustment.
pub async fn set_available(
    conn: &mut PgConnection,
    id: &str,
    available: i32,
) -> Result<Option<ProductView>, sqlx::Error> {
    let row = sqlx::query_as::<_, ProductViewRow>(&format!(
        "UPDATE products SET adjusted = adjusted + ($2 - available), available = $2, updated_at = now() \
         WHERE id = $1 RETURNING {PRODUCT_COLUMNS}"
    ))
    .bind(id)
    .bind(available)
    .fetch_optional(conn)
    .await?;
    row.map(product_view).transpose()
}

const RESERVATION_COLUMNS: &str = "order_id, status, lines, total_minor, currency, reject_reason, \
     rejected_ids, expires_at, created_at, updated_at";

/// A reservation as the API shows it.
pub async fn reservation_view(
    conn: &mut PgConnection,
    order: Uuid,
) -> Result<Option<ReservationView>, sqlx::Error> {
    let row = sqlx::query_as::<_, ReservationViewRow>(&format!(
        "SELECT {RESERVATION_COLUMNS} FROM reservations WHERE order_id = $1"
    ))
    .bind(order)
    .fetch_optional(conn)
    .await?;
    row.map(reservation).transpose()
}

/// Reservations, newest first.
pub async fn reservation_list(
    conn: &mut PgConnection,
    status: Option<&str>,
    limit: i64,
) -> Result<Vec<ReservationView>, sqlx::Error> {
    let rows = sqlx::query_as::<_, ReservationViewRow>(&format!(
        "SELECT {RESERVATION_COLUMNS} FROM reservations WHERE ($1::text IS NULL OR status = $1) \
         ORDER BY created_at DESC LIMIT $2"
    ))
    .bind(status)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(reservation).collect()
}

/// The `RESERVATION_COLUMNS` of a row of `reservations`.
#[derive(sqlx::FromRow)]
struct ReservationViewRow {
    order_id: Uuid,
    status: String,
    lines: serde_json::Value,
    total_minor: Option<i64>,
    currency: Option<String>,
    reject_reason: Option<String>,
    rejected_ids: Vec<String>,
    expires_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn reservation(r: ReservationViewRow) -> Result<ReservationView, sqlx::Error> {
    Ok(ReservationView {
        order_id: r.order_id,
        status: r.status,
        lines: serde_json::from_value(r.lines).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        total: r
            .total_minor
            .zip(r.currency)
            .map(|(a, c)| money(a, &c))
            .transpose()?,
        reject_reason: r.reject_reason,
        rejected_product_ids: r.rejected_ids,
        expires_at: r.expires_at,
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}
