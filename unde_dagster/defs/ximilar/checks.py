"""Checks of `ximilar_index`: each evaluation covers every brand, one table row per brand."""

import dagster as dg

from unde_dagster.db import health
from unde_dagster.defs.checks import check_brands
from unde_dagster.defs.ximilar.assets import ximilar_index
from unde_dagster.resources.check_thresholds import CheckThresholds
from unde_dagster.resources.databases import StagingDatabase


@dg.asset_check(
    asset=ximilar_index, name="pilot_coverage",
    description="At least `min_pilot_coverage` (default 90%) of each brand's pilot SKUs with "
    "images ready are synced to Ximilar.",
)
def ximilar_index_pilot_coverage(
    context: dg.AssetCheckExecutionContext, staging_db: StagingDatabase,
    check_thresholds: CheckThresholds,
) -> dg.AssetCheckResult:
    return check_brands(context, staging_db, lambda conn, brand: health.pilot_coverage(
        conn, brand, min_share=check_thresholds.min_pilot_coverage,
    ))
