-- The W3C traceparent of the span that last moved the saga: a deadline passing later is a span
-- of the same trace.
ALTER TABLE sagas ADD COLUMN traceparent text;
