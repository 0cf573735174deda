"""`product_collages`: one horizontal collage per SKU for virtual try-on."""

from functools import partial

import dagster as dg

from unde_dagster.collages.pool import CollagePool
from unde_dagster.collages.stage import CollageOutcome, collage_batch
from unde_dagster.db.claims import COLLAGE_QUEUE, claim_batch, release_stale_claims, status_counts
from unde_dagster.db.scraper_logs import BatchLog, write_scraper_log
from unde_dagster.image_stage_config import ImageStageConfig
from unde_dagster.originals.assets import product_originals
from unde_dagster.partitions import brand_partitions
from unde_dagster.resources.collage import CollageMaker
from unde_dagster.resources.databases import StagingDatabase
from unde_dagster.resources.object_store import ObjectStore
from unde_dagster.stage_support import counts_metadata, preview, run_is_over


@dg.asset(
    partitions_def=brand_partitions,
    deps=[product_originals],
    group_name="collage",
    kinds={"s3", "postgres", "pillow"},
    tags={"unde/role": "collage"},
    owners=["team:data-infra"],
    description=(
        "All originals of each `uploaded` SKU scaled to the tallest height (LANCZOS, never "
        "downscaled), pasted left to right on white, JPEG q95 4:4:4 at "
        "`collages/{brand}/{external_id}.jpg`; the SKU moves to collage_ready."
    ),
)
def product_collages(
    context: dg.AssetExecutionContext,
    config: ImageStageConfig,
    staging_db: StagingDatabase,
    object_store: ObjectStore,
    collage_maker: CollageMaker,
) -> dg.MaterializeResult:
    brand, token = context.partition_key, context.run.run_id
    s3 = object_store.get_client()
    rules = collage_maker.claim_rules()
    total = CollageOutcome()
    batches = 0
    with (
        staging_db.connect(autocommit=True) as conn,
        CollagePool[int](collage_maker.workers, quality=collage_maker.quality) as pool,
    ):
        released = release_stale_claims(conn, brand, partial(run_is_over, context.instance), token)
        for _ in range(config.max_batches):
            rows = claim_batch(
                conn, COLLAGE_QUEUE, brand=brand, token=token, rules=rules,
                retry=config.retry_errors,
            )
            if not rows:
                break
            batches += 1
            log = BatchLog(scraper_name="collage_worker", run_id=token)
            outcome = collage_batch(
                rows,
                token=token,
                conn=conn,
                fetch=partial(object_store.get_bytes, s3),
                upload=partial(object_store.put_public, s3),
                public_url=object_store.public_url,
                pool=pool,
            )
            log.fetched, log.new, log.errors = outcome.claimed, outcome.done, outcome.errors
            log.metadata = {
                "brand": brand,
                "retry_pass": config.retry_errors,
                "errors_by_reason": dict(outcome.errors_by_reason),
                "bytes_uploaded": outcome.bytes_uploaded,
            }
            write_scraper_log(conn, log)
            for sample in outcome.error_samples:
                context.log.warning(sample)
            _accumulate(total, outcome)
        states = status_counts(conn, brand)
    widths = [w for w, _ in total.sizes]
    return dg.MaterializeResult(
        metadata={
            "claimed": total.claimed,
            "collages_made": total.done,
            "errors": total.errors,
            **counts_metadata(total.errors_by_reason),
            "bytes_uploaded": dg.MetadataValue.int(total.bytes_uploaded),
            "max_collage_width": max(widths, default=0),
            "batches": batches,
            "claims_released_from_dead_runs": released,
            "skus_by_image_status": dg.MetadataValue.json(states),
            "preview": preview(total.preview_url, "collage"),
        }
    )


def _accumulate(total: CollageOutcome, batch: CollageOutcome) -> None:
    total.claimed += batch.claimed
    total.done += batch.done
    total.errors_by_reason.update(batch.errors_by_reason)
    total.bytes_uploaded += batch.bytes_uploaded
    total.sizes.extend(batch.sizes)
    total.preview_url = total.preview_url or batch.preview_url
