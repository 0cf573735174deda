"""`ximilar_index`: the brand's pilot SKUs in the Ximilar visual-search collection."""

from datetime import timedelta

import dagster as dg
from pydantic import Field

from unde_dagster.brands import brand as brand_of
from unde_dagster.defs.brand_schedules import stops_when_terminated
from unde_dagster.defs.partitions import brand_partitions
from unde_dagster.resources.databases import StagingDatabase
from unde_dagster.resources.ximilar import XimilarResource
from unde_dagster.ximilar.client import XimilarAuthError
from unde_dagster.ximilar.sync import SyncSettings, run_brand


class XimilarIndexConfig(dg.Config):
    """`retry=True` is the daily retry pass (`ximilar_retry`): SKUs in error ≥ 6 h."""

    retry: bool = False
    batch_skus: int = Field(default=50, description="SKUs claimed per transaction/log row")
    retry_after_hours: float = 6.0
    max_skus: int | None = Field(default=None, description="cap per run (seed: 1000)")


@dg.asset(
    partitions_def=brand_partitions,
    deps=["product_collages"],
    kinds={"ximilar", "postgres"},
    description=(
        "Pilot SKUs (`index_scope='pilot'`, images ready) in the Ximilar collection: the first "
        "`ximilar_target_count` photos per SKU as records with deterministic `_id`s, 10 per "
        "request, rate-limited; SKUs gone from the catalog or no longer pilot are removed."
    ),
)
@stops_when_terminated
def ximilar_index(
    context: dg.AssetExecutionContext,
    config: XimilarIndexConfig,
    staging_db: StagingDatabase,
    ximilar: XimilarResource,
) -> dg.MaterializeResult:
    brand = brand_of(context.partition_key)
    settings = SyncSettings(
        batch_skus=config.batch_skus,
        retry_after=timedelta(hours=config.retry_after_hours),
        max_skus=config.max_skus,
    )
    client = ximilar.client()
    try:
        with staging_db.connect(autocommit=True) as conn:
            report = run_brand(conn, client, brand.source, context.run.run_id,
                               retry=config.retry, settings=settings, brand=brand.key)
    except XimilarAuthError as exc:
        raise dg.Failure(description=f"Ximilar refused the credentials: {exc}") from exc
    finally:
        client.close()
    metadata = {
        "pass": "retry" if config.retry else "sync",
        "skus": report.total("skus") - report.total("removed"),
        "skus_synced": report.total("synced"),
        "skus_partial": report.total("partial"),
        "skus_failed": report.total("errors"),
        "records_sent": report.total("records_sent"),
        "records_indexed": report.total("records_indexed"),
        "requests_made": client.requests_made,
        "request_retries": client.retries,
        "removed": report.total("removed"),
        "old_server_records_removed": report.legacy.records_deleted if report.legacy else 0,
        "batches": len(report.batches),
        "errors_by_reason": dg.MetadataValue.json(report.errors_by_reason),
    }
    if report.unavailable is not None:
        raise dg.Failure(
            description=f"Ximilar unavailable ({report.unavailable}); the rest waits for "
            "the next run", metadata=metadata,
        )
    context.log.info("ximilar_index %s: %s", brand.key, metadata)
    return dg.MaterializeResult(metadata=metadata)
