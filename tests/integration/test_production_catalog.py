"""`production_catalog` against the real Staging and Production databases of the stack."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dagster as dg
import psycopg
import pytest

from tests.scraper_helpers import seed_catalog
from unde_dagster.defs.production.assets import production_catalog
from unde_dagster.production.sync import sync_brand
from unde_dagster.resources.databases import ProductionDatabase
from unde_local.stack import LocalStack

BRAND = "massimodutti"
SOURCE = f"apify_{BRAND}"


@pytest.fixture()
def production(stack: LocalStack, staging: psycopg.Connection) -> Iterator[psycopg.Connection]:
    with psycopg.connect(stack.env["PRODUCTION_DB_URL"], autocommit=True) as conn:
        yield conn


def make_ready(staging: psycopg.Connection, ids: list[str]) -> None:
    """What the originals and collage stages leave behind for these SKUs."""
    staging.execute(
        """
        UPDATE raw_products SET image_status = 'collage_ready',
               image_urls = jsonb_build_array('http://s3.test/unde-images/originals/' || brand
                                              || '/' || external_id || '/1.jpg'),
               collage_url = 'http://s3.test/unde-images/collages/' || brand || '/'
                             || external_id || '.jpg'
         WHERE external_id = ANY(%s)
        """, (ids,))


def sync(resources: dict[str, Any], instance: dg.DagsterInstance,
         batch_size: int = 500) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [production_catalog], partition_key=BRAND, resources=resources, instance=instance,
        run_config={"ops": {"production_catalog": {"config": {"batch_size": batch_size}}}},
        raise_on_error=False)


def meta(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    mat = result.asset_materializations_for_node("production_catalog")[0]
    return {k: v.value for k, v in mat.metadata.items()}


def states(staging: psycopg.Connection) -> dict[str, tuple]:
    rows = staging.execute("SELECT external_id, sync_status, sync_error, synced_at IS NOT NULL "
                           "FROM raw_products WHERE source = %s", (SOURCE,)).fetchall()
    return {r[0]: r[1:] for r in rows}


def test_syncs_verified_skus_skips_the_rest_and_resyncs_changes(
    staging: psycopg.Connection, production: psycopg.Connection, resources: dict,
    instance: dg.DagsterInstance
) -> None:
    ids = seed_catalog(staging, BRAND, 12, "catalog-run-1")
    ready, not_ready = ids[:-3], ids[-3:]
    make_ready(staging, ready)
    no_collage, no_price = ready[0], ready[1]
    staging.execute("UPDATE raw_products SET collage_url = NULL WHERE external_id = %s",
                    (no_collage,))
    staging.execute("UPDATE raw_products SET price = NULL WHERE external_id = %s", (no_price,))

    result = sync(resources, instance, batch_size=4)  # several batches, one transaction each
    assert result.success
    good = set(ready) - {no_collage, no_price}
    rows = production.execute("SELECT external_id, is_available, collage_url, image_urls "
                              "FROM catalog_products WHERE source = %s", (SOURCE,)).fetchall()
    assert {r[0] for r in rows} == good
    assert all(r[1] and r[2].endswith(f"{r[0]}.jpg") and len(r[3]) == 1 for r in rows)
    st = states(staging)
    assert {st[i][0] for i in good} == {"synced"} and all(st[i][2] for i in good)
    assert st[no_collage][:2] == ("skipped", "missing_collage_url")
    assert st[no_price][:2] == ("skipped", "missing_price")
    assert {st[i][0] for i in not_ready} == {"pending"}
    m = meta(result)
    assert (m["synced"], m["skipped"], m["errors"]) == (len(good), 2, 0)
    assert m["batches"] == -(-len(ready) // 4)
    logs = staging.execute("SELECT status, records_fetched, records_updated FROM scraper_logs "
                           "WHERE scraper_name = 'sync_to_production' AND run_id = %s",
                           (result.run_id,)).fetchall()
    assert len(logs) == m["batches"] and sum(r[2] for r in logs) == len(good)

    again = sync(resources, instance)
    assert again.success and meta(again)["synced"] == 0 and meta(again)["batches"] == 0

    changed = sorted(good)[0]
    staging.execute("UPDATE raw_products SET name = 'RENAMED', updated_at = NOW() "
                    "WHERE external_id = %s", (changed,))
    third = sync(resources, instance)
    assert third.success and meta(third)["synced"] == 1
    name = production.execute("SELECT name FROM catalog_products WHERE external_id = %s",
                              (changed,)).fetchone()
    assert name == ("RENAMED",)


def test_skus_gone_from_the_catalog_become_unavailable_never_deleted(
    staging: psycopg.Connection, production: psycopg.Connection, resources: dict,
    instance: dg.DagsterInstance
) -> None:
    first = seed_catalog(staging, BRAND, 6, "catalog-run-1")
    make_ready(staging, first)
    assert sync(resources, instance).success
    second = seed_catalog(staging, BRAND, 4, "catalog-run-2", start=2)  # items 0 and 1 left
    gone = set(first) - set(second)
    assert gone
    result = sync(resources, instance)
    assert result.success and meta(result)["marked_unavailable"] == len(gone)
    rows = dict(production.execute("SELECT external_id, is_available FROM catalog_products "
                                   "WHERE source = %s", (SOURCE,)).fetchall())
    assert set(rows) == set(first)
    assert {k for k, v in rows.items() if not v} == gone


def test_a_row_production_rejects_ends_in_error_alone(
    staging: psycopg.Connection, production: psycopg.Connection, resources: dict,
    instance: dg.DagsterInstance
) -> None:
    ids = seed_catalog(staging, BRAND, 4, "catalog-run-1")
    make_ready(staging, ids)
    staging.execute("UPDATE raw_products SET name = 'BOOM' WHERE external_id = %s", (ids[0],))
    production.execute("ALTER TABLE catalog_products ADD CONSTRAINT test_no_boom "
                       "CHECK (name <> 'BOOM')")
    try:
        result = sync(resources, instance)
    finally:
        production.execute("ALTER TABLE catalog_products DROP CONSTRAINT test_no_boom")
    assert result.success and meta(result)["errors"] == 1
    st = states(staging)
    assert st[ids[0]][0] == "error" and "test_no_boom" in st[ids[0]][1]
    assert {st[i][0] for i in ids[1:]} == {"synced"}
    # next run retries the error row (production accepts it now)
    assert meta(sync(resources, instance))["synced"] == 1


def test_production_down_loses_nothing_and_locked_rows_are_not_taken_twice(
    stack: LocalStack, staging: psycopg.Connection, production: psycopg.Connection,
    resources: dict, instance: dg.DagsterInstance
) -> None:
    ids = seed_catalog(staging, BRAND, 4, "catalog-run-1")
    make_ready(staging, ids)
    down = {**resources, "production_db": ProductionDatabase(
        url="postgresql://nobody@127.0.0.1:1/none", connect_timeout_s=2)}
    assert not sync(down, instance).success
    assert {s[0] for s in states(staging).values()} == {"pending"}

    with psycopg.connect(stack.env["STAGING_DB_URL"]) as other_run:  # holds a claim
        other_run.execute("SELECT id FROM raw_products WHERE external_id = %s FOR UPDATE",
                          (ids[0],))
        result = sync_brand(staging, production, SOURCE, run_id="r2")
        other_run.rollback()
    assert result.synced == len(ids) - 1
    assert states(staging)[ids[0]][0] == "pending"
