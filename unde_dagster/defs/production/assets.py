"""`production_catalog`: hourly copy of the brand's verified SKUs into the Production DB."""

import dagster as dg
from pydantic import Field

from unde_dagster.brands import brand as brand_of
from unde_dagster.defs.brand_schedules import stops_when_terminated
from unde_dagster.defs.partitions import brand_partitions
from unde_dagster.production.sync import ProductionUnavailable, sync_brand
from unde_dagster.resources.databases import ProductionDatabase, StagingDatabase


class ProductionCatalogConfig(dg.Config):
    batch_size: int = Field(default=500, ge=1, le=5000, description="SKUs per transaction")


@dg.asset(
    partitions_def=brand_partitions,
    kinds={"postgres"},
    description=(
        "The brand's verified SKUs (collage ready, new or changed) in the Production DB's "
        "`catalog_products`; staging `sync_status` synced/skipped/error and `synced_at`. SKUs "
        "gone from the latest catalog run stay, with `is_available=false`."
    ),
)
@stops_when_terminated
def production_catalog(
    context: dg.AssetExecutionContext,
    config: ProductionCatalogConfig,
    staging_db: StagingDatabase,
    production_db: ProductionDatabase,
) -> dg.MaterializeResult:
    brand = brand_of(context.partition_key)
    with staging_db.connect(autocommit=True) as staging, \
            production_db.connect(autocommit=True) as production:
        try:
            result = sync_brand(staging, production, brand.source, run_id=context.run.run_id,
                                batch_size=config.batch_size)
        except ProductionUnavailable as exc:
            raise dg.Failure(description=str(exc)) from exc
    if result.latest_catalog_run is None:
        context.log.warning(f"{brand.key}: no finished catalog run; availability flags unchanged")
    return dg.MaterializeResult(
        metadata={
            "batches": result.batches,
            "synced": result.synced,
            "skipped": result.skipped,
            "errors": result.errors,
            "skipped_by_reason": dg.MetadataValue.json(dict(result.skipped_by_reason)),
            "marked_unavailable": result.marked_unavailable,
            "marked_available_again": result.marked_available,
            "latest_catalog_run": result.latest_catalog_run or "",
        }
    )
