"""The table of contents: every asset, check, schedule, sensor and resource of the project."""

import dagster as dg

from unde_dagster.automation import build_automation
from unde_dagster.availability.assets import store_availability
from unde_dagster.catalog.assets import raw_products
from unde_dagster.collages.assets import product_collages
from unde_dagster.model_library.assets import model_library
from unde_dagster.originals.assets import product_originals
from unde_dagster.production.assets import production_catalog
from unde_dagster.resources import resources_from_env
from unde_dagster.ximilar.assets import ximilar_index

BRAND_PIPELINE_JOB = "brand_catalog_pipeline"

brand_catalog_pipeline = dg.define_asset_job(
    BRAND_PIPELINE_JOB,
    selection=dg.AssetSelection.assets(raw_products).downstream(),
    description="One brand end to end: catalog → originals → collages → Ximilar index.",
)

ASSETS = [raw_products, product_originals, product_collages, ximilar_index,
          store_availability, production_catalog, model_library]
automation = build_automation(ASSETS)

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=automation.checks,
    jobs=[brand_catalog_pipeline, *automation.jobs],
    schedules=automation.schedules,
    sensors=automation.sensors,
    resources=resources_from_env(),
    # A run is one brand's chain of steps (and their checks): a subprocess per step would
    # only add an interpreter start-up each (~5 s); the collage step has its own pool.
    executor=dg.in_process_executor,
)
