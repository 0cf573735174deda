"""The old-Staging-DB fixture: seed DDL, seed roles, the old servers' statements as those roles."""

from __future__ import annotations

import secrets
import uuid

import psycopg
import pytest
import requests

from tests.cutover import old_servers as old
from unde_dagster.catalog.items import parse_item
from unde_local.postgres import with_database
from unde_local.stack import LocalStack

OWNER = "old_staging_owner"


def _connect(db_url: str, role: str, password: str) -> psycopg.Connection:
    return psycopg.connect(old.old_role_url(db_url, role, password), autocommit=True)


def test_zara_item_is_the_seed_shape_and_valid_for_our_parser(stack: LocalStack) -> None:
    item = old.zara_item(512913640, [("800", "Black", 4), ("250", "White", 7)])
    assert item["sizes"] == "XS, S, M, L" and item["price"] == 69900
    assert item["colors"] == "Black, White"
    black = item["colorsSizesImagesJSON"][0]
    assert black["xmedia"][0].startswith("http://cdn.brand-images.test/zara/photos/")
    assert all(u.endswith("?w={width}") for u in black["xmedia"])
    assert black["sizes"][0] == {"name": "XS", "sku": 51291364000 + 1,
                                 "availability": "in_stock", "price": 69900}

    parsed = parse_item(item, "zara", "apify_zara")
    assert parsed.rejections == [] and parsed.dropped_photos == []
    assert [r.external_id for r in parsed.rows] == ["512913640-800", "512913640-250"]
    assert [len(r.original_image_urls) for r in parsed.rows] == [4, 5]

    # the CDN emulator serves the photos (through the Bright Data proxy emulator)
    url = parsed.rows[1].original_image_urls[4]
    resp = requests.get(url, proxies={"http": stack.env["PROXY_URL"]}, timeout=30)
    assert resp.status_code == 200 and resp.content[:2] == b"\xff\xd8"


def test_old_servers_write_the_old_staging_db(stack: LocalStack) -> None:
    admin = stack.env["STAGING_DB_URL"]
    name = f"old_staging_{uuid.uuid4().hex[:8]}"
    password = secrets.token_urlsafe(12)
    owner_url = old.create_old_database(admin, name, owner=OWNER, password=password)
    db_url = with_database(admin, name)
    try:
        assert owner_url == old.old_role_url(db_url, OWNER, password)
        a = old.zara_item(512913640, [("800", "Black", 4), ("250", "White", 7)])
        b = old.zara_item(512913740, [("401", "Navy blue", 3)], price=12900, name="MIDI DRESS")
        c = old.zara_item(512913840, [("712", "Ecru", 2)], price=0)

        with _connect(db_url, "apify", password) as conn:
            for item in (a, b, c):
                old.old_collector_upsert(conn, "zara", item)
            old.old_collector_upsert(conn, "zara", {**a, "price": 59900})  # next run: ON CONFLICT
            old.old_collector_log(conn, "zara", "apify-run-1", 4)

        with _connect(db_url, "downloader", password) as conn:
            pending = old.old_download_pending(conn)
            by_ext = {p.external_id: p for p in pending}
            assert set(by_ext) == {"512913640", "512913740", "512913840"}
            pa, pb = by_ext["512913640"], by_ext["512913740"]
            assert pa.brand == "zara" and len(pa.original_image_urls) == 9  # 4 + first 5 of 7
            assert all("{width}" not in u and u.endswith("?w=1920")
                       for u in pa.original_image_urls)
            uploaded = [f"https://unde-images.hel1.your-objectstorage.com/originals/zara/"
                        f"{pa.external_id}/{i + 1}.jpg" for i in range(5)]
            old.old_downloader_success(conn, pa.id, uploaded)
            old.old_downloader_error(conn, pb.id, TimeoutError("photo 2 timed out"))
            old.old_downloader_retry_count(conn, pb.id, 2)
            assert len(old.old_download_pending(conn, limit=1)) == 1

        with _connect(db_url, "collage", password) as conn:
            collage = "https://unde-images.hel1.your-objectstorage.com/collages/zara/512913640.jpg"
            old.old_collage_success(conn, pa.id, collage)

        with _connect(db_url, "ximilar", password) as conn:
            pc_updated = conn.execute(
                "SELECT id, updated_at FROM raw_products WHERE external_id = '512913840'"
            ).fetchone()
            old.old_ximilar_success(conn, pa.id, "partial", uploaded[:1])
            old.old_ximilar_error(conn, pc_updated[0], "401 Unauthorized")

        with psycopg.connect(owner_url, autocommit=True) as conn:
            rows = {r[0]: r[1:] for r in conn.execute(
                "SELECT external_id, source, image_status, jsonb_typeof(sizes), sizes #>> '{}',"
                " image_urls, collage_url, error_message, ximilar_status, ximilar_synced_urls,"
                " ximilar_synced_at IS NOT NULL, price, colour, jsonb_typeof(original_image_urls),"
                " raw_data->'retry_count', jsonb_typeof(raw_data->'retry_count'), updated_at,"
                " composition, currency, index_scope, ximilar_target_count"
                " FROM raw_products")}
            ra, rb, rc = rows["512913640"], rows["512913740"], rows["512913840"]
            assert ra[:10] == ("apify_zara", "collage_ready", "string", "XS, S, M, L",
                               uploaded, collage, None, "partial", uploaded[:1], True)
            assert str(ra[10]) == "599.00" and ra[11] == "Black, White" and ra[12] == "array"
            assert ra[16] == '{"parts": [{"description": "OUTER SHELL", "areas": [], ' \
                '"components": [{"material": "polyester", "percentage": "100%"}]}]}'
            assert ra[17:] == ("AED", "off", 2)
            assert rb[1] == "error" and rb[6] == "photo 2 timed out" and rb[7] == "pending"
            assert rb[4] is None and (rb[13], rb[14]) == (2, "number")
            assert rc[1] == "pending" and rc[10] is None  # price 0 → NULL, as the seed did
            assert (rc[6], rc[7]) == ("401 Unauthorized", "error")
            assert rc[15] == pc_updated[1]  # the v5.1 error UPDATE leaves updated_at alone
            log = conn.execute(
                "SELECT scraper_name, run_id, status, records_fetched,"
                " started_at IS NOT NULL, completed_at IS NOT NULL FROM scraper_logs").fetchall()
            assert log == [("apify_zara", "apify-run-1", "success", 4, True, True)]
            raw = conn.execute(
                "SELECT raw_data FROM raw_products WHERE external_id = '512913640'").fetchone()[0]
            assert raw == {**a, "price": 59900}

            assert conn.execute(
                "SELECT tableowner FROM pg_tables WHERE tablename = 'raw_products'"
            ).fetchone()[0] == OWNER
            assert conn.execute(
                "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = %s",
                (OWNER,)).fetchone() == (False, False, False)

        for field, value in ((1, 3), (2, 3.0), (3, "3")):
            with _connect(db_url, "downloader", password) as conn:
                old.old_downloader_retry_count(conn, pb.id, value)
                got = conn.execute(
                    "SELECT raw_data->'retry_count', jsonb_typeof(raw_data->'retry_count')"
                    " FROM raw_products WHERE id = %s", (pb.id,)).fetchone()
            assert got == (value, "string" if isinstance(value, str) else "number"), field

        with _connect(db_url, "downloader", password) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("CREATE TABLE public.sneaky (id int)")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("ALTER TABLE raw_products ADD COLUMN sneaky int")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT 1 FROM raw_availability")
        with _connect(db_url, "scraper", password) as conn:
            conn.execute(
                "INSERT INTO raw_stores (brand, store_id, name) VALUES ('zara', 1, 'Dubai Mall')")
            conn.execute(
                "INSERT INTO raw_availability (brand, store_id, product_id, sizes_in_stock,"
                " fetched_at) VALUES ('zara', 1, '512913640', '[\"S\"]', NOW())")
    finally:
        old.drop_old_database(admin, name)


def test_roles_survive_a_second_database_and_production_ddl(stack: LocalStack) -> None:
    """Roles are cluster-wide: building again (another password) reuses them; the
    Production DDL runs too."""
    admin = stack.env["STAGING_DB_URL"]
    staging, production = (f"old_{kind}_{uuid.uuid4().hex[:8]}" for kind in ("stg", "prod"))
    password = secrets.token_urlsafe(12)
    try:
        old.create_old_database(admin, staging, owner=OWNER, password="first-" + password)
        owner_url = old.create_old_database(admin, production, owner=OWNER, password=password,
                                            ddl=old.SEED_PRODUCTION_DDL)
        with psycopg.connect(owner_url, autocommit=True) as conn:
            conn.execute("INSERT INTO model_library (template_id, image_url) VALUES ('t1', 'u')")
            assert conn.execute("SELECT version FROM model_library").fetchone() == (1,)
        with _connect(with_database(admin, staging), "apify", password) as conn:
            old.old_collector_upsert(conn, "zara", old.zara_item(1, [("800", "Black", 1)]))
    finally:
        old.drop_old_database(admin, staging)
        old.drop_old_database(admin, production)
