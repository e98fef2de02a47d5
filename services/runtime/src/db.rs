//! The service's own PostgreSQL database: created when missing, pooled, migrated at start.
//!
//! Runtime tables (outbox, inbox) come from this crate's migrations (versions below 1000); each
//! service adds its own (versions 1000 and above). Both sets share one `_sqlx_migrations` table,
//! each run ignoring the other's versions.

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

use crate::config::DatabaseUrl;

/// The runtime's own migrations (outbox, inbox).
fn runtime_migrations() -> Migrator {
    sqlx::migrate!("./migrations")
}

/// Why the database could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database name is not a plain identifier.
    #[error("invalid database name {0:?}: use lowercase letters, digits and '_'")]
    InvalidName(String),
    /// Connecting or querying failed.
    #[error("database {database}: {source}")]
    Sqlx {
        /// Database concerned.
        database: String,
        /// Cause.
        #[source]
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("migrating database {database}: {source}")]
    Migrate {
        /// Database concerned.
        database: String,
        /// Cause.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// Creates database `name` on the server of `url` unless it exists (safe when several processes
/// race to create it).
pub async fn ensure_database(url: &DatabaseUrl, name: &str) -> Result<(), DbError> {
    if !valid_name(name) {
        return Err(DbError::InvalidName(name.to_owned()));
    }
    let err = |source| DbError::Sqlx {
        database: name.to_owned(),
        source,
    };
    let admin: PgConnectOptions = url.options_for("postgres").map_err(err)?;
    let mut conn = admin
        .log_statements(tracing::log::LevelFilter::Debug)
        .connect()
        .await
        .map_err(err)?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await
            .map_err(err)?;
    if !exists {
        // The name was checked to be a plain identifier above, so quoting it is enough.
        let created = sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await;
        match created {
            Ok(_) => tracing::info!(database = name, "created database"),
            // 42P04 duplicate_database, 23505 when two creators race on pg_database's index.
            Err(sqlx::Error::Database(e))
                if matches!(e.code().as_deref(), Some("42P04") | Some("23505")) => {}
            Err(e) => return Err(err(e)),
        }
    }
    let _ = conn.close().await;
    Ok(())
}

/// A pooled connection idle this long is pinged before it is handed out.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Creates (if needed), connects to and migrates the service's database.
pub async fn connect(
    url: &DatabaseUrl,
    name: &str,
    max_connections: u32,
    service_migrations: Option<Migrator>,
) -> Result<PgPool, DbError> {
    ensure_database(url, name).await?;
    let err = |source| DbError::Sqlx {
        database: name.to_owned(),
        source,
    };
    let options = url
        .options_for(name)
        .map_err(err)?
        .log_statements(tracing::log::LevelFilter::Trace)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        // sqlx pings every connection it hands out (a round trip per transaction). One used
        // within the last second is alive as far as a ping could tell; an older one is pinged,
        // so a pool idle through a database restart still finds its dead connections.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_AFTER_IDLE {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(options)
        .await
        .map_err(err)?;
    migrate(&pool, name, service_migrations).await?;
    Ok(pool)
}

/// Applies the runtime's migrations, then the service's.
pub async fn migrate(
    pool: &PgPool,
    name: &str,
    service_migrations: Option<Migrator>,
) -> Result<(), DbError> {
    let err = |source| DbError::Migrate {
        database: name.to_owned(),
        source,
    };
    let mut runtime = runtime_migrations();
    runtime.set_ignore_missing(true);
    runtime.run(pool).await.map_err(err)?;
    if let Some(mut service) = service_migrations {
        service.set_ignore_missing(true);
        service.run(pool).await.map_err(err)?;
    }
    Ok(())
}

/// Whether a database error means the database is unreachable or going away (an outage to wait
/// out), rather than a problem with the work itself.
pub fn is_outage(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(e) => e.code().is_some_and(|code| {
            // 08: connection exception; 57P01..3: shutdown/crash/starting; 53300: too many conns.
            code.starts_with("08") || code.starts_with("57P") || code == "53300"
        }),
        _ => false,
    }
}

/// Opens one connection outside the pool (for session-level locks and `LISTEN`).
pub async fn dedicated_connection(pool: &PgPool) -> Result<PgConnection, sqlx::Error> {
    Ok(pool.acquire().await?.detach())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_plain_identifiers() {
        assert!(valid_name("oms_order"));
        assert!(valid_name("oms_test_0192f0c4"));
        for bad in ["", "Oms", "oms-order", "1oms", "x\"; DROP", &"a".repeat(64)] {
            assert!(!valid_name(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn connection_failures_are_outages_and_logic_errors_are_not() {
        assert!(is_outage(&sqlx::Error::PoolTimedOut));
        assert!(is_outage(&sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused
        ))));
        assert!(!is_outage(&sqlx::Error::RowNotFound));
    }
}
