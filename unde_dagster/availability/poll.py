"""One availability poll of one brand: stores → stock per store and size → `raw_availability`.

Rows are one per (brand, store, colour SKU, UTC day), `product_id` = the SKU's staging
`external_id` (so the recognition post-filter joins catalog rows directly), and
`sizes_in_stock` = the sizes in stock: `[{"size", "reference", "stock"}]` (empty = none).
A later poll of the same day overwrites the row (latest `fetched_at` wins).
Each chunk of SKUs is written in one transaction and logged as one `scraper_logs` row.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
import requests
from psycopg.types.json import Jsonb

from unde_dagster.availability.client import (
    AvailabilityError,
    HttpPolicy,
    get_json,
    locator_params,
    parse_stock,
    stock_params,
)
from unde_dagster.availability.references import SkuRefs, sku_references
from unde_dagster.availability.stores import parse_stores, store_ids, upsert_stores
from unde_dagster.db.catalog_runs import latest_catalog_run
from unde_dagster.db.scraper_logs import BatchLog, write_scraper_log

log = logging.getLogger(__name__)
SCRAPER_NAME = "availability_poll"


@dataclass
class PollSettings:
    base_url: str
    country: str = "ae"
    language: str = "en"
    city: str = "Dubai"
    latitude: float = 25.2048
    longitude: float = 55.2708
    radius_km: float = 40.0
    stores_per_request: int = 5
    references_per_request: int = 40
    request_delay_s: float = 0.2
    skus_per_batch: int = 200
    only_store_ids: tuple[int, ...] = ()
    refresh_stores: bool = True


@dataclass
class PollResult:
    stores: int = 0
    stores_from: str = "locator"
    locator_error: str | None = None
    products: int = 0
    products_without_reference: int = 0
    requests: int = 0
    failed_requests: int = 0
    rows: int = 0
    out_of_stock_rows: int = 0
    errors_by_kind: Counter[str] = field(default_factory=Counter)
    batches: int = 0

    @property
    def out_of_stock_share(self) -> float:
        return round(self.out_of_stock_rows / self.rows, 4) if self.rows else 0.0


Row = tuple[int, str, list[dict[str, str]], datetime]


def refresh_stores(session: requests.Session, conn: psycopg.Connection, brand: str,
                   s: PollSettings, policy: HttpPolicy) -> int:
    """Load the brand's stores from the locator into `raw_stores`; returns how many."""
    url = f"{s.base_url}/{s.country}/{s.language}/stores-locator/search"
    payload = get_json(session, url, locator_params(s.latitude, s.longitude), policy)
    try:
        stores = parse_stores(payload, city=s.city, latitude=s.latitude, longitude=s.longitude,
                              radius_km=s.radius_km)
    except ValueError as exc:
        raise AvailabilityError("bad_shape", str(exc)) from exc
    upsert_stores(conn, brand, stores, s.city, s.country)
    return len(stores)


def load_skus(conn: psycopg.Connection, source: str) -> tuple[list[SkuRefs], int]:
    """The brand's SKUs in its latest finished catalog (all SKUs if none is recorded)."""
    latest = latest_catalog_run(conn, source).run_id
    rows = conn.execute(
        "SELECT external_id, colour_id, category, sizes, raw_data FROM raw_products "
        "WHERE source = %s AND (%s::text IS NULL OR last_seen_run_id = %s) ORDER BY external_id",
        (source, latest, latest),
    ).fetchall()
    skus, unusable = [], 0
    for external_id, colour_id, category, sizes, raw_data in rows:
        refs = sku_references(external_id, colour_id, category, sizes, raw_data)
        if refs is None:
            unusable += 1
        else:
            skus.append(refs)
    return skus, unusable


def _pack(skus: Sequence[SkuRefs], limit: int) -> Iterator[tuple[str, list[SkuRefs]]]:
    """Group SKUs of one section so that one request holds at most `limit` references."""
    by_section: dict[str, list[SkuRefs]] = defaultdict(list)
    for sku in skus:
        by_section[sku.section].append(sku)
    for section, group in by_section.items():
        batch: list[SkuRefs] = []
        count = 0
        for sku in group:
            n = min(len(sku.sizes), limit)
            if batch and count + n > limit:
                yield section, batch
                batch, count = [], 0
            batch.append(sku)
            count += n
        if batch:
            yield section, batch


def _rows(stock: dict[int, dict[str, str]], skus: Sequence[SkuRefs], at: datetime) -> list[Row]:
    rows: list[Row] = []
    for store_id, levels in stock.items():
        for sku in skus:
            sizes = [{"size": r.size, "reference": r.reference, "stock": levels[r.reference]}
                     for r in sku.sizes
                     if levels.get(r.reference, "out_of_stock") != "out_of_stock"]
            rows.append((store_id, sku.external_id, sizes, at))
    return rows


_UPSERT = """
INSERT INTO raw_availability (brand, store_id, product_id, sizes_in_stock, fetched_at)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (brand, store_id, product_id, to_date_immutable(fetched_at)) DO UPDATE
   SET sizes_in_stock = EXCLUDED.sizes_in_stock, fetched_at = EXCLUDED.fetched_at
 WHERE raw_availability.fetched_at <= EXCLUDED.fetched_at
"""


def upsert_availability(conn: psycopg.Connection, brand: str, rows: Sequence[Row]) -> None:
    if not rows:
        return
    # Rows of one statement must not hit the same daily key twice: keep the latest.
    latest: dict[tuple[int, str], Row] = {}
    for row in rows:
        key = (row[0], row[1])
        if key not in latest or latest[key][3] <= row[3]:
            latest[key] = row
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(_UPSERT, [(brand, s, p, Jsonb(sizes), at)
                                  for s, p, sizes, at in latest.values()])


def poll_brand(session: requests.Session, conn: psycopg.Connection, brand: str, source: str,
               s: PollSettings, policy: HttpPolicy, *, run_id: str,
               sleep: Callable[[float], None] = time.sleep) -> PollResult:
    """Refresh stores, then poll every SKU of the brand in every Dubai store, batch by batch."""
    result = PollResult()
    if s.refresh_stores:
        try:
            refresh_stores(session, conn, brand, s, policy)
        except AvailabilityError as exc:
            result.stores_from, result.locator_error = "raw_stores", str(exc)
            result.errors_by_kind[f"locator_{exc.kind}"] += 1
            log.warning("%s: store locator failed (%s); using raw_stores", brand, exc)
    else:
        result.stores_from = "raw_stores"
    stores = store_ids(conn, brand, s.city, s.only_store_ids)
    result.stores = len(stores)
    skus, result.products_without_reference = load_skus(conn, source)
    result.products = len(skus)
    if not stores or not skus:
        return result
    url = f"{s.base_url}/{s.country}/{s.language}/store-stock"
    for start in range(0, len(skus), s.skus_per_batch):
        chunk = skus[start:start + s.skus_per_batch]
        batch = BatchLog(scraper_name=SCRAPER_NAME, run_id=run_id)
        batch.metadata = {"brand": brand, "stores": len(stores), "skus": len(chunk)}
        rows: list[Row] = []
        for section, group in _pack(chunk, s.references_per_request):
            refs = [r.reference for sku in group for r in sku.sizes]
            for i in range(0, len(stores), s.stores_per_request):
                asked = stores[i:i + s.stores_per_request]
                if result.requests:
                    sleep(s.request_delay_s)
                result.requests += 1
                batch.fetched += 1
                try:
                    payload = get_json(session, url, stock_params(asked, refs, section), policy)
                    stock = parse_stock(payload, asked)
                except AvailabilityError as exc:
                    result.failed_requests += 1
                    result.errors_by_kind[exc.kind] += 1
                    batch.errors += 1
                    batch.metadata.setdefault("errors", []).append(str(exc)[:300])
                    log.warning("%s: stock request failed: %s", brand, exc)
                    continue
                rows += _rows(stock, group, datetime.now(UTC))
        upsert_availability(conn, brand, rows)
        result.rows += len(rows)
        result.out_of_stock_rows += sum(1 for r in rows if not r[2])
        result.batches += 1
        batch.new = len(rows)
        write_scraper_log(conn, batch)
    return result
