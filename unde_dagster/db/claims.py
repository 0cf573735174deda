"""Claiming a brand's SKUs for one image stage, safely under concurrency and crashes.

A claim is `FOR UPDATE SKIP LOCKED` + a lease stamped on the row (`claim_token` = the
Dagster run id, `claimed_until`), kept short and renewed while the batch works
(`leases.LeaseHeartbeat`). Two runs never get the same SKU; a killed run's SKUs return when
its lease ends, or at once when its run is known to be over. A claim counts an attempt
when it is taken; a claim that dies with its run gives the attempt back, since the SKU
itself never failed. Writes of results check the token, so a run that lost its lease
cannot overwrite a newer run's work.
Works through PgBouncer in transaction mode: every step is one short transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

import psycopg
from psycopg.rows import dict_row

from unde_dagster.catalog.clean import clean_text


@dataclass(frozen=True)
class StageQueue:
    """Where one stage takes work from: rows in `ready_status`, or its own errors to retry."""

    stage: str  # 'download' | 'collage' (stored in image_error_stage)
    ready_status: str  # 'pending' | 'uploaded'
    attempts_column: str  # 'image_attempts' | 'collage_attempts'


DOWNLOAD_QUEUE = StageQueue("download", "pending", "image_attempts")
COLLAGE_QUEUE = StageQueue("collage", "uploaded", "collage_attempts")
QUEUES = (DOWNLOAD_QUEUE, COLLAGE_QUEUE)


def _in_queue(queue: StageQueue) -> str:
    """SQL: the row is in one of the states `queue` claims from (new work or its errors).
    Built from our constants only, never from input."""
    return (
        f"(image_status = '{queue.ready_status}' OR "
        f"(image_status = 'error' AND image_error_stage = '{queue.stage}'))"
    )


# SQL SET list that ends a dead claim: the attempt it counted is given back to the queue
# the row is in, and an error row's retry cooldown counts again from its last real failure
# (`updated_at` of mark_error), not from the claim that never got to try.
_GIVE_BACK = ", ".join(
    [
        "claim_token = NULL",
        "claimed_until = NULL",
        *(
            f"{q.attempts_column} = CASE WHEN {_in_queue(q)} "
            f"THEN GREATEST({q.attempts_column} - 1, 0) ELSE {q.attempts_column} END"
            for q in QUEUES
        ),
        "image_attempted_at = CASE WHEN image_status = 'error' "
        "THEN LEAST(image_attempted_at, updated_at) ELSE image_attempted_at END",
    ]
)

_COLUMNS = (
    "r.id, r.brand, r.external_id, r.original_image_urls, r.image_urls, r.original_sources"
)


@dataclass(frozen=True)
class ClaimRules:
    batch_size: int
    lease_s: int
    max_attempts: int
    retry_after_s: int
    renew_every_s: float | None = None  # heartbeat period; None = a quarter of the lease

    @property
    def renew_s(self) -> float:
        return self.renew_every_s or self.lease_s / 4


def claim_batch(
    conn: psycopg.Connection,
    queue: StageQueue,
    *,
    brand: str,
    token: str,
    rules: ClaimRules,
    retry: bool,
) -> list[dict[str, Any]]:
    """Take up to `batch_size` SKUs: new work, or (retry=True) errors due for another try.

    The brand's expired claims on this queue are released first in the same transaction,
    giving their attempts back, so a SKU a crash left behind is judged by its real tries.
    """
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
        release_expired(conn, queue, brand)
        cur.execute(sql, params)  # type: ignore[arg-type]
        return sorted(cur.fetchall(), key=lambda r: r["id"])


def release_expired(conn: psycopg.Connection, queue: StageQueue, brand: str) -> Counter[str]:
    """End the brand's claims on `queue` whose lease ran out; SKUs freed per token.

    SKIP LOCKED: a row another run is releasing or claiming right now is its business, so
    an attempt is never given back twice.
    """
    where = (
        f"brand = %s AND claim_token IS NOT NULL AND claimed_until < NOW() "
        f"AND {_in_queue(queue)}"
    )
    return _give_back(conn, where, "FOR UPDATE SKIP LOCKED", (brand,))


def release_claims(
    conn: psycopg.Connection, tokens: Iterable[str], queue: StageQueue | None = None
) -> Counter[str]:
    """Hand back the SKUs of runs that are over (killed, failed) so a re-run takes them now,
    with the attempts their claims counted (only `queue`'s rows, if given); SKUs freed per
    token."""
    tokens = list(tokens)
    if not tokens:
        return Counter()
    only = f" AND {_in_queue(queue)}" if queue else ""
    return _give_back(conn, f"claim_token = ANY(%s){only}", "FOR UPDATE", (tokens,))


def _give_back(
    conn: psycopg.Connection, where: str, lock: str, params: tuple[Any, ...]
) -> Counter[str]:
    """Free the claimed rows `where` selects, their claims' attempts given back."""
    sql = f"""
        WITH dead AS (
            SELECT id, claim_token FROM raw_products WHERE {where} {lock}
        )
        UPDATE raw_products r SET {_GIVE_BACK}
          FROM dead WHERE r.id = dead.id
     RETURNING dead.claim_token
    """
    with conn.transaction():
        return Counter(str(t) for (t,) in conn.execute(sql, params).fetchall())  # type: ignore[arg-type]


def mark_error(
    conn: psycopg.Connection, queue: StageQueue, row_id: int, token: str, message: str
) -> bool:
    """Compare-and-set: only while the row is still ours and still in this queue's states."""
    with conn.transaction():
        cur = conn.execute(
            "UPDATE raw_products SET image_status = 'error', image_error_stage = %s, "
            "error_message = %s, claim_token = NULL, claimed_until = NULL, updated_at = NOW() "
            f"WHERE id = %s AND claim_token = %s AND {_in_queue(queue)}",
            (queue.stage, clean_text(message)[:2000], row_id, token),
        )
        if cur.rowcount == 0:
            superseded(conn, row_id, token)
        return cur.rowcount == 1


def superseded(conn: psycopg.Connection, row_id: int, token: str) -> None:
    """End our claim on a row another writer moved on meanwhile (an old worker still running,
    an operator): its state stands, and the attempt our claim counted is given back."""
    _give_back(conn, "id = %s AND claim_token = %s", "FOR UPDATE", (row_id, token))


def status_counts(conn: psycopg.Connection, brand: str) -> dict[str, int]:
    rows = conn.execute(
        "SELECT image_status, count(*) FROM raw_products WHERE brand = %s GROUP BY 1", (brand,)
    ).fetchall()
    return {str(status): int(n) for status, n in rows}


@dataclass(frozen=True)
class HeldClaim:
    """SKUs of this queue a run found held by another run's claim, and what it did."""

    run_id: str
    skus: int
    fate: str  # 'released: run over' | 'released: lease expired' | 'left alone: lease live'
    lease_until: datetime | None

    @property
    def released(self) -> bool:
        return self.fate.startswith("released")


def release_stale_claims(
    conn: psycopg.Connection,
    queue: StageQueue,
    brand: str,
    run_is_over: Callable[[str], bool],
    own_token: str,
) -> list[HeldClaim]:
    """Settle the claims other runs hold on the brand's rows of `queue` before claiming.

    Claims of runs that are over, or whose lease expired, are released with their attempts
    given back (a run resuming after a kill starts at once); live ones are left alone. Our
    own token at this point is a leftover of an earlier try of this step: over too.
    """
    held = conn.execute(
        "SELECT claim_token, count(*), max(claimed_until), "
        "bool_and(claimed_until < NOW()) FROM raw_products "
        f"WHERE brand = %s AND claim_token IS NOT NULL AND {_in_queue(queue)} "
        "GROUP BY claim_token ORDER BY claim_token",
        (brand,),
    ).fetchall()
    over = [str(t) for t, *_ in held if t == own_token or run_is_over(str(t))]
    by_over = release_claims(conn, over, queue)
    by_expiry = release_expired(conn, queue, brand)
    report = [HeldClaim(t, n, "released: run over", None) for t, n in sorted(by_over.items())]
    report += [
        HeldClaim(t, n, "released: lease expired", None) for t, n in sorted(by_expiry.items())
    ]
    for token, count, until, expired in held:
        if str(token) not in over and not expired:
            live = int(count) - by_expiry.get(str(token), 0)
            if live > 0:
                report.append(HeldClaim(str(token), live, "left alone: lease live", until))
    return report


def stop_batch(
    exc: Exception, conn: psycopg.Connection, token: str, queue: StageQueue, outcome: Any
) -> NoReturn:
    """End a batch that `exc` stopped: the run's claims not recorded yet go back with their
    attempts (the SKUs were not at fault), and an outage is raised as `ServiceOutage`
    carrying the batch's `outcome` so far; any other error is raised as it is.

    If the database itself is down the release fails too; the short lease ends the claims.
    """
    from unde_dagster.outages import outage_of  # outages imports the clients, claims need not

    outage = outage_of(exc)
    stopped = outage or exc
    try:
        released = release_claims(conn, [token], queue).get(token, 0)
    except Exception as failed:
        stopped.add_note(
            f"claims not released ({type(failed).__name__}: {failed}); their lease ends them"
        )
    else:
        stopped.add_note(f"{released} claimed SKUs not done were released, attempts given back")
    if outage is None:
        raise exc
    outage.outcome = outcome
    if outage is exc:
        raise outage
    raise outage from exc
