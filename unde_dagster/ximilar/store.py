"""SQL of the Ximilar stage: claim SKUs, write their state, find stale ones.

Why `FOR UPDATE SKIP LOCKED` inside one transaction per batch: two runs of the same brand
never claim the same SKU, and a run killed between the HTTP call and the UPDATE rolls its
batch back, so the next run sends those records again under the same `_id`s (no-op).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from unde_dagster.db.catalog_runs import CatalogRun, latest_catalog_run
from unde_dagster.ximilar.records import SkuForIndex

__all__ = ["CatalogRun", "latest_catalog_run"]

_COLUMNS = """id, brand, external_id, name, category, price, currency, image_urls,
    ximilar_synced_urls, ximilar_target_count, ximilar_status"""

_LEN = "(CASE WHEN jsonb_typeof({c}) = 'array' THEN jsonb_array_length({c}) ELSE 0 END)"
_IMAGES = _LEN.format(c="image_urls")
_SYNCED = _LEN.format(c="ximilar_synced_urls")

# Not seen by the brand's latest complete catalog run (nor by a later, unfinished one).
_STALE = """(%(run_id)s::text IS NOT NULL
    AND last_seen_run_id IS DISTINCT FROM %(run_id)s
    AND scraped_at < %(run_started)s)"""

_CLAIM_SYNC = f"""
SELECT {_COLUMNS} FROM raw_products
 WHERE source = %(source)s AND id > %(after)s
   AND index_scope = 'pilot'
   AND image_status IN ('uploaded', 'collage_ready')
   AND NOT {_STALE}
   AND (ximilar_status = 'pending'
        OR (ximilar_status = 'partial'
            AND (ximilar_error IS NULL OR updated_at < NOW() - %(retry_after)s))
        OR (ximilar_status = 'synced'
            AND {_SYNCED} < LEAST(COALESCE(ximilar_target_count, 2), {_IMAGES})))
 ORDER BY id LIMIT %(limit)s
   FOR UPDATE SKIP LOCKED
"""

_CLAIM_RETRY = f"""
SELECT {_COLUMNS} FROM raw_products
 WHERE source = %(source)s AND id > %(after)s
   AND index_scope = 'pilot'
   AND image_status IN ('uploaded', 'collage_ready')
   AND NOT {_STALE}
   AND ximilar_status IN ('error', 'partial') AND ximilar_error IS NOT NULL
   AND updated_at < NOW() - %(retry_after)s
 ORDER BY id LIMIT %(limit)s
   FOR UPDATE SKIP LOCKED
"""

_CLAIM_REMOVE = f"""
SELECT {_COLUMNS} FROM raw_products
 WHERE source = %(source)s AND id > %(after)s
   AND ({_SYNCED} > 0 OR ximilar_status IN ('partial', 'synced'))
   AND (index_scope IS DISTINCT FROM 'pilot' OR {_STALE})
 ORDER BY id LIMIT %(limit)s
   FOR UPDATE SKIP LOCKED
"""

_UPDATE = """
UPDATE raw_products SET
    ximilar_status = %(status)s::text,
    ximilar_synced_urls = %(synced_urls)s,
    ximilar_synced_at = CASE WHEN %(progress)s THEN NOW() ELSE ximilar_synced_at END,
    ximilar_error = %(error)s::text,
    ximilar_attempts = CASE WHEN %(status)s::text = 'synced' THEN 0
                            ELSE ximilar_attempts + %(attempt)s END,
    updated_at = CASE WHEN %(error)s::text IS NOT NULL THEN NOW() ELSE updated_at END
 WHERE id = %(id)s
"""

_RESET = """
UPDATE raw_products SET ximilar_status = 'pending', ximilar_synced_urls = '[]'::jsonb,
       ximilar_synced_at = NULL, ximilar_error = NULL, ximilar_attempts = 0
 WHERE id = ANY(%s)
"""


@dataclass(frozen=True)
class SkuUpdate:
    id: int
    status: str
    synced_urls: list[str]
    progress: bool
    error: str | None
    attempt: bool


def _params(source: str, after: int, limit: int, run: CatalogRun,
            retry_after: timedelta) -> dict[str, Any]:
    return {"source": source, "after": after, "limit": limit, "run_id": run.run_id,
            "run_started": run.started_at, "retry_after": retry_after}


def claim(conn: psycopg.Connection, kind: str, source: str, *, after: int, limit: int,
          run: CatalogRun, retry_after: timedelta) -> list[SkuForIndex]:
    """Lock up to `limit` SKUs with id > `after` (call inside a transaction)."""
    sql = {"sync": _CLAIM_SYNC, "retry": _CLAIM_RETRY, "remove": _CLAIM_REMOVE}[kind]
    rows = conn.execute(sql, _params(source, after, limit, run, retry_after)).fetchall()
    return [_sku(row) for row in rows]


def _urls(value: Any) -> tuple[str, ...]:
    return tuple(u for u in value if isinstance(u, str)) if isinstance(value, list) else ()


def _sku(row: tuple[Any, ...]) -> SkuForIndex:
    (id_, brand, external_id, name, category, price, currency, image_urls, synced,
     target, status) = row
    return SkuForIndex(
        id=id_, brand=brand, external_id=external_id, name=name, category=category,
        price=price, currency=currency, image_urls=_urls(image_urls),
        synced_urls=_urls(synced), target_count=2 if target is None else int(target),
        status=status or "pending",
    )


def write_updates(conn: psycopg.Connection, updates: list[SkuUpdate]) -> None:
    if not updates:
        return
    with conn.cursor() as cur:
        cur.executemany(_UPDATE, [
            {"id": u.id, "status": u.status, "synced_urls": Jsonb(u.synced_urls),
             "progress": u.progress, "error": u.error, "attempt": int(u.attempt)}
            for u in updates
        ])


def reset_state(conn: psycopg.Connection, ids: list[int]) -> None:
    if ids:
        conn.execute(_RESET, (ids,))
