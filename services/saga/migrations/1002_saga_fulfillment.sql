-- The saga's second part (after confirmation): its state beside the placement's, and a deadline
-- for as long as either part runs.
ALTER TABLE sagas ADD COLUMN fulfillment_state text CHECK (fulfillment_state IN
    ('SHIPPING', 'PICKED', 'SHIPPED', 'DELIVERED', 'CANCELLING', 'REFUNDING', 'CANCELLED'));
ALTER TABLE sagas DROP CONSTRAINT sagas_check;
ALTER TABLE sagas ADD CONSTRAINT sagas_finished_without_deadline CHECK (
    (state = 'CANCELLED'
        OR (state = 'CONFIRMED' AND coalesce(fulfillment_state IN ('DELIVERED', 'CANCELLED'), true)))
    = (deadline_at IS NULL));
