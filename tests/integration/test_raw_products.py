"""`raw_products` materialized against the local stack: real apify-client, real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dagster as dg
import psycopg
import pytest
import requests

from unde_dagster.defs.catalog.assets import raw_products
from unde_local.stack import LocalStack

BRAND = "bershka"


@pytest.fixture()
def apify_control(stack: LocalStack) -> Iterator[str]:
    """Base URL of the Apify emulator's control routes; the brand's catalog is restored after."""
    assert stack.emulators is not None
    base = stack.emulators.base_url("apify")
    original = requests.get(f"{base}/_emulator/apify/catalog/{BRAND}", timeout=10).json()
    yield base
    requests.put(f"{base}/_emulator/apify/catalog/{BRAND}", json=original, timeout=10)


def materialize(
    resources: dict[str, Any], instance: dg.DagsterInstance
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [raw_products], partition_key=BRAND, resources=resources, instance=instance,
        raise_on_error=False,
    )


def catalog(base: str) -> list[dict[str, Any]]:
    return requests.get(f"{base}/_emulator/apify/catalog/{BRAND}", timeout=10).json()


def test_writes_one_row_per_colour_and_a_log(
    apify_control: str, staging: psycopg.Connection, resources: dict, instance: dg.DagsterInstance
) -> None:
    items = catalog(apify_control)
    expected = {
        f"{item['id']}-{colour['id']}" for item in items for colour in item["colorsSizesImagesJSON"]
    }
    result = materialize(resources, instance)
    assert result.success
    rows = staging.execute(
        "SELECT external_id, image_status, price, original_image_urls FROM raw_products "
        "WHERE brand = %s", (BRAND,)
    ).fetchall()
    assert {r[0] for r in rows} == expected
    assert {r[1] for r in rows} == {"pending"}
    assert all(u.endswith("w=1920") for r in rows for u in r[3])
    price_fils = {str(i["id"]): i["price"] for i in items}
    assert all(r[2] * 100 == price_fils[r[0].split("-")[0]] for r in rows)
    log = staging.execute(
        "SELECT scraper_name, status, records_fetched, records_new FROM scraper_logs"
    ).fetchall()
    assert log == [("apify_bershka", "success", len(items), len(expected))]
    mats = result.asset_materializations_for_node("raw_products")
    assert mats[0].metadata["skus_new"].value == len(expected)
    assert instance.get_latest_materialization_event(dg.AssetKey("raw_products")) is not None


def test_rerun_keeps_states_and_changed_photos_requeue_exactly_that_sku(
    apify_control: str, staging: psycopg.Connection, resources: dict, instance: dg.DagsterInstance
) -> None:
    assert materialize(resources, instance).success
    staging.execute("UPDATE raw_products SET image_status = 'collage_ready'")
    assert materialize(resources, instance).success
    statuses = staging.execute("SELECT DISTINCT image_status FROM raw_products").fetchall()
    assert statuses == [("collage_ready",)]

    items = catalog(apify_control)
    target = items[3]
    colour = target["colorsSizesImagesJSON"][0]
    colour["xmedia"] = [*colour["xmedia"][1:], colour["xmedia"][0]]
    requests.put(f"{apify_control}/_emulator/apify/catalog/{BRAND}", json=items, timeout=10)
    result = materialize(resources, instance)
    assert result.success
    pending = staging.execute(
        "SELECT external_id FROM raw_products WHERE image_status = 'pending'"
    ).fetchall()
    assert pending == [(f"{target['id']}-{colour['id']}",)]
    assert result.asset_materializations_for_node("raw_products")[0].metadata[
        "skus_requeued_for_photos"
    ].value == 1


def test_malformed_items_are_rejected_one_by_one(
    apify_control: str, staging: psycopg.Connection, resources: dict, instance: dg.DagsterInstance
) -> None:
    good = catalog(apify_control)[:5]
    bad: list[Any] = [
        {"id": 1, "name": "No colours", "price": 100, "colorsSizesImagesJSON": []},
        {"id": 2, "name": "Odd price", "price": "lots", "colorsSizesImagesJSON": []},
        {"name": "No id"},
        {"id": "../../evil", "name": "Hostile", "price": 1, "colorsSizesImagesJSON": []},
        good[0],  # duplicate item
    ]
    requests.put(
        f"{apify_control}/_emulator/apify/catalog/{BRAND}", json=[*good, *bad], timeout=10
    )
    result = materialize(resources, instance)
    assert result.success
    metadata = result.asset_materializations_for_node("raw_products")[0].metadata
    rejected = metadata["rejected_by_reason"].value
    assert rejected["no_colours"] == 1
    assert rejected["bad_price"] == 1
    assert rejected["bad_id"] == 2
    assert rejected["duplicate_sku"] == len(good[0]["colorsSizesImagesJSON"])
    written = staging.execute("SELECT count(*) FROM raw_products").fetchone()
    assert written == (sum(len(i["colorsSizesImagesJSON"]) for i in good),)
    status = staging.execute("SELECT status FROM scraper_logs").fetchone()
    assert status == ("partial",)


@pytest.mark.parametrize("run_status", ["FAILED", "ABORTED", "TIMED-OUT"])
def test_unsuccessful_apify_run_fails_the_asset_and_writes_nothing(
    run_status: str, apify_control: str, staging: psycopg.Connection, resources: dict,
    instance: dg.DagsterInstance,
) -> None:
    requests.post(
        f"{apify_control}/_emulator/apify/next-run-status",
        json={"brand": BRAND, "status": run_status}, timeout=10,
    )
    result = materialize(resources, instance)
    assert not result.success
    failure = result.failure_data_for_node("raw_products")
    assert failure is not None
    assert f"ended {run_status}" in failure.error.message
    assert staging.execute("SELECT count(*) FROM raw_products").fetchone() == (0,)
    log = staging.execute("SELECT status, error_message FROM scraper_logs").fetchone()
    assert log is not None and log[0] == "error" and run_status in log[1]
