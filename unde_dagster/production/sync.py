"""Copy verified staging SKUs of one brand into `catalog_products` (Production DB).

Per batch: claim staging rows (`FOR UPDATE SKIP LOCKED`, so two runs never take the same
SKU), write the verified ones into production in ONE transaction (a savepoint per row, so
one bad row ends as `error` and the rest commit), then record `sync_status`/`synced_at`/
`sync_error` in staging. A crash between the two commits only re-sends the batch next
time (the production write is an upsert). `synced_at` is the time of the last sync
decision, also for `skipped` rows, so "changed since `synced_at`" re-examines them.
SKUs that left the catalog are set `is_available=false` in production, never deleted.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import psycopg
from psycopg.types.json import Jsonb

from unde_dagster.db.catalog_runs import latest_catalog_run
from unde_dagster.db.scraper_logs import BatchLog, write_scraper_log
from unde_dagster.production.verify import StagingSku, production_sizes, skip_reason

log = logging.getLogger(__name__)
SCRAPER_NAME = "sync_to_production"

_CLAIM = """
SELECT id, source, external_id, brand, name, description, price, currency, category, colour,
       sizes, composition, image_urls, collage_url, updated_at, last_seen_run_id,
       legacy_external_id
  FROM raw_products
 WHERE source = %s AND id > %s AND image_status = 'collage_ready'
   AND (sync_status IN ('pending', 'error') OR synced_at IS NULL OR updated_at > synced_at)
 ORDER BY id
 LIMIT %s
   FOR UPDATE SKIP LOCKED
"""

_UPSERT = """
INSERT INTO catalog_products (
    source, external_id, brand, name, description, price, currency, category, colour, sizes,
    composition, image_urls, collage_url, is_available, staging_updated_at, synced_at
) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, NOW())
ON CONFLICT (source, external_id) DO UPDATE SET
    brand = EXCLUDED.brand, name = EXCLUDED.name, description = EXCLUDED.description,
    price = EXCLUDED.price, currency = EXCLUDED.currency, category = EXCLUDED.category,
    colour = EXCLUDED.colour, sizes = EXCLUDED.sizes, composition = EXCLUDED.composition,
    image_urls = EXCLUDED.image_urls, collage_url = EXCLUDED.collage_url,
    is_available = EXCLUDED.is_available, staging_updated_at = EXCLUDED.staging_updated_at,
    synced_at = NOW(), updated_at = NOW()
"""

# An adopted SKU replaces the product the old item-id row may have been synced as.
_DROP_LEGACY = "DELETE FROM catalog_products WHERE source = %s AND external_id = %s"

_MARK = """
UPDATE raw_products SET sync_status = %s, sync_error = %s, synced_at = NOW() WHERE id = %s
"""


class ProductionUnavailable(RuntimeError):
    """The Production DB connection broke; the claimed batch is marked `error`."""


@dataclass
class SyncResult:
    batches: int = 0
    synced: int = 0
    skipped: int = 0
    errors: int = 0
    skipped_by_reason: Counter[str] = field(default_factory=Counter)
    latest_catalog_run: str | None = None
    marked_unavailable: int = 0
    marked_available: int = 0


def _params(sku: StagingSku, available: bool) -> tuple:
    return (sku.source, sku.external_id, sku.brand, sku.name, sku.description, sku.price,
            sku.currency, sku.category, sku.colour, Jsonb(production_sizes(sku.sizes)),
            sku.composition,
            Jsonb(sku.image_urls), sku.collage_url, available, sku.updated_at)


def sync_batch(staging: psycopg.Connection, production: psycopg.Connection, source: str,
               *, after_id: int, limit: int, latest_run: str | None,
               batch: BatchLog) -> tuple[int, SyncResult] | None:
    """Sync one batch; returns (last claimed id, counts) or None when nothing is left."""
    counts = SyncResult()
    with staging.transaction():
        rows = staging.execute(_CLAIM, (source, after_id, limit)).fetchall()
        if not rows:
            return None
        skus = [StagingSku(*row) for row in rows]
        marks: list[tuple[str, str | None, int]] = []
        verified: list[StagingSku] = []
        for sku in skus:
            reason = skip_reason(sku)
            if reason is None:
                verified.append(sku)
            else:
                marks.append(("skipped", reason, sku.id))
                counts.skipped_by_reason[reason] += 1
        try:
            with production.transaction():
                for sku in verified:
                    available = latest_run is None or sku.last_seen_run_id == latest_run
                    try:
                        with production.transaction():  # savepoint: one bad row stays alone
                            production.execute(_UPSERT, _params(sku, available))
                            if sku.legacy_external_id:
                                production.execute(
                                    _DROP_LEGACY, (sku.source, sku.legacy_external_id))
                    except psycopg.DatabaseError as exc:
                        if production.closed or production.broken:
                            raise
                        marks.append(("error", f"production: {exc}"[:500], sku.id))
                    else:
                        marks.append(("synced", None, sku.id))
        except psycopg.Error as exc:  # commit failed / connection lost: nothing was written
            log.error("production write of a %s batch failed: %s", source, exc)
            failed = {sku.id for sku in verified}
            marks = [m for m in marks if m[2] not in failed]
            marks += [("error", f"production: {type(exc).__name__}: {exc}"[:500], sku.id)
                      for sku in verified]
        with staging.cursor() as cur:
            cur.executemany(_MARK, marks)
    status = Counter(m[0] for m in marks)
    counts.synced, counts.skipped = status["synced"], status["skipped"]
    counts.errors = status["error"]
    batch.fetched, batch.updated, batch.errors = len(skus), counts.synced, counts.errors
    batch.metadata = {"skipped": counts.skipped,
                      "skipped_by_reason": dict(counts.skipped_by_reason)}
    return skus[-1].id, counts


def mark_availability(staging: psycopg.Connection, production: psycopg.Connection,
                      source: str, latest_run: str) -> tuple[int, int]:
    """`is_available` = the SKU is in the brand's latest finished catalog run."""
    present = [r[0] for r in staging.execute(
        "SELECT external_id FROM raw_products WHERE source = %s AND last_seen_run_id = %s",
        (source, latest_run)).fetchall()]
    if not present:  # an empty catalog run is a scraper fault, not a sold-out brand
        log.warning("%s: latest catalog run %s saw no SKU; availability flags kept",
                    source, latest_run)
        return 0, 0
    with production.transaction():
        gone = production.execute(
            "UPDATE catalog_products SET is_available = false, updated_at = NOW() "
            "WHERE source = %s AND is_available AND NOT (external_id = ANY(%s))",
            (source, present)).rowcount
        back = production.execute(
            "UPDATE catalog_products SET is_available = true, updated_at = NOW() "
            "WHERE source = %s AND NOT is_available AND external_id = ANY(%s)",
            (source, present)).rowcount
    return gone, back


def sync_brand(staging: psycopg.Connection, production: psycopg.Connection, source: str,
               *, run_id: str, batch_size: int = 500) -> SyncResult:
    """Every pending/changed SKU of the brand, batch by batch, then the availability flags."""
    if not (staging.autocommit and production.autocommit):
        raise ValueError("sync_brand needs autocommit connections (explicit transactions)")
    total = SyncResult(latest_catalog_run=latest_catalog_run(staging, source).run_id)
    after_id = 0
    while True:
        batch = BatchLog(scraper_name=SCRAPER_NAME, run_id=run_id)
        done = sync_batch(staging, production, source, after_id=after_id, limit=batch_size,
                          latest_run=total.latest_catalog_run, batch=batch)
        if done is None:
            break
        after_id, counts = done
        batch.metadata["source"] = source
        write_scraper_log(staging, batch)
        total.batches += 1
        total.synced += counts.synced
        total.skipped += counts.skipped
        total.errors += counts.errors
        total.skipped_by_reason.update(counts.skipped_by_reason)
        if production.closed or production.broken:
            raise ProductionUnavailable(f"{source}: lost the Production DB connection mid-run")
    if total.latest_catalog_run is not None:
        total.marked_unavailable, total.marked_available = mark_availability(
            staging, production, source, total.latest_catalog_run)
    return total
