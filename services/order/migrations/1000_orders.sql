-- Orders. Ids are UUID v7, so id order is creation order (newest first = id DESC).
CREATE TABLE orders (
    id            uuid PRIMARY KEY,
    customer_id   text NOT NULL,
    status        text NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'CANCELLED')),
    items         jsonb NOT NULL,
    payment_token text NOT NULL,
    lines         jsonb,
    total_minor   bigint,
    currency      text,
    payment_id    uuid,
    cancel_reason text,
    cancel_detail text,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    completed_at  timestamptz,
    CHECK ((status = 'PENDING') = (completed_at IS NULL))
);
CREATE INDEX orders_by_status ON orders (status, id DESC);
CREATE INDEX orders_by_customer ON orders (customer_id, id DESC);

-- `Idempotency-Key`s: the request they were first used with and the answer given.
CREATE TABLE idempotency_keys (
    key        text PRIMARY KEY,
    request    jsonb NOT NULL,
    order_id   uuid NOT NULL,
    response   jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
