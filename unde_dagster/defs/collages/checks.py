"""Checks of `product_collages`: each evaluation covers every brand, one table row per brand."""

from functools import partial

import dagster as dg

from unde_dagster.collages.verify import collage_dimensions
from unde_dagster.db import health
from unde_dagster.defs.checks import check_brands
from unde_dagster.defs.collages.assets import COLLAGE_LOGS, product_collages
from unde_dagster.resources.check_thresholds import CheckThresholds
from unde_dagster.resources.databases import StagingDatabase
from unde_dagster.resources.object_store import ObjectStore


@dg.asset_check(
    asset=product_collages, name="last_batch_error_rate",
    description="Each brand's last collage batch failed at most `max_batch_error_rate` of its "
    "SKUs (resource `check_thresholds`, default 20%).",
)
def product_collages_last_batch_error_rate(
    context: dg.AssetCheckExecutionContext, staging_db: StagingDatabase,
    check_thresholds: CheckThresholds,
) -> dg.AssetCheckResult:
    return check_brands(context, staging_db, lambda conn, brand: health.last_batch_error_rate(
        conn, brand, scraper_names=COLLAGE_LOGS, max_rate=check_thresholds.max_batch_error_rate,
    ), severity=dg.AssetCheckSeverity.ERROR)


@dg.asset_check(
    asset=product_collages, name="no_sku_uploaded_past_sla",
    description="No SKU waits in `uploaded` without a collage longer than "
    "`uploaded_sla_hours` (default 2).",
)
def product_collages_no_sku_uploaded_past_sla(
    context: dg.AssetCheckExecutionContext, staging_db: StagingDatabase,
    check_thresholds: CheckThresholds,
) -> dg.AssetCheckResult:
    return check_brands(context, staging_db, lambda conn, brand: health.skus_stuck(
        conn, brand, status="uploaded", sla_hours=check_thresholds.uploaded_sla_hours,
    ))


@dg.asset_check(
    asset=product_collages, name="collage_dimensions_match_originals",
    description="A few recent collages have exactly the canvas the stored originals give "
    "(tallest height, scaled widths).",
)
def product_collages_dimensions_match_originals(
    context: dg.AssetCheckExecutionContext, staging_db: StagingDatabase,
    object_store: ObjectStore,
) -> dg.AssetCheckResult:
    fetch = partial(object_store.get_bytes, object_store.get_client())
    return check_brands(context, staging_db, partial(
        collage_dimensions, fetch=fetch, key_of=object_store.key_of,
        public_url=object_store.public_url,
    ))
