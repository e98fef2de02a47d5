-- One notification per order outcome; the unique key makes recording it idempotent.
CREATE TABLE notifications (
    id             bigserial PRIMARY KEY,
    order_id       uuid NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('ORDER_CONFIRMED', 'ORDER_CANCELLED')),
    reason         text,
    message        text NOT NULL,
    cause_event_id uuid NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (order_id, kind)
);
CREATE INDEX notifications_newest ON notifications (created_at DESC);
