-- One shipment per order. A cancellation that arrives before the order's shipment request
-- leaves a CANCELLED row (a tombstone), so the late request is never honoured.
CREATE TABLE shipments (
    order_id         uuid PRIMARY KEY,
    shipment_id      uuid NOT NULL UNIQUE,
    correlation_id   uuid NOT NULL,
    status           text NOT NULL CHECK (status IN ('PENDING', 'PICKED', 'SHIPPED', 'DELIVERED', 'FAILED', 'CANCELLED')),
    customer_id      text,
    lines            jsonb NOT NULL DEFAULT '[]',
    shipping_address jsonb,
    tracking_number  text,
    fail_reason      text,
    cancel_reason    text,
    attempts         integer NOT NULL DEFAULT 0,
    last_error       text,
    -- When the carrier acts on it next (none once it is DELIVERED, FAILED or CANCELLED).
    next_at          timestamptz,
    -- The span that created it: the carrier's later steps continue its trace.
    traceparent      text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    picked_at        timestamptz,
    shipped_at       timestamptz,
    delivered_at     timestamptz
);

CREATE INDEX shipments_due ON shipments (next_at) WHERE next_at IS NOT NULL;
CREATE INDEX shipments_by_status ON shipments (status, order_id DESC);
