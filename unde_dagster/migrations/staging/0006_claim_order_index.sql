-- The stages claim a brand's rows in one state in id order (`ORDER BY id LIMIT n`): with id
-- in the index each claim reads only its batch, instead of every row of the state already
-- done (a claim's cost grew with the brand, measured by bench/scale_bench.py at 10,000 SKUs).
CREATE INDEX IF NOT EXISTS idx_raw_products_brand_image_status_id
    ON raw_products (brand, image_status, id);
DROP INDEX IF EXISTS idx_raw_products_brand_image_status;
