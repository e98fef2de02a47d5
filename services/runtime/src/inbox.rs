//! Housekeeping of the inbox (`processed_messages`): rows older than the retention are pruned,
//! so each consumer's table and index hold a bounded window of messages instead of every message
//! ever handled.
//!
//! The inbox makes a consumer idempotent for as long as a message can come back: a redelivery
//! after a rebalance or an offset reset (as old as the topic's retention, 7 days for event
//! topics), or a replay from a dead-letter topic (30 days), which reaches every group of the
//! topic. The default retention is therefore the dead-letter topics' 30 days; a shorter one
//! trades that protection for a smaller table (docs/architecture.md).

use std::time::Duration;

use sqlx::PgPool;

/// Rows deleted per statement: short transactions that never hold many locks.
pub const PRUNE_BATCH: i64 = 10_000;

/// Deletes inbox rows settled more than `retention` ago, at most `limit` of them, oldest
/// first; rows another replica is deleting at the same moment are skipped, not waited for.
/// Returns how many were deleted.
pub async fn prune(pool: &PgPool, retention: Duration, limit: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM processed_messages WHERE ctid IN ( \
             SELECT ctid FROM processed_messages \
             WHERE processed_at < clock_timestamp() - make_interval(secs => $1) \
             ORDER BY processed_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind(retention.as_secs_f64())
    .bind(limit)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// How often the pruner looks (each look deletes batches while whole ones come back): a tenth
/// of the retention, between 1 s and a minute.
pub fn prune_interval(retention: Duration) -> Duration {
    (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pruner_looks_often_enough_for_its_retention_and_never_busily() {
        assert_eq!(
            prune_interval(Duration::from_secs(30 * 86_400)),
            Duration::from_secs(60)
        );
        assert_eq!(
            prune_interval(Duration::from_secs(120)),
            Duration::from_secs(12)
        );
        assert_eq!(
            prune_interval(Duration::from_millis(10)),
            Duration::from_secs(1)
        );
    }
}
