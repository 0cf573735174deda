"""A brand's partition means "healthy": a run with nothing to do records no materialization,
and a run over the error-rate threshold fails its step with the rate and sample errors."""

from __future__ import annotations

from typing import Any

import dagster as dg
import psycopg

from tests.integration.image_stage_helpers import (
    cdn,
    fast_downloader,
    load_catalog,
    materialize,
    metadata,
    small_catalog,
)
from unde_dagster.defs.originals.assets import product_originals
from unde_local.stack import LocalStack

BRAND = "pullandbear"
KEY = dg.AssetKey("product_originals")


def test_failing_batch_turns_the_partition_red_and_an_idle_run_leaves_it_alone(
    stack: LocalStack, staging: psycopg.Connection, resources: dict[str, Any],
    instance: dg.DagsterInstance,
) -> None:
    resources = {**resources, "photo_downloader": fast_downloader(stack)}
    with small_catalog(stack, BRAND, 4) as items:
        load_catalog(BRAND, resources, instance)
        first = materialize([product_originals], BRAND, resources, instance, gate=True)
        good = metadata(first, "product_originals")
        assert good["claimed"] == 4 and good["error_rate_pct"] == 0.0
        assert "/thumbnails/originals/" in good["preview"]

        idle = dg.materialize([product_originals], partition_key=BRAND, resources=resources,
                              instance=instance)
        assert idle.success and idle.asset_materializations_for_node("product_originals") == []
        [observed] = [e for e in idle.all_events if e.event_type_value == "ASSET_OBSERVATION"]
        assert observed.asset_key == KEY and observed.partition == BRAND
        latest = instance.get_latest_materialization_event(KEY)
        assert latest is not None and latest.run_id == first.run_id  # its counts stay

        staging.execute("SET unde.allow_backward = 'on'")
        staging.execute("UPDATE raw_products SET image_status = 'pending', image_urls = NULL, "
                        "original_sources = '{}' WHERE brand = %s", (BRAND,))
        staging.execute("RESET unde.allow_backward")
        photo = items[0]["colorsSizesImagesJSON"][0]["xmedia"][0].replace("{width}", "1920")
        cdn(stack).add(match=f"/{BRAND}/photos/", status=404)
        failed = dg.materialize([product_originals], partition_key=BRAND, resources=resources,
                                instance=instance, raise_on_error=False)
        assert not failed.success
        [failure] = [e for e in failed.all_events if e.is_step_failure]
        data = failure.step_failure_data.user_failure_data
        assert data is not None and "4 of 4 SKUs failed" in str(data.description)
        meta = {k: v.value for k, v in data.metadata.items()}
        assert meta["error_rate_pct"] == 100.0
        samples = [r.data for r in meta["error_samples"].records]
        assert {s["reason"] for s in samples} == {"http_404"}
        assert photo in {s["url"] for s in samples}
        steps = [e for e in failed.all_events if e.event_type_value == "STEP_START"]
        assert len(steps) == 1  # not retried: the SKUs are at fault, not a service
        status = instance.get_status_by_partition(KEY, [BRAND], product_originals.partitions_def)
        assert status is not None and status[BRAND].value == "FAILED"

