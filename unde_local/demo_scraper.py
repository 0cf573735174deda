"""Scraper and generator demo on the local stack: store availability and production sync of
one brand, then three model-library templates; prints what landed in both databases.

Run inside the stack's environment (the CLI exports `stack.env`, DAGSTER_HOME), e.g.
`python -c "from unde_local.demo_scraper import run_scraper_demo; run_scraper_demo('zara')"`.
If the brand has no SKUs in staging yet, the brand pipeline job runs first (catalog →
originals → collages → Ximilar), so production sync has collage-ready SKUs to copy.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import dagster as dg
import psycopg

from unde_dagster.brands import brand as brand_of
from unde_dagster.definitions import defs
from unde_dagster.defs.availability.assets import store_availability
from unde_dagster.defs.model_library.assets import model_library
from unde_dagster.defs.pipeline import brand_catalog_pipeline
from unde_dagster.defs.production.assets import production_catalog
from unde_dagster.defs.resources import resources_from_env

DEMO_TEMPLATES = (
    "female_20-30_average_front-standing_professional",
    "male_30-40_athletic_walking_casual",
    "female_40-50_plus-size_side_editorial",
)


def _report(result: dg.ExecuteInProcessResult, label: str, seconds: float) -> None:
    print(f"== {label}: {'SUCCESS' if result.success else 'FAILED'} in {seconds:.1f}s")
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        shown = {k: v.value for k, v in mat.metadata.items()
                 if isinstance(v.value, int | float | str)}
        print(f"   {mat.asset_key.to_user_string()}: {shown}")


def _materialize(assets: list, key: str, label: str,
                 instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    started = time.monotonic()
    result = dg.materialize(assets, partition_key=key, resources=resources_from_env(),
                            instance=instance, raise_on_error=False)
    _report(result, label, time.monotonic() - started)
    return result


def _ensure_catalog(brand: str, instance: dg.DagsterInstance) -> None:
    with psycopg.connect(os.environ["STAGING_DB_URL"]) as conn:
        row = conn.execute("SELECT count(*) FROM raw_products WHERE brand = %s", (brand,))
        count = row.fetchone()
    if count and count[0]:
        return
    print(f"{brand} has no SKUs in staging yet: running {brand_catalog_pipeline.name} first")
    started = time.monotonic()
    job = defs.resolve_job_def(brand_catalog_pipeline.name)
    result = job.execute_in_process(partition_key=brand, instance=instance, raise_on_error=False)
    _report(result, brand_catalog_pipeline.name, time.monotonic() - started)


def _summary(brand: str) -> None:
    source = brand_of(brand).source
    with psycopg.connect(os.environ["STAGING_DB_URL"]) as conn:
        stores = conn.execute("SELECT store_id, name, mall_name FROM raw_stores "
                              "WHERE brand = %s ORDER BY store_id", (brand,)).fetchall()
        print(f"staging raw_stores ({brand}): {len(stores)}")
        for store in stores:
            print(f"   {store}")
        avail = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE sizes_in_stock = '[]'::jsonb) "
            "FROM raw_availability WHERE brand = %s AND to_date_immutable(fetched_at) = "
            "to_date_immutable(NOW())", (brand,)).fetchone()
        print(f"staging raw_availability today: {avail[0] if avail else 0} rows, "
              f"{avail[1] if avail else 0} with nothing in stock")
        sync = conn.execute("SELECT sync_status, count(*) FROM raw_products WHERE source = %s "
                            "GROUP BY 1 ORDER BY 1", (source,)).fetchall()
        print(f"staging raw_products sync_status: {dict(sync)}")
    with psycopg.connect(os.environ["PRODUCTION_DB_URL"]) as conn:
        prod = conn.execute("SELECT is_available, count(*) FROM catalog_products "
                            "WHERE source = %s GROUP BY 1", (source,)).fetchall()
        print(f"production catalog_products ({brand}) by is_available: {dict(prod)}")
        models = conn.execute("SELECT template_id, version, image_url, processing_time_ms "
                              "FROM model_library ORDER BY created_at DESC LIMIT 6").fetchall()
        print("production model_library (latest):")
        for model in models:
            print(f"   {model}")


def run_scraper_demo(brand: str, templates: Sequence[str] = DEMO_TEMPLATES) -> None:
    """Availability + production sync for `brand`, then the model-library templates."""
    brand_of(brand)  # unknown brand: fail before doing anything
    instance = dg.DagsterInstance.get()
    _ensure_catalog(brand, instance)
    results = [
        _materialize([store_availability], brand, f"store_availability[{brand}]", instance),
        _materialize([production_catalog], brand, f"production_catalog[{brand}]", instance),
    ]
    for template_id in templates:
        results.append(_materialize([model_library], template_id,
                                    f"model_library[{template_id}]", instance))
    _summary(brand)
    if not all(r.success for r in results):
        raise SystemExit(1)


if __name__ == "__main__":  # eval "$(python -m unde_local env)"; python -m unde_local.demo_scraper
    import sys

    run_scraper_demo(sys.argv[1] if len(sys.argv) > 1 else "zara")
