"""The key transition of the cut-over (SPEC §7): the old collector stored one row per item
(`external_id` = item id, every colour's first five photos flattened into one list, of
which the old downloader stored the first five); the project stores one row per colour.
The first per-colour catalog run renames each old row into the colour SKU its first stored
photo belongs to, so the product is one row and keeps its originals, collage and attempts:
nothing is fetched or built again that exists already.

Per colour, the photos already stored (matched by source URL) are reused from their
item-id keys. The adopted row keeps its state when its stored photos are exactly its
colour's; when they also held another colour's, its originals stay and the collage is
built again from this colour alone (`uploaded`); when only some of its photos are stored
it goes to `pending` and the downloader fetches just the rest. Another colour whose photos
the old row had stored starts from them too. The old row's Ximilar records carry the item
id as `sku_id`, so they are queued for removal and the SKUs are indexed under their own ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from unde_dagster.catalog.items import MAX_PHOTOS_PER_SKU, PHOTO_WIDTH, SkuRow


@dataclass(frozen=True)
class LegacyRow:
    """An old item-id row as the old servers left it."""

    id: int
    external_id: str
    image_status: str
    original_image_urls: list[str]
    image_urls: list[str]
    indexed: bool  # the old Ximilar server sent (or tried to send) some of its photos


@dataclass(frozen=True)
class StoredPhotos:
    """What a colour SKU starts from: its first photos already in the bucket."""

    external_id: str
    image_urls: list[str]  # the stored objects' URLs (item-id keys), photos 1..n
    original_sources: dict[str, str]  # N -> source URL, so the downloader skips them
    complete: bool  # every photo of the colour is stored


@dataclass(frozen=True)
class Adoption:
    row_id: int
    legacy_id: str
    sku: SkuRow
    image_status: str  # the adopted row's status after the rename
    stored: StoredPhotos
    others: list[StoredPhotos]  # other colours of the item starting from stored photos
    indexed: bool


def _same(url: str) -> str:
    return url.strip().replace("{width}", PHOTO_WIDTH)


def _urls(value: Any) -> list[str]:
    return [u for u in value if isinstance(u, str)] if isinstance(value, list) else []


def stored_photos(old: LegacyRow, sku: SkuRow) -> StoredPhotos:
    """The longest run of the SKU's first photos that the old row has stored."""
    stored = old.image_urls[:MAX_PHOTOS_PER_SKU]
    at = {url: i for i, url in reversed(list(enumerate(
        _same(u) for u in old.original_image_urls[: len(stored)]
    )))}
    urls, sources = [], {}
    for n, url in enumerate(sku.original_image_urls, 1):
        if url not in at:
            break
        urls.append(stored[at[url]])
        sources[str(n)] = url
    return StoredPhotos(sku.external_id, urls, sources, len(urls) == len(sku.original_image_urls))


def plan_adoption(old: LegacyRow, colours: Sequence[SkuRow]) -> Adoption | None:
    """The colour SKU `old` becomes and the state it keeps (None: the item has no colours)."""
    if not colours:
        return None
    flat = [_same(u) for u in old.original_image_urls]
    first = flat[0] if flat else None
    sku = next((c for c in colours if first in c.original_image_urls), colours[0])
    own = stored_photos(old, sku)
    held = len(old.image_urls[:MAX_PHOTOS_PER_SKU])
    if not held or (own.complete and len(own.image_urls) == held):
        status = old.image_status  # nothing stored yet, or exactly this colour's photos
    elif own.complete:
        status = "error" if old.image_status == "error" else "uploaded"  # collage again
    else:
        status = "pending"
    others = [stored_photos(old, c) for c in colours if c is not sku]
    return Adoption(old.id, old.external_id, sku, status, own,
                    [o for o in others if o.image_urls], old.indexed)


_LEGACY = """
SELECT id, external_id, image_status, original_image_urls, image_urls,
       (ximilar_status IN ('partial', 'synced', 'error')
        OR COALESCE(jsonb_typeof(ximilar_synced_urls) = 'array'
                    AND jsonb_array_length(ximilar_synced_urls) > 0, false))
  FROM raw_products
 WHERE source = %s AND external_id = ANY(%s) AND colour_id IS NULL
   FOR UPDATE
"""

# The photo list becomes the colour's in the same write, which is what lets the guard
# (migration 0005) accept a step back to `uploaded` or `pending`.
_RENAME = """
UPDATE raw_products SET
    external_id = %(external_id)s, item_id = %(item_id)s, colour_id = %(colour_id)s,
    legacy_external_id = %(legacy_id)s, original_image_urls = %(original_image_urls)s,
    image_urls = %(image_urls)s, original_sources = %(original_sources)s,
    image_status = %(image_status)s,
    image_attempts = CASE WHEN %(restart)s THEN 0 ELSE image_attempts END,
    collage_attempts = CASE WHEN %(restart)s THEN 0 ELSE collage_attempts END,
    content_hash = NULL,
    ximilar_status = 'pending', ximilar_synced_urls = '[]'::jsonb, ximilar_synced_at = NULL,
    ximilar_error = NULL, ximilar_attempts = 0
 WHERE id = %(row_id)s
"""

# Runs after the chunk's upsert inserted the other colours (still `pending`, nothing stored).
_START_FROM_STORED = """
UPDATE raw_products SET image_urls = %s, original_sources = %s, image_status = %s
 WHERE source = %s AND external_id = %s AND image_status = 'pending' AND image_urls IS NULL
"""

_QUEUE_LEGACY_RECORDS = """
INSERT INTO ximilar_legacy_skus (brand, sku_id) VALUES (%s, %s)
    ON CONFLICT (brand, sku_id) DO NOTHING
"""


def adopt_legacy_rows(
    conn: psycopg.Connection, brand: str, source: str, rows: Sequence[SkuRow]
) -> list[Adoption]:
    """Rename the old item-id rows of the items in `rows` into their colour SKUs (call inside
    the chunk's transaction, before the upsert; then `start_from_stored` after it). A colour
    SKU that already exists is left alone, the old row beside it leaves as stale."""
    by_item: dict[str, list[SkuRow]] = {}
    for row in rows:
        by_item.setdefault(row.item_id, []).append(row)
    if not by_item:
        return []
    legacy = [
        LegacyRow(int(i), str(ext), str(status), _urls(orig), _urls(stored), bool(indexed))
        for i, ext, status, orig, stored, indexed in conn.execute(
            _LEGACY, (source, list(by_item))
        ).fetchall()
    ]
    plans = [p for old in legacy if (p := plan_adoption(old, by_item[old.external_id]))]
    if not plans:
        return []
    taken = {
        str(ext) for (ext,) in conn.execute(
            "SELECT external_id FROM raw_products WHERE source = %s AND external_id = ANY(%s)",
            (source, [p.sku.external_id for p in plans]),
        ).fetchall()
    }
    adopted = [p for p in plans if p.sku.external_id not in taken]
    with conn.cursor() as cur:
        for plan in adopted:
            cur.execute(_RENAME, {
                "row_id": plan.row_id, "legacy_id": plan.legacy_id,
                "external_id": plan.sku.external_id, "item_id": plan.sku.item_id,
                "colour_id": plan.sku.colour_id,
                "original_image_urls": Jsonb(plan.sku.original_image_urls),
                "image_urls": Jsonb(plan.stored.image_urls) if plan.stored.image_urls else None,
                "original_sources": Jsonb(plan.stored.original_sources),
                "image_status": plan.image_status,
                "restart": plan.image_status == "pending" and bool(plan.stored.image_urls),
            })
            if plan.indexed:
                cur.execute(_QUEUE_LEGACY_RECORDS, (brand, plan.legacy_id))
    return adopted


def start_from_stored(conn: psycopg.Connection, source: str, adopted: Sequence[Adoption]) -> None:
    """Give the item's other colours the photos the old row had stored for them."""
    with conn.cursor() as cur:
        for plan in adopted:
            for other in plan.others:
                cur.execute(_START_FROM_STORED, (
                    Jsonb(other.image_urls), Jsonb(other.original_sources),
                    "uploaded" if other.complete else "pending", source, other.external_id,
                ))
