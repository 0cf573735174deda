"""Checks of `product_originals`: each evaluation covers every brand, one table row per brand."""

import dagster as dg

from unde_dagster.db import health
from unde_dagster.defs.checks import check_brands
from unde_dagster.defs.originals.assets import DOWNLOADER_LOGS, product_originals
from unde_dagster.resources.check_thresholds import CheckThresholds
from unde_dagster.resources.databases import StagingDatabase


@dg.asset_check(
    asset=product_originals, name="last_batch_error_rate",
    description="Each brand's last download batch (new work or retry pass) failed at most "
    "`max_batch_error_rate` of its SKUs (resource `check_thresholds`, default 20%).",
)
def product_originals_last_batch_error_rate(
    context: dg.AssetCheckExecutionContext, staging_db: StagingDatabase,
    check_thresholds: CheckThresholds,
) -> dg.AssetCheckResult:
    return check_brands(context, staging_db, lambda conn, brand: health.last_batch_error_rate(
        conn, brand, scraper_names=DOWNLOADER_LOGS, max_rate=check_thresholds.max_batch_error_rate,
    ), severity=dg.AssetCheckSeverity.ERROR)


@dg.asset_check(
    asset=product_originals, name="no_sku_pending_past_sla",
    description="No SKU waits in `pending` longer than `pending_sla_hours` (default 24).",
)
def product_originals_no_sku_pending_past_sla(
    context: dg.AssetCheckExecutionContext, staging_db: StagingDatabase,
    check_thresholds: CheckThresholds,
) -> dg.AssetCheckResult:
    return check_brands(context, staging_db, lambda conn, brand: health.skus_stuck(
        conn, brand, status="pending", sla_hours=check_thresholds.pending_sla_hours,
    ))
