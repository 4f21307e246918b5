-- Deliveries made visible and bounded (kept in step with ../sqlite/0004_deliveries.sql):
-- the run a delivery started (NULL: pending, ignored or failed; see `error` and
-- `processed_at`), and an index for the retention sweep, which deletes rows by age.
ALTER TABLE deliveries ADD COLUMN run_id BIGINT;
CREATE INDEX deliveries_received ON deliveries (received_at);
