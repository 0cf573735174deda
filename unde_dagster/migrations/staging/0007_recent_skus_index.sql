-- The stages' preview grids and the collage-dimension check read a brand's latest stored
-- SKUs (`ORDER BY updated_at DESC LIMIT n`, db/queues.py): without an index each run sorted
-- every stored row of the brand (a seq scan of 10,000 rows, 15 ms, in bench/scale_bench.py).
CREATE INDEX IF NOT EXISTS idx_raw_products_brand_stored_updated
    ON raw_products (brand, updated_at) WHERE image_status IN ('uploaded', 'collage_ready');
