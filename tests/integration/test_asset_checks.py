"""Asset checks on crafted Staging DB rows and S3 objects: they fail, alert, and pass."""

import io
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import dagster as dg
import psycopg
import pytest
from PIL import Image

from unde_dagster.definitions import defs
from unde_dagster.resources.check_thresholds import CheckThresholds
from unde_dagster.storage import collage_key, original_key

ASSETS = list(defs.assets or [])
CHECKS = list(defs.asset_checks or [])


class Hook(BaseHTTPRequestHandler):
    texts: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        Hook.texts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"])))["text"])
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    Hook.texts = []
    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("ALERT_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/hook")
    yield Hook.texts
    server.shutdown()
    server.server_close()


def run_check(asset: str, name: str, resources: dict, instance: dg.DagsterInstance,
              brand_run: str | None = None) -> Any:
    """One evaluation; `brand_run`: as in a run of that brand (its partition tag set)."""
    key = dg.AssetCheckKey(dg.AssetKey(asset), name)
    result = dg.materialize(
        [*ASSETS, *CHECKS], selection=dg.AssetSelection.checks(key), resources=resources,
        instance=instance, tags={"dagster/partition": brand_run} if brand_run else None,
    )
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def add_row(conn: psycopg.Connection, brand: str, ext: str, status: str, age_h: float,
            photos: int = 0, collage_url: str | None = None) -> None:
    conn.execute(
        "INSERT INTO raw_products (source, external_id, brand, scraped_at, image_status, "
        "updated_at, image_urls, collage_url) VALUES (%s, %s, %s, NOW(), %s, "
        "NOW() - make_interval(secs => %s), %s, %s)",
        (f"apify_{brand}", ext, brand, status, age_h * 3600,
         json.dumps([f"u{n}" for n in range(photos)]), collage_url),
    )


def test_sku_pending_past_24h_fails_and_alerts(
    staging: psycopg.Connection, resources: dict, instance: dg.DagsterInstance,
    hook: list[str],
) -> None:
    add_row(staging, "zara", "1-1", "pending", age_h=1)
    ok = run_check("product_originals", "no_sku_pending_past_sla", resources, instance)
    assert ok.passed and hook == []
    add_row(staging, "oysho", "2-1", "pending", age_h=25)
    add_row(staging, "zara", "3-1", "uploaded", age_h=3)
    bad = run_check("product_originals", "no_sku_pending_past_sla", resources, instance)
    assert not bad.passed
    assert bad.metadata["brands_failed"].value == ["oysho"]
    assert bad.metadata["by_brand"].value["oysho"]["sample"] == ["2-1"]
    assert len(hook) == 1 and "no_sku_pending_past_sla" in hook[0] and "oysho" in hook[0]
    still = run_check("product_originals", "no_sku_pending_past_sla", resources, instance)
    assert not still.passed and len(hook) == 1  # alerted once per breach, not every hour
    staging.execute("UPDATE raw_products SET updated_at = NOW() WHERE external_id = '2-1'")
    assert run_check("product_originals", "no_sku_pending_past_sla", resources, instance).passed
    staging.execute(
        "UPDATE raw_products SET updated_at = NOW() - interval '25 hours' WHERE external_id = '2-1'"
    )
    again = run_check("product_originals", "no_sku_pending_past_sla", resources, instance)
    assert not again.passed and len(hook) == 2 and "oysho" in hook[1]  # a new breach
    stuck = run_check("product_collages", "no_sku_uploaded_past_sla", resources, instance)
    assert stuck.metadata["brands_failed"].value == ["zara"]


def test_last_batch_error_rate(
    staging: psycopg.Connection, resources: dict, instance: dg.DagsterInstance
) -> None:
    def log(errors: int, minute: int, name: str = "collage_worker") -> None:
        staging.execute(
            "INSERT INTO scraper_logs (scraper_name, status, records_fetched, records_errors, "
            "started_at, metadata) VALUES (%s, 'partial', 10, %s, "
            "NOW() - make_interval(mins => %s), %s)",
            (name, errors, minute, json.dumps({"brand": "zara"})),
        )
    log(5, 10)
    failed = run_check("product_collages", "last_batch_error_rate", resources, instance)
    assert not failed.passed
    assert failed.metadata["by_brand"].value["zara"]["error_rate"] == 0.5
    log(1, 5, "collage_worker_retry")  # the retry pass's batch counts too
    assert run_check("product_collages", "last_batch_error_rate", resources, instance).passed
    log(6, 3, "collage_worker_retry")
    retried = run_check("product_collages", "last_batch_error_rate", resources, instance)
    assert retried.metadata["by_brand"].value["zara"]["error_rate"] == 0.6
    log(1, 1)  # a newer batch decides
    assert run_check("product_collages", "last_batch_error_rate", resources, instance).passed
    strict = {**resources, "check_thresholds": CheckThresholds(max_batch_error_rate=0.05)}
    tuned = run_check("product_collages", "last_batch_error_rate", strict, instance)
    assert not tuned.passed
    assert tuned.metadata["by_brand"].value["zara"]["threshold"] == 0.05
    [row] = [r for r in tuned.metadata["brands"].value.records if r.data["brand"] == "zara"]
    assert row.data == {"brand": "zara", "status": "FAILED", "value": "10.0%: 1 of 10",
                        "threshold": "at most 5% of a batch"}


def test_a_later_brand_run_does_not_turn_a_failing_brand_green(
    staging: psycopg.Connection, resources: dict, instance: dg.DagsterInstance
) -> None:
    for brand, errors in (("bershka", 7), ("zara", 0)):
        staging.execute(
            "INSERT INTO scraper_logs (scraper_name, status, records_fetched, records_errors, "
            "started_at, metadata) VALUES ('photo_downloader', 'partial', 10, %s, NOW(), %s)",
            (errors, json.dumps({"brand": brand})),
        )
    for run_brand in ("bershka", "zara"):
        result = run_check("product_originals", "last_batch_error_rate", resources, instance,
                           brand_run=run_brand)
        assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR
        assert result.metadata["brands_failed"].value == ["bershka"]
        table = {r.data["brand"]: r.data["status"] for r in result.metadata["brands"].value.records}
        assert table["bershka"] == "FAILED" and table["zara"] == "ok"
        assert result.metadata["brands_checked"].value == len(table) > 2


def test_catalog_last_batch_error_rate_reads_the_brands_apify_log(
    staging: psycopg.Connection, resources: dict, instance: dg.DagsterInstance
) -> None:
    """The catalog logs under `apify_<brand>` with no brand in its metadata."""
    staging.execute(
        "INSERT INTO scraper_logs (scraper_name, status, records_fetched, records_errors, "
        "started_at) VALUES ('apify_zara', 'partial', 10, 4, NOW()), "
        "('apify_bershka', 'success', 10, 0, NOW())"
    )
    result = run_check("raw_products", "last_batch_error_rate", resources, instance)
    assert not result.passed
    assert result.metadata["brands_failed"].value == ["zara"]
    assert result.metadata["by_brand"].value["zara"]["error_rate"] == 0.4


def store_photo(resources: dict) -> Callable[[str, tuple[int, int]], str]:
    """put(key, size): a white JPEG of that size stored public; returns its URL."""
    store = resources["object_store"].process_config_and_initialize()
    s3 = store.get_client()

    def put(key: str, size: tuple[int, int]) -> str:
        buf = io.BytesIO()
        Image.new("RGB", size, "white").save(buf, "JPEG")
        return store.put_public(s3, key, buf.getvalue())

    return put


def test_collage_dimensions_match_the_originals(
    staging: psycopg.Connection, resources: dict, instance: dg.DagsterInstance
) -> None:
    put = store_photo(resources)
    put(original_key("zara", "9-1", 1), (100, 200))
    put(original_key("zara", "9-1", 2), (50, 100))  # scaled up to 100x200
    url = put(collage_key("zara", "9-1"), (200, 200))
    add_row(staging, "zara", "9-1", "collage_ready", age_h=0, photos=2, collage_url=url)
    assert run_check("product_collages", "collage_dimensions_match_originals", resources,
                     instance).passed
    put(collage_key("zara", "9-1"), (150, 200))
    bad = run_check("product_collages", "collage_dimensions_match_originals", resources, instance)
    assert not bad.passed
    assert bad.metadata["by_brand"].value["zara"]["mismatches"] == ["9-1: 150x200 != 200x200"]


def test_collage_dimensions_read_the_originals_behind_the_stored_urls(
    staging: psycopg.Connection, resources: dict, instance: dg.DagsterInstance
) -> None:
    """An SKU adopted from the old servers keeps its originals under the item-id keys."""
    put = store_photo(resources)
    originals = [put(original_key("zara", "7", 1), (100, 300)),
                 put(original_key("zara", "7", 2), (100, 300))]
    url = put(collage_key("zara", "7-2"), (200, 300))
    staging.execute(
        "INSERT INTO raw_products (source, external_id, brand, scraped_at, image_status, "
        "updated_at, image_urls, collage_url) VALUES ('apify_zara', '7-2', 'zara', NOW(), "
        "'collage_ready', NOW(), %s, %s)", (json.dumps(originals), url))
    result = run_check("product_collages", "collage_dimensions_match_originals", resources,
                       instance)
    assert result.passed, result.metadata
    assert result.metadata["by_brand"].value["zara"]["sampled"] == 1


def test_ximilar_pilot_coverage(
    staging: psycopg.Connection, resources: dict, instance: dg.DagsterInstance
) -> None:
    for n in range(10):
        add_row(staging, "zara", f"{n}-1", "collage_ready", age_h=0)
    staging.execute("UPDATE raw_products SET index_scope = 'pilot', ximilar_status = 'synced'")
    assert run_check("ximilar_index", "pilot_coverage", resources, instance).passed
    staging.execute("UPDATE raw_products SET ximilar_status = 'error' WHERE external_id = '1-1'"
                    " OR external_id = '2-1'")
    bad = run_check("ximilar_index", "pilot_coverage", resources, instance)
    assert not bad.passed
    assert bad.metadata["by_brand"].value["zara"]["coverage"] == 0.8
