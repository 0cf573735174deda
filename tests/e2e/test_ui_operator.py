"""The operator's console in a real browser (issue #18): a brand whose downloads fail stays
red on the check and on its partition after another brand's run succeeds; "retry the failed
SKUs now" launched from the UI recovers it once the fault is gone; the collage preview grid
shows real thumbnails. Screenshots go to `test-artifacts/ui/`:
  05_checks_per_brand.png           the error-rate check, one row per brand, bershka FAILED
  06_originals_partition_failed.png product_originals' partitions, bershka red
  07_runs_of_bershka.png            the runs list filtered by `unde/brand=bershka`
  08_retry_launchpad.png            originals_retry_job's launchpad, preset for bershka
  09_collage_preview_grid.png       zara's collage partition with its thumbnails
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import quote

import dagster as dg
import psycopg
import pytest
from playwright.sync_api import Page

from tests.e2e.browser import PageErrors, evidence_on_failure, screenshot
from tests.e2e.conftest import DagsterDeployment, graphql
from tests.integration.image_stage_helpers import cdn, small_catalog, warm_photos
from unde_dagster.db.claims import status_counts
from unde_dagster.defs.partitions import brand_partitions
from unde_local.stack import LocalStack

pytestmark = pytest.mark.e2e

BAD, GOOD = "bershka", "zara"
N_SKUS = 3
DEADLINE_S = 300  # a hang guard on a shared machine, not a speed limit
CHECK = dg.AssetCheckKey(dg.AssetKey("product_originals"), "last_batch_error_rate")
LAUNCH = """
mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
  ... on PythonError { message } } }
"""


def launch(url: str, job: str, brand: str) -> None:
    params = {
        "selector": {"repositoryLocationName": "unde_dagster",
                     "repositoryName": "__repository__", "jobName": job},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": brand}]},
    }
    result = graphql(url, LAUNCH, p=params)["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result


def wait_for(what: str, done: Callable[[], object]) -> object:
    deadline = time.monotonic() + DEADLINE_S
    while not (value := done()):
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(2)
    return value


def finished_run(deployment: DagsterDeployment, job: str, brand: str) -> dg.DagsterRun | None:
    runs = deployment.instance.get_runs(dg.RunsFilter(job_name=job, tags={"unde/brand": brand}))
    return next((r for r in runs if r.is_finished), None)


def partition_status(deployment: DagsterDeployment, brand: str) -> str:
    status = deployment.instance.get_status_by_partition(
        dg.AssetKey("product_originals"), [brand], brand_partitions)
    assert status is not None
    return status[brand].value


@pytest.mark.timeout(1500)
def test_failing_brand_stays_red_and_is_retried_from_the_ui(
    deployment: DagsterDeployment, stack: LocalStack, staging: psycopg.Connection, page: Page,
) -> None:
    url, errors = deployment.url, PageErrors()
    errors.watch(page)
    with (small_catalog(stack, BAD, N_SKUS), small_catalog(stack, GOOD, N_SKUS),
          evidence_on_failure(page, deployment)):
        warm_photos(stack)
        fault = cdn(stack).add(match=f"/{BAD}/photos/", status=404)
        launch(url, "catalog_job", BAD)  # the work sensor launches its downloads
        bad_run = wait_for("bershka's downloads", lambda: finished_run(
            deployment, "originals_job", BAD))
        assert bad_run.status == dg.DagsterRunStatus.FAILURE  # type: ignore[union-attr]
        launch(url, "catalog_job", GOOD)
        wait_for("zara's collages", lambda: status_counts(staging, GOOD) == {
            "collage_ready": N_SKUS})
        good_run = finished_run(deployment, "originals_job", GOOD)
        assert good_run is not None and good_run.is_success

        # The later zara run evaluated the check for every brand: bershka is still red.
        latest = deployment.instance.event_log_storage.get_asset_check_execution_history(
            CHECK, limit=1)[0]
        checked_in = deployment.instance.get_run_by_id(latest.run_id)
        assert checked_in is not None and checked_in.tags["unde/brand"] == GOOD
        evaluation = latest.event.dagster_event.event_specific_data  # type: ignore[union-attr]
        assert not evaluation.passed and evaluation.metadata["brands_failed"].value == [BAD]
        assert partition_status(deployment, BAD) == "FAILED"
        assert partition_status(deployment, GOOD) == "MATERIALIZED"

        page.goto(f"{url}/assets/product_originals?view=checks")
        page.get_by_text("failing: bershka").first.wait_for()
        page.get_by_text("FAILED", exact=True).first.wait_for()
        errors.assert_none(page, "the checks page")
        screenshot(page, "05_checks_per_brand.png")

        page.goto(f"{url}/assets/product_originals?view=partitions&partition={BAD}")
        page.get_by_text("Failed (1)").wait_for()
        errors.assert_none(page, "the partitions page")
        screenshot(page, "06_originals_partition_failed.png")

        page.goto(f"{url}/runs?q%5B0%5D={quote(f'tag:unde/brand={BAD}')}")
        page.get_by_text("unde/trigger: sensor originals_work_sensor").first.wait_for()
        page.get_by_text(f"unde/brand: {BAD}").first.wait_for()
        assert page.get_by_text(f"unde/brand: {GOOD}").count() == 0
        screenshot(page, "07_runs_of_bershka.png")

        # The operator fixed the CDN block: "retry the failed SKUs now", from the UI.
        cdn(stack).remove(fault.id)
        page.goto(f"{url}/locations/unde_dagster/jobs/originals_retry_job/playground")
        page.get_by_placeholder("Partition").click()
        page.get_by_role("menuitem", name=BAD).first.click()
        page.get_by_text("ignore_cooldown: true").wait_for()
        screenshot(page, "08_retry_launchpad.png")
        page.get_by_role("button", name="Launch Run").click()
        retry = wait_for("the retry run", lambda: finished_run(
            deployment, "originals_retry_job", BAD))
        assert retry.is_success, retry  # type: ignore[union-attr]
        assert retry.tags["unde/trigger"] == "manual"  # type: ignore[union-attr]
        wait_for("bershka's collages", lambda: status_counts(staging, BAD) == {
            "collage_ready": N_SKUS})
        assert partition_status(deployment, BAD) == "MATERIALIZED"

        # The preview grid: thumbnails (400 px high), each linking to the full collage.
        page.goto(f"{url}/assets/product_collages?view=partitions&partition={GOOD}")
        thumbs = f"img[src*='/thumbnails/collages/{GOOD}/']"
        page.locator(thumbs).first.wait_for()  # a short grid is shown inline, not collapsed
        page.locator(thumbs).first.scroll_into_view_if_needed()
        page.wait_for_function(
            f"Array.from(document.querySelectorAll(\"{thumbs}\"))"
            ".every(i => i.complete && i.naturalHeight > 0)")
        sizes = page.evaluate(
            f"Array.from(document.querySelectorAll(\"{thumbs}\"))"
            ".map(i => [i.src, i.naturalWidth, i.naturalHeight, i.closest('a')?.href])")
        assert len(sizes) == N_SKUS, sizes
        for src, width, height, link in sizes:
            assert height == 400 and width > 400, sizes  # a preview, not the full collage
            assert link == src.replace("/thumbnails/", "/"), sizes  # linking the collage
        screenshot(page, "09_collage_preview_grid.png")
        errors.assert_none(page, "the preview grid")
