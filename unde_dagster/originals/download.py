"""Download, validate and hand over the photos of many SKUs.

``download_skus`` is the domain core of the ``product_originals`` asset (which adds
the DB claim, the S3 upload and the metadata on top, inside ``on_sku_done``).

Concurrency: the fetcher's slots (10) are the one global bound on requests. SKUs are
started ``sku_window`` at a time (default 2x the slots, i.e. up to ~100 photos queued)
so the slots never run dry between SKUs, while the batch stays a lazy stream (a
generator of DB rows is fine). All photos of a SKU are queued at once; the first
photo error cancels the SKU's other photos (the SKU fails as a whole anyway and is
retried later), and never affects other SKUs.

SKU timeout (120 s, "all photos of a product"): the clock starts when the SKU's
first photo gets a slot, not when the SKU is queued, so a long queue or other SKUs'
429 backoffs don't time out SKUs that have not started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from unde_dagster.originals.fetch import Fetched
from unde_dagster.originals.validate import (
    PhotoError,
    PhotoInfo,
    ValidationSettings,
    validate_with_preview,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DownloadSettings:
    """Per-SKU rules (production defaults = seed)."""

    max_photos_per_sku: int = 5
    width: int = 1920
    """Replaces the ``{width}`` placeholder of Apify photo URLs."""
    sku_timeout_s: float = 120.0
    sku_window: int = 20
    """SKUs in progress at once; keep >= 2 x max_in_flight so slots never starve."""
    validation: ValidationSettings = field(default_factory=ValidationSettings)


@dataclass(frozen=True)
class SkuPhotos:
    """One SKU to download. ``already_uploaded`` maps N (from 1) to the source URL a
    photo was uploaded from; N is skipped if that URL is unchanged (raw or with
    ``{width}`` resolved). ``context`` is the caller's payload (row id, brand ...)."""

    sku_id: str
    original_image_urls: Sequence[str]
    already_uploaded: Mapping[int, str] = field(default_factory=dict)
    context: Any = None


@dataclass(frozen=True)
class DownloadedPhoto:
    n: int
    url: str
    data: bytes = field(repr=False)
    info: PhotoInfo
    attempts: int
    preview: bytes | None = field(default=None, repr=False)
    """The photo's preview, made from the validating decode (None if it could not be)."""


@dataclass
class SkuResult:
    """All fetched photos (N order) or the first error; ``skipped`` = N not refetched."""

    photos: list[DownloadedPhoto]
    skipped: list[int]
    error: PhotoError | None
    elapsed_s: float

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class BatchSummary:
    """Counts for the asset's metadata / scraper_logs row."""

    skus_ok: int = 0
    skus_error: int = 0
    photos_downloaded: int = 0
    photos_skipped: int = 0
    errors_by_reason: Counter[str] = field(default_factory=Counter)
    callback_errors: int = 0
    """Callbacks that raised; the first one stops the batch."""
    elapsed_s: float = 0.0


class Fetcher(Protocol):
    """What ``download_skus`` needs from ``PhotoFetcher`` (an async context already entered)."""

    clock: Callable[[], float]

    async def fetch(self, url: str, on_start: Callable[[], None] | None = None) -> Fetched: ...


OnSkuDone = Callable[[SkuPhotos, SkuResult], Awaitable[None]]


def photo_urls(sku: SkuPhotos, settings: DownloadSettings) -> list[tuple[int, str, str]]:
    """``(N, raw_url, resolved_url)`` for the first ``max_photos_per_sku`` URLs."""
    out = []
    for i, raw in enumerate(list(sku.original_image_urls)[: settings.max_photos_per_sku]):
        if not isinstance(raw, str) or not raw.startswith(("http://", "https://")):
            raise PhotoError("bad_url", f"not an http(s) URL: {str(raw)[:80]!r}", n=i + 1)
        out.append((i + 1, raw, raw.replace("{width}", str(settings.width))))
    return out


async def download_sku(
    sku: SkuPhotos, fetcher: Fetcher, settings: DownloadSettings | None = None
) -> SkuResult:
    """Fetch and validate one SKU's photos; never raises for photo problems."""
    s = settings or DownloadSettings()
    t0 = fetcher.clock()
    try:
        urls = photo_urls(sku, s)
    except PhotoError as err:
        return SkuResult([], [], err, 0.0)
    if not urls:
        return SkuResult([], [], PhotoError("no_photos", "SKU has no photo URLs"), 0.0)
    skipped = [n for n, raw, url in urls if sku.already_uploaded.get(n) in (raw, url)]
    todo = [(n, url) for n, _raw, url in urls if n not in skipped]
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[DownloadedPhoto]] = []
    error: PhotoError | None = None
    try:
        async with asyncio.timeout(None) as deadline:

            def start_clock() -> None:
                if deadline.when() is None and not deadline.expired():
                    with contextlib.suppress(RuntimeError):  # SKU already finished
                        deadline.reschedule(loop.time() + s.sku_timeout_s)

            tasks = [
                asyncio.create_task(_one_photo(n, url, fetcher, s, start_clock))
                for n, url in todo
            ]
            if tasks:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except TimeoutError:
        done = sum(1 for t in tasks if t.done() and not t.cancelled() and not t.exception())
        error = PhotoError(
            "sku_timeout",
            f"SKU not finished within {s.sku_timeout_s:g} s ({done}/{len(tasks)} photos done)",
        )
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    elapsed = fetcher.clock() - t0
    if error is None:
        failed = [t for t in tasks if not t.cancelled() and t.exception() is not None]
        if failed:
            exc = failed[0].exception()
            if not isinstance(exc, PhotoError):  # a bug, not a photo problem: keep it visible
                log.error("SKU %s: unexpected error", sku.sku_id, exc_info=exc)
                exc = PhotoError("internal", f"{type(exc).__name__}: {exc}")
            error = exc
    if error is not None:
        return SkuResult([], skipped, error, elapsed)
    photos = sorted((t.result() for t in tasks), key=lambda p: p.n)
    return SkuResult(photos, skipped, None, elapsed)


async def _one_photo(
    n: int, url: str, fetcher: Fetcher, s: DownloadSettings, on_start: Callable[[], None]
) -> DownloadedPhoto:
    try:
        got = await fetcher.fetch(url, on_start=on_start)
        # The decode is CPU work (~10 ms at full size): keep it off the event loop.
        info, preview = await asyncio.to_thread(validate_with_preview, got.data, s.validation)
    except PhotoError as err:
        raise err.for_photo(n, url) from None
    return DownloadedPhoto(n=n, url=url, data=got.data, info=info, attempts=got.attempts,
                           preview=preview)


async def download_skus(
    skus: Iterable[SkuPhotos],
    fetcher: Fetcher,
    on_sku_done: OnSkuDone,
    settings: DownloadSettings | None = None,
) -> BatchSummary:
    """Download every SKU, calling ``on_sku_done(sku, result)`` as each finishes.

    A failing SKU never stops the batch; a failing callback does (an outage such as
    ``ServiceOutage`` would fail every SKU the same way, and a bug must not be hidden): no
    SKU is started after it, the SKUs in progress are cancelled, and its exception is
    raised. The callback runs on the event loop: do blocking work (boto3, psycopg) in
    ``asyncio.to_thread``.
    """
    s = settings or DownloadSettings()
    summary = BatchSummary()
    t0 = fetcher.clock()
    window = asyncio.Semaphore(max(1, s.sku_window))
    running: set[asyncio.Task[None]] = set()
    failed: list[Exception] = []

    async def run_one(sku: SkuPhotos) -> None:
        try:
            result = await download_sku(sku, fetcher, s)
            if result.ok:
                summary.skus_ok += 1
                summary.photos_downloaded += len(result.photos)
            else:
                assert result.error is not None
                summary.skus_error += 1
                summary.errors_by_reason[result.error.reason] += 1
                log.info("SKU %s failed: %s", sku.sku_id, result.error)
            summary.photos_skipped += len(result.skipped)
            await on_sku_done(sku, result)
        except Exception as exc:  # the callback's: the batch stops
            summary.callback_errors += 1
            failed.append(exc)
        finally:
            window.release()

    try:
        for sku in skus:
            await window.acquire()
            if failed:
                break
            task = asyncio.create_task(run_one(sku))
            running.add(task)
            task.add_done_callback(running.discard)
        while running and not failed:
            await asyncio.wait(list(running), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*list(running), return_exceptions=True)
    summary.elapsed_s = fetcher.clock() - t0
    if failed:
        raise failed[0]
    return summary
