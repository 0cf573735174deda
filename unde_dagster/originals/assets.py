"""`product_originals`: the brand's pending SKUs' photos, fetched through the proxy into S3."""

from functools import partial

import dagster as dg

from unde_dagster.catalog.assets import raw_products
from unde_dagster.db.claims import DOWNLOAD_QUEUE, claim_batch, release_stale_claims, status_counts
from unde_dagster.db.scraper_logs import BatchLog, write_scraper_log
from unde_dagster.image_stage_config import ImageStageConfig
from unde_dagster.originals.stage import OriginalsOutcome, download_batch
from unde_dagster.partitions import brand_partitions
from unde_dagster.resources.databases import StagingDatabase
from unde_dagster.resources.downloader import PhotoDownloader
from unde_dagster.resources.object_store import ObjectStore
from unde_dagster.stage_support import counts_metadata, preview, run_is_over


@dg.asset(
    partitions_def=brand_partitions,
    deps=[raw_products],
    group_name="downloader",
    kinds={"s3", "postgres"},
    tags={"unde/role": "downloader"},
    owners=["team:data-infra"],
    description=(
        "Up to 5 photos per SKU downloaded through the residential proxy (10 slots, polite "
        "delays, backoff), validated with Pillow and stored at "
        "`originals/{brand}/{external_id}/{N}.jpg`; the SKU moves pending → uploaded, or to "
        "error with a reason (retried after 1 h, at most 3 attempts)."
    ),
)
def product_originals(
    context: dg.AssetExecutionContext,
    config: ImageStageConfig,
    staging_db: StagingDatabase,
    object_store: ObjectStore,
    photo_downloader: PhotoDownloader,
) -> dg.MaterializeResult:
    brand, token = context.partition_key, context.run.run_id
    s3 = object_store.get_client()
    rules = photo_downloader.claim_rules()
    total = OriginalsOutcome()
    batches = 0
    with staging_db.connect(autocommit=True) as conn:
        released = release_stale_claims(conn, brand, partial(run_is_over, context.instance), token)
        for _ in range(config.max_batches):
            rows = claim_batch(
                conn, DOWNLOAD_QUEUE, brand=brand, token=token, rules=rules,
                retry=config.retry_errors,
            )
            if not rows:
                break
            batches += 1
            name = "photo_downloader_retry" if config.retry_errors else "photo_downloader"
            log = BatchLog(scraper_name=name, run_id=token)
            outcome = download_batch(
                rows,
                token=token,
                conn=conn,
                upload=partial(object_store.put_public, s3),
                public_url=object_store.public_url,
                fetch_settings=photo_downloader.fetch_settings(),
                download_settings=photo_downloader.download_settings(),
            )
            log.fetched, log.new, log.errors = outcome.claimed, outcome.done, outcome.errors
            log.metadata = {
                "brand": brand,
                "errors_by_reason": dict(outcome.errors_by_reason),
                "photos_uploaded": outcome.photos_uploaded,
                "photos_skipped": outcome.photos_skipped,
                "bytes_uploaded": outcome.bytes_uploaded,
            }
            write_scraper_log(conn, log)
            context.log.info(
                f"batch {batches}: {outcome.done}/{outcome.claimed} uploaded, "
                f"errors {dict(outcome.errors_by_reason)}"
            )
            for sample in outcome.error_samples:
                context.log.warning(sample)
            _accumulate(total, outcome)
        states = status_counts(conn, brand)
    return dg.MaterializeResult(
        metadata={
            "claimed": total.claimed,
            "uploaded": total.done,
            "errors": total.errors,
            **counts_metadata(total.errors_by_reason),
            "photos_uploaded": total.photos_uploaded,
            "photos_skipped_unchanged": total.photos_skipped,
            "bytes_uploaded": dg.MetadataValue.int(total.bytes_uploaded),
            "batches": batches,
            "claims_released_from_dead_runs": released,
            "skus_by_image_status": dg.MetadataValue.json(states),
            "preview": preview(total.preview_url, "first photo"),
        }
    )


def _accumulate(total: OriginalsOutcome, batch: OriginalsOutcome) -> None:
    total.claimed += batch.claimed
    total.done += batch.done
    total.errors_by_reason.update(batch.errors_by_reason)
    total.photos_uploaded += batch.photos_uploaded
    total.photos_skipped += batch.photos_skipped
    total.bytes_uploaded += batch.bytes_uploaded
    total.preview_url = total.preview_url or batch.preview_url
