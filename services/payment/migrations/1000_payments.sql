-- One payment per order. A void without a prior authorization leaves a VOIDED row, so a late
-- or replayed authorization for that order is never charged.
CREATE TABLE payments (
    order_id       uuid PRIMARY KEY,
    payment_id     uuid NOT NULL UNIQUE,
    status         text NOT NULL CHECK (status IN ('AUTHORIZED', 'DECLINED', 'REFUNDED', 'VOIDED')),
    amount_minor   bigint NOT NULL CHECK (amount_minor >= 0),
    currency       text NOT NULL,
    customer_id    text,
    payment_token  text,
    decline_reason text,
    refund_reason  text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_newest ON payments (created_at DESC);
