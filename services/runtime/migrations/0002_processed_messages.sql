-- Inbox of idempotent consumers: one row per message a consumer group has settled. A handled
-- message is keyed by its envelope id (so a redelivery or replay of it is skipped); a
-- dead-lettered one by a UUID derived from its delivery coordinates (so a replay of it, which
-- arrives at a new offset, is handled).
CREATE TABLE processed_messages (
    consumer_group TEXT        NOT NULL,
    message_id     UUID        NOT NULL,
    outcome        TEXT        NOT NULL CHECK (outcome IN ('handled', 'dead-lettered')),
    message_type   TEXT,
    topic          TEXT        NOT NULL,
    kafka_partition INTEGER    NOT NULL,
    kafka_offset   BIGINT      NOT NULL,
    processed_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (consumer_group, message_id)
);

CREATE INDEX processed_messages_processed_at_idx ON processed_messages (processed_at);
