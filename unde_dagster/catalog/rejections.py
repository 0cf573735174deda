"""Recording what a catalog run did not write in `catalog_rejections` (migration 0004).

Counts alone do not tell an operator which item to look at, so every rejected item,
colour, refused SKU and dropped photo URL gets a row keyed by the catalog run. A repeat of
the same run (a retried step) inserts nothing new: rows are unique per run and fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from unde_dagster.catalog.clean import clean_text
from unde_dagster.catalog.items import Rejection

MAX_DETAIL = 1000
MAX_URL = 2000

_INSERT = """
INSERT INTO catalog_rejections (
    run_id, source, brand, item_id, colour_id, reason, detail, photo_url,
    apify_run_id, dataset_id, fingerprint
) VALUES (
    %(run_id)s, %(source)s, %(brand)s, %(item_id)s, %(colour_id)s, %(reason)s, %(detail)s,
    %(photo_url)s, %(apify_run_id)s, %(dataset_id)s, %(fingerprint)s
)
ON CONFLICT (run_id, fingerprint) DO NOTHING
"""


@dataclass(frozen=True)
class CatalogRun:
    """Which run the rejections belong to (`run_id` is the Dagster run id)."""

    run_id: str
    source: str
    brand: str
    apify_run_id: str | None = None
    dataset_id: str | None = None


def fingerprint(source: str, rejection: Rejection) -> str:
    """Stable identity of one rejection within a run."""
    key = [source, rejection.item_id, rejection.colour_id, rejection.reason,
           _bounded(rejection.detail, MAX_DETAIL), _bounded(rejection.photo_url, MAX_URL)]
    return hashlib.sha256(json.dumps(key, ensure_ascii=True).encode()).hexdigest()


def record_rejections(
    conn: psycopg.Connection, run: CatalogRun, rejections: Sequence[Rejection]
) -> None:
    """Insert the rejections of one chunk in one transaction; repeats are ignored."""
    if not rejections:
        return
    params = [
        {
            "run_id": run.run_id,
            "source": run.source,
            "brand": run.brand,
            "item_id": rejection.item_id,
            "colour_id": rejection.colour_id,
            "reason": rejection.reason,
            "detail": _bounded(rejection.detail, MAX_DETAIL) or "",
            "photo_url": _bounded(rejection.photo_url, MAX_URL),
            "apify_run_id": run.apify_run_id,
            "dataset_id": run.dataset_id,
            "fingerprint": fingerprint(run.source, rejection),
        }
        for rejection in rejections
    ]
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(_INSERT, params)


def _bounded(text: str | None, limit: int) -> str | None:
    return None if text is None else clean_text(text)[:limit]
