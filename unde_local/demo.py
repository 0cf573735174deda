"""The demo: run the brand pipeline job for one brand on the local stack and summarise."""

from __future__ import annotations

import os
import time

import dagster as dg
import psycopg

from unde_dagster.definitions import defs
from unde_dagster.defs.pipeline import brand_catalog_pipeline
from unde_deploy.roles import PARTITION_TAG, STAGE_ROLES, TRIGGER_TAG, run_role_tags


def run_demo(brand: str) -> None:
    instance = dg.DagsterInstance.get()
    job = defs.resolve_job_def(brand_catalog_pipeline.name)
    started = time.monotonic()
    # In process (no daemon needed), with the tags the run queue's coordinator gives every
    # queued run, so the demo's run reads like any other in the runs list.
    roles = sorted({STAGE_ROLES[s] for s in ("catalog", "originals", "collages", "ximilar")})
    own = {PARTITION_TAG: brand, TRIGGER_TAG: "demo"}
    tags = {TRIGGER_TAG: "demo", **run_role_tags(roles, own)}
    result = job.execute_in_process(partition_key=brand, instance=instance, tags=tags,
                                    raise_on_error=False)
    elapsed = time.monotonic() - started
    print(f"\n== {brand_catalog_pipeline.name} for {brand}: "
          f"{'SUCCESS' if result.success else 'FAILED'} in {elapsed:.1f}s "
          f"(run {result.run_id})")
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        shown = {
            k: v.value for k, v in mat.metadata.items()
            if isinstance(v.value, int | float | str) and not str(v.value).startswith("![")
        }
        print(f"  {mat.asset_key.to_user_string()}: {shown}")
    with psycopg.connect(os.environ["STAGING_DB_URL"]) as conn:
        rows = conn.execute(
            "SELECT image_status, count(*) FROM raw_products WHERE brand = %s "
            "GROUP BY 1 ORDER BY 1", (brand,)
        ).fetchall()
        print(f"  raw_products of {brand} by image_status: {dict(rows)}")
        logs = conn.execute(
            "SELECT scraper_name, status, records_fetched, records_new, records_errors "
            "FROM scraper_logs WHERE run_id = %s ORDER BY id", (result.run_id,)
        ).fetchall()
        for log in logs:
            print(f"  scraper_logs: {log}")
    if not result.success:
        raise SystemExit(1)
