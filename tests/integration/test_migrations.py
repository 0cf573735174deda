"""The migration upgrades a Staging DB created by the old servers, and is idempotent."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from unde_dagster.db.migrate import MigrationRoleError, load_migrations, migrate
from unde_local.postgres import with_database
from unde_local.stack import LocalStack

# raw_products as the first servers created it: no v5.1 columns, no collage_url.
OLD_SCHEMA = """
CREATE TABLE raw_products (
    id BIGSERIAL PRIMARY KEY,
    source VARCHAR(50) NOT NULL,
    external_id VARCHAR(100) NOT NULL,
    brand VARCHAR(50) NOT NULL,
    name TEXT, description TEXT, price DECIMAL(10,2), currency VARCHAR(10) DEFAULT 'AED',
    category TEXT, colour VARCHAR(100), sizes JSONB, composition TEXT,
    original_image_urls JSONB, image_urls JSONB, raw_data JSONB,
    scraped_at TIMESTAMPTZ NOT NULL,
    image_status VARCHAR(20) DEFAULT 'pending',
    sync_status VARCHAR(20) DEFAULT 'pending',
    ximilar_status VARCHAR(20) DEFAULT 'pending',
    ximilar_synced_at TIMESTAMPTZ, synced_at TIMESTAMPTZ, error_message TEXT,
    created_at TIMESTAMPTZ DEFAULT NOW(), updated_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE(source, external_id)
);
CREATE TABLE scraper_logs (
    id BIGSERIAL PRIMARY KEY, scraper_name VARCHAR(100) NOT NULL, run_id VARCHAR(100),
    status VARCHAR(20) NOT NULL, records_fetched INTEGER DEFAULT 0,
    started_at TIMESTAMPTZ NOT NULL
);
INSERT INTO raw_products (source, external_id, brand, name, scraped_at, image_status,
                          original_image_urls, image_urls, raw_data, error_message)
VALUES
  ('apify_zara', '495689099', 'zara', 'Old uploaded', NOW(), 'uploaded',
   '["https://static.zara.net/a.jpg?w={width}"]',
   '["https://unde-images.hel1.your-objectstorage.com/originals/zara/495689099/1.jpg"]',
   '{"id": 495689099}', NULL),
  ('apify_zara', '495689100', 'zara', 'Old failing', NOW(), 'error',
   '["https://static.zara.net/b.jpg?w={width}"]', NULL,
   '{"id": 495689100, "retry_count": 2}', 'timeout'),
  ('apify_zara', '495689101', 'zara', 'Old pending', NOW(), 'pending',
   '["https://static.zara.net/c.jpg?w={width}"]', NULL, '{"retry_count": "x"}', NULL);
"""


@pytest.fixture()
def old_database(stack: LocalStack) -> Iterator[str]:
    admin = with_database(stack.env["STAGING_DB_URL"], "postgres")
    name = f"old_staging_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(admin, name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(OLD_SCHEMA)
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def columns(conn: psycopg.Connection, table: str) -> set[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,)
    )
    return {r[0] for r in rows}


def test_upgrades_an_old_server_database_keeping_rows_and_state(old_database: str) -> None:
    applied = migrate(old_database, "staging")
    assert applied == [m.version for m in load_migrations("staging")]
    assert applied[:2] == ["0001_seed_schema", "0002_pipeline_state"]
    with psycopg.connect(old_database) as conn:
        cols = columns(conn, "raw_products")
        assert {"collage_url", "index_scope", "ximilar_synced_urls", "ximilar_target_count"} <= cols
        assert {"image_attempts", "last_seen_run_id", "content_hash"} <= cols
        assert {"records_new", "metadata", "duration_seconds"} <= columns(conn, "scraper_logs")
        assert {"raw_availability", "raw_stores"} <= {
            r[0] for r in conn.execute("SELECT tablename FROM pg_tables")
        }
        rows = conn.execute(
            "SELECT external_id, image_status, image_urls, image_attempts, index_scope, "
            "ximilar_synced_urls, ximilar_target_count, error_message "
            "FROM raw_products ORDER BY external_id"
        ).fetchall()
    assert rows == [
        ("495689099", "uploaded",
         ["https://unde-images.hel1.your-objectstorage.com/originals/zara/495689099/1.jpg"],
         0, "off", [], 2, None),
        ("495689100", "error", None, 2, "off", [], 2, "timeout"),
        ("495689101", "pending", None, 0, "off", [], 2, None),
    ]


def test_migration_is_idempotent_and_every_file_reapplies_cleanly(old_database: str) -> None:
    migrate(old_database, "staging")
    assert migrate(old_database, "staging") == []
    # Each file must also survive being run again by hand (no version table involved).
    with psycopg.connect(old_database, autocommit=True) as conn:
        for migration in load_migrations("staging"):
            conn.execute(migration.sql)  # type: ignore[arg-type]
        count = conn.execute("SELECT count(*) FROM raw_products").fetchone()
    assert count == (3,)


def test_availability_daily_key_is_unique_per_utc_day(old_database: str) -> None:
    migrate(old_database, "staging")
    insert = (
        "INSERT INTO raw_availability (brand, store_id, product_id, sizes_in_stock, fetched_at) "
        "VALUES ('zara', 1, 'p', '[]', %s)"
    )
    with psycopg.connect(old_database, autocommit=True) as conn:
        conn.execute(insert, ("2026-11-23 01:00+00",))
        conn.execute(insert, ("2026-11-24 01:00+00",))
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(insert, ("2026-11-23 23:00+00",))


def test_odd_old_rows_migrate_to_states_the_stages_take_up(old_database: str) -> None:
    """Retry counts of every JSON type, and statuses only an old worker knew."""
    odd = [
        ("c-str", "error", None, '{"retry_count": "2"}', "pending"),
        ("c-float", "error", None, '{"retry_count": 2.0}', "pending"),
        ("c-huge", "error", None, '{"retry_count": 1099511627776}', "pending"),
        ("c-neg", "error", None, '{"retry_count": -4}', "pending"),
        ("c-junk", "error", None, '{"retry_count": {"n": 1}}', "pending"),
        ("c-array", "pending", None, '[1, 2]', "pending"),
        ("busy-dl", "downloading", None, "{}", "syncing"),
        ("busy-col", "processing", '["https://x.test/originals/zara/busy-col/1.jpg"]', "{}",
         "pending"),
    ]
    with psycopg.connect(old_database, autocommit=True) as conn:
        for ext, status, urls, raw, ximilar in odd:
            conn.execute(
                "INSERT INTO raw_products (source, external_id, brand, scraped_at, image_status, "
                "image_urls, raw_data, ximilar_status, updated_at) "
                "VALUES ('apify_zara', %s, 'zara', NOW(), %s, %s, %s, %s, "
                "NOW() - interval '3 hours')", (ext, status, urls, raw, ximilar))
    migrate(old_database, "staging")
    with psycopg.connect(old_database) as conn:
        got = {r[0]: r[1:] for r in conn.execute(
            "SELECT external_id, image_status, image_error_stage, image_attempts, ximilar_status, "
            "image_attempted_at < NOW() - interval '2 hours' FROM raw_products "
            "WHERE external_id = ANY(%s)", ([o[0] for o in odd],)).fetchall()}
    assert got == {
        "c-str": ("error", "download", 2, "pending", True),
        "c-float": ("error", "download", 2, "pending", True),
        "c-huge": ("error", "download", 32767, "pending", True),
        "c-neg": ("error", "download", 0, "pending", True),
        "c-junk": ("error", "download", 0, "pending", True),
        "c-array": ("pending", None, 0, "pending", None),
        "busy-dl": ("pending", None, 0, "pending", None),
        "busy-col": ("uploaded", None, 0, "pending", None),
    }


def test_a_role_that_does_not_own_the_tables_is_told_which_it_needs(
    old_database: str,
) -> None:
    role = f"reader_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(old_database, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'")
        conn.execute(f"GRANT SELECT, UPDATE ON raw_products TO {role}")
    parts = urlsplit(old_database)
    as_role = urlunsplit(parts._replace(netloc=f"{role}:pw@{parts.hostname}:{parts.port}"))
    try:
        with pytest.raises(MigrationRoleError) as err:
            migrate(as_role, "staging")
        assert "must run as the role that owns its tables" in str(err.value)
        assert f"Connected as {role!r}: raw_products belongs to" in str(err.value)
        with psycopg.connect(old_database) as conn:
            assert conn.execute("SELECT to_regclass('unde_schema_migrations')").fetchone() == (
                None,)
    finally:
        with psycopg.connect(old_database, autocommit=True) as conn:
            conn.execute(f"REVOKE ALL ON raw_products FROM {role}")
            conn.execute(f"DROP ROLE {role}")
