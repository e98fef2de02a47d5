-- The backlog gauge counts rows set aside as unpublishable; without an index that count scanned
-- every retained (published) row, tens of milliseconds per call on a busy outbox.
CREATE INDEX outbox_failed_idx ON outbox (id) WHERE failed_at IS NOT NULL;
