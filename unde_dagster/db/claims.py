"""Claiming a brand's SKUs for one image stage, safely under concurrency and crashes.

A claim is `FOR UPDATE SKIP LOCKED` + a lease stamped on the row (`claim_token` = the
Dagster run id, `claimed_until`). Two runs never get the same SKU; a killed run's SKUs
return when the lease ends, or at once when its run is known to be over. Writes of results
check the token, so a run that lost its lease cannot overwrite a newer run's work.
Works through PgBouncer in transaction mode: every step is one short transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row


@dataclass(frozen=True)
class StageQueue:
    """Where one stage takes work from: rows in `ready_status`, or its own errors to retry."""

    stage: str  # 'download' | 'collage' (stored in image_error_stage)
    ready_status: str  # 'pending' | 'uploaded'
    attempts_column: str  # 'image_attempts' | 'collage_attempts'


DOWNLOAD_QUEUE = StageQueue("download", "pending", "image_attempts")
COLLAGE_QUEUE = StageQueue("collage", "uploaded", "collage_attempts")

_COLUMNS = (
    "r.id, r.brand, r.external_id, r.original_image_urls, r.image_urls, r.original_sources"
)


@dataclass(frozen=True)
class ClaimRules:
    batch_size: int
    lease_s: int
    max_attempts: int
    retry_after_s: int


def claim_batch(
    conn: psycopg.Connection,
    queue: StageQueue,
    *,
    brand: str,
    token: str,
    rules: ClaimRules,
    retry: bool,
) -> list[dict[str, Any]]:
    """Take up to `batch_size` SKUs: new work, or (retry=True) errors due for another try."""
    attempts = queue.attempts_column
    if retry:
        predicate = (
            f"image_status = 'error' AND image_error_stage = %(stage)s "
            f"AND {attempts} < %(max_attempts)s "
            "AND image_attempted_at < NOW() - make_interval(secs => %(retry_after)s)"
        )
    else:
        predicate = "image_status = %(ready)s"
    sql = f"""
        WITH picked AS (
            SELECT id FROM raw_products
             WHERE brand = %(brand)s AND {predicate}
               AND (claimed_until IS NULL OR claimed_until < NOW())
             ORDER BY id
             LIMIT %(limit)s
             FOR UPDATE SKIP LOCKED
        )
        UPDATE raw_products r
           SET claim_token = %(token)s,
               claimed_until = NOW() + make_interval(secs => %(lease)s),
               {attempts} = r.{attempts} + 1,
               image_attempted_at = NOW()
          FROM picked
         WHERE r.id = picked.id
     RETURNING {_COLUMNS}, r.{attempts} AS attempts
    """
    params = {
        "brand": brand,
        "stage": queue.stage,
        "ready": queue.ready_status,
        "max_attempts": rules.max_attempts,
        "retry_after": rules.retry_after_s,
        "limit": rules.batch_size,
        "token": token,
        "lease": rules.lease_s,
    }
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql, params)  # type: ignore[arg-type]
        return sorted(cur.fetchall(), key=lambda r: r["id"])


def live_claim_tokens(conn: psycopg.Connection, brand: str) -> list[str]:
    rows = conn.execute(
        "SELECT DISTINCT claim_token FROM raw_products "
        "WHERE brand = %s AND claim_token IS NOT NULL AND claimed_until > NOW()",
        (brand,),
    ).fetchall()
    return [r[0] for r in rows]


def release_claims(conn: psycopg.Connection, tokens: Iterable[str]) -> int:
    """Hand back the SKUs of runs that are over (killed, failed) so a re-run takes them now."""
    tokens = list(tokens)
    if not tokens:
        return 0
    with conn.transaction():
        cur = conn.execute(
            "UPDATE raw_products SET claim_token = NULL, claimed_until = NULL "
            "WHERE claim_token = ANY(%s)",
            (tokens,),
        )
        return cur.rowcount


def mark_error(
    conn: psycopg.Connection, queue: StageQueue, row_id: int, token: str, message: str
) -> bool:
    with conn.transaction():
        cur = conn.execute(
            "UPDATE raw_products SET image_status = 'error', image_error_stage = %s, "
            "error_message = %s, claim_token = NULL, claimed_until = NULL, updated_at = NOW() "
            "WHERE id = %s AND claim_token = %s",
            (queue.stage, message[:2000], row_id, token),
        )
        return cur.rowcount == 1


def status_counts(conn: psycopg.Connection, brand: str) -> dict[str, int]:
    rows = conn.execute(
        "SELECT image_status, count(*) FROM raw_products WHERE brand = %s GROUP BY 1", (brand,)
    ).fetchall()
    return {str(status): int(n) for status, n in rows}


def release_stale_claims(
    conn: psycopg.Connection, brand: str, run_is_over: Callable[[str], bool], own_token: str
) -> int:
    """Release claims of runs that are over, so a re-run after a kill resumes at once."""
    stale = [t for t in live_claim_tokens(conn, brand) if t != own_token and run_is_over(t)]
    return release_claims(conn, stale)
