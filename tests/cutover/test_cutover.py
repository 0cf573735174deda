"""The cut-over (SPEC §7): a Staging DB the old servers wrote, migrated and run by the project
through PgBouncer in transaction mode as a non-superuser owner. Every old row continues
where it was left, each product is one row, nothing stored is fetched or built again, and
Ximilar ends with exactly the project's records."""

from __future__ import annotations

from collections import Counter
from typing import Any

import dagster as dg
import pytest

from tests.cutover import old_servers as old
from tests.cutover.conftest import (
    BRAND,
    OldServers,
    OldWorld,
    colour_photos,
    item,
    row_ids,
)
from tests.integration.image_stage_helpers import materialize, photo_requests
from unde_dagster.db.catalog_runs import latest_catalog_run
from unde_dagster.db.cutover import report
from unde_dagster.db.migrate import ROLE_NEEDED, MigrationRoleError, migrate
from unde_dagster.defs.catalog.assets import raw_products
from unde_dagster.defs.collages.assets import product_collages
from unde_dagster.defs.originals.assets import product_originals
from unde_dagster.defs.production.assets import production_catalog
from unde_dagster.defs.ximilar.assets import ximilar_index

SOURCE = f"apify_{BRAND}"
RETRY = {"config": {"retry_errors": True}}


# One item per state the old servers leave a row in.
ITEMS = {
    "uploaded": item(910001, ("800", 3)),
    "collage_ready_indexed": item(910002, ("800", 2)),
    "mixed_colours": item(910003, ("800", 2), ("250", 3)),  # old row stored both colours
    "download_error": item(910004, ("800", 2)),  # retry_count "2" (a string)
    "collage_error": item(910005, ("800", 2)),  # retry_count 1.0
    "pending": item(910006, ("800", 2)),
    "exhausted": item(910007, ("800", 2)),  # retry_count 2^40
    "ximilar_error": item(910008, ("800", 2)),
    "gone": item(910009, ("800", 2)),  # indexed by the old server, not in the new catalog
}


def build_old_state(world: OldWorld) -> dict[str, list[str]]:
    """Every mid-state written by the old servers' own statements; the old record ids."""
    servers = OldServers(world)
    with world.connect("apify") as conn:
        for it in ITEMS.values():
            old.old_collector_upsert(conn, BRAND, it)
        old.old_collector_log(conn, BRAND, "aPiFyRuN0ld", len(ITEMS))
    ids = row_ids(world)
    row = {name: ids[str(it["id"])] for name, it in ITEMS.items()}
    for name in ("uploaded", "collage_ready_indexed", "mixed_colours", "collage_error",
                 "ximilar_error", "gone"):
        servers.download(row[name])
    for name in ("collage_ready_indexed", "mixed_colours", "ximilar_error", "gone"):
        servers.collage(row[name])
    records = {
        "collage_ready_indexed": servers.index(row["collage_ready_indexed"], "synced", 2),
        "gone": servers.index(row["gone"], "synced", 2),
        "other_brand": servers.index(row["gone"], "synced", 1, brand="bershka",
                                     record_only=True),
    }
    with world.connect("downloader") as conn:
        for name, count in (("download_error", "2"), ("exhausted", 2**40)):
            old.old_downloader_error(conn, row[name], "TimeoutError: proxy read timed out")
            old.old_downloader_retry_count(conn, row[name], count)
    with world.connect("collage") as conn:
        old.old_collage_error(conn, row["collage_error"], "OSError: cannot identify image")
    with world.connect("downloader") as conn:
        old.old_downloader_retry_count(conn, row["collage_error"], 1.0)
    with world.connect("ximilar") as conn:
        old.old_ximilar_error(conn, row["ximilar_error"], "HTTPError: 502 Bad Gateway")
    with world.connect() as conn:  # the errors happened two hours ago; zara is the pilot
        conn.execute("UPDATE raw_products SET updated_at = NOW() - interval '2 hours', "
                     "index_scope = 'pilot'")
    return records


def test_old_rows_continue_once_each_without_refetching(
    old_world: OldWorld, catalog: Any, stack: Any
) -> None:
    world = old_world
    old_records = build_old_state(world)
    assert set(old_records["gone"]) <= set(world.collection_records())

    with pytest.raises(MigrationRoleError, match=ROLE_NEEDED.format(database="staging")[:60]):
        migrate(world.url("downloader"), "staging")
    world.migrate()
    with world.connect() as conn:
        state = {str(e): r for e, *r in conn.execute(
            "SELECT external_id, image_status, image_error_stage, image_attempts, "
            "collage_attempts, ximilar_error IS NOT NULL FROM raw_products").fetchall()}
        assert latest_catalog_run(conn, SOURCE).run_id is None  # the old collector's row
    assert state["910004"] == ["error", "download", 2, 0, False]
    assert state["910005"] == ["error", "collage", 1, 1, False]
    assert state["910007"][:3] == ["error", "download", 32767]
    assert state["910008"][4] is True

    catalog([it for name, it in ITEMS.items() if name != "gone"])
    fetched_before = len(photo_requests(stack, BRAND))
    resources = world.resources()
    with dg.instance_for_test() as instance:
        first = materialize([raw_products], BRAND, resources, instance)
        adopted = first.asset_materializations_for_node("raw_products")[0].metadata
        assert adopted["skus_adopted_from_item_rows"].value == 8
        for asset, config in ((product_originals, {}), (product_originals, RETRY),
                              (product_collages, {}), (product_collages, RETRY),
                              (ximilar_index, {}), (production_catalog, {})):
            run_config = {"ops": {asset.key.path[-1]: config}} if config else None
            materialize([asset], BRAND, resources, instance, run_config=run_config)

    with world.connect() as conn:
        rows = {str(e): r for e, *r in conn.execute(
            "SELECT external_id, image_status, legacy_external_id, collage_url, image_urls "
            "FROM raw_products").fetchall()}
    skus = {f"{it['id']}-{c['id']}" for n, it in ITEMS.items() if n != "gone"
            for c in it["colorsSizesImagesJSON"]}
    assert set(rows) == skus | {"910009"}  # each product once; the gone item keeps its row
    assert {e for e, r in rows.items() if r[0] != "collage_ready"} == {"910007-800"}
    assert {e: r[1] for e, r in rows.items() if r[1]} == {
        e: e.split("-")[0] for e in skus if not e.endswith("-250")}
    # Kept as the old servers stored them: every stored original (under its item-id key),
    # and the collages that were right (one colour's photos); the rest built now.
    base = world.stack.env["S3_PUBLIC_BASE_URL"]
    for ext in ("910001-800", "910002-800", "910003-800", "910005-800", "910008-800"):
        item_id = ext.split("-")[0]
        assert all(u.startswith(f"{base}/originals/{BRAND}/{item_id}/") for u in rows[ext][3])
    assert rows["910003-250"][3] == [f"{base}/originals/{BRAND}/910003/{n}.jpg"
                                     for n in (3, 4, 5)]
    for ext in ("910002-800", "910008-800"):
        assert rows[ext][2] == f"{base}/collages/{BRAND}/{ext.split('-')[0]}.jpg"
    for ext in ("910001-800", "910003-800", "910003-250", "910004-800", "910005-800",
                "910006-800"):
        assert rows[ext][2] == f"{base}/collages/{BRAND}/{ext}.jpg"

    # Fetched from the CDN: only the photos no old server had stored, each once.
    fetched = Counter(photo_requests(stack, BRAND)[fetched_before:])
    wanted = colour_photos(ITEMS["download_error"]) + colour_photos(ITEMS["pending"])
    assert fetched == Counter(wanted)

    # Ximilar: the project's records of every pilot SKU, none of the old server's for zara.
    indexed = set(world.collection_records())
    ready = {e for e, r in rows.items() if r[0] == "collage_ready" and e != "910009"}
    assert indexed == {f"{BRAND}:{e}:{n}" for e in ready for n in (1, 2)} | set(
        old_records["other_brand"])

    # Production: one product per SKU, old sizes strings read, the gone item unavailable.
    with world.connect(database=world.production_db) as conn:
        products = {str(e): (a, s) for e, a, s in conn.execute(
            "SELECT external_id, is_available, sizes FROM catalog_products").fetchall()}
    assert set(products) == ready | {"910009"}
    assert products["910009"] == (False, [{"name": n} for n in ("XS", "S", "M", "L")])
    assert all(a for e, (a, _) in products.items() if e != "910009")

    with world.connect() as conn:
        lines, blocking = report(conn)
    assert blocking and any("out of attempts: 1 (e.g. zara/910007-800)" in x for x in lines)
