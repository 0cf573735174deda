"""One batch of the collage stage: claimed `uploaded` SKUs → originals from S3 → collage.

Photos are read from the store a few SKUs ahead of the process pool (bounded memory); each
finished collage is uploaded and recorded at once, by a few store threads while the pool
builds the next ones, so a killed run keeps what it finished.
An outage (object store or Staging DB down) stops the batch: no SKU is marked error for it,
and the run's other claims are given back with their attempts (`claims.stop_batch`).

After each collage, its preview (``storage/thumbnails.py``) is stored at
``thumbnails/{key}``. A preview that cannot be made or is refused costs nothing but a
warning; an outage is still an outage.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import psycopg

from unde_dagster.collages.compose import CollageError, CollageResult
from unde_dagster.collages.pool import CollagePool
from unde_dagster.db.claims import COLLAGE_QUEUE, mark_error, stop_batch, superseded
from unde_dagster.outages import outage_of
from unde_dagster.storage import collage_key, original_key, thumbnail_key
from unde_dagster.storage.thumbnails import collage_thumbnail

Upload = Callable[[str, bytes], str]
Fetch = Callable[[str], bytes]

log = logging.getLogger(__name__)


@dataclass
class CollageOutcome:
    claimed: int = 0
    done: int = 0
    errors_by_reason: Counter[str] = field(default_factory=Counter)
    bytes_uploaded: int = 0
    sizes: list[tuple[int, int]] = field(default_factory=list)
    # external_id, reason, url, message of the first failed SKUs
    error_samples: list[dict[str, str]] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(self.errors_by_reason.values())


def reason_code(message: str) -> str:
    """A short, countable code from a readable error message (for errors raised without a
    code of their own, e.g. the pool's ``collage worker process died``)."""
    head = message.split(":", 1)[0].strip().lower()
    return "_".join(head.split()[:4]) or "collage_error"


def original_keys(row: dict[str, Any], public_url: Callable[[str], str]) -> list[str]:
    """The keys behind the SKU's stored URLs: an original adopted from the old servers keeps
    the item-id key it was stored under. A URL that is not one of the brand's originals in
    our bucket falls back to the SKU's own key for that photo."""
    base, prefix = public_url(""), f"originals/{row['brand']}/"
    keys = []
    for n, url in enumerate(row.get("image_urls") or [], 1):
        key = url[len(base):] if isinstance(url, str) and url.startswith(base) else ""
        ok = key.startswith(prefix) and ".." not in key
        keys.append(key if ok else original_key(row["brand"], row["external_id"], n))
    return keys


READ_AHEAD = 4  # SKUs whose originals are being read while the pool works on others
STORE_THREADS = 4  # finished collages uploaded and recorded at once


def collage_batch(
    rows: Sequence[dict[str, Any]],
    *,
    token: str,
    conn: psycopg.Connection,
    fetch: Fetch,
    upload: Upload,
    public_url: Callable[[str], str],
    pool: CollagePool[int],
) -> CollageOutcome:
    """Reading, building and storing overlap: originals are read `READ_AHEAD` SKUs ahead of
    the pool, and finished collages are stored by `STORE_THREADS` threads while the pool
    builds the next ones (done one at a time, the object store's round trips left the pool
    idle most of the time). DB writes are serialised on the batch's one connection."""
    outcome = CollageOutcome(claimed=len(rows))
    by_id = {row["id"]: row for row in rows}
    db_lock = threading.Lock()
    stopped = threading.Event()  # set by the first outage: the other threads store nothing

    def fail(row: dict[str, Any], code: str, message: str) -> None:
        with db_lock:
            outcome.errors_by_reason[code] += 1
            if len(outcome.error_samples) < 10:
                photos = row.get("image_urls") or [""]
                outcome.error_samples.append({"external_id": row["external_id"],
                                              "reason": code, "url": str(photos[0]),
                                              "message": message})
            mark_error(conn, COLLAGE_QUEUE, row["id"], token, message)

    def inputs(readers: ThreadPoolExecutor) -> Iterator[tuple[int, list[bytes]]]:
        ahead: deque[tuple[dict[str, Any], Future[list[bytes]]]] = deque()
        todo = iter(rows)

        def read_ahead() -> None:
            while len(ahead) < READ_AHEAD and (row := next(todo, None)) is not None:
                keys = original_keys(row, public_url)
                if not keys:
                    fail(row, "no_originals", "no_originals: the SKU has no stored photos")
                    continue
                ahead.append((row, readers.submit(lambda ks=keys: [fetch(k) for k in ks])))

        read_ahead()
        while ahead:
            row, photos = ahead.popleft()
            read_ahead()
            try:
                yield row["id"], photos.result()
            except Exception as exc:
                if outage_of(exc) is not None:
                    raise
                detail = f"{type(exc).__name__}: {exc}"
                fail(row, "original_unreadable", f"original_unreadable: {detail}")

    def store(row: dict[str, Any], result: CollageResult) -> None:
        if stopped.is_set():
            return
        try:
            _store(row, result, token, conn, db_lock, stopped, upload, outcome)
        except Exception as exc:  # this SKU's object refused; an outage stops all
            if outage_of(exc) is not None:
                stopped.set()
                raise
            fail(row, "store_error", f"store_error: {type(exc).__name__}: {exc}")

    try:
        with (
            ThreadPoolExecutor(READ_AHEAD, thread_name_prefix="s3-read") as readers,
            ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="s3-store") as writers,
        ):
            storing: set[Future[None]] = set()
            try:
                for row_id, result in pool.map(inputs(readers)):
                    if isinstance(result, CollageError):
                        fail(by_id[row_id], result.code or reason_code(result.reason),
                             result.reason)
                        continue
                    if len(storing) >= 2 * STORE_THREADS:
                        finished, storing = wait(storing, return_when=FIRST_COMPLETED)
                        _raise_first(finished)
                    storing.add(writers.submit(store, by_id[row_id], result))
                _raise_first(wait(storing).done)
            except BaseException:
                stopped.set()
                raise
    except Exception as exc:
        stop_batch(exc, conn, token, COLLAGE_QUEUE, outcome)
    return outcome


def _raise_first(finished: set[Future[None]]) -> None:
    for fut in finished:
        fut.result()


def _store(
    row: dict[str, Any],
    result: CollageResult,
    token: str,
    conn: psycopg.Connection,
    db_lock: threading.Lock,
    stopped: threading.Event,
    upload: Upload,
    outcome: CollageOutcome,
) -> None:
    key = collage_key(row["brand"], row["external_id"])
    url = upload(key, result.jpeg)
    _upload_thumbnail(upload, key, result.jpeg, result.preview_jpeg)
    with db_lock, conn.transaction():
        if stopped.is_set():
            return
        cur = conn.execute(
            "UPDATE raw_products SET collage_url = %s, image_status = 'collage_ready', "
            "error_message = NULL, image_error_stage = NULL, claim_token = NULL, "
            "claimed_until = NULL, updated_at = NOW() WHERE id = %s AND claim_token = %s "
            "AND image_status IN ('uploaded', 'error')",
            (url, row["id"], token),
        )
        if cur.rowcount == 0:
            superseded(conn, row["id"], token)
        else:
            outcome.done += 1
            outcome.bytes_uploaded += len(result.jpeg)
            outcome.sizes.append((result.width, result.height))


def _upload_thumbnail(upload: Upload, key: str, jpeg: bytes, preview: bytes = b"") -> None:
    """Store the collage's preview: the worker's, made from its canvas, else the collage
    scaled down here. Any failure but an outage (which propagates like the collage's own
    upload) is logged and ignored: the collage is what counts."""
    try:
        small = preview or collage_thumbnail(jpeg)
        upload(thumbnail_key(key), small)
    except Exception as exc:
        if outage_of(exc) is not None:
            raise
        log.warning("thumbnail of %s not stored: %s: %s", key, type(exc).__name__, exc)
