-- State the Dagster pipeline keeps beside the seed columns. Retry counters move out of
-- raw_data->'retry_count' (seed) into typed columns; the old value is carried over.

ALTER TABLE raw_products ADD COLUMN IF NOT EXISTS item_id VARCHAR(100);
ALTER TABLE raw_products ADD COLUMN IF NOT EXISTS colour_id VARCHAR(50);
ALTER TABLE raw_products ADD COLUMN IF NOT EXISTS content_hash VARCHAR(64);
ALTER TABLE raw_products ADD COLUMN IF NOT EXISTS last_seen_run_id VARCHAR(100);
ALTER TABLE raw_products ADD COLUMN IF NOT EXISTS image_attempts SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE raw_products ADD COLUMN IF NOT EXISTS image_attempted_at TIMESTAMPTZ;
ALTER TABLE raw_products ADD COLUMN IF NOT EXISTS image_error_stage VARCHAR(20);
ALTER TABLE raw_products ADD COLUMN IF NOT EXISTS collage_attempts SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE raw_products ADD COLUMN IF NOT EXISTS ximilar_attempts SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE raw_products ADD COLUMN IF NOT EXISTS ximilar_error TEXT;
ALTER TABLE raw_products ADD COLUMN IF NOT EXISTS sync_error TEXT;

-- The old servers' counter may be a JSON number of any size (2, 2.0, 1e12) or a string
-- ("2"); anything else (null, "x", an object) is ignored. Read as numeric, never as int.
UPDATE raw_products r
   SET image_attempts = c.n
  FROM (SELECT id,
               LEAST(GREATEST(floor(CASE jsonb_typeof(raw_data->'retry_count')
                   WHEN 'number' THEN (raw_data->>'retry_count')::numeric
                   WHEN 'string' THEN CASE WHEN btrim(raw_data->>'retry_count')
                                                ~ '^[0-9]{1,9}([.][0-9]*)?$'
                                           THEN btrim(raw_data->>'retry_count')::numeric END
               END), 0), 32767)::smallint AS n
          FROM raw_products
         WHERE jsonb_typeof(raw_data) = 'object' AND raw_data ? 'retry_count') c
 WHERE r.id = c.id AND c.n IS NOT NULL AND r.image_attempts = 0;

-- Work queues: the stages claim rows of one brand in one state.
CREATE INDEX IF NOT EXISTS idx_raw_products_brand_image_status
    ON raw_products (brand, image_status);
CREATE INDEX IF NOT EXISTS idx_raw_products_brand_ximilar
    ON raw_products (brand, ximilar_status) WHERE index_scope = 'pilot';
CREATE INDEX IF NOT EXISTS idx_raw_products_brand_sync
    ON raw_products (brand, sync_status);
