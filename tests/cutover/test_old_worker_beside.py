"""An old worker not yet stopped writes beside the project's runs (SPEC §7): its late writes
never move a row backwards, a write on a row the project holds a live claim on is refused,
and an error it writes is taken up by the project's retry rules."""

from __future__ import annotations

from typing import Any

import dagster as dg

from tests.cutover import old_servers as old
from tests.cutover.conftest import BRAND, OldServers, OldWorld, item, row_ids
from tests.integration.image_stage_helpers import RETRY_CONFIG, materialize
from unde_dagster.db.claims import DOWNLOAD_QUEUE, ClaimRules, claim_batch, release_claims
from unde_dagster.defs.catalog.assets import raw_products
from unde_dagster.defs.collages.assets import product_collages
from unde_dagster.defs.originals.assets import product_originals

RANK = {"pending": 0, "uploaded": 1, "collage_ready": 2}
ITEMS = [item(910101 + i, ("800", 2)) for i in range(4)]


class History:
    """Every row's image_status after each step, by external_id."""

    def __init__(self, world: OldWorld) -> None:
        self.world, self.steps = world, []  # type: ignore[var-annotated]

    def record(self, step: str) -> dict[str, tuple[Any, ...]]:
        with self.world.connect() as conn:
            rows = {str(e): tuple(r) for e, *r in conn.execute(
                "SELECT external_id, image_status, image_urls, collage_url, "
                "image_error_stage FROM raw_products").fetchall()}
        self.steps.append((step, rows))
        return rows

    def backward_moves(self) -> list[str]:
        moves = []
        for (_, before), (step, after) in zip(self.steps, self.steps[1:], strict=False):
            for ext, row in after.items():
                was = before.get(ext, ("pending",))[0]
                if was == "error" or (was == row[0]):
                    continue
                if row[0] == "error" and was == "collage_ready":
                    moves.append(f"{step}: {ext} collage_ready -> error")
                elif row[0] != "error" and RANK[row[0]] < RANK[was]:
                    moves.append(f"{step}: {ext} {was} -> {row[0]}")
        return moves


def test_an_old_worker_beside_the_project_never_moves_a_row_back(
    old_world: OldWorld, catalog: Any
) -> None:
    world, servers, history = old_world, OldServers(old_world), History(old_world)
    with world.connect("apify") as conn:
        for it in ITEMS:
            old.old_collector_upsert(conn, BRAND, it)
    world.migrate()
    catalog(ITEMS)
    resources = world.resources()
    with dg.instance_for_test() as instance:
        materialize([raw_products], BRAND, resources, instance)
        rows = history.record("catalog")
        ids = row_ids(world)
        assert sorted(rows) == [f"{it['id']}-800" for it in ITEMS]
        held, errored, late, crossed = sorted(rows)

        # A live claim of the project's: the old downloader's result on that row is refused.
        with world.connect() as conn:
            rules = ClaimRules(batch_size=1, lease_s=120, max_attempts=3, retry_after_s=3600)
            [claimed] = claim_batch(conn, DOWNLOAD_QUEUE, brand=BRAND, token="live-run",
                                    rules=rules, retry=False)
        assert claimed["external_id"] == held
        warnings: list[str] = []
        servers.on_notice = warnings.append
        servers.download(ids[held])
        assert history.record("old download on a claimed row")[held][:2] == ("pending", None)
        assert any("refused write by role downloader" in w for w in warnings)
        with world.connect() as conn:
            release_claims(conn, ["live-run"])

        # The old downloader fails a row it picked: the project's retry pass takes it up.
        with world.connect("downloader") as conn:
            old.old_downloader_error(conn, ids[errored], "ClientProxyConnectionError")
        with world.connect() as conn:
            stage, attempts = conn.execute(
                "SELECT image_error_stage, image_attempts FROM raw_products WHERE id = %s",
                (ids[errored],)).fetchone() or (None, None)
            assert (stage, attempts) == ("download", 1)
        materialize([product_originals], BRAND, resources, instance)
        history.record("originals")
        with world.connect() as conn:  # the retry cool-down has passed
            conn.execute("UPDATE raw_products SET image_attempted_at = NOW() - interval "
                         "'2 hours' WHERE id = %s", (ids[errored],))
        materialize([product_originals], BRAND, resources, instance, run_config=RETRY_CONFIG)
        materialize([product_collages], BRAND, resources, instance)
        done = history.record("collages")
        assert {r[0] for r in done.values()} == {"collage_ready"}

    # Late writes of the old servers, from work they picked before: all refused.
    servers.download(ids[late])
    with world.connect("collage") as conn:
        old.old_collage_error(conn, ids[crossed], "OSError: late")
    with world.connect("downloader") as conn:
        old.old_downloader_error(conn, ids[held], "late timeout")
    final = history.record("late old writes")
    assert final == done
    assert history.backward_moves() == []
