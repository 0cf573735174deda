"""Checks of `raw_products`: each evaluation covers every brand, one table row per brand."""

import dagster as dg

from unde_dagster.brands import brand as brand_of
from unde_dagster.db import health
from unde_dagster.defs.catalog.assets import raw_products
from unde_dagster.defs.checks import check_brands
from unde_dagster.resources.check_thresholds import CheckThresholds
from unde_dagster.resources.databases import StagingDatabase


@dg.asset_check(
    asset=raw_products, name="last_batch_error_rate",
    description="Each brand's last catalog run rejected at most `max_batch_error_rate` of its "
    "items (resource `check_thresholds`, default 20%).",
)
def raw_products_last_batch_error_rate(
    context: dg.AssetCheckExecutionContext, staging_db: StagingDatabase,
    check_thresholds: CheckThresholds,
) -> dg.AssetCheckResult:
    return check_brands(context, staging_db, lambda conn, brand: health.last_batch_error_rate(
        conn, brand, scraper_names=[brand_of(brand).source], logs_per_brand=False,
        max_rate=check_thresholds.max_batch_error_rate,
    ), severity=dg.AssetCheckSeverity.ERROR)
