-- Staging DB as the old servers created it (catalog-infrastructure.md §6), made idempotent:
-- on a database created by the old servers every statement is a no-op or adds what is missing.

CREATE TABLE IF NOT EXISTS raw_products (
    id BIGSERIAL PRIMARY KEY,
    source VARCHAR(50) NOT NULL,
    external_id VARCHAR(100) NOT NULL,
    brand VARCHAR(50) NOT NULL,
    name TEXT,
    description TEXT,
    price DECIMAL(10,2),
    currency VARCHAR(10) DEFAULT 'AED',
    category TEXT,
    colour VARCHAR(100),
    sizes JSONB,
    composition TEXT,
    original_image_urls JSONB,
    image_urls JSONB,
    raw_data JSONB,
    scraped_at TIMESTAMPTZ NOT NULL,
    image_status VARCHAR(20) DEFAULT 'pending',
    sync_status VARCHAR(20) DEFAULT 'pending',
    ximilar_status VARCHAR(20) DEFAULT 'pending',
    ximilar_synced_at TIMESTAMPTZ,
    synced_at TIMESTAMPTZ,
    error_message TEXT,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE (source, external_id)
);

-- Columns added after the first servers went live (v5.1 and the collage server).
ALTER TABLE raw_products ADD COLUMN IF NOT EXISTS collage_url TEXT;
ALTER TABLE raw_products ADD COLUMN IF NOT EXISTS index_scope TEXT DEFAULT 'off';
ALTER TABLE raw_products ADD COLUMN IF NOT EXISTS ximilar_synced_urls JSONB DEFAULT '[]';
ALTER TABLE raw_products ADD COLUMN IF NOT EXISTS ximilar_target_count SMALLINT DEFAULT 2;
UPDATE raw_products SET ximilar_synced_urls = '[]' WHERE ximilar_synced_urls IS NULL;
UPDATE raw_products SET ximilar_target_count = 2 WHERE ximilar_target_count IS NULL;
UPDATE raw_products SET index_scope = 'off' WHERE index_scope IS NULL;

CREATE TABLE IF NOT EXISTS raw_availability (
    id BIGSERIAL PRIMARY KEY,
    brand VARCHAR(50) NOT NULL,
    store_id INTEGER NOT NULL,
    product_id VARCHAR(100) NOT NULL,
    sizes_in_stock JSONB NOT NULL,
    fetched_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ DEFAULT NOW()
);

-- A cast is not allowed in a UNIQUE constraint, hence the immutable wrapper.
CREATE OR REPLACE FUNCTION to_date_immutable(ts TIMESTAMPTZ) RETURNS DATE AS $$
    SELECT (ts AT TIME ZONE 'UTC')::date;
$$ LANGUAGE SQL IMMUTABLE;

CREATE UNIQUE INDEX IF NOT EXISTS idx_raw_availability_unique_daily
    ON raw_availability (brand, store_id, product_id, to_date_immutable(fetched_at));

CREATE TABLE IF NOT EXISTS raw_stores (
    id SERIAL PRIMARY KEY,
    brand VARCHAR(50) NOT NULL,
    store_id INTEGER NOT NULL,
    name TEXT,
    address TEXT,
    city VARCHAR(100) DEFAULT 'Dubai',
    country VARCHAR(10) DEFAULT 'AE',
    mall_name TEXT,
    latitude DECIMAL(10,7),
    longitude DECIMAL(10,7),
    created_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE (brand, store_id)
);

CREATE TABLE IF NOT EXISTS scraper_logs (
    id BIGSERIAL PRIMARY KEY,
    scraper_name VARCHAR(100) NOT NULL,
    run_id VARCHAR(100),
    status VARCHAR(20) NOT NULL,
    records_fetched INTEGER DEFAULT 0,
    records_new INTEGER DEFAULT 0,
    records_updated INTEGER DEFAULT 0,
    records_errors INTEGER DEFAULT 0,
    started_at TIMESTAMPTZ NOT NULL,
    completed_at TIMESTAMPTZ,
    duration_seconds INTEGER,
    error_message TEXT,
    metadata JSONB,
    created_at TIMESTAMPTZ DEFAULT NOW()
);

-- Tables created by an early server version may lack columns the seed DDL has.
ALTER TABLE scraper_logs ADD COLUMN IF NOT EXISTS run_id VARCHAR(100);
ALTER TABLE scraper_logs ADD COLUMN IF NOT EXISTS records_fetched INTEGER DEFAULT 0;
ALTER TABLE scraper_logs ADD COLUMN IF NOT EXISTS records_new INTEGER DEFAULT 0;
ALTER TABLE scraper_logs ADD COLUMN IF NOT EXISTS records_updated INTEGER DEFAULT 0;
ALTER TABLE scraper_logs ADD COLUMN IF NOT EXISTS records_errors INTEGER DEFAULT 0;
ALTER TABLE scraper_logs ADD COLUMN IF NOT EXISTS completed_at TIMESTAMPTZ;
ALTER TABLE scraper_logs ADD COLUMN IF NOT EXISTS duration_seconds INTEGER;
ALTER TABLE scraper_logs ADD COLUMN IF NOT EXISTS error_message TEXT;
ALTER TABLE scraper_logs ADD COLUMN IF NOT EXISTS metadata JSONB;
ALTER TABLE scraper_logs ADD COLUMN IF NOT EXISTS created_at TIMESTAMPTZ DEFAULT NOW();
ALTER TABLE raw_products ADD COLUMN IF NOT EXISTS ximilar_synced_at TIMESTAMPTZ;
ALTER TABLE raw_products ADD COLUMN IF NOT EXISTS synced_at TIMESTAMPTZ;
ALTER TABLE raw_products ADD COLUMN IF NOT EXISTS error_message TEXT;

CREATE INDEX IF NOT EXISTS idx_raw_products_brand ON raw_products (brand);
CREATE INDEX IF NOT EXISTS idx_raw_products_image_status ON raw_products (image_status);
CREATE INDEX IF NOT EXISTS idx_raw_products_sync_status ON raw_products (sync_status);
CREATE INDEX IF NOT EXISTS idx_raw_products_ximilar_status ON raw_products (ximilar_status);
CREATE INDEX IF NOT EXISTS idx_raw_products_external_id ON raw_products (external_id);
CREATE INDEX IF NOT EXISTS idx_raw_products_scraped_at ON raw_products (scraped_at);
CREATE INDEX IF NOT EXISTS idx_raw_availability_brand_store ON raw_availability (brand, store_id);
CREATE INDEX IF NOT EXISTS idx_raw_availability_product ON raw_availability (product_id);
CREATE INDEX IF NOT EXISTS idx_raw_availability_fetched ON raw_availability (fetched_at);
CREATE INDEX IF NOT EXISTS idx_raw_availability_lookup
    ON raw_availability (brand, store_id, product_id, fetched_at DESC);
CREATE INDEX IF NOT EXISTS idx_raw_availability_brand_product
    ON raw_availability (brand, product_id);
CREATE INDEX IF NOT EXISTS idx_scraper_logs_name ON scraper_logs (scraper_name);
CREATE INDEX IF NOT EXISTS idx_scraper_logs_started ON scraper_logs (started_at DESC);
