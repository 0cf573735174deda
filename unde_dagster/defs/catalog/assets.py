"""`raw_products`: the brand's catalog from its Apify Task, one row per colour SKU."""

import contextlib
from datetime import timedelta

import dagster as dg
import psycopg

from unde_dagster.brands import brand as brand_of
from unde_dagster.catalog.clean import clean_text
from unde_dagster.catalog.collect import CatalogResult, CatalogRunFailed, collect_brand
from unde_dagster.db.catalog_runs import CATALOG_WRITER
from unde_dagster.db.scraper_logs import BatchLog, write_scraper_log
from unde_dagster.defs.brand_schedules import stops_when_terminated, tag_sku_count
from unde_dagster.defs.partitions import brand_partitions
from unde_dagster.resources.apify import ApifyResource
from unde_dagster.resources.databases import StagingDatabase


@dg.asset(
    partitions_def=brand_partitions,
    kinds={"apify", "postgres"},
    description=(
        "Product metadata of the brand from its Apify Task (datasaurus actor), one "
        "`raw_products` row per colour SKU. New SKUs and SKUs whose photos changed go to "
        "`image_status='pending'`; unchanged SKUs keep their state. Items, colours and photo "
        "URLs not written are listed in `catalog_rejections` under the run id."
    ),
)
@stops_when_terminated
def raw_products(
    context: dg.AssetExecutionContext, staging_db: StagingDatabase, apify: ApifyResource
) -> dg.MaterializeResult:
    brand = brand_of(context.partition_key)
    batch = BatchLog(scraper_name=brand.source, run_id=context.run.run_id)
    with staging_db.connect(autocommit=True) as conn:
        try:
            result = collect_brand(
                apify.client(),
                conn,
                brand,
                run_id=context.run.run_id,
                wait=timedelta(seconds=apify.run_timeout_s),
            )
        except CatalogRunFailed as exc:
            batch.error_message = str(exc)
            write_scraper_log(conn, batch)
            raise dg.Failure(description=str(exc)) from exc
        except Exception as exc:
            # Still one scraper_logs row for the batch, if the connection allows it.
            batch.error_message = clean_text(f"{type(exc).__name__}: {str(exc)[:500]}")
            if not conn.broken:
                with contextlib.suppress(psycopg.Error):
                    write_scraper_log(conn, batch)
            raise
        batch.fetched = result.items
        batch.new = result.counts.new
        batch.updated = result.counts.updated
        batch.errors = result.rejected_total
        batch.metadata = {
            "writer": CATALOG_WRITER,
            "apify_run_id": result.apify_run_id,
            "dataset_id": result.dataset_id,
            "skus_unchanged": result.counts.unchanged,
            "skus_requeued": result.counts.requeued,
            "skus_adopted_from_item_rows": result.counts.adopted,
            "rejected_by_reason": result.rejected,
            "dropped_photo_urls": result.dropped_photos,
            "items_cleaned": result.items_cleaned,
            "missing_from_catalog": result.missing_from_catalog,
        }
        write_scraper_log(conn, batch)
    tag_sku_count(context, result.skus_written)
    return dg.MaterializeResult(
        metadata={
            "items": result.items,
            "skus_new": result.counts.new,
            "skus_updated": result.counts.updated,
            "skus_unchanged": result.counts.unchanged,
            "skus_requeued_for_photos": result.counts.requeued,
            "skus_adopted_from_item_rows": result.counts.adopted,
            "items_or_colours_rejected": result.rejected_total,
            "rejected_by_reason": dg.MetadataValue.json(result.rejected),
            **rejection_metadata(result, context.run.run_id),
            "missing_from_catalog": result.missing_from_catalog,
            "apify_run_id": result.apify_run_id,
            "duration_s": round(batch.duration_s, 2),
        }
    )


def rejection_metadata(result: CatalogResult, run_id: str) -> dict[str, dg.MetadataValue]:
    """A few sample ids of what was rejected, cleaned or dropped, and where the rest is."""
    samples = [
        {"reason": r.reason, "item_id": r.item_id, "colour_id": r.colour_id}
        for r in result.rejection_samples[:10]
    ]
    dropped = [
        {"item_id": r.item_id, "colour_id": r.colour_id, "url": (r.photo_url or "")[:200]}
        for r in result.dropped_photo_samples
    ]
    return {
        "rejection_samples": dg.MetadataValue.json(samples),
        "dropped_photo_urls": dg.MetadataValue.int(result.dropped_photos),
        "dropped_photo_samples": dg.MetadataValue.json(dropped),
        "items_cleaned": dg.MetadataValue.int(result.items_cleaned),
        "cleaned_item_samples": dg.MetadataValue.json(result.cleaned_samples),
        "rejections_query": dg.MetadataValue.md(
            f"`SELECT * FROM catalog_rejections WHERE run_id = '{run_id}'`"
        ),
    }
