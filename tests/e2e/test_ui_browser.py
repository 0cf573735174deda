"""The Dagster UI in a real browser: the asset graph, the partitions of `product_collages`,
and a backfill of two brands launched from the UI the way an operator does it.

Headless Chromium (Debian's) driven by Playwright against the webserver + daemon of the
test stack. Screenshots go to `test-artifacts/ui/`:
  01_asset_graph.png                    the global asset lineage, all groups expanded
  02_product_collages_partitions.png    the asset's partitions (the six brands)
  03_backfill_launched.png              the "Created backfill" toast after the launch
  04_backfill_completed.png             the backfill's page once it succeeded
and `failure.png` of the page a failing step was on.
"""

from __future__ import annotations

import re
import time
from contextlib import ExitStack

import dagster as dg
import psycopg
import pytest
from playwright.sync_api import Page

from tests.e2e.browser import TOAST, PageErrors, evidence_on_failure, screenshot
from tests.e2e.conftest import DagsterDeployment
from tests.integration.image_stage_helpers import small_catalog, warm_photos
from unde_dagster.db.claims import status_counts
from unde_local.stack import LocalStack

pytestmark = pytest.mark.e2e

BRANDS = ("zara", "bershka")
N_SKUS = 3
# The catalog pipeline up to collages: product_collages and everything upstream of it.
SELECTION = "+key:product_collages"
PIPELINE = {"raw_products", "product_originals", "product_collages"}
BACKFILL_DEADLINE_S = 480  # a hang, not a speed limit (runs share 2 cores with other tests)
ROWS_DEADLINE_S = 180
STATUS = re.compile(r"^Status\n(.+)$", re.MULTILINE)
DONE = {"Succeeded", "Completed"}
FAILED = {"Failed", "Failing", "Canceled", "Canceling"}


def open_asset_graph(page: Page, url: str) -> None:
    """The global asset lineage with every group expanded (the graph's Alt+E), fitted."""
    page.goto(f"{url}/asset-groups")
    page.get_by_text("Materialize all…").wait_for()
    page.keyboard.press("Alt+KeyE")
    page.wait_for_function(
        "Object.keys(localStorage).some(k => k.startsWith('asset-graph-open-graph-nodes'))"
    )
    page.reload()  # a fresh load fits the expanded graph into the view
    for asset in (*sorted(PIPELINE), "ximilar_index"):
        page.get_by_text(asset, exact=True).last.wait_for()
    page.wait_for_load_state("networkidle")


def open_partitions(page: Page, url: str) -> None:
    page.goto(f"{url}/assets/product_collages?view=partitions")
    page.get_by_text("6 Partitions Selected").wait_for()
    for brand in BRANDS:
        page.get_by_text(brand, exact=True).first.wait_for()
    page.wait_for_load_state("networkidle")


def launch_backfill(page: Page, url: str) -> str:
    """Filter the graph to the pipeline, "Materialize all…", pick the brands, launch."""
    page.goto(f"{url}/asset-groups")
    page.locator(".CodeMirror").first.click()  # "Search and filter assets"
    page.keyboard.type(SELECTION)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/asset-groups~"))
    page.get_by_text("Materialize all…").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text(f"Launch runs to materialize {len(PIPELINE)} assets").wait_for()
    dialog.get_by_text("Select a partition or create one").click()
    for brand in BRANDS:  # an item's name is the key twice (label + status tooltip)
        page.get_by_role("menuitem", name=brand).click()
    page.keyboard.press("Escape")  # close the partition list, keep the dialog
    dialog.get_by_text(f"{len(BRANDS)} partitions", exact=True).wait_for()
    dialog.get_by_role("button", name="Launch backfill").click()
    toast = page.locator(TOAST).filter(has_text="Created backfill").first
    toast.wait_for()
    dialog.wait_for(state="detached")
    match = re.search(r"Created backfill (\w+)", toast.inner_text())
    assert match, toast.inner_text()
    screenshot(page, "03_backfill_launched.png")
    return match.group(1)


def open_backfill(page: Page, url: str, backfill_id: str) -> None:
    """Runs → Backfills → the backfill (the launch toast's "View" is gone after a while)."""
    page.goto(f"{url}/runs")
    page.get_by_text("Backfills", exact=True).click()
    page.get_by_text(backfill_id, exact=True).click()
    page.wait_for_url(re.compile(rf"/{backfill_id}\b"))


def wait_backfill_done(page: Page, backfill_id: str) -> str:
    """Reload the backfill's page until its status is final; return that status."""
    deadline = time.monotonic() + BACKFILL_DEADLINE_S
    while True:
        page.get_by_text("Partition selection").wait_for()
        found = STATUS.search(page.locator("body").inner_text())
        status = found.group(1).strip() if found else "?"
        if status in DONE | FAILED:
            return status
        assert time.monotonic() < deadline, (
            f"backfill {backfill_id} still {status!r} after {BACKFILL_DEADLINE_S}s"
        )
        page.wait_for_timeout(10_000)
        page.reload()


@pytest.mark.timeout(1200)  # stack start-up + a backfill on a shared machine; a hang guard
def test_operator_backfills_two_brands_from_the_ui(
    deployment: DagsterDeployment,
    stack: LocalStack,
    staging: psycopg.Connection,
    page: Page,
) -> None:
    url = deployment.url
    errors = PageErrors()
    errors.watch(page)
    with ExitStack() as catalogs, evidence_on_failure(page, deployment):
        for brand in BRANDS:
            catalogs.enter_context(small_catalog(stack, brand, n_skus=N_SKUS, photos=2))
        warm_photos(stack)

        open_asset_graph(page, url)
        errors.assert_none(page, "the asset graph")
        screenshot(page, "01_asset_graph.png")

        open_partitions(page, url)
        errors.assert_none(page, "the partitions page")
        screenshot(page, "02_product_collages_partitions.png")

        backfill_id = launch_backfill(page, url)
        open_backfill(page, url, backfill_id)
        status = wait_backfill_done(page, backfill_id)
        screenshot(page, "04_backfill_completed.png")
        errors.assert_none(page, "the backfill page")
        assert status in DONE, f"backfill {backfill_id} ended {status!r}"

        backfill = deployment.instance.get_backfill(backfill_id)
        assert backfill is not None
        assert backfill.status.value == "COMPLETED_SUCCESS", backfill.status
        runs = deployment.instance.get_runs(
            dg.RunsFilter(tags={"dagster/backfill": backfill_id})
        )
        assert sorted(r.tags["dagster/partition"] for r in runs) == sorted(BRANDS)
        for run in runs:
            assert run.is_success, f"{run.run_id} ({run.tags}): {run.status}"
            assert run.tags.get("dagster/from_ui") == "true", run.tags
            assert set(run.asset_selection or ()) == {dg.AssetKey(a) for a in PIPELINE}

        # Claims keep a sensor run and the backfill from doing the same SKU twice; whichever
        # did the work, every row of both brands ends with its collage.
        deadline = time.monotonic() + ROWS_DEADLINE_S
        want = {"collage_ready": N_SKUS}
        while any(status_counts(staging, b) != want for b in BRANDS):
            assert time.monotonic() < deadline, {b: status_counts(staging, b) for b in BRANDS}
            time.sleep(1)
