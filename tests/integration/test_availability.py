"""`store_availability` against the local stack: catalog from the Apify emulator, stores and
stock from the availability emulator (real `requests` over HTTP), real PostgreSQL."""

from __future__ import annotations

from typing import Any

import dagster as dg
import psycopg
import pytest
import requests

from tests.scraper_helpers import seed_catalog
from unde_dagster.defs.availability.assets import store_availability
from unde_dagster.resources.availability import AvailabilityApi
from unde_local.emulators.availability import brand_stores, stock_of
from unde_local.emulators.faults import FaultInjector
from unde_local.stack import LocalStack

BRAND = "oysho"
DUBAI = sorted(s["id"] for s in brand_stores(BRAND) if s["city"] == "Dubai")


@pytest.fixture()
def api(stack: LocalStack, resources: dict[str, Any]) -> dict[str, Any]:
    """The stack's resources with no politeness pause and millisecond backoffs."""
    return {**resources, "availability_api": AvailabilityApi(
        api_url=stack.env["AVAILABILITY_API_URL"], request_delay_s=0, backoff_s=0.01,
        max_backoff_s=0.05)}


@pytest.fixture()
def faults(stack: LocalStack) -> FaultInjector:
    assert stack.emulators is not None
    return stack.emulators.faults["availability"]


@pytest.fixture()
def catalog(staging: psycopg.Connection) -> int:
    """30 items of the brand's Apify catalog in raw_products; returns the SKU count."""
    return len(seed_catalog(staging, BRAND, 30, "catalog-run-1"))


def poll(resources: dict, instance: dg.DagsterInstance,
         config: dict | None = None) -> dg.ExecuteInProcessResult:
    run_config = {"ops": {"store_availability": {"config": config}}} if config else None
    return dg.materialize([store_availability], partition_key=BRAND, resources=resources,
                          instance=instance, run_config=run_config, raise_on_error=False)


def metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    mat = result.asset_materializations_for_node("store_availability")[0]
    return {k: v.value for k, v in mat.metadata.items()}


def test_polls_every_dubai_store_and_sku(
    catalog: int, staging: psycopg.Connection, api: dict, instance: dg.DagsterInstance
) -> None:
    result = poll(api, instance)
    assert result.success
    stores = staging.execute("SELECT store_id, city, mall_name FROM raw_stores WHERE brand = %s "
                             "ORDER BY store_id", (BRAND,)).fetchall()
    assert [s[0] for s in stores] == DUBAI
    assert {s[1] for s in stores} == {"Dubai"} and all(s[2] for s in stores)
    rows = staging.execute("SELECT store_id, product_id, sizes_in_stock FROM raw_availability "
                           "WHERE brand = %s", (BRAND,)).fetchall()
    assert len(rows) == len(DUBAI) * catalog
    skus = dict(staging.execute("SELECT external_id, sizes FROM raw_products WHERE brand = %s",
                                (BRAND,)).fetchall())
    assert {r[1] for r in rows} == set(skus)
    for store_id, product_id, sizes in rows[:50]:
        names = [s["name"] for s in skus[product_id]]
        for entry in sizes:
            assert entry["size"] == names[int(entry["reference"][11:13]) - 1]
            assert entry["stock"] == stock_of(0, 0, BRAND, store_id, entry["reference"])
    meta = metadata(result)
    assert meta["stores"] == len(DUBAI) and meta["products"] == catalog
    assert meta["rows_written"] == len(rows) and meta["failed_requests"] == 0
    empty = sum(1 for r in rows if not r[2])
    assert meta["out_of_stock_share"] == round(empty / len(rows), 4)
    logs = staging.execute("SELECT status, records_new FROM scraper_logs WHERE scraper_name = "
                           "'availability_poll' AND run_id = %s", (result.run_id,)).fetchall()
    assert logs and {s for s, _ in logs} == {"success"} and sum(n for _, n in logs) == len(rows)


def test_second_poll_of_the_day_overwrites(
    catalog: int, stack: LocalStack, staging: psycopg.Connection, api: dict,
    instance: dg.DagsterInstance
) -> None:
    assert poll(api, instance).success
    before = dict(((s, p), (sz, t)) for s, p, sz, t in staging.execute(
        "SELECT store_id, product_id, sizes_in_stock, fetched_at FROM raw_availability"))
    assert stack.emulators is not None
    requests.post(f"{stack.emulators.base_url('availability')}/_emulator/availability/restock",
                  timeout=10).raise_for_status()
    assert poll(api, instance).success
    after = dict(((s, p), (sz, t)) for s, p, sz, t in staging.execute(
        "SELECT store_id, product_id, sizes_in_stock, fetched_at FROM raw_availability"))
    assert after.keys() == before.keys()  # one row per store/product/day, no duplicates
    assert all(after[k][1] > before[k][1] for k in after)
    assert any(after[k][0] != before[k][0] for k in after)
    for (store_id, _), (sizes, _) in list(after.items())[:50]:
        assert all(e["stock"] == stock_of(0, 1, BRAND, store_id, e["reference"]) for e in sizes)


def test_429_and_403_are_retried(
    catalog: int, faults: FaultInjector, staging: psycopg.Connection, api: dict,
    instance: dg.DagsterInstance
) -> None:
    faults.add(match="store-stock", status=429, retry_after=0, times=2)
    faults.add(match="stores-locator", status=403, html="<h1>Access Denied</h1>", times=1)
    result = poll(api, instance)
    assert result.success
    meta = metadata(result)
    assert meta["failed_requests"] == 0 and meta["stores_from"] == "locator"
    assert meta["rows_written"] == len(DUBAI) * catalog


def test_blocked_store_and_malformed_json_fail_only_their_batches(
    catalog: int, faults: FaultInjector, staging: psycopg.Connection, api: dict,
    instance: dg.DagsterInstance
) -> None:
    one_by_one = {**api, "availability_api": AvailabilityApi(
        api_url=api["availability_api"].api_url, request_delay_s=0, backoff_s=0.01,
        max_attempts=2, stores_per_request=1)}
    blocked = DUBAI[0]
    faults.add(match=f"physicalStoreIds={blocked}&", status=403, html="<h1>Access Denied</h1>")
    faults.add(match=f"physicalStoreIds={DUBAI[1]}&", status=200, text="{\"productAvail",
               times=1)
    result = poll(one_by_one, instance)
    assert result.success
    meta = metadata(result)
    assert meta["failed_requests"] > 1
    kinds = meta["errors_by_kind"]
    assert kinds.get("http_403", 0) >= 1 and kinds.get("bad_json") == 1
    stores = {r[0] for r in staging.execute(
        "SELECT DISTINCT store_id FROM raw_availability WHERE brand = %s", (BRAND,))}
    assert blocked not in stores and set(DUBAI[2:]) <= stores
    statuses = {r[0] for r in staging.execute(
        "SELECT status FROM scraper_logs WHERE scraper_name = 'availability_poll' "
        "AND run_id = %s", (result.run_id,))}
    assert "partial" in statuses


def test_locator_down_uses_known_stores_and_everything_blocked_fails(
    catalog: int, faults: FaultInjector, staging: psycopg.Connection, api: dict,
    instance: dg.DagsterInstance
) -> None:
    staging.execute("INSERT INTO raw_stores (brand, store_id, name) VALUES (%s, %s, 'known'), "
                    "(%s, %s, 'known')", (BRAND, DUBAI[0], BRAND, DUBAI[1]))
    faults.add(match="stores-locator", status=403, html="<h1>Access Denied</h1>")
    result = poll(api, instance, {"store_ids": DUBAI[:2]})
    assert result.success and metadata(result)["stores_from"] == "raw_stores"
    assert metadata(result)["stores"] == 2
    faults.add(match="store-stock", status=200, text="<html>challenge</html>")
    failed = poll(api, instance, {"store_ids": DUBAI[:2]})
    assert not failed.success
    logs = staging.execute("SELECT status FROM scraper_logs WHERE scraper_name = "
                           "'availability_poll' AND run_id = %s", (failed.run_id,)).fetchall()
    assert logs and {r[0] for r in logs} == {"error"}
