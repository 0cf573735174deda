"""`product_collages`: one horizontal collage per SKU for virtual try-on."""

from collections.abc import Iterator
from functools import partial

import dagster as dg

from unde_dagster.collages.pool import CollagePool
from unde_dagster.collages.stage import CollageOutcome, collage_batch
from unde_dagster.db.claims import COLLAGE_QUEUE, status_counts
from unde_dagster.db.queues import recent_collages
from unde_dagster.defs.brand_schedules import stops_when_terminated
from unde_dagster.defs.image_stages import (
    PREVIEW_SKUS,
    ImageStageConfig,
    accumulate,
    counts_metadata,
    drain_queue,
    megabytes,
    preview_grid,
    stage_result,
    thumbnails,
)
from unde_dagster.defs.partitions import brand_partitions
from unde_dagster.resources.check_thresholds import CheckThresholds
from unde_dagster.resources.collage import CollageMaker
from unde_dagster.resources.databases import StagingDatabase
from unde_dagster.resources.object_store import ObjectStore

# The `scraper_logs` names of its batches: new work, and the hourly retry pass (the error-rate
# check reads both, as the originals' does).
COLLAGE_LOGS = ("collage_worker", "collage_worker_retry")


@dg.asset(
    partitions_def=brand_partitions,
    deps=["product_originals"],
    kinds={"s3", "postgres", "pillow"},
    description=(
        "All originals of each `uploaded` SKU scaled to the tallest height (LANCZOS, never "
        "downscaled), pasted left to right on white, JPEG q95 4:4:4 at "
        "`collages/{brand}/{external_id}.jpg`; the SKU moves to collage_ready. A run that "
        "finds nothing to do records no materialization; one where more than "
        "`max_batch_error_rate` of the SKUs failed fails its step, naming the SKUs and reasons."
    ),
    output_required=False,
)
@stops_when_terminated
def product_collages(
    context: dg.AssetExecutionContext,
    config: ImageStageConfig,
    staging_db: StagingDatabase,
    object_store: ObjectStore,
    collage_maker: CollageMaker,
    check_thresholds: CheckThresholds,
) -> Iterator[dg.MaterializeResult]:
    s3 = object_store.get_client()
    total = CollageOutcome()
    batches = 0
    with (
        staging_db.connect(autocommit=True) as conn,
        CollagePool[int](collage_maker.workers, quality=collage_maker.quality) as pool,
    ):
        for outcome in drain_queue(
            context,
            conn,
            COLLAGE_QUEUE,
            rules=collage_maker.claim_rules(),
            config=config,
            scraper_name=COLLAGE_LOGS[1] if config.retry_errors else COLLAGE_LOGS[0],
            process=partial(
                collage_batch,
                token=context.run.run_id,
                conn=conn,
                fetch=partial(object_store.get_bytes, s3),
                upload=partial(object_store.put_public, s3),
                public_url=object_store.public_url,
                pool=pool,
            ),
        ):
            batches += 1
            accumulate(total, outcome)
        states = status_counts(conn, context.partition_key)
        recent = [(ext, url) for _, ext, url, _ in
                  recent_collages(conn, context.partition_key, PREVIEW_SKUS)]
        resampler = pool.resampler
    widths = [w for w, _ in total.sizes]
    yield from stage_result(context, total, {
        "claimed": total.claimed,
        "collages_made": total.done,
        "errors": total.errors,
        **counts_metadata(total.errors_by_reason),
        "uploaded_mb": megabytes(total.bytes_uploaded),
        "max_collage_width": max(widths, default=0),
        "resampler": resampler,
        "batches": batches,
        "skus_by_image_status": dg.MetadataValue.json(states),
        "preview": preview_grid(
            thumbnails(object_store.key_of, object_store.public_url, recent)
        ),
    }, max_error_rate=check_thresholds.max_batch_error_rate)
