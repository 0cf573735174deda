"""`originals_retry_job`: an operator's "retry the failed SKUs now", from the job's preset."""

from __future__ import annotations

from typing import Any

import dagster as dg
import psycopg

from tests.integration.image_stage_helpers import (
    cdn,
    fast_downloader,
    fault_on,
    load_catalog,
    materialize,
    skus,
    small_catalog,
)
from unde_dagster.definitions import defs
from unde_dagster.defs.originals.assets import product_originals
from unde_local.stack import LocalStack

BRAND = "massimodutti"


def test_the_retry_job_retries_fresh_errors_now_and_the_hourly_pass_waits(
    stack: LocalStack, staging: psycopg.Connection, resources: dict[str, Any],
    instance: dg.DagsterInstance,
) -> None:
    resources = {**resources, "photo_downloader": fast_downloader(stack)}
    with small_catalog(stack, BRAND, 3) as items:
        load_catalog(BRAND, resources, instance)
        broken = items[0]["colorsSizesImagesJSON"][0]["xmedia"][0].replace("{width}", "1920")
        rule = cdn(stack).add(match=fault_on(broken), status=404)
        materialize([product_originals], BRAND, resources, instance)
        failed = {e for e, r in skus(staging, BRAND).items() if r["image_status"] == "error"}
        assert len(failed) == 1
        cdn(stack).remove(rule.id)  # the operator fixed the cause

        hourly = {"ops": {"product_originals": {"config": {"retry_errors": True}}}}
        materialize([product_originals], BRAND, resources, instance, run_config=hourly)
        assert {e for e, r in skus(staging, BRAND).items() if r["image_status"] == "error"} == (
            failed)  # the hourly pass keeps the 1 h cool-down

        job = defs.resolve_job_def("originals_retry_job")
        result = job.execute_in_process(partition_key=BRAND, instance=instance,
                                        resources=resources, raise_on_error=False)
        assert result.success
        rows = skus(staging, BRAND)
        assert {r["image_status"] for r in rows.values()} == {"uploaded"}
        assert rows[failed.pop()]["image_attempts"] == 2
