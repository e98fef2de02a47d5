-- Transactional outbox: rows are written in the same transaction as the state change that causes
-- them, and published to Kafka by the relay. Runtime migrations use versions below 1000; service
-- migrations use 1000 and above so both sets can share one _sqlx_migrations table.
CREATE TABLE outbox (
    id              BIGSERIAL   PRIMARY KEY,
    topic           TEXT        NOT NULL,
    message_key     BYTEA,
    payload         BYTEA,
    headers         JSONB       NOT NULL DEFAULT '[]'::jsonb,
    message_id      UUID,
    message_type    TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    attempts        INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    last_error      TEXT,
    published_at    TIMESTAMPTZ,
    -- Set when publishing failed permanently (the row is dead-lettered in place, with last_error).
    failed_at       TIMESTAMPTZ
);

CREATE INDEX outbox_pending_idx ON outbox (id)
    WHERE published_at IS NULL AND failed_at IS NULL;
CREATE INDEX outbox_pending_key_idx ON outbox (topic, message_key, id)
    WHERE published_at IS NULL AND failed_at IS NULL;
CREATE INDEX outbox_published_at_idx ON outbox (published_at)
    WHERE published_at IS NOT NULL;
