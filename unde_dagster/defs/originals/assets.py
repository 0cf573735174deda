"""`product_originals`: the brand's pending SKUs' photos, fetched through the proxy into S3."""

from collections.abc import Iterator
from functools import partial

import dagster as dg

from unde_dagster.db.claims import DOWNLOAD_QUEUE, status_counts
from unde_dagster.db.queues import recent_originals
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
from unde_dagster.originals.stage import OriginalsOutcome, download_batch
from unde_dagster.resources.check_thresholds import CheckThresholds
from unde_dagster.resources.databases import StagingDatabase
from unde_dagster.resources.downloader import PhotoDownloader
from unde_dagster.resources.object_store import ObjectStore

# The `scraper_logs` names of its batches: new work, and the hourly retry pass.
DOWNLOADER_LOGS = ("photo_downloader", "photo_downloader_retry")


@dg.asset(
    partitions_def=brand_partitions,
    deps=["raw_products"],
    kinds={"s3", "postgres"},
    description=(
        "Up to 5 photos per SKU downloaded through the residential proxy (10 slots, polite "
        "delays, backoff), validated with Pillow and stored at "
        "`originals/{brand}/{external_id}/{N}.jpg`; the SKU moves pending → uploaded, or to "
        "error with a reason (retried after 1 h, at most 3 attempts). A run that finds nothing "
        "to do records no materialization; one where more than `max_batch_error_rate` of "
        "the SKUs failed fails its step, naming the SKUs and reasons."
    ),
    output_required=False,
)
@stops_when_terminated
def product_originals(
    context: dg.AssetExecutionContext,
    config: ImageStageConfig,
    staging_db: StagingDatabase,
    object_store: ObjectStore,
    photo_downloader: PhotoDownloader,
    check_thresholds: CheckThresholds,
) -> Iterator[dg.MaterializeResult]:
    s3 = object_store.get_client()
    total = OriginalsOutcome()
    batches = 0
    with staging_db.connect(autocommit=True) as conn:
        for outcome in drain_queue(
            context,
            conn,
            DOWNLOAD_QUEUE,
            rules=photo_downloader.claim_rules(),
            config=config,
            scraper_name=DOWNLOADER_LOGS[1] if config.retry_errors else DOWNLOADER_LOGS[0],
            process=partial(
                download_batch,
                token=context.run.run_id,
                conn=conn,
                upload=partial(object_store.put_public, s3),
                public_url=object_store.public_url,
                fetch_settings=photo_downloader.fetch_settings(),
                download_settings=photo_downloader.download_settings(),
            ),
        ):
            batches += 1
            accumulate(total, outcome)
        states = status_counts(conn, context.partition_key)
        recent = recent_originals(conn, context.partition_key, PREVIEW_SKUS)
    yield from stage_result(context, total, {
        "claimed": total.claimed,
        "uploaded": total.done,
        "errors": total.errors,
        **counts_metadata(total.errors_by_reason),
        "photos_uploaded": total.photos_uploaded,
        "photos_skipped_unchanged": total.photos_skipped,
        "uploaded_mb": megabytes(total.bytes_uploaded),
        "batches": batches,
        "skus_by_image_status": dg.MetadataValue.json(states),
        "preview": preview_grid(
            thumbnails(object_store.key_of, object_store.public_url, recent)
        ),
    }, max_error_rate=check_thresholds.max_batch_error_rate)
