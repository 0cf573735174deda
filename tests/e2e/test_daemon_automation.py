"""With the Dagster daemon running, a catalog write ends in collages with no manual launch.

The catalog run is the only run the test starts (as the weekly schedule would). From there
the originals sensor sees `pending` rows, the queued coordinator tags and launches the run,
the collage sensor sees `uploaded` rows, and so on. The time from each row's catalog
write (`created_at`) to its `collage_ready` update (`updated_at`) is read from the Staging
DB and written to `test-artifacts/e2e/catalog_to_collage.txt`: a measured figure, not an
assertion (speed is for benchmarks).
"""

from __future__ import annotations

import time

import psycopg
import pytest

from tests.e2e.conftest import ARTIFACTS, DagsterDeployment
from tests.integration.image_stage_helpers import load_catalog, small_catalog, warm_photos
from unde_dagster.db.claims import status_counts
from unde_deploy.roles import ROLE_TAG
from unde_local.stack import LocalStack

pytestmark = pytest.mark.e2e

SENSOR_TAG = "dagster/sensor_name"
DEADLINE_S = 420  # a hang, not a speed limit: the sensors tick every 30 s


def test_catalog_write_reaches_collages_through_the_sensors(
    deployment: DagsterDeployment,
    stack: LocalStack,
    staging: psycopg.Connection,
    resources: dict[str, object],
) -> None:
    brand = "stradivarius"
    with small_catalog(stack, brand, n_skus=4, photos=2):
        warm_photos(stack)
        load_catalog(brand, resources, deployment.instance)
    assert status_counts(staging, brand) == {"pending": 4}

    deadline = time.monotonic() + DEADLINE_S
    while status_counts(staging, brand) != {"collage_ready": 4}:
        assert time.monotonic() < deadline, (
            f"rows still {status_counts(staging, brand)} after {DEADLINE_S}s\n"
            + deployment.log_tail("daemon")
        )
        time.sleep(1)

    latencies = [
        float(s) for (s,) in staging.execute(
            "SELECT EXTRACT(EPOCH FROM updated_at - created_at) FROM raw_products "
            "WHERE brand = %s", (brand,),
        ).fetchall()
    ]
    deployment.wait_idle()
    runs = [
        r for r in deployment.instance.get_runs()
        if r.tags.get("dagster/partition") == brand and r.tags.get(SENSOR_TAG)
    ]
    by_sensor = sorted(r.tags[SENSOR_TAG] for r in runs)
    assert by_sensor == ["collages_work_sensor", "originals_work_sensor"], by_sensor
    for run in runs:
        assert run.is_success, f"{run.job_name} {run.run_id}: {run.status}"
        assert run.tags[ROLE_TAG] in {"downloader", "collage"}, run.tags
        assert run.tags[f"unde/brand_{run.tags[ROLE_TAG]}"] == brand

    assert deployment.limit_violations() == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    report = (
        f"catalog row written -> collage_ready, {len(latencies)} SKUs of {brand}, daemon "
        f"running with default sensor intervals (30 s), local-stack downloader profile:\n"
        f"  max {max(latencies):.1f} s, min {min(latencies):.1f} s\n"
        f"  runs: {', '.join(f'{r.job_name}={r.status.value}' for r in runs)}\n"
    )
    (ARTIFACTS / "catalog_to_collage.txt").write_text(report)
    print(report)
