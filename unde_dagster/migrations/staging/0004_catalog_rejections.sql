-- What a catalog run did not write, and why (SPEC §6): items and colours it rejected, SKUs
-- PostgreSQL refused, photo URLs it dropped. One row per rejection per catalog run; run_id
-- is the Dagster run id, the same as scraper_logs.run_id and raw_products.last_seen_run_id.
-- The fingerprint (sha256 of source, ids, reason, detail, URL) makes a repeated write of
-- the same run a no-op (identical rejections within one run are one row; the run's
-- materialization and scraper_logs metadata keep the full counts).
CREATE TABLE IF NOT EXISTS catalog_rejections (
    id BIGSERIAL PRIMARY KEY,
    run_id VARCHAR(100) NOT NULL,
    source VARCHAR(50) NOT NULL,
    brand VARCHAR(50) NOT NULL,
    item_id VARCHAR(100),
    colour_id VARCHAR(50),
    reason VARCHAR(50) NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    photo_url TEXT,
    apify_run_id VARCHAR(100),
    dataset_id VARCHAR(100),
    fingerprint VARCHAR(64) NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE UNIQUE INDEX IF NOT EXISTS idx_catalog_rejections_run_fingerprint
    ON catalog_rejections (run_id, fingerprint);
CREATE INDEX IF NOT EXISTS idx_catalog_rejections_brand_created
    ON catalog_rejections (brand, created_at DESC);
CREATE INDEX IF NOT EXISTS idx_catalog_rejections_item
    ON catalog_rejections (source, item_id);
