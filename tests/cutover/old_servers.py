"""The Staging DB exactly as the five old Celery servers leave it, for cut-over tests.

At cut-over the Dagster project points at the Staging DB the old servers wrote.  This module
builds that database from the seeds' own DDL (catalog-infrastructure.md §6, verbatim) with the
seeds' per-server database users (§6 "Пользователи БД"), and replays the old servers' own SQL
statements (copied as literally as the seeds give them), so a test can put rows into it the way
the old Apify collector, photo downloader, collage worker and Ximilar sync did.

Every statement function takes a psycopg connection; the caller connects as the server's role
(`old_role_url`).  The functions do not commit: use an autocommit connection, or commit.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import psycopg.rows
from psycopg import sql

from unde_local.fixtures.catalog import brand_display_name, photo_url
from unde_local.postgres import with_database

# The seed's Staging DB DDL (catalog-infrastructure.md §6 "Схема базы данных"), verbatim;
# only trailing whitespace is stripped.
SEED_STAGING_DDL = """\
-- DATABASE: unde_staging

-- Сырые данные товаров
CREATE TABLE raw_products (
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
    collage_url TEXT,

    raw_data JSONB,
    scraped_at TIMESTAMPTZ NOT NULL,

    image_status VARCHAR(20) DEFAULT 'pending',
        -- pending → uploaded → collage_ready | error

    sync_status VARCHAR(20) DEFAULT 'pending',
        -- pending → synced | skipped | error

    ximilar_status VARCHAR(20) DEFAULT 'pending',
        -- pending → partial → synced | error
        -- 🔄 v5.1: partial = отправлено < target фото (progressive ingestion)
    ximilar_synced_at TIMESTAMPTZ,

    -- 🔄 v5.1: новые поля для selective sync и progressive ingestion
    index_scope TEXT DEFAULT 'off',
        -- 'pilot' = грузить в Ximilar, 'pgvector' = только pgvector, 'off' = не индексировать
    ximilar_synced_urls JSONB DEFAULT '[]',
        -- URL'ы уже отправленные в Ximilar (idempotency)
    ximilar_target_count SMALLINT DEFAULT 2,
        -- сколько фото грузить (2 по умолчанию, повышается progressive ingestion)

    synced_at TIMESTAMPTZ,
    error_message TEXT,

    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),

    UNIQUE(source, external_id)
);

-- Наличие в физических магазинах
CREATE TABLE raw_availability (
    id BIGSERIAL PRIMARY KEY,
    brand VARCHAR(50) NOT NULL,
    store_id INTEGER NOT NULL,
    product_id VARCHAR(100) NOT NULL,
    sizes_in_stock JSONB NOT NULL,
    fetched_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ DEFAULT NOW()
);

-- Expression UNIQUE: PG не поддерживает cast в UNIQUE constraint напрямую
CREATE FUNCTION to_date_immutable(ts TIMESTAMPTZ) RETURNS DATE AS $$
    SELECT (ts AT TIME ZONE 'UTC')::date;
$$ LANGUAGE SQL IMMUTABLE;

CREATE UNIQUE INDEX idx_raw_availability_unique_daily
    ON raw_availability(brand, store_id, product_id, to_date_immutable(fetched_at));

-- Физические магазины Dubai
CREATE TABLE raw_stores (
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
    UNIQUE(brand, store_id)
);

-- Логи скраперов
CREATE TABLE scraper_logs (
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

-- ИНДЕКСЫ
CREATE INDEX idx_raw_products_brand ON raw_products(brand);
CREATE INDEX idx_raw_products_image_status ON raw_products(image_status);
CREATE INDEX idx_raw_products_sync_status ON raw_products(sync_status);
CREATE INDEX idx_raw_products_ximilar_status ON raw_products(ximilar_status);
CREATE INDEX idx_raw_products_external_id ON raw_products(external_id);
CREATE INDEX idx_raw_products_scraped_at ON raw_products(scraped_at);
CREATE INDEX idx_raw_availability_brand_store ON raw_availability(brand, store_id);
CREATE INDEX idx_raw_availability_product ON raw_availability(product_id);
CREATE INDEX idx_raw_availability_fetched ON raw_availability(fetched_at);

-- 🔄 v5.1: индексы для availability post-filter (Step 3.5 Recognition Pipeline)
CREATE INDEX IF NOT EXISTS idx_raw_availability_lookup
    ON raw_availability (brand, store_id, product_id, fetched_at DESC);
CREATE INDEX IF NOT EXISTS idx_raw_availability_brand_product
    ON raw_availability (brand, product_id);
CREATE INDEX idx_scraper_logs_name ON scraper_logs(scraper_name);
CREATE INDEX idx_scraper_logs_started ON scraper_logs(started_at DESC);
"""

# Production DB `model_library` (model-generator-server.md "База данных"), verbatim.
SEED_PRODUCTION_DDL = """\
CREATE TABLE model_library (
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
    UNIQUE(template_id, version)
);

CREATE INDEX idx_model_library_gender ON model_library(gender);
CREATE INDEX idx_model_library_style ON model_library(style);
"""

# The seed's per-server DB users (catalog-infrastructure.md §6 "Пользователи БД").
OLD_ROLES = ("apify", "downloader", "collage", "ximilar", "scraper")

# What each role may touch, table-level: SELECT, INSERT, UPDATE (the seed's "READ/WRITE") and
# USAGE on the tables' id sequences.  The users table names raw_products (and scraper_logs for
# apify; "all" for scraper); the downloader, collage and Ximilar servers also write a
# scraper_logs row per batch (their own docs), so they get scraper_logs as well.
OLD_ROLE_TABLES: dict[str, tuple[str, ...]] = {
    "apify": ("raw_products", "scraper_logs"),
    "downloader": ("raw_products", "scraper_logs"),
    "collage": ("raw_products", "scraper_logs"),
    "ximilar": ("raw_products", "scraper_logs"),
    "scraper": ("raw_products", "raw_availability", "raw_stores", "scraper_logs"),
}
OLD_ROLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE")


def old_role_url(url: str, role: str, password: str) -> str:
    """`url` (same host, port, database, options) logged in as `role` with `password`."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    netloc = f"{quote(role, safe='')}:{quote(password, safe='')}@{host}{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _ensure_login_role(conn: psycopg.Connection, role: str, password: str) -> None:
    """Create `role` (LOGIN, not privileged) if missing; (re)set its password either way.

    Roles are cluster-wide and outlive the databases: a second call (another test, a test
    run after an earlier one) finds them and only sets the password again.
    """
    row = conn.execute(
        "SELECT rolsuper, rolname = current_user FROM pg_roles WHERE rolname = %s", (role,)
    ).fetchone()
    if row is not None and (row[0] or row[1]):
        raise ValueError(f"role {role!r} is a superuser or the admin itself; pick another name")
    if row is None:
        # another session may create it meanwhile
        with contextlib.suppress(psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
            conn.execute(sql.SQL(
                "CREATE ROLE {} LOGIN PASSWORD {} NOSUPERUSER NOCREATEDB NOCREATEROLE"
            ).format(sql.Identifier(role), sql.Literal(password)))
    conn.execute(sql.SQL(
        "ALTER ROLE {} LOGIN PASSWORD {} NOSUPERUSER NOCREATEDB NOCREATEROLE"
    ).format(sql.Identifier(role), sql.Literal(password)))


def create_old_database(admin_url: str, name: str, *, owner: str, password: str,
                        ddl: str = SEED_STAGING_DDL) -> str:
    """Create database `name` as the old Staging DB server has it; return the owner's URL.

    As the superuser `admin_url`: the owner role (LOGIN, no SUPERUSER/CREATEDB/CREATEROLE)
    and the per-server roles `OLD_ROLES` (LOGIN), all with `password`, created if missing;
    `CREATE DATABASE name OWNER owner`; CREATE on schema public revoked from PUBLIC (the
    PG 15+ default, done explicitly so PG 13/14 match; there the owner is given schema
    public, as PG 15+ gives it to the database owner).  Then AS THE OWNER: the DDL (the seed
    Staging DDL by default; `SEED_PRODUCTION_DDL` for an old Production DB) and, on the
    tables it created, the per-server grants of `OLD_ROLE_TABLES`.
    """
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for role in (owner, *OLD_ROLES):
            _ensure_login_role(conn, role, password)
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(name), sql.Identifier(owner)))
    db_admin_url = with_database(admin_url, name)
    with psycopg.connect(db_admin_url, autocommit=True) as conn:
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        if conn.info.server_version < 150000:
            conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(
                sql.Identifier(owner)))
    owner_url = old_role_url(db_admin_url, owner, password)
    with psycopg.connect(owner_url) as conn:
        conn.execute(ddl)  # several statements, no parameters: one simple query
        have = {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        for role, tables in OLD_ROLE_TABLES.items():
            for table in (t for t in tables if t in have):
                conn.execute(sql.SQL("GRANT {} ON TABLE {} TO {}").format(
                    sql.SQL(", ").join(sql.SQL(p) for p in OLD_ROLE_PRIVILEGES),
                    sql.Identifier(table), sql.Identifier(role)))
                seq = conn.execute(
                    "SELECT pg_get_serial_sequence(%s, 'id')", (f"public.{table}",)
                ).fetchone()
                if seq and seq[0]:
                    conn.execute(sql.SQL("GRANT USAGE ON SEQUENCE {} TO {}").format(
                        sql.SQL(seq[0]), sql.Identifier(role)))  # already quoted by PG
    return owner_url


def drop_old_database(admin_url: str, name: str) -> None:
    """Drop database `name` (closing its sessions).  The cluster-wide roles stay."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


# --- Apify collector (catalog-infrastructure.md §2 "Процесс сбора данных") -----------------

COLLECTOR_UPSERT_SQL = """
            INSERT INTO raw_products (source, external_id, brand, name, price,
                                      currency, category, colour, sizes,
                                      composition, description,
                                      original_image_urls, image_status,
                                      raw_data, scraped_at)
            VALUES (%s, %s, %s, %s, %s,
                    'AED', %s, %s, %s,
                    %s, %s,
                    %s, 'pending',
                    %s, NOW())
            ON CONFLICT (source, external_id) DO UPDATE SET
                name = EXCLUDED.name,
                price = EXCLUDED.price,
                original_image_urls = EXCLUDED.original_image_urls,
                raw_data = EXCLUDED.raw_data,
                scraped_at = EXCLUDED.scraped_at,
                updated_at = NOW()
        """

# Not in the seed as SQL: the scraper_logs row of a collector run, in the columns the seed's
# scraper_logs DDL and the Ximilar server's log INSERT use.
COLLECTOR_LOG_SQL = """
    INSERT INTO scraper_logs (scraper_name, run_id, status, records_fetched,
                              started_at, completed_at, duration_seconds)
    VALUES (%s, %s, 'success', %s,
            COALESCE(%s::timestamptz, NOW()), NOW(),
            EXTRACT(EPOCH FROM NOW() - COALESCE(%s::timestamptz, NOW()))::int)
"""


def old_collector_photo_urls(item: dict[str, Any]) -> list[str]:
    """The collector's photo list: every colour's `xmedia[:5]`, `{width}` → 1920, flattened."""
    photo_urls = []
    for color in item.get("colorsSizesImagesJSON", []):
        for url in color.get("xmedia", [])[:5]:
            photo_urls.append(url.replace("{width}", "1920"))
    return photo_urls


def old_collector_upsert(conn: psycopg.Connection, brand: str, item: dict[str, Any]) -> None:
    """One dataset item written as the old Apify collector did: one row per item."""
    photo_urls = old_collector_photo_urls(item)
    price_aed = item["price"] / 100 if item.get("price") else None
    conn.execute(COLLECTOR_UPSERT_SQL, (
        f"apify_{brand}", str(item["id"]), brand, item["name"],
        price_aed, item.get("category"), item.get("colors"),
        json.dumps(item.get("sizes", "")),
        json.dumps(item.get("detailedComposition")),
        item.get("description"),
        json.dumps(photo_urls), json.dumps(item),
    ))


def old_collector_log(conn: psycopg.Connection, brand: str, apify_run_id: str, fetched: int,
                      *, started_at: datetime | None = None) -> None:
    """The collector run's scraper_logs row: `apify_{brand}`, the Apify run id, success."""
    conn.execute(COLLECTOR_LOG_SQL,
                 (f"apify_{brand}", apify_run_id, fetched, started_at, started_at))


# --- Photo downloader (catalog-infrastructure.md §3 "Процесс скачивания") -----------------

DOWNLOAD_PENDING_SQL = """
        SELECT id, external_id, brand, original_image_urls
        FROM raw_products
        WHERE image_status = 'pending'
        LIMIT %s
    """

DOWNLOADER_SUCCESS_SQL = """
                    UPDATE raw_products
                    SET image_urls = %s, image_status = 'uploaded', updated_at = NOW()
                    WHERE id = %s
                """

DOWNLOADER_ERROR_SQL = """
                    UPDATE raw_products
                    SET image_status = 'error', error_message = %s, updated_at = NOW()
                    WHERE id = %s
                """

# Not in the seed as SQL: photo-downloader-server.md says retry_count lives in raw_data.
DOWNLOADER_RETRY_COUNT_SQL = """
    UPDATE raw_products
    SET raw_data = jsonb_set(raw_data, '{retry_count}', %s::jsonb)
    WHERE id = %s
"""


def old_download_pending(conn: psycopg.Connection, limit: int = 200) -> list[Any]:
    """The downloader's batch: rows with `.id`, `.external_id`, `.brand`,
    `.original_image_urls` (a list), as the seed's code reads them."""
    with conn.cursor(row_factory=psycopg.rows.namedtuple_row) as cur:
        return cur.execute(DOWNLOAD_PENDING_SQL, (limit,)).fetchall()


def old_downloader_success(conn: psycopg.Connection, product_id: int,
                           uploaded_urls: Sequence[str]) -> None:
    conn.execute(DOWNLOADER_SUCCESS_SQL, (json.dumps(list(uploaded_urls)), product_id))


def old_downloader_error(conn: psycopg.Connection, product_id: int, message: Any) -> None:
    conn.execute(DOWNLOADER_ERROR_SQL, (str(message), product_id))


def old_downloader_retry_count(conn: psycopg.Connection, product_id: int, value: Any) -> None:
    """`raw_data.retry_count` = `value` as given (3 → 3, 3.0 → 3.0, "3" → "3" in JSON)."""
    conn.execute(DOWNLOADER_RETRY_COUNT_SQL, (json.dumps(value), product_id))


# --- Collage worker (catalog-infrastructure.md §4 "Процесс обработки") --------------------

COLLAGE_SUCCESS_SQL = (
    "UPDATE raw_products SET collage_url = %s, image_status = 'collage_ready', "
    "updated_at = NOW() WHERE id = %s"
)

# Not in the seed as SQL: collage-server.md step 9 ("image_status = error, error_message =
# текст ошибки"), written like the downloader's error UPDATE (its retry_failed has a 1 h
# cooldown, which needs updated_at).
COLLAGE_ERROR_SQL = (
    "UPDATE raw_products SET image_status = 'error', error_message = %s, "
    "updated_at = NOW() WHERE id = %s"
)


def old_collage_success(conn: psycopg.Connection, product_id: int, collage_url: str) -> None:
    conn.execute(COLLAGE_SUCCESS_SQL, (collage_url, product_id))


def old_collage_error(conn: psycopg.Connection, product_id: int, message: Any) -> None:
    conn.execute(COLLAGE_ERROR_SQL, (str(message), product_id))


# --- Ximilar sync, v5.1 (catalog-infrastructure.md §5 "Процесс синхронизации") ------------

XIMILAR_SUCCESS_SQL = """
                UPDATE raw_products
                SET ximilar_status = %s,
                    ximilar_synced_urls = %s,
                    ximilar_synced_at = NOW()
                WHERE id = %s
            """

XIMILAR_ERROR_SQL = """
                UPDATE raw_products
                SET ximilar_status = 'error', error_message = %s
                WHERE id = %s
            """


def old_ximilar_success(conn: psycopg.Connection, product_id: int, status: str,
                        synced_urls: Sequence[str]) -> None:
    """`status` is 'synced' or 'partial'; neither error_message nor updated_at is touched."""
    conn.execute(XIMILAR_SUCCESS_SQL, (status, json.dumps(list(synced_urls)), product_id))


def old_ximilar_error(conn: psycopg.Connection, product_id: int, message: Any) -> None:
    """ximilar_status='error' and error_message; updated_at is NOT touched (v5.1 seed)."""
    conn.execute(XIMILAR_ERROR_SQL, (str(message), product_id))


# --- Apify items (catalog-infrastructure.md §2, datasaurus/zara) --------------------------

LOCAL_CDN_BASE_URL = "http://cdn.brand-images.test"  # the CDN emulator's host


def zara_item(item_id: int, colours: Sequence[tuple[str, str, int]], *, price: int = 69900,
              name: str = "ZW COLLECTION ASYMMETRIC BLAZER", brand: str = "zara",
              category: str = "woman-outerwear-padded",
              sizes: Sequence[str] = ("XS", "S", "M", "L"),
              cdn_base_url: str = LOCAL_CDN_BASE_URL) -> dict[str, Any]:
    """An Apify item in the seed's datasaurus/zara shape; `colours` = (id, name, n_photos).

    Photo URLs are the local fixtures' (`unde_local.fixtures.catalog.photo_url`, served by
    the CDN emulator), with the literal `?w={width}`; price in fils; `sizes` the comma string.
    """
    model = f"{item_id % 10**8:08d}"
    variants = []
    for c_no, (colour_id, colour_name, n_photos) in enumerate(colours):
        suffixes = ["p", *(f"e{i}" for i in range(1, n_photos))][:n_photos]
        variants.append({
            "id": colour_id,
            "name": colour_name,
            "productId": item_id + 5_000 + c_no,
            "xmedia": [photo_url(cdn_base_url, brand, model, colour_id, s) for s in suffixes],
            "sizes": [{"name": size, "sku": item_id * 100 + c_no * 10 + s_no + 1,
                       "availability": "in_stock", "price": price}
                      for s_no, size in enumerate(sizes)],
        })
    return {
        "id": item_id,
        "reference": f"{model}-V2026",
        "brand": brand_display_name(brand),
        "name": name,
        "description": f"{name.capitalize()} with a notched lapel collar.",
        "price": price,
        "category": category,
        "colors": ", ".join(colour_name for _, colour_name, _ in colours),
        "sizes": ", ".join(sizes),
        "detailedComposition": {"parts": [{
            "description": "OUTER SHELL", "areas": [],
            "components": [{"material": "polyester", "percentage": "100%"}],
        }]},
        "colorsSizesImagesJSON": variants,
    }
