"""Removing the old Ximilar server's records after the cut-over (SPEC §7).

The old server inserted records under ids the Staging DB never kept, with the old item id
as `sku_id`. When the catalog adopts an old row into its colour SKU, or an old row leaves
the catalog, its item id is queued in `ximilar_legacy_skus`; this pass lists the
collection once, deletes every record of the brand whose `sku_id` is queued, and empties
the queue. The SKU itself is indexed again under its own id by the normal sync.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from unde_dagster.db.catalog_runs import CatalogRun
from unde_dagster.ximilar.client import MAX_RECORDS_PER_REQUEST, XimilarClient

PAGE_SIZE = 1000


@dataclass(frozen=True)
class LegacyRemoval:
    skus: int  # queued item ids handled
    records_deleted: int
    pages_read: int


def queued(conn: psycopg.Connection, brand: str) -> list[str]:
    rows = conn.execute(
        "SELECT sku_id FROM ximilar_legacy_skus WHERE brand = %s ORDER BY sku_id", (brand,)
    ).fetchall()
    return [str(sku) for (sku,) in rows]


def queue_stale_item_rows(conn: psycopg.Connection, source: str, run: CatalogRun) -> int:
    """Queue the old item-id rows the latest catalog run no longer has (not adopted: the
    item is gone) whose photos the old server may have sent."""
    if run.run_id is None:
        return 0
    with conn.transaction():
        cur = conn.execute(
            "INSERT INTO ximilar_legacy_skus (brand, sku_id) "
            "SELECT brand, external_id FROM raw_products WHERE source = %(source)s "
            "AND colour_id IS NULL AND last_seen_run_id IS DISTINCT FROM %(run_id)s "
            "AND scraped_at < %(run_started)s "
            "AND (ximilar_status IN ('partial', 'synced', 'error') "
            "     OR jsonb_typeof(ximilar_synced_urls) = 'array' "
            "        AND jsonb_array_length(ximilar_synced_urls) > 0) "
            "ON CONFLICT (brand, sku_id) DO NOTHING",
            {"source": source, "run_id": run.run_id, "run_started": run.started_at},
        )
        return cur.rowcount


def find_records(
    client: XimilarClient, brand: str, sku_ids: set[str]
) -> tuple[list[str], int]:
    """`_id`s of the collection's records of `brand` whose `sku_id` is one of `sku_ids`,
    and the pages read."""
    found: list[str] = []
    page = 0
    while True:
        page += 1
        records = client.all_records(page, PAGE_SIZE)
        found += [
            str(r["_id"]) for r in records
            if "_id" in r and str(r.get("sku_id")) in sku_ids
            and str(r.get("brand", brand)).lower() == brand.lower()
        ]
        if len(records) < PAGE_SIZE:
            return found, page


def _delete(client: XimilarClient, ids: Sequence[str]) -> int:
    return sum(
        client.delete(ids[i: i + MAX_RECORDS_PER_REQUEST])
        for i in range(0, len(ids), MAX_RECORDS_PER_REQUEST)
    )


def remove_legacy_records(
    conn: psycopg.Connection, client: XimilarClient, brand: str
) -> LegacyRemoval | None:
    """Delete the queued old records of `brand`; None when nothing is queued (no listing).

    Safe to repeat: the queue is emptied only after the deletes answered, and a delete of a
    record already gone is fine."""
    skus = queued(conn, brand)
    if not skus:
        return None
    ids, pages = find_records(client, brand, set(skus))
    deleted = _delete(client, ids)
    with conn.transaction():
        conn.execute(
            "DELETE FROM ximilar_legacy_skus WHERE brand = %s AND sku_id = ANY(%s)",
            (brand, skus),
        )
    return LegacyRemoval(len(skus), deleted, pages)
