-- One row per order's saga. `data` is the saga as the pure state machine sees it (machine.rs);
-- the columns beside it are copies for queries and indexes, written together with it.
CREATE TABLE sagas (
    order_id    uuid PRIMARY KEY,
    state       text NOT NULL
        CHECK (state IN ('RESERVING', 'AUTHORIZING', 'RELEASING', 'CONFIRMED', 'CANCELLED')),
    customer_id text NOT NULL,
    deadline_at timestamptz,
    data        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((state IN ('CONFIRMED', 'CANCELLED')) = (deadline_at IS NULL))
);
CREATE INDEX sagas_due ON sagas (deadline_at) WHERE deadline_at IS NOT NULL;
CREATE INDEX sagas_newest ON sagas (created_at DESC, order_id DESC);
CREATE INDEX sagas_state_newest ON sagas (state, created_at DESC, order_id DESC);

-- Every input a saga saw, applied or ignored, so any saga can be explained after the fact.
CREATE TABLE saga_steps (
    id             bigserial PRIMARY KEY,
    order_id       uuid NOT NULL REFERENCES sagas (order_id),
    from_state     text,
    to_state       text NOT NULL,
    input          text NOT NULL,
    cause_event_id uuid,
    applied        boolean NOT NULL,
    note           text NOT NULL,
    sent           text[] NOT NULL DEFAULT '{}',
    at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX saga_steps_order ON saga_steps (order_id, id);
