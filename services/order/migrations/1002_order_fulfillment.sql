-- The order's life after confirmation: shipped and delivered, where to, and the customer's
-- cancellation request.
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('PENDING', 'CONFIRMED', 'SHIPPED', 'DELIVERED', 'CANCELLED'));
ALTER TABLE orders
    ADD COLUMN shipping_address    jsonb,
    ADD COLUMN picked_at           timestamptz,
    ADD COLUMN shipped_at          timestamptz,
    ADD COLUMN delivered_at        timestamptz,
    ADD COLUMN tracking_number     text,
    ADD COLUMN cancel_requested_at timestamptz,
    ADD COLUMN cancel_requested_by text;
