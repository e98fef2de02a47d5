-- The catalog and its stock. `available` can be reserved; `reserved` is held for orders in
-- flight; `sold` is committed. The CHECK keeps stock conserved on every row at every moment:
-- nothing appears or disappears except through `adjusted` (stock set by an operator).
CREATE TABLE products (
    id               text PRIMARY KEY,
    name             text NOT NULL,
    unit_price_minor bigint NOT NULL CHECK (unit_price_minor >= 0),
    currency         text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    available        integer NOT NULL CHECK (available >= 0),
    reserved         integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    sold             integer NOT NULL DEFAULT 0 CHECK (sold >= 0),
    initial          integer NOT NULL,
    adjusted         integer NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (available + reserved + sold = initial + adjusted)
);

-- One reservation per order, whatever became of it.
CREATE TABLE reservations (
    order_id       uuid PRIMARY KEY,
    correlation_id uuid NOT NULL,
    status         text NOT NULL
        CHECK (status IN ('RESERVED', 'COMMITTED', 'RELEASED', 'EXPIRED', 'REJECTED')),
    lines          jsonb NOT NULL DEFAULT '[]',
    total_minor    bigint,
    currency       text,
    reject_reason  text,
    rejected_ids   text[] NOT NULL DEFAULT '{}',
    expires_at     timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reservations_expiring ON reservations (expires_at) WHERE status = 'RESERVED';

INSERT INTO products (id, name, unit_price_minor, currency, available, initial) VALUES
    ('mouse-01',    'Wireless mouse',       2499, 'EUR', 100, 100),
    ('keyboard-01', 'Mechanical keyboard',  8999, 'EUR',  50,  50),
    ('hub-01',      'USB-C hub',            3999, 'EUR',  75,  75),
    ('monitor-27',  '27" monitor',         29900, 'EUR',  30,  30),
    ('stand-01',    'Laptop stand',         3499, 'EUR', 200, 200);
