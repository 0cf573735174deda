"""Which catalog run of a brand is the latest *finished* one (from `scraper_logs`).

Why not `max(last_seen_run_id)`: a catalog run still in progress has stamped only part of
the brand's rows, which would make the rest look gone. The catalog asset writes its
`scraper_logs` row (scraper_name = brand source) only when the run has finished, marked
`metadata.writer = 'unde-dagster'`: the old collector wrote rows under the same name, and a
run the project did not write never stamped any row, so it must not make them all stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

CATALOG_WRITER = "unde-dagster"


@dataclass(frozen=True)
class CatalogRun:
    """The brand's latest complete catalog run (from its `scraper_logs` row)."""

    run_id: str | None
    started_at: datetime | None


def latest_catalog_run(conn: psycopg.Connection, source: str) -> CatalogRun:
    """A killed catalog run writes no log row, so it never makes every SKU look stale."""
    row = conn.execute(
        "SELECT run_id, started_at FROM scraper_logs WHERE scraper_name = %s "
        "AND status <> 'error' AND run_id IS NOT NULL AND metadata->>'writer' = %s "
        "ORDER BY started_at DESC, id DESC LIMIT 1",
        (source, CATALOG_WRITER),
    ).fetchone()
    return CatalogRun(row[0], row[1]) if row else CatalogRun(None, None)
