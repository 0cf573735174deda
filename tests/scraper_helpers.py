"""Seeding staging with a brand's catalog fast: the Apify fixture items through the real
parser and upsert (no Apify run), plus the catalog's finished-run `scraper_logs` row."""

from __future__ import annotations

import psycopg

from unde_dagster.brands import brand as brand_of
from unde_dagster.catalog.items import DatasetParser
from unde_dagster.catalog.store import upsert_skus
from unde_dagster.db.catalog_runs import CATALOG_WRITER
from unde_dagster.db.scraper_logs import BatchLog, write_scraper_log
from unde_local.fixtures.catalog import generate_catalog


def seed_catalog(conn: psycopg.Connection, brand: str, n_items: int, run_id: str,
                 start: int = 0) -> list[str]:
    """Items `start..start+n_items` of the brand as one finished catalog run; SKU ids back."""
    b = brand_of(brand)
    items = generate_catalog(brand, start + n_items, "http://cdn.test")[start:]
    rows = DatasetParser(b.key, b.source).parse(items).rows
    upsert_skus(conn, rows, run_id=run_id, index_scope=b.index_scope)
    write_scraper_log(conn, BatchLog(scraper_name=b.source, run_id=run_id, fetched=len(items),
                                     metadata={"writer": CATALOG_WRITER}))
    return [r.external_id for r in rows]
