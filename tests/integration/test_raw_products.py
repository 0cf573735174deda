"""`raw_products` materialized against the local stack: real apify-client, real PostgreSQL."""

from __future__ import annotations

import copy
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


ROW_WRITES = r"""
CREATE TABLE row_writes (external_id text, statement text);
CREATE FUNCTION note_row_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO row_writes
    VALUES (NEW.external_id, upper(substring(current_query() from '^\s*(\w+)')));
    RETURN NEW;
END $$;
CREATE TRIGGER note_row_write AFTER UPDATE ON raw_products
    FOR EACH ROW EXECUTE FUNCTION note_row_write();
"""


def test_a_repeated_catalog_entry_is_stamped_seen_not_rewritten(
    apify_control: str, staging: psycopg.Connection, resources: dict, instance: dg.DagsterInstance
) -> None:
    assert materialize(resources, instance).success
    items = catalog(apify_control)
    touched = items[2]
    touched["sectionName"] = "NEW-SECTION"  # in raw_data only, not in the content hash
    requests.put(f"{apify_control}/_emulator/apify/catalog/{BRAND}", json=items, timeout=10)
    staging.execute(ROW_WRITES)
    try:
        result = materialize(resources, instance)
        assert result.success
        writes = staging.execute(
            "SELECT external_id, statement FROM row_writes ORDER BY external_id"
        ).fetchall()
    finally:
        staging.execute("DROP TRIGGER note_row_write ON raw_products; DROP TABLE row_writes; "
                        "DROP FUNCTION note_row_write()")
    run_id = result.run_id
    rows = staging.execute(
        "SELECT external_id, last_seen_run_id, raw_data->>'sectionName' FROM raw_products"
    ).fetchall()
    assert rows and {r[1] for r in rows} == {run_id}
    rewritten = {ext for ext, statement in writes if statement == "INSERT"}
    assert rewritten == {r[0] for r in rows if r[0].startswith(f"{touched['id']}-")}
    assert {r[0] for r in rows if r[2] == "NEW-SECTION"} == rewritten
    assert len(writes) == len(rows)  # every SKU written once: upserted, or stamped seen


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
    recorded = [r[0] for r in rejections(staging, result.run_id)]
    assert {reason: recorded.count(reason) for reason in recorded} == rejected
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


def rejections(conn: psycopg.Connection, run_id: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT reason, item_id, colour_id, detail, photo_url, source, brand, apify_run_id "
        "FROM catalog_rejections WHERE run_id = %s ORDER BY id", (run_id,)
    ).fetchall()


@pytest.fixture()
def narrow_category(staging: psycopg.Connection) -> Iterator[int]:
    """A Staging DB whose `category` is narrower than the parser allows (an older or
    hand-altered schema): PostgreSQL itself refuses a longer category. Restored after."""
    staging.execute("ALTER TABLE raw_products ALTER COLUMN category TYPE VARCHAR(40)")
    try:
        yield 40
    finally:
        staging.execute("ALTER TABLE raw_products ALTER COLUMN category TYPE TEXT")


def test_hostile_items_cost_only_themselves_and_are_recorded_per_run(
    apify_control: str, staging: psycopg.Connection, resources: dict,
    instance: dg.DagsterInstance, narrow_category: int,
) -> None:
    good = catalog(apify_control)[:6]
    # NUL in several text fields and deep in the raw data, lone surrogates: cleaned, kept.
    hostile = copy.deepcopy(good[1])
    hostile.update(
        id=990000001, name="SATIN\x00 SHIRT", description="Soft\x00 satin \ud800 shirt",
        category="woman\x00-shirts",
        extra={"se\x00o": [{"title": "Shirt\x00", "score": 1}], "note": "\udc01"},
    )
    hostile["detailedComposition"]["parts"][0]["description"] = "OUTER\x00 SHELL"
    hostile["colorsSizesImagesJSON"][0]["name"] = "Gr\x00een"
    # Clean once parsed, but PostgreSQL refuses the category (too long for the column).
    refused = copy.deepcopy(good[2])
    refused.update(id=990000002, name="LONG\x00 CATEGORY", category="c" * (narrow_category + 1))
    # Two photo URLs the parser drops; the SKU itself is fine.
    dropping = copy.deepcopy(good[3])
    dropping["id"] = 990000003
    first = dropping["colorsSizesImagesJSON"][0]
    first["xmedia"] = [*first["xmedia"], "http://cdn.test/evil\x00.jpg", 42]
    # A NUL inside the id: rejected, never turned into another id.
    bad_id = {**copy.deepcopy(good[4]), "id": "99000\x000004"}
    put = [*good[:3], hostile, refused, dropping, *good[3:], bad_id]
    requests.put(f"{apify_control}/_emulator/apify/catalog/{BRAND}", json=put, timeout=10)

    def sku_ids(items: list[dict[str, Any]]) -> set[str]:
        return {f"{i['id']}-{c['id']}" for i in items for c in i["colorsSizesImagesJSON"]}

    expected = sku_ids([*good, hostile, dropping])
    refused_colours = [c["id"] for c in refused["colorsSizesImagesJSON"]]

    result = materialize(resources, instance)
    assert result.success
    run_id = result.run_id
    written = staging.execute(
        "SELECT external_id FROM raw_products WHERE brand = %s", (BRAND,)
    ).fetchall()
    assert {r[0] for r in written} == expected
    cleaned = staging.execute(
        "SELECT name, description, category, colour, raw_data, composition "
        "FROM raw_products WHERE item_id = '990000001'"
    ).fetchall()
    assert len(cleaned) == len(hostile["colorsSizesImagesJSON"])
    name, description, category, colour, raw_data, composition = cleaned[0]
    assert (name, description, category) == ("SATIN SHIRT", "Soft satin \ufffd shirt",
                                              "woman-shirts")
    assert colour == "Green" and "OUTER SHELL" in composition
    assert raw_data["extra"] == {"seo": [{"title": "Shirt", "score": 1}], "note": "\ufffd"}
    assert raw_data["detailedComposition"]["parts"][0]["description"] == "OUTER SHELL"

    mats = result.asset_materializations_for_node("raw_products")
    meta = {k: v.value for k, v in mats[0].metadata.items()}
    apify_run_id = meta["apify_run_id"]
    expected_rows = [
        ("bad_photo_url", "990000003", first["id"], BRAND),
        ("bad_photo_url", "990000003", first["id"], BRAND),
        ("bad_id", None, None, BRAND),
        *[("write_failed", "990000002", c, BRAND) for c in refused_colours],
    ]
    recorded = rejections(staging, run_id)
    assert sorted((r[0], r[1], r[2], r[6]) for r in recorded) == sorted(
        expected_rows, key=lambda r: (r[0], r[1] or "", r[2] or "")
    )
    by_reason = {r[0]: r for r in recorded}
    assert "value too long" in by_reason["write_failed"][3]
    assert {r[4] for r in recorded if r[0] == "bad_photo_url"} == {
        "http://cdn.test/evil.jpg", "42"
    }
    assert "99000" in by_reason["bad_id"][3]
    assert {(r[5], r[7]) for r in recorded} == {("apify_bershka", apify_run_id)}

    assert meta["rejected_by_reason"] == {"write_failed": len(refused_colours), "bad_id": 1}
    assert meta["dropped_photo_urls"] == 2
    assert meta["items_cleaned"] == 3  # hostile, refused, and the NUL URL in dropping's raw data
    assert {"reason": "write_failed", "item_id": "990000002",
            "colour_id": refused_colours[0]} in meta["rejection_samples"]
    assert run_id in meta["rejections_query"]
    log = staging.execute(
        "SELECT run_id, status, records_fetched, records_new, records_errors, metadata "
        "FROM scraper_logs"
    ).fetchall()
    assert len(log) == 1
    assert log[0][:5] == (run_id, "partial", len(put), len(expected), len(refused_colours) + 1)
    assert log[0][5]["dropped_photo_urls"] == 2

    # A new run: the same SKUs again (no duplicates), its own set of rejections.
    again = materialize(resources, instance)
    assert again.success and again.run_id != run_id
    count = staging.execute("SELECT count(*), count(DISTINCT external_id) FROM raw_products")
    assert count.fetchone() == (len(expected), len(expected))
    assert len(rejections(staging, again.run_id)) == len(recorded)
    # The same run once more (a retried or resumed run keeps its id): nothing doubles.
    job = dg.Definitions(
        assets=[raw_products], jobs=[dg.define_asset_job("catalog_only", [raw_products])],
        resources=resources,
    ).resolve_job_def("catalog_only")
    with dg.instance_for_test() as other:
        repeat = job.execute_in_process(
            partition_key=BRAND, instance=other, run_id=run_id, raise_on_error=False,
        )
    assert repeat.success
    assert rejections(staging, run_id) == recorded
    count = staging.execute("SELECT count(*), count(DISTINCT external_id) FROM raw_products")
    assert count.fetchone() == (len(expected), len(expected))
    assert staging.execute("SELECT count(*) FROM scraper_logs").fetchone() == (3,)
