"""Staging-DB questions the sensors and checks ask (no Dagster import: testable alone).

Every query filters on `image_status`/`brand` (indexed) and returns one row per brand, so a
sensor tick costs a few milliseconds however large the catalog grows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import psycopg

from unde_dagster.db.claims import StageQueue

# Rows waiting for each stage's *new-work* pass (errors are the hourly retry schedules' job).
QUEUE_PREDICATES: dict[str, str] = {
    "originals": "image_status = 'pending'",
    "collages": "image_status = 'uploaded'",
    "ximilar": (
        "index_scope = 'pilot' AND image_status = 'collage_ready' "
        "AND ximilar_status IN ('pending', 'partial')"
    ),
}


@dataclass(frozen=True)
class BrandQueue:
    """A brand's waiting rows for one stage; `fingerprint` changes whenever the batch does."""

    brand: str
    count: int
    fingerprint: str


def stage_queues(conn: psycopg.Connection, stage: str) -> dict[str, BrandQueue]:
    """Waiting work per brand. The fingerprint covers new rows (max id), requeued rows
    (updated_at) and claims (image_attempted_at), so any progress yields a new batch key."""
    sql = (
        "SELECT brand, count(*), max(id), max(updated_at), max(image_attempted_at) "
        f"FROM raw_products WHERE {QUEUE_PREDICATES[stage]} GROUP BY brand"
    )
    queues: dict[str, BrandQueue] = {}
    for brand, count, max_id, updated, attempted in conn.execute(sql).fetchall():
        raw = f"{count}|{max_id}|{updated}|{attempted}"
        digest = hashlib.sha256(raw.encode()).hexdigest()[:12]
        queues[str(brand)] = BrandQueue(str(brand), int(count), digest)
    return queues


def brands_with_retries(
    conn: psycopg.Connection, queue: StageQueue, max_attempts: int
) -> list[str]:
    """Brands holding rows this stage failed that still have attempts left: the only brands
    an hourly retry pass has anything to do for (the pass itself applies the cooldown)."""
    rows = conn.execute(
        "SELECT DISTINCT brand FROM raw_products WHERE image_status = 'error' "
        f"AND image_error_stage = %s AND {queue.attempts_column} < %s ORDER BY brand",
        (queue.stage, max_attempts),
    ).fetchall()
    return [str(brand) for (brand,) in rows]


@dataclass(frozen=True)
class LastBatch:
    scraper_name: str
    run_id: str | None
    fetched: int
    errors: int

    @property
    def error_rate(self) -> float:
        return self.errors / self.fetched if self.fetched else 0.0


def last_batch(
    conn: psycopg.Connection, scraper_names: list[str], brand: str | None
) -> LastBatch | None:
    """The latest `scraper_logs` row of these scrapers (for `brand` via metadata, if given)."""
    sql = (
        "SELECT scraper_name, run_id, records_fetched, records_errors FROM scraper_logs "
        "WHERE scraper_name = ANY(%s) AND status <> 'running'"
    )
    params: list[object] = [scraper_names]
    if brand is not None:
        sql += " AND metadata->>'brand' = %s"
        params.append(brand)
    row = conn.execute(sql + " ORDER BY started_at DESC, id DESC LIMIT 1", params).fetchone()
    if row is None:
        return None
    return LastBatch(str(row[0]), row[1], int(row[2] or 0), int(row[3] or 0))


def stuck_skus(
    conn: psycopg.Connection, status: str, older_than_s: int, brand: str | None
) -> tuple[int, list[str]]:
    """SKUs in `status` not touched for `older_than_s` seconds: count and a few ids."""
    sql = (
        "SELECT count(*) OVER (), external_id FROM raw_products "
        "WHERE image_status = %s AND updated_at < NOW() - make_interval(secs => %s)"
    )
    params: list[object] = [status, older_than_s]
    if brand is not None:
        sql += " AND brand = %s"
        params.append(brand)
    rows = conn.execute(sql + " ORDER BY updated_at LIMIT 10", params).fetchall()
    return (int(rows[0][0]) if rows else 0), [str(r[1]) for r in rows]


def recent_collages(
    conn: psycopg.Connection, brand: str | None, limit: int
) -> list[tuple[str, str, str, list[str]]]:
    """(brand, external_id, collage_url, stored original URLs) of the latest collage_ready
    SKUs."""
    sql = (
        "SELECT brand, external_id, collage_url, image_urls FROM raw_products "
        "WHERE image_status = 'collage_ready' AND collage_url IS NOT NULL"
    )
    params: list[object] = []
    if brand is not None:
        sql += " AND brand = %s"
        params.append(brand)
    sql += " ORDER BY updated_at DESC LIMIT %s"
    params.append(limit)
    return [(str(a), str(b), str(c), [u for u in d if isinstance(u, str)]
             if isinstance(d, list) else [])
            for a, b, c, d in conn.execute(sql, params).fetchall()]


def recent_originals(
    conn: psycopg.Connection, brand: str, limit: int
) -> list[tuple[str, str]]:
    """(external_id, first stored original's URL) of the brand's latest downloaded SKUs."""
    rows = conn.execute(
        "SELECT external_id, image_urls->>0 FROM raw_products WHERE brand = %s "
        "AND image_status IN ('uploaded', 'collage_ready') AND jsonb_typeof(image_urls) = "
        "'array' AND jsonb_array_length(image_urls) > 0 ORDER BY updated_at DESC LIMIT %s",
        (brand, limit),
    ).fetchall()
    return [(str(ext), str(url)) for ext, url in rows]


def pilot_coverage(conn: psycopg.Connection, brand: str | None) -> tuple[int, int]:
    """(pilot SKUs with images ready, of which synced to Ximilar)."""
    sql = (
        "SELECT count(*), count(*) FILTER (WHERE ximilar_status = 'synced') FROM raw_products "
        "WHERE index_scope = 'pilot' AND image_status = 'collage_ready'"
    )
    params: list[object] = []
    if brand is not None:
        sql += " AND brand = %s"
        params.append(brand)
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])
