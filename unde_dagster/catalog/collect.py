"""One catalog run of one brand: Apify Task → dataset → `raw_products`.

Plain functions (no Dagster) so tests and benchmarks can call them directly.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg
from apify_client import ApifyClient

from unde_dagster.brands import Brand
from unde_dagster.catalog.items import DatasetParser, ParsedBatch, Rejection
from unde_dagster.catalog.rejections import CatalogRun, record_rejections
from unde_dagster.catalog.store import UpsertCounts, count_missing_from_run, upsert_skus

log = logging.getLogger(__name__)

CHUNK_ITEMS = 500
MAX_LOGGED_REJECTIONS = 20
MAX_SAMPLES = 10
ANALYZE_AFTER_NEW = 1000  # new SKUs in one run after which the table's statistics are stale


class CatalogRunFailed(RuntimeError):
    """The Apify run did not succeed; nothing from it is written."""


@dataclass
class CatalogResult:
    apify_run_id: str
    dataset_id: str
    items: int = 0
    counts: UpsertCounts = field(default_factory=UpsertCounts)
    rejected: dict[str, int] = field(default_factory=dict)
    rejection_samples: list[Rejection] = field(default_factory=list)
    dropped_photos: int = 0
    dropped_photo_samples: list[Rejection] = field(default_factory=list)
    items_cleaned: int = 0
    cleaned_samples: list[str] = field(default_factory=list)
    missing_from_catalog: int = 0

    @property
    def skus_written(self) -> int:
        return self.counts.new + self.counts.updated + self.counts.unchanged

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def note_rejections(self, brand: str, rejections: list[Rejection]) -> None:
        for rejection in rejections:
            self.rejected[rejection.reason] = self.rejected.get(rejection.reason, 0) + 1
            if len(self.rejection_samples) < MAX_LOGGED_REJECTIONS:
                self.rejection_samples.append(rejection)
                log.warning(
                    "%s item %s colour %s rejected: %s (%s)", brand, rejection.item_id,
                    rejection.colour_id, rejection.reason, rejection.detail,
                )

    def note_cleaning(self, brand: str, parsed: ParsedBatch) -> None:
        self.dropped_photos += len(parsed.dropped_photos)
        room = MAX_SAMPLES - len(self.dropped_photo_samples)
        self.dropped_photo_samples.extend(parsed.dropped_photos[: max(room, 0)])
        self.items_cleaned += len(parsed.cleaned)
        for cleaned in parsed.cleaned:
            if len(self.cleaned_samples) < MAX_SAMPLES:
                self.cleaned_samples.append(str(cleaned.item_id))
                log.warning("%s item %s cleaned: %s", brand, cleaned.item_id, cleaned.cleaning)


def run_task(client: ApifyClient, task_id: str, wait: timedelta) -> tuple[str, str]:
    """Start the brand's Task and wait; return (run id, dataset id) of a SUCCEEDED run."""
    run = client.task(task_id).call(wait_duration=wait)
    if run is None:
        raise CatalogRunFailed(f"Apify task {task_id}: the run disappeared (no run returned)")
    if run.status != "SUCCEEDED":
        reason = f" ({run.status_message})" if run.status_message else ""
        raise CatalogRunFailed(
            f"Apify task {task_id}: run {run.id} ended {run.status}{reason}; nothing written"
        )
    return run.id, run.default_dataset_id


def dataset_chunks(client: ApifyClient, dataset_id: str) -> Iterator[list[Any]]:
    items = client.dataset(dataset_id).iterate_items(clean=True)
    while chunk := list(itertools.islice(items, CHUNK_ITEMS)):
        yield chunk


def collect_brand(
    client: ApifyClient, conn: psycopg.Connection, brand: Brand, *, run_id: str, wait: timedelta
) -> CatalogResult:
    """Run the Task and upsert its SKUs chunk by chunk (one transaction per chunk).

    What a chunk did not write (rejected items and colours, refused SKUs, dropped photo
    URLs) goes to `catalog_rejections` right after the chunk, under `run_id`.

    `conn` must be in autocommit mode so each chunk commits on its own: a run killed midway
    keeps what it wrote, and the re-run rewrites the same rows (upserts, no duplicates).
    Works through PgBouncer in transaction mode (no session state is used).
    """
    if not conn.autocommit:
        raise ValueError("collect_brand needs an autocommit connection")
    apify_run_id, dataset_id = run_task(client, brand.apify_task_id, wait)
    result = CatalogResult(apify_run_id=apify_run_id, dataset_id=dataset_id)
    parser = DatasetParser(brand.key, brand.source)
    run = CatalogRun(run_id, brand.source, brand.key, apify_run_id, dataset_id)
    for chunk in dataset_chunks(client, dataset_id):
        result.items += len(chunk)
        parsed = parser.parse(chunk)
        counts = upsert_skus(conn, parsed.rows, run_id=run_id, index_scope=brand.index_scope)
        result.counts.add(counts)
        rejected = [*parsed.rejections, *counts.write_failures]
        result.note_rejections(brand.key, rejected)
        result.note_cleaning(brand.key, parsed)
        record_rejections(conn, run, [*rejected, *parsed.dropped_photos])
    result.missing_from_catalog = count_missing_from_run(conn, brand.source, run_id)
    if result.counts.new >= ANALYZE_AFTER_NEW:  # the planner's row counts after a bulk load
        conn.execute("ANALYZE raw_products")
    return result
