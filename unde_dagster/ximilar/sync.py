"""One brand's Ximilar pass: remove stale SKUs, then send the missing photos of pilot SKUs.

Why this shape: SKUs are claimed in batches (one transaction each, rows locked), their
missing records go out 10 per request, and each SKU's state is written from the per-record
answer before the transaction commits. A record counts as indexed only when Ximilar says
so (`records`, or 411 duplicate); anything else leaves its URL out of
`ximilar_synced_urls`, so a later pass sends exactly what is still missing.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg

from unde_dagster.db.scraper_logs import BatchLog, write_scraper_log
from unde_dagster.ximilar import store
from unde_dagster.ximilar.client import (
    MAX_RECORDS_PER_REQUEST,
    XimilarClient,
    XimilarError,
    XimilarUnavailable,
)
from unde_dagster.ximilar.legacy import (
    LegacyRemoval,
    queue_stale_item_rows,
    remove_legacy_records,
)
from unde_dagster.ximilar.records import SkuForIndex

log = logging.getLogger(__name__)
T = TypeVar("T")
SYNC_LOG, RETRY_LOG = "ximilar_sync", "ximilar_retry"


@dataclass(frozen=True)
class SyncSettings:
    batch_skus: int = 50
    retry_after: timedelta = timedelta(hours=6)
    max_skus: int | None = None


@dataclass
class BatchReport:
    """Counts of one claimed batch; becomes one `scraper_logs` row."""

    phase: str
    skus: int = 0
    records_sent: int = 0
    records_indexed: int = 0
    requests: int = 0
    synced: int = 0
    partial: int = 0
    errors: int = 0
    removed: int = 0
    errors_by_reason: Counter[str] = field(default_factory=Counter)
    error_message: str | None = None
    crashed: bool = False  # stopped mid-batch (credentials refused, a bug): DB work rolled back
    # when the batch began: its scraper_logs row, written after it, spans the batch's work
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started: float = field(default_factory=time.monotonic)


@dataclass
class SyncReport:
    batches: list[BatchReport] = field(default_factory=list)
    unavailable: str | None = None
    legacy: LegacyRemoval | None = None  # the old server's records removed this run

    def total(self, name: str) -> int:
        return sum(getattr(b, name) for b in self.batches)

    @property
    def errors_by_reason(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for b in self.batches:
            out.update(b.errors_by_reason)
        return dict(out)


def chunks(items: Sequence[T], size: int = MAX_RECORDS_PER_REQUEST) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i: i + size]


def _delete_ids(client: XimilarClient, ids: Sequence[str]) -> None:
    for chunk in chunks(ids):
        client.delete(chunk)


def remove_stale(conn: psycopg.Connection, client: XimilarClient, source: str,
                 settings: SyncSettings, run: store.CatalogRun,
                 on_batch: Callable[[BatchReport], None]) -> list[BatchReport]:
    """Delete the records of SKUs gone from the catalog or no longer pilot; reset their state."""
    reports, after = [], 0
    while True:
        report = BatchReport(phase="remove")
        before = client.requests_made
        with conn.transaction():
            skus = store.claim(conn, "remove", source, after=after, limit=settings.batch_skus,
                               run=run, retry_after=settings.retry_after)
            if not skus:
                return reports
            _delete_ids(client, [i for sku in skus for i in sku.indexed_ids()])
            store.reset_state(conn, [s.id for s in skus])
        after = skus[-1].id
        report.skus = report.removed = len(skus)
        report.requests = client.requests_made - before
        reports.append(report)
        on_batch(report)


def _update_for(sku: SkuForIndex, sent: list[dict[str, Any]], present: set[str],
                failed: dict[str, str], report: BatchReport) -> store.SkuUpdate:
    wanted = sku.wanted()
    base = [] if sku.photos_replaced else list(sku.synced_urls)
    now_in = set(base) | {r["_url"] for r in sent if r["_id"] in present}
    wanted_urls = [url for _, url in wanted]
    synced = [u for u in wanted_urls if u in now_in] + [u for u in base if u not in wanted_urls]
    progress = any(r["_id"] in present for r in sent)
    reasons = sorted({failed[r["_id"]] for r in sent if r["_id"] in failed})
    if not wanted:
        reasons = ["no_photos"]
    if wanted and all(u in now_in for u in wanted_urls):
        report.synced += 1
        return store.SkuUpdate(sku.id, "synced", synced, progress, None, False)
    any_in = any(u in now_in for u in wanted_urls)
    if reasons:
        report.errors += 1
        report.errors_by_reason.update(reasons)
        status = "partial" if any_in else "error"
        return store.SkuUpdate(sku.id, status, synced, progress, ", ".join(reasons), True)
    # Not answered (Ximilar unavailable mid-batch): keep what arrived, retry next run.
    report.partial += any_in
    return store.SkuUpdate(sku.id, "partial" if any_in else "pending", synced, progress,
                           None, False)


def _send_batch(conn: psycopg.Connection, client: XimilarClient, skus: list[SkuForIndex],
                report: BatchReport) -> str | None:
    """Send one claimed batch and write its SKUs' state. Returns an outage reason, if any."""
    outage: str | None = None
    replaced = [i for sku in skus if sku.photos_replaced for i in sku.indexed_ids()]
    per_sku = {sku.id: sku.missing_records() for sku in skus}
    records = [r for sku in skus for r in per_sku[sku.id]]
    present: set[str] = set()
    failed: dict[str, str] = {}
    try:
        _delete_ids(client, replaced)  # old photos' records go before the new ones arrive
        for chunk in chunks(records):
            report.records_sent += len(chunk)
            outcome = client.insert(chunk)
            present.update(outcome.present)
            failed.update(outcome.failed)
    except XimilarUnavailable as exc:
        outage = exc.reason
        report.error_message = str(exc)
    except XimilarError as exc:
        if exc.reason == "auth":
            raise
        for r in records:  # the request itself was refused (4xx): every unanswered record
            if r["_id"] not in present:
                failed.setdefault(r["_id"], exc.reason)
    report.records_indexed += len(present & {r["_id"] for r in records})
    updates = [_update_for(sku, per_sku[sku.id], present, failed, report) for sku in skus]
    store.write_updates(conn, updates)
    return outage


def sync_skus(conn: psycopg.Connection, client: XimilarClient, source: str,
              settings: SyncSettings, run: store.CatalogRun, *, retry: bool,
              on_batch: Callable[[BatchReport], None]) -> SyncReport:
    """Claim and send batches until none is left, the cap is hit or Ximilar is unavailable."""
    report, after, done = SyncReport(), 0, 0
    phase = "retry" if retry else "sync"
    while settings.max_skus is None or done < settings.max_skus:
        limit = settings.batch_skus
        if settings.max_skus is not None:
            limit = min(limit, settings.max_skus - done)
        batch = BatchReport(phase=phase)
        before = client.requests_made
        skus: list[SkuForIndex] = []
        try:
            with conn.transaction():
                skus = store.claim(conn, phase, source, after=after, limit=limit, run=run,
                                   retry_after=settings.retry_after)
                if not skus:
                    break
                outage = _send_batch(conn, client, skus, batch)
        except Exception as exc:
            # Records Ximilar already took stay there (the same _ids are re-sent next time);
            # the batch still gets its row, saying what was sent before it stopped.
            batch.crashed, batch.skus = True, len(skus)
            batch.requests = client.requests_made - before
            batch.error_message = f"{type(exc).__name__}: {exc}"[:2000]
            on_batch(batch)
            raise
        after, done = skus[-1].id, done + len(skus)
        batch.skus = len(skus)
        batch.requests = client.requests_made - before
        report.batches.append(batch)
        on_batch(batch)
        if outage is not None:
            log.warning("Ximilar unavailable (%s): stopping after %d SKUs", outage, done)
            report.unavailable = outage
            break
    return report


def batch_logger(conn: psycopg.Connection, run_id: str, *, retry: bool
                 ) -> Callable[[BatchReport], None]:
    """One `scraper_logs` row per batch (`ximilar_sync` / `ximilar_retry`)."""
    def write(batch: BatchReport) -> None:
        entry = BatchLog(scraper_name=RETRY_LOG if retry else SYNC_LOG, run_id=run_id,
                         started_at=batch.started_at,
                         started_monotonic=batch.started)
        entry.fetched, entry.new = batch.skus, batch.synced + batch.removed
        entry.updated, entry.errors = batch.partial, batch.errors
        entry.error_message, entry.crashed = batch.error_message, batch.crashed
        entry.metadata = {
            "phase": batch.phase, "records_sent": batch.records_sent,
            "records_indexed": batch.records_indexed, "requests": batch.requests,
            "removed": batch.removed, "errors_by_reason": dict(batch.errors_by_reason),
        }
        write_scraper_log(conn, entry)
    return write


def run_brand(conn: psycopg.Connection, client: XimilarClient, source: str, run_id: str, *,
              retry: bool = False, settings: SyncSettings | None = None,
              brand: str | None = None) -> SyncReport:
    """The whole pass for one brand: removal first (the old server's records, then stale
    SKUs, so these are never re-sent), then the sync or retry pass. `conn` must be
    autocommit (each batch is its own transaction)."""
    if not conn.autocommit:
        raise ValueError("run_brand needs an autocommit connection")
    settings = settings or SyncSettings()
    on_batch = batch_logger(conn, run_id, retry=retry)
    run = store.latest_catalog_run(conn, source)
    legacy = None
    if brand is not None:
        queue_stale_item_rows(conn, source, run)
        legacy = remove_legacy_records(conn, client, brand)
    removed = remove_stale(conn, client, source, settings, run, on_batch)
    report = sync_skus(conn, client, source, settings, run, retry=retry, on_batch=on_batch)
    report.batches[:0] = removed
    report.legacy = legacy
    return report
