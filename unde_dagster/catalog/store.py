"""Writing colour SKUs into `raw_products`.

A SKU the catalog repeats unchanged is only stamped as seen (no rewrite). Unchanged photos
never send a SKU back to `pending`; changed photos always do (and reset the retry counter
and the Ximilar state of the old photos). Every row seen by a catalog run is stamped with
that run's id, which is how later stages tell SKUs that left the catalog. A chunk is
written in one transaction; if PostgreSQL refuses a row, the chunk is written again row by
row behind savepoints, so only the refused SKUs are lost (and reported).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from unde_dagster.catalog.adopt import adopt_legacy_rows, start_from_stored
from unde_dagster.catalog.clean import clean_text
from unde_dagster.catalog.items import Rejection, SkuRow

# What one row's values can provoke (too long, out of range, bad encoding, a constraint);
# anything else (connection lost, schema wrong) fails the chunk as before.
ROW_ERRORS: tuple[type[Exception], ...] = (
    psycopg.DataError,
    psycopg.IntegrityError,
    psycopg.errors.ProgramLimitExceeded,
    UnicodeError,
)
MAX_ERROR_TEXT = 500


@dataclass
class UpsertCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    requeued: int = 0
    adopted: int = 0  # old item-id rows renamed into their colour SKU (catalog.adopt)
    write_failures: list[Rejection] = field(default_factory=list)

    def add(self, other: UpsertCounts) -> None:
        self.new += other.new
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.requeued += other.requeued
        self.adopted += other.adopted
        self.write_failures.extend(other.write_failures)


_EXISTING = """
SELECT external_id, content_hash, original_image_urls
  FROM raw_products
 WHERE source = %s AND external_id = ANY(%s)
   FOR UPDATE
"""

_UPSERT = """
INSERT INTO raw_products (
    source, external_id, item_id, colour_id, brand, name, description, price, currency,
    category, colour, sizes, composition, original_image_urls, raw_data, content_hash,
    scraped_at, last_seen_run_id, image_status, index_scope
) VALUES (
    %(source)s, %(external_id)s, %(item_id)s, %(colour_id)s, %(brand)s, %(name)s,
    %(description)s, %(price)s, %(currency)s, %(category)s, %(colour)s, %(sizes)s,
    %(composition)s, %(original_image_urls)s, %(raw_data)s, %(content_hash)s,
    NOW(), %(run_id)s, 'pending', %(index_scope)s
)
ON CONFLICT (source, external_id) DO UPDATE SET
    item_id = EXCLUDED.item_id,
    colour_id = EXCLUDED.colour_id,
    name = EXCLUDED.name,
    description = EXCLUDED.description,
    price = EXCLUDED.price,
    category = EXCLUDED.category,
    colour = EXCLUDED.colour,
    sizes = EXCLUDED.sizes,
    composition = EXCLUDED.composition,
    original_image_urls = EXCLUDED.original_image_urls,
    raw_data = EXCLUDED.raw_data,
    content_hash = EXCLUDED.content_hash,
    scraped_at = EXCLUDED.scraped_at,
    last_seen_run_id = EXCLUDED.last_seen_run_id,
    updated_at = CASE WHEN raw_products.content_hash IS DISTINCT FROM EXCLUDED.content_hash
                      THEN NOW() ELSE raw_products.updated_at END,
    sync_status = CASE WHEN raw_products.content_hash IS DISTINCT FROM EXCLUDED.content_hash
                       THEN 'pending' ELSE raw_products.sync_status END,
    image_status = CASE WHEN %(photos_changed)s THEN 'pending' ELSE raw_products.image_status END,
    image_attempts = CASE WHEN %(photos_changed)s THEN 0 ELSE raw_products.image_attempts END,
    collage_attempts = CASE WHEN %(photos_changed)s THEN 0 ELSE raw_products.collage_attempts END,
    error_message = CASE WHEN %(photos_changed)s THEN NULL ELSE raw_products.error_message END,
    ximilar_status = CASE WHEN %(photos_changed)s AND raw_products.ximilar_status <> 'pending'
                          THEN 'pending' ELSE raw_products.ximilar_status END
WHERE raw_products.content_hash IS DISTINCT FROM EXCLUDED.content_hash
   OR raw_products.raw_data IS DISTINCT FROM EXCLUDED.raw_data
   OR raw_products.item_id IS DISTINCT FROM EXCLUDED.item_id
   OR raw_products.colour_id IS DISTINCT FROM EXCLUDED.colour_id
   OR %(photos_changed)s
"""

# A SKU the catalog repeats word for word is only stamped as seen: rewriting the whole row
# (its raw_data is TOASTed) every day cost a brand's size in writes and dead tuples.
_SEEN = """
UPDATE raw_products SET last_seen_run_id = %s, scraped_at = NOW()
 WHERE source = %s AND external_id = ANY(%s) AND last_seen_run_id IS DISTINCT FROM %s
"""


def upsert_skus(
    conn: psycopg.Connection, rows: Sequence[SkuRow], *, run_id: str, index_scope: str
) -> UpsertCounts:
    """Upsert one chunk of SKUs in one transaction and classify each as new/updated/unchanged.

    A row PostgreSQL refuses (ROW_ERRORS) is left out and listed in `write_failures`.
    """
    counts = UpsertCounts()
    if not rows:
        return counts
    source = rows[0].source
    with conn.transaction(), conn.cursor() as cur:
        adopted = adopt_legacy_rows(conn, rows[0].brand, source, rows)
        counts.adopted = len(adopted)
        cur.execute(_EXISTING, (source, [r.external_id for r in rows]))
        existing = {ext: (digest, photos) for ext, digest, photos in cur.fetchall()}
        changed = [_photos_changed(existing, row) for row in rows]
        params = [_params(r, run_id, index_scope, c) for r, c in zip(rows, changed, strict=True)]
        try:
            with conn.transaction():  # savepoint: a refused row undoes only this attempt
                cur.executemany(_UPSERT, params)
            written = list(rows)
        except ROW_ERRORS:
            written = []
            for row, row_params in zip(rows, params, strict=True):
                try:
                    with conn.transaction():
                        cur.execute(_UPSERT, row_params)
                    written.append(row)
                except ROW_ERRORS as exc:
                    counts.write_failures.append(_write_failure(row, exc))
        cur.execute(_SEEN, (run_id, source, [r.external_id for r in written], run_id))
        start_from_stored(conn, source, adopted)
    done = {row.external_id for row in written}
    for row, photos_changed in zip(rows, changed, strict=True):
        if row.external_id not in done:
            continue
        before = existing.get(row.external_id)
        if before is None:
            counts.new += 1
        elif before[0] != row.content_hash:
            counts.updated += 1
        else:
            counts.unchanged += 1
        counts.requeued += photos_changed
    return counts


def _photos_changed(existing: dict[str, tuple[Any, Any]], row: SkuRow) -> bool:
    before = existing.get(row.external_id)
    return before is not None and before[1] != row.original_image_urls


def _write_failure(row: SkuRow, exc: Exception) -> Rejection:
    """The refused SKU with the first line of PostgreSQL's (or the driver's) reason."""
    kind = type(exc).__name__
    message = clean_text(str(exc).splitlines()[0] if str(exc) else kind)[:MAX_ERROR_TEXT]
    return Rejection(
        "write_failed", row.item_id, f"{kind}: {message}", colour_id=row.colour_id
    )


def _params(row: SkuRow, run_id: str, index_scope: str, photos_changed: bool) -> dict:
    return {
        "source": row.source,
        "external_id": row.external_id,
        "item_id": row.item_id,
        "colour_id": row.colour_id,
        "brand": row.brand,
        "name": row.name,
        "description": row.description,
        "price": row.price,
        "currency": row.currency,
        "category": row.category,
        "colour": row.colour,
        "sizes": Jsonb(row.sizes),
        "composition": row.composition,
        "original_image_urls": Jsonb(row.original_image_urls),
        "raw_data": Jsonb(row.raw_data),
        "content_hash": row.content_hash,
        "run_id": run_id,
        "index_scope": index_scope,
        "photos_changed": photos_changed,
    }


def count_missing_from_run(conn: psycopg.Connection, source: str, run_id: str) -> int:
    """SKUs of the brand the finished catalog run did not see (gone from the catalog)."""
    row = conn.execute(
        "SELECT count(*) FROM raw_products WHERE source = %s "
        "AND last_seen_run_id IS DISTINCT FROM %s",
        (source, run_id),
    ).fetchone()
    return int(row[0]) if row else 0
