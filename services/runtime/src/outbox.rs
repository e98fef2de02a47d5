//! The transactional outbox: a message is a row written by the same transaction as the state
//! change that causes it, so both commit or neither does. The relay publishes rows.
//!
//! Per-key order: `enqueue` takes a transaction-scoped advisory lock on the message key before it
//! allocates the row id, so two transactions writing for the same key are serialized and row id
//! order is commit order for that key. The relay publishes in id order.

use std::time::Duration;

use chrono::{DateTime, Utc};
use oms_contracts::Envelope;
use serde::{Deserialize, Serialize};
use sqlx::{PgExecutor, PgPool};
use tracing::Instrument;
use uuid::Uuid;

/// `LISTEN/NOTIFY` channel that every enqueue notifies on commit.
pub const CHANNEL: &str = "oms_outbox";

/// Advisory lock class (first key of the two-key form) for per-key enqueue ordering.
const KEY_LOCK_CLASS: i32 = 0x0A5B_0001;

/// A Kafka header; the value may be absent, as Kafka allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name.
    pub name: String,
    /// Header value bytes.
    pub value: Option<Vec<u8>>,
}

impl Header {
    /// A header with a text value.
    pub fn text(name: &str, value: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            value: Some(value.into().into_bytes()),
        }
    }
}

/// How headers are kept in the `headers` JSONB column: text when the value is UTF-8, hex when it
/// is not, nothing when it is absent, so any header survives the trip unchanged.
#[derive(Serialize, Deserialize)]
struct StoredHeader {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hex: Option<String>,
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

pub(crate) fn headers_to_json(headers: &[Header]) -> serde_json::Value {
    let stored: Vec<StoredHeader> = headers
        .iter()
        .map(|h| match &h.value {
            None => StoredHeader {
                name: h.name.clone(),
                text: None,
                hex: None,
            },
            Some(v) => match std::str::from_utf8(v) {
                Ok(t) => StoredHeader {
                    name: h.name.clone(),
                    text: Some(t.to_owned()),
                    hex: None,
                },
                Err(_) => StoredHeader {
                    name: h.name.clone(),
                    text: None,
                    hex: Some(to_hex(v)),
                },
            },
        })
        .collect();
    serde_json::to_value(stored).unwrap_or_else(|_| serde_json::Value::Array(vec![]))
}

pub(crate) fn headers_from_json(value: serde_json::Value) -> Vec<Header> {
    let stored: Vec<StoredHeader> = serde_json::from_value(value).unwrap_or_default();
    stored
        .into_iter()
        .map(|h| Header {
            name: h.name,
            value: match (h.text, h.hex) {
                (Some(t), _) => Some(t.into_bytes()),
                (None, Some(x)) => from_hex(&x),
                (None, None) => None,
            },
        })
        .collect()
}

/// A message to publish, exactly as it will appear on Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Destination topic.
    pub topic: String,
    /// Kafka key.
    pub key: Option<Vec<u8>>,
    /// Kafka value.
    pub payload: Option<Vec<u8>>,
    /// Kafka headers, in order.
    pub headers: Vec<Header>,
    /// Envelope id, when the value is an envelope (for lookups).
    pub message_id: Option<Uuid>,
    /// Envelope type, when the value is an envelope.
    pub message_type: Option<String>,
}

impl OutgoingMessage {
    /// `envelope` on `topic` with key `key`, with the envelope's mirror headers.
    pub fn envelope(topic: &str, key: &str, envelope: &Envelope) -> Self {
        Self {
            topic: topic.to_owned(),
            key: Some(key.as_bytes().to_vec()),
            payload: Some(envelope.encode()),
            headers: envelope
                .headers()
                .into_iter()
                .map(|(n, v)| Header::text(n, v))
                .collect(),
            message_id: Some(envelope.event_id),
            message_type: Some(envelope.message_type().as_str().to_owned()),
        }
    }
}

/// Why an enqueue failed.
#[derive(Debug, thiserror::Error)]
#[error("enqueueing an outbox row for {topic}: {source}")]
pub struct EnqueueError {
    topic: String,
    #[source]
    source: sqlx::Error,
}

impl EnqueueError {
    /// The database error underneath.
    pub fn sqlx(&self) -> &sqlx::Error {
        &self.source
    }
}

impl From<EnqueueError> for sqlx::Error {
    fn from(e: EnqueueError) -> Self {
        e.source
    }
}

/// Writes `envelope` for `topic` with key `key` using `executor` (pass the caller's transaction:
/// nothing is visible, and nothing is published, until it commits). Returns the row id.
pub async fn enqueue<'e>(
    executor: impl PgExecutor<'e>,
    topic: &str,
    key: &str,
    envelope: &Envelope,
) -> Result<i64, EnqueueError> {
    enqueue_raw(executor, &OutgoingMessage::envelope(topic, key, envelope)).await
}

/// Writes `envelope` to its contract topic as `topics` spells it, keyed by its order: what every
/// service does with the messages it emits.
///
/// Unlike [`enqueue`], it does not notify the relay inside the transaction: the caller calls
/// [`notify`] once its transaction has committed. A `NOTIFY` inside a writing transaction takes
/// PostgreSQL's cluster-wide notification lock at commit and holds it through the commit's WAL
/// flush, so every such commit of every database queues behind the others (the profile in
/// docs/benchmarks.md); a notification sent after the commit writes no WAL and holds the lock
/// for microseconds. Forgetting [`notify`] costs latency (the relay's fallback poll), never a
/// message.
pub async fn enqueue_envelope<'e>(
    executor: impl PgExecutor<'e>,
    topics: &oms_contracts::Topics,
    envelope: &Envelope,
) -> Result<i64, EnqueueError> {
    let message =
        OutgoingMessage::envelope(&topics.name(envelope.topic()), &envelope.key(), envelope);
    insert(executor, &message, false).await
}

/// How [`notify`] reached the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woken {
    /// The relay leading for this database runs in this process: woken in memory, without a
    /// round trip to PostgreSQL.
    InProcess,
    /// Through `pg_notify` on [`CHANNEL`], for a leader in another process (or none yet).
    Listeners,
}

/// Tells the relay of this database that rows are waiting: call it after the commit of a
/// transaction that used [`enqueue_envelope`]. When this process's relay leads for the
/// database, it is woken in memory; otherwise a `pg_notify` wakes whichever relay leads. A
/// failure is only logged (the relay's fallback poll finds the rows).
pub async fn notify(pool: &PgPool) -> Woken {
    if local::wake(pool) {
        return Woken::InProcess;
    }
    notify_listeners(pool).await;
    Woken::Listeners
}

/// Sends the `pg_notify` on [`CHANNEL`] that wakes the leading relay of the database, wherever
/// it runs.
pub async fn notify_listeners<'e>(executor: impl PgExecutor<'e>) {
    if let Err(e) = sqlx::query("SELECT pg_notify($1, '')")
        .bind(CHANNEL)
        .execute(executor)
        .await
    {
        tracing::debug!(error = %e, "notifying the outbox relay failed; its poll will find the rows");
    }
}

/// The relays running in this process, by the database they publish from. A service's commit
/// wakes its own leading relay through here: a `pg_notify` would cost a transaction and three
/// round trips (acquire, query, release) per commit that emitted something.
pub(crate) mod local {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex, PoisonError, Weak};

    use sqlx::PgPool;
    use tokio::sync::Notify;

    /// One relay's in-process wake-up.
    #[derive(Debug)]
    pub(crate) struct LocalRelay {
        database: String,
        leading: AtomicBool,
        wake: Notify,
    }

    impl LocalRelay {
        /// Whether this relay holds the leader lock (only a leader is woken in memory).
        pub(crate) fn set_leading(&self, leading: bool) {
            self.leading.store(leading, Ordering::SeqCst);
        }

        /// Resolves at the next wake-up (one stored if it came while nobody waited).
        pub(crate) async fn woken(&self) {
            self.wake.notified().await;
        }
    }

    static RELAYS: Mutex<Vec<Weak<LocalRelay>>> = Mutex::new(Vec::new());

    /// Which database `pool` reaches: server, port and name.
    fn database_of(pool: &PgPool) -> String {
        let options = pool.connect_options();
        format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or_default()
        )
    }

    /// Registers a relay publishing from `pool`'s database; it is forgotten when dropped.
    pub(crate) fn register(pool: &PgPool) -> Arc<LocalRelay> {
        let relay = Arc::new(LocalRelay {
            database: database_of(pool),
            leading: AtomicBool::new(false),
            wake: Notify::new(),
        });
        let mut relays = RELAYS.lock().unwrap_or_else(PoisonError::into_inner);
        relays.retain(|r| r.strong_count() > 0);
        relays.push(Arc::downgrade(&relay));
        relay
    }

    /// Wakes the leading relay of `pool`'s database if it runs in this process.
    pub(crate) fn wake(pool: &PgPool) -> bool {
        let relays = RELAYS.lock().unwrap_or_else(PoisonError::into_inner);
        if relays.is_empty() {
            return false;
        }
        let database = database_of(pool);
        let leader = relays
            .iter()
            .filter_map(Weak::upgrade)
            .find(|r| r.database == database && r.leading.load(Ordering::SeqCst));
        match leader {
            Some(relay) => {
                relay.wake.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Writes any message (used for dead letters, whose value may not be an envelope), notifying
/// the relay at commit.
pub async fn enqueue_raw<'e>(
    executor: impl PgExecutor<'e>,
    message: &OutgoingMessage,
) -> Result<i64, EnqueueError> {
    insert(executor, message, true).await
}

/// Locks the key for the transaction and inserts the row (its id allocated after the lock); the
/// statements below end it.
macro_rules! insert_after_key_lock {
    () => {
        "WITH key_lock AS ( \
             SELECT pg_advisory_xact_lock($1, hashtext(coalesce(encode($3, 'hex'), ''))) \
         ), inserted AS ( \
             INSERT INTO outbox (topic, message_key, payload, headers, message_id, message_type) \
             SELECT $2, $3, $4, $5, $6, $7 FROM key_lock \
             RETURNING id \
         ) "
    };
}

/// The insert, and a notification of the relay delivered at commit (collapsed with the
/// transaction's other notifications).
const INSERT_NOTIFYING: &str = concat!(
    insert_after_key_lock!(),
    "SELECT inserted.id FROM inserted CROSS JOIN (SELECT pg_notify($8, '')) AS notified"
);

/// The insert alone (the channel parameter is bound but unused, so both take the same binds).
const INSERT_QUIETLY: &str = concat!(
    insert_after_key_lock!(),
    "SELECT inserted.id FROM inserted WHERE $8::text IS NOT NULL"
);

/// The insert behind every enqueue; `notify_at_commit` adds a `NOTIFY` to the transaction.
async fn insert<'e>(
    executor: impl PgExecutor<'e>,
    message: &OutgoingMessage,
    notify_at_commit: bool,
) -> Result<i64, EnqueueError> {
    // A span of the caller's trace; its context is stored with the row, so the relay's publish
    // span, and whatever consumes the message, continue this trace.
    let span = tracing::info_span!(
        "outbox enqueue",
        otel.name = %format_args!("enqueue {}", message.topic),
        otel.kind = "internal",
        messaging.destination.name = %message.topic,
        message_type = message.message_type.as_deref(),
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    let cx = crate::telemetry::record_ids(&span);
    let traced;
    let headers = match crate::telemetry::traceparent_in(&cx) {
        Some(tp) => {
            traced = with_traceparent(&message.headers, tp);
            &traced
        }
        None => &message.headers,
    };
    // One statement: lock the key for this transaction, insert (allocating the id after the lock),
    // and, when asked, notify the relay (delivered at commit, collapsed with other notifies of
    // the transaction).
    let sql = if notify_at_commit {
        INSERT_NOTIFYING
    } else {
        INSERT_QUIETLY
    };
    sqlx::query_scalar::<_, i64>(sql)
        .bind(KEY_LOCK_CLASS)
        .bind(&message.topic)
        .bind(message.key.as_deref())
        .bind(message.payload.as_deref())
        .bind(headers_to_json(headers))
        .bind(message.message_id)
        .bind(message.message_type.as_deref())
        .bind(CHANNEL)
        .fetch_one(executor)
        .instrument(span)
        .await
        .map_err(|source| EnqueueError {
            topic: message.topic.clone(),
            source,
        })
}

/// `headers` with `traceparent` set to `tp` (replacing the one there, else added).
pub(crate) fn with_traceparent(headers: &[Header], tp: String) -> Vec<Header> {
    let mut out: Vec<Header> = headers
        .iter()
        .filter(|h| h.name != oms_contracts::headers::TRACEPARENT)
        .cloned()
        .collect();
    out.push(Header::text(oms_contracts::headers::TRACEPARENT, tp));
    out
}

pub use oms_contracts::api::{Backlog, PendingRow};

/// Counts what is waiting.
pub async fn backlog(pool: &PgPool) -> Result<Backlog, sqlx::Error> {
    // Each part reads only its partial index; published rows (the bulk) are never visited.
    let (pending, oldest, failed): (i64, Option<f64>, i64) = sqlx::query_as(
        "SELECT p.n, EXTRACT(EPOCH FROM clock_timestamp() - p.oldest)::float8, \
                (SELECT count(*) FROM outbox WHERE failed_at IS NOT NULL) \
         FROM (SELECT count(*) AS n, min(created_at) AS oldest FROM outbox \
               WHERE published_at IS NULL AND failed_at IS NULL) AS p",
    )
    .fetch_one(pool)
    .await?;
    Ok(Backlog {
        pending,
        oldest_pending_seconds: oldest.unwrap_or(0.0).max(0.0),
        failed,
    })
}

/// Deletes rows published more than `retention` ago, at most `limit` at a time. Returns how
/// many were deleted.
pub async fn prune(pool: &PgPool, retention: Duration, limit: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM outbox WHERE id IN ( \
             SELECT id FROM outbox \
             WHERE published_at IS NOT NULL \
               AND published_at < clock_timestamp() - make_interval(secs => $1) \
             ORDER BY id LIMIT $2)",
    )
    .bind(retention.as_secs_f64())
    .bind(limit)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// [`prune`] in batches of `limit` while whole batches come back, at most `rounds` of them.
/// Returns how many rows were deleted.
pub async fn prune_rounds(
    pool: &PgPool,
    retention: Duration,
    limit: i64,
    rounds: usize,
) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    for _ in 0..rounds {
        let n = prune(pool, retention, limit).await?;
        total += n;
        if n < limit.max(0) as u64 {
            break;
        }
    }
    Ok(total)
}

/// Rows not yet published (pending or set aside), oldest first, optionally of one key.
pub async fn pending(
    pool: &PgPool,
    key: Option<&str>,
    limit: i64,
) -> Result<Vec<PendingRow>, sqlx::Error> {
    let rows: Vec<PendingRecord> = sqlx::query_as(
        "SELECT id, topic, convert_from(message_key, 'UTF8') AS key, message_id, message_type, \
         created_at, attempts, next_attempt_at, last_error, failed_at FROM outbox \
         WHERE published_at IS NULL AND ($1::text IS NULL OR message_key = convert_to($1, 'UTF8')) \
         ORDER BY id LIMIT $2",
    )
    .bind(key)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(PendingRow::from).collect())
}

/// A row of [`pending`] as its query returns it (the API's [`PendingRow`] lives in the
/// contracts, which know nothing of the database).
#[derive(sqlx::FromRow)]
struct PendingRecord {
    id: i64,
    topic: String,
    key: Option<String>,
    message_id: Option<Uuid>,
    message_type: Option<String>,
    created_at: DateTime<Utc>,
    attempts: i32,
    next_attempt_at: DateTime<Utc>,
    last_error: Option<String>,
    failed_at: Option<DateTime<Utc>>,
}

impl From<PendingRecord> for PendingRow {
    fn from(r: PendingRecord) -> Self {
        PendingRow {
            id: r.id,
            topic: r.topic,
            key: r.key,
            message_id: r.message_id,
            message_type: r.message_type,
            created_at: r.created_at,
            attempts: r.attempts,
            next_attempt_at: r.next_attempt_at,
            last_error: r.last_error,
            failed_at: r.failed_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_survive_storage_whatever_their_bytes() {
        let headers = vec![
            Header::text("oms-message-id", "abc"),
            Header {
                name: "binary".into(),
                value: Some(vec![0xff, 0x00, 0x10]),
            },
            Header {
                name: "empty".into(),
                value: Some(vec![]),
            },
            Header {
                name: "null".into(),
                value: None,
            },
            Header::text("oms-message-id", "repeated keys are kept"),
        ];
        assert_eq!(headers_from_json(headers_to_json(&headers)), headers);
    }

    #[test]
    fn hex_decoding_refuses_garbage() {
        assert_eq!(from_hex("ff00"), Some(vec![0xff, 0x00]));
        assert_eq!(from_hex("f"), None);
        assert_eq!(from_hex("zz"), None);
    }
}
