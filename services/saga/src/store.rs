//! Sagas and their step history in PostgreSQL. Each saga is locked (`FOR UPDATE`) while an input
//! is applied, so two inputs for one order never race.

use chrono::{DateTime, Utc};
use oms_contracts::OrderId;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::machine::{Saga, SagaState, Step};

fn decode(data: serde_json::Value) -> Result<Saga, sqlx::Error> {
    serde_json::from_value(data).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn encode(saga: &Saga) -> Result<serde_json::Value, sqlx::Error> {
    serde_json::to_value(saga).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

/// Loads and locks the saga of `order`, if there is one.
pub async fn lock(conn: &mut PgConnection, order: OrderId) -> Result<Option<Saga>, sqlx::Error> {
    let data: Option<serde_json::Value> =
        sqlx::query_scalar("SELECT data FROM sagas WHERE order_id = $1 FOR UPDATE")
            .bind(order.0)
            .fetch_optional(conn)
            .await?;
    data.map(decode).transpose()
}

/// Locks up to `limit` running sagas whose deadline has passed, skipping any another worker
/// holds.
pub async fn lock_due(
    conn: &mut PgConnection,
    limit: i64,
) -> Result<Vec<(Saga, Option<String>)>, sqlx::Error> {
    let rows = sqlx::query_as::<_, DueRow>(
        "SELECT data, traceparent FROM sagas WHERE deadline_at <= now() \
         ORDER BY deadline_at LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| Ok((decode(r.data)?, r.traceparent)))
        .collect()
}

/// What [`lock_due`] reads of a row of `sagas`.
#[derive(sqlx::FromRow)]
struct DueRow {
    data: serde_json::Value,
    traceparent: Option<String>,
}

/// The state a step records: the fulfillment's once it runs (the step that confirms records
/// `CONFIRMED`), the placement's before.
fn step_state(saga: &Saga) -> &'static str {
    match &saga.fulfillment {
        Some(f) if saga.state == SagaState::Confirmed => f.state.as_str(),
        _ => saga.state.as_str(),
    }
}

fn fulfillment_state(saga: &Saga) -> Option<&'static str> {
    saga.fulfillment.as_ref().map(|f| f.state.as_str())
}

/// The `saga_steps` columns a step records, in the order `bind_step!` binds them.
macro_rules! step_columns {
    () => {
        "saga_steps (order_id, from_state, to_state, input, cause_event_id, applied, note, sent)"
    };
}

/// Binds a step's values after the statement's own parameters (`$1` is the order in all).
macro_rules! bind_step {
    ($query:expr, $step:expr) => {
        $query
            .bind($step.from_state)
            .bind($step.to_state)
            .bind($step.input)
            .bind($step.cause_event_id)
            .bind($step.applied)
            .bind($step.note)
            .bind($step.sent)
    };
}

/// One row of `saga_steps` but its order id.
struct StepRow<'a> {
    from_state: Option<&'static str>,
    to_state: &'static str,
    input: &'a str,
    cause_event_id: Option<Uuid>,
    applied: bool,
    note: &'a str,
    sent: Vec<&'static str>,
}

/// Stores the saga after `step` (inserting it when `before` is none) and the step itself, in
/// one statement (one round trip per input: the saga takes seven of them per order).
pub async fn record(
    conn: &mut PgConnection,
    before: Option<&Saga>,
    step: &Step,
    input: &str,
    cause_event_id: Option<Uuid>,
) -> Result<Option<f64>, sqlx::Error> {
    let saga = &step.saga;
    let mut ended_after = None;
    // The span that moved it: what a deadline, later, continues.
    let traceparent = oms_runtime::telemetry::traceparent(&tracing::Span::current());
    let row = StepRow {
        from_state: before.map(step_state),
        to_state: if before.is_some_and(|b| b.state != SagaState::Confirmed) {
            saga.state.as_str()
        } else {
            step_state(saga)
        },
        input,
        cause_event_id,
        applied: step.applied,
        note: &step.note,
        sent: step
            .commands
            .iter()
            .map(|c| c.message_type().as_str())
            .collect(),
    };
    if before.is_none() {
        let query = sqlx::query(concat!(
            "WITH saga AS ( \
                 INSERT INTO sagas (order_id, state, customer_id, deadline_at, data, traceparent, fulfillment_state) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ) INSERT INTO ",
            step_columns!(),
            " VALUES ($1, $8, $9, $10, $11, $12, $13, $14)"
        ))
        .bind(saga.order_id.0)
        .bind(saga.state.as_str())
        .bind(saga.customer_id.as_str())
        .bind(saga.deadline_at)
        .bind(encode(saga)?)
        .bind(&traceparent)
        .bind(fulfillment_state(saga));
        bind_step!(query, row).execute(conn).await?;
    } else if step.applied {
        let query = sqlx::query_scalar(concat!(
            "WITH saga AS ( \
                 UPDATE sagas SET state = $2, deadline_at = $3, data = $4, updated_at = now(), \
                 traceparent = coalesce($5, traceparent), fulfillment_state = $6 \
                 WHERE order_id = $1 RETURNING extract(epoch FROM now() - created_at)::float8 AS age \
             ), step AS (INSERT INTO ",
            step_columns!(),
            " VALUES ($1, $7, $8, $9, $10, $11, $12, $13)) SELECT age FROM saga"
        ))
        .bind(saga.order_id.0)
        .bind(saga.state.as_str())
        .bind(saga.deadline_at)
        .bind(encode(saga)?)
        .bind(&traceparent)
        .bind(fulfillment_state(saga));
        let age: f64 = bind_step!(query, row).fetch_one(conn).await?;
        let was_running = before.is_some_and(|b| !b.state.is_terminal());
        if was_running && saga.state.is_terminal() {
            ended_after = Some(age);
        }
    } else {
        let query = sqlx::query(concat!(
            "INSERT INTO ",
            step_columns!(),
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(saga.order_id.0);
        bind_step!(query, row).execute(conn).await?;
    }
    Ok(ended_after)
}

pub use oms_contracts::api::{FulfillmentView, SagaStep, SagaSummary as Summary, SagaView};

/// The `VIEW_COLUMNS` of a row of `sagas`.
#[derive(sqlx::FromRow)]
struct ViewRow {
    data: serde_json::Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    stuck: bool,
    last_step: Option<String>,
}

fn view(row: ViewRow) -> Result<SagaView, sqlx::Error> {
    let saga = decode(row.data)?;
    Ok(SagaView {
        order_id: saga.order_id.0,
        correlation_id: saga.correlation_id,
        state: saga.state,
        customer_id: saga.customer_id,
        items: saga.items,
        lines: saga.lines,
        total: saga.total,
        payment_id: saga.payment_id,
        cancel_reason: saga.cancel_reason.map(|r| r.as_str().to_owned()),
        cancel_detail: saga.cancel_detail,
        payment_requested: saga.payment_requested,
        refund_requested: saga.refund_requested,
        deadline_at: saga.deadline_at,
        fulfillment: saga.fulfillment.as_ref().map(|f| FulfillmentView {
            state: f.state,
            shipment_id: f.shipment_id,
            tracking_number: f.tracking_number.clone(),
            cancel_reason: f.cancel_reason.map(|r| r.as_str().to_owned()),
            cancel_refused: f.cancel_refused,
            refund_requested: f.refund_requested,
            deadline_at: saga.deadline_at.filter(|_| !f.state.is_terminal()),
        }),
        stuck: row.stuck,
        last_step: row.last_step,
        created_at: row.created_at,
        updated_at: row.updated_at,
        steps: None,
    })
}

const VIEW_COLUMNS: &str = "order_id, data, created_at, updated_at, \
     COALESCE(deadline_at < now(), false) AS stuck, \
     (SELECT st.note FROM saga_steps st WHERE st.order_id = sagas.order_id AND st.applied ORDER BY st.id DESC LIMIT 1) AS last_step";

/// One saga with its history.
pub async fn find(conn: &mut PgConnection, order: Uuid) -> Result<Option<SagaView>, sqlx::Error> {
    let Some(row) = sqlx::query_as::<_, ViewRow>(&format!(
        "SELECT {VIEW_COLUMNS} FROM sagas WHERE order_id = $1"
    ))
    .bind(order)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let mut saga = view(row)?;
    let steps = sqlx::query_as::<_, StepView>(
        "SELECT from_state, to_state, input, cause_event_id, applied, note, sent, at \
         FROM saga_steps WHERE order_id = $1 ORDER BY id",
    )
    .bind(order)
    .fetch_all(conn)
    .await?;
    saga.steps = Some(
        steps
            .into_iter()
            .map(|r| SagaStep {
                from: r.from_state,
                to: r.to_state,
                input: r.input,
                cause_event_id: r.cause_event_id,
                applied: r.applied,
                note: r.note,
                sent: r.sent,
                at: r.at,
            })
            .collect(),
    );
    Ok(Some(saga))
}

/// A row of `saga_steps` as [`find`] reads it.
#[derive(sqlx::FromRow)]
struct StepView {
    from_state: Option<String>,
    to_state: String,
    input: String,
    cause_event_id: Option<Uuid>,
    applied: bool,
    note: String,
    sent: Vec<String>,
    at: DateTime<Utc>,
}

/// What to list.
#[derive(Debug, Default)]
pub struct ListFilter {
    /// Only sagas in this state.
    pub state: Option<SagaState>,
    /// Only running sagas past their deadline.
    pub stuck: bool,
    /// Only sagas created before this one (paging).
    pub before: Option<Uuid>,
    /// At most this many.
    pub limit: i64,
}

/// Sagas, newest first.
pub async fn list(
    db: impl PgExecutor<'_>,
    filter: &ListFilter,
) -> Result<Vec<SagaView>, sqlx::Error> {
    let rows = sqlx::query_as::<_, ViewRow>(&format!(
        "SELECT {VIEW_COLUMNS} FROM sagas \
         WHERE ($1::text IS NULL OR state = $1) \
           AND (NOT $2 OR deadline_at < now()) \
           AND ($3::uuid IS NULL OR (created_at, order_id) < \
                (SELECT created_at, order_id FROM sagas WHERE order_id = $3)) \
         ORDER BY created_at DESC, order_id DESC LIMIT $4"
    ))
    .bind(filter.state.map(SagaState::as_str))
    .bind(filter.stuck)
    .bind(filter.before)
    .bind(filter.limit)
    .fetch_all(db)
    .await?;
    rows.into_iter().map(view).collect()
}

/// Counts for dashboards.
pub async fn summary(conn: &mut PgConnection) -> Result<Summary, sqlx::Error> {
    let mut by_state: std::collections::BTreeMap<String, i64> = SagaState::ALL
        .iter()
        .map(|s| (s.as_str().to_owned(), 0))
        .collect();
    for row in
        sqlx::query_as::<_, CountRow>("SELECT state, count(*) AS n FROM sagas GROUP BY state")
            .fetch_all(&mut *conn)
            .await?
    {
        by_state.insert(row.state, row.n);
    }
    let mut by_fulfillment_state: std::collections::BTreeMap<String, i64> =
        crate::machine::FulfillmentState::ALL
            .iter()
            .map(|s| (s.as_str().to_owned(), 0))
            .collect();
    for row in sqlx::query_as::<_, FulfillmentCountRow>(
        "SELECT fulfillment_state, count(*) AS n FROM sagas \
         WHERE fulfillment_state IS NOT NULL GROUP BY fulfillment_state",
    )
    .fetch_all(&mut *conn)
    .await?
    {
        by_fulfillment_state.insert(row.fulfillment_state, row.n);
    }
    let stuck: i64 = sqlx::query_scalar("SELECT count(*) FROM sagas WHERE deadline_at < now()")
        .fetch_one(conn)
        .await?;
    Ok(Summary {
        by_state,
        by_fulfillment_state,
        stuck,
    })
}

/// A state and how many sagas are in it.
#[derive(sqlx::FromRow)]
struct CountRow {
    state: String,
    n: i64,
}

/// A fulfillment state and how many sagas are in it.
#[derive(sqlx::FromRow)]
struct FulfillmentCountRow {
    fulfillment_state: String,
    n: i64,
}
