-- Work claims: a stage run stamps the rows it took with its run id and a lease, so two runs
-- never process one SKU and a killed run's rows come back (lease expiry, or at once when
-- Dagster reports the run finished). original_sources remembers which source URL each
-- stored original came from, so unchanged photos are not fetched again.
ALTER TABLE raw_products ADD COLUMN IF NOT EXISTS claim_token VARCHAR(100);
ALTER TABLE raw_products ADD COLUMN IF NOT EXISTS claimed_until TIMESTAMPTZ;
ALTER TABLE raw_products ADD COLUMN IF NOT EXISTS original_sources JSONB NOT NULL DEFAULT '{}';
CREATE INDEX IF NOT EXISTS idx_raw_products_claim_token
    ON raw_products (claim_token) WHERE claim_token IS NOT NULL;
