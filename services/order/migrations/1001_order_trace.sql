-- The trace of the request that placed the order (W3C trace id, 32 hex digits).
ALTER TABLE orders ADD COLUMN trace_id text CHECK (trace_id ~ '^[0-9a-f]{32}$');
