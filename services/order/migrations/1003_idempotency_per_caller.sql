-- An `Idempotency-Key` is its caller's own: two callers may pick the same key without meeting.
-- `subject` is the token's subject ('' with auth off); rows of before keep '' and age out.
ALTER TABLE idempotency_keys ADD COLUMN subject text NOT NULL DEFAULT '';
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (subject, key);
