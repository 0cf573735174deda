"""One batch of the downloader: claimed rows → photos through the proxy → S3 → DB.

Blocking work (boto3, psycopg) runs in threads off the download event loop; DB writes are
serialised on the batch's one connection. Every SKU ends `uploaded` or `error` with a reason;
nothing a single SKU does stops the batch. An outage (object store or Staging DB down) does:
it is no SKU's fault, so no SKU is marked error for it, nothing more is stored, the SKUs
recorded stay recorded and the run's other claims are given back with their attempts.

Beside each original uploaded, its preview (``storage/thumbnails.py``) is stored at
``thumbnails/{key}``, made by the downloader from the decode that validated the photo
(else in the uploading thread from the same bytes). A preview that
cannot be made or is refused costs nothing but a warning; an outage is still an outage.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from unde_dagster.db.claims import DOWNLOAD_QUEUE, mark_error, stop_batch, superseded
from unde_dagster.originals.download import DownloadSettings, SkuPhotos, SkuResult, download_skus
from unde_dagster.originals.fetch import FetchSettings, PhotoFetcher
from unde_dagster.outages import outage_of
from unde_dagster.storage import original_key, thumbnail_key
from unde_dagster.storage.thumbnails import original_thumbnail

Upload = Callable[[str, bytes], str]  # (key, body) -> public URL

log = logging.getLogger(__name__)


@dataclass
class OriginalsOutcome:
    claimed: int = 0
    done: int = 0
    errors_by_reason: Counter[str] = field(default_factory=Counter)
    photos_uploaded: int = 0
    photos_skipped: int = 0
    bytes_uploaded: int = 0
    # external_id, reason, url, message of the first failed SKUs
    error_samples: list[dict[str, str]] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(self.errors_by_reason.values())


def already_uploaded(row: dict[str, Any]) -> dict[int, str]:
    """N → source URL of originals stored before, if the SKU's stored list still has N."""
    sources = row.get("original_sources") or {}
    stored = len(row.get("image_urls") or [])
    return {int(n): url for n, url in sources.items() if str(n).isdigit() and int(n) <= stored}


def to_sku(row: dict[str, Any]) -> SkuPhotos:
    return SkuPhotos(
        sku_id=row["external_id"],
        original_image_urls=list(row.get("original_image_urls") or []),
        already_uploaded=already_uploaded(row),
        context=row,
    )


def download_batch(
    rows: list[dict[str, Any]],
    *,
    token: str,
    conn: psycopg.Connection,
    upload: Upload,
    public_url: Callable[[str], str],
    fetch_settings: FetchSettings,
    download_settings: DownloadSettings,
) -> OriginalsOutcome:
    """Raises `ServiceOutage` (its `outcome` = this batch's so far) when a service is down."""
    outcome = OriginalsOutcome(claimed=len(rows))
    db_lock = threading.Lock()
    stopped = threading.Event()  # set by the first outage: the other threads store nothing

    def store(sku: SkuPhotos, result: SkuResult) -> None:
        if stopped.is_set():
            return
        try:
            _store(sku, result)
        except Exception as exc:
            outage = outage_of(exc)
            if outage is None:
                raise
            stopped.set()
            raise outage from exc

    def _store(sku: SkuPhotos, result: SkuResult) -> None:
        row = sku.context
        if result.error is not None:
            reason, message = result.error.reason, str(result.error)
        else:
            try:
                reason, message = "", ""
                _upload_and_record(
                    row, result, token, conn, db_lock, upload, public_url, outcome, stopped
                )
                return
            except Exception as exc:  # this SKU's object refused: it fails, the batch goes on
                if outage_of(exc) is not None:
                    raise
                reason, message = "store_error", f"store_error: {type(exc).__name__}: {exc}"
        with db_lock:
            mark_error(conn, DOWNLOAD_QUEUE, row["id"], token, message)
        outcome.errors_by_reason[reason] += 1
        if len(outcome.error_samples) < 10:
            url = getattr(result.error, "url", "") or (row.get("original_image_urls") or [""])[0]
            outcome.error_samples.append({"external_id": row["external_id"], "reason": reason,
                                          "url": str(url), "message": message})

    async def on_done(sku: SkuPhotos, result: SkuResult) -> None:
        await asyncio.to_thread(store, sku, result)

    async def run() -> None:
        async with PhotoFetcher(fetch_settings) as fetcher:
            await download_skus([to_sku(r) for r in rows], fetcher, on_done, download_settings)

    try:
        asyncio.run(run())  # returns once every store thread has finished
    except Exception as exc:
        stopped.set()
        stop_batch(exc, conn, token, DOWNLOAD_QUEUE, outcome)
    return outcome


def _upload_and_record(
    row: dict[str, Any],
    result: SkuResult,
    token: str,
    conn: psycopg.Connection,
    db_lock: threading.Lock,
    upload: Upload,
    public_url: Callable[[str], str],
    outcome: OriginalsOutcome,
    stopped: threading.Event,
) -> None:
    brand, ext = row["brand"], row["external_id"]
    sources = {str(n): url for n, url in already_uploaded(row).items()}
    for photo in result.photos:
        if stopped.is_set():
            return
        key = original_key(brand, ext, photo.n)
        upload(key, photo.data)
        _upload_thumbnail(upload, key, photo.data, photo.preview)
        sources[str(photo.n)] = photo.url
        outcome.photos_uploaded += 1
        outcome.bytes_uploaded += len(photo.data)
    count = len(result.photos) + len(result.skipped)
    stored = list(row.get("image_urls") or [])  # a skipped photo keeps the URL it has
    urls = [
        stored[n - 1] if n in result.skipped else public_url(original_key(brand, ext, n))
        for n in range(1, count + 1)
    ]
    sources = {n: u for n, u in sources.items() if int(n) <= count}
    with db_lock, conn.transaction():
        if stopped.is_set():
            return
        cur = conn.execute(
            "UPDATE raw_products SET image_urls = %s, original_sources = %s, "
            "image_status = 'uploaded', error_message = NULL, image_error_stage = NULL, "
            "claim_token = NULL, claimed_until = NULL, updated_at = NOW() "
            "WHERE id = %s AND claim_token = %s AND image_status IN ('pending', 'error')",
            (Jsonb(urls), Jsonb(sources), row["id"], token),
        )
        if cur.rowcount == 0:
            superseded(conn, row["id"], token)
    if cur.rowcount == 1:
        outcome.done += 1
        outcome.photos_skipped += len(result.skipped)


def _upload_thumbnail(
    upload: Upload, key: str, body: bytes, preview: bytes | None = None
) -> None:
    """Store the preview of the original ``body`` stored at ``key``: the downloader's, made
    from its validating decode, else one made here. Any failure but an outage (which
    propagates like the original's own) is logged and ignored: the SKU's originals are what
    counts."""
    try:
        upload(thumbnail_key(key), preview or original_thumbnail(body))
    except Exception as exc:
        if outage_of(exc) is not None:
            raise
        log.warning("thumbnail of %s not stored: %s: %s", key, type(exc).__name__, exc)
