"""Which catalog run of a brand is the latest *finished* one (from `scraper_logs`).

Why not `max(last_seen_run_id)`: a catalog run still in progress has stamped only part of
the brand's rows, which would make the rest look gone. The catalog asset writes its
`scraper_logs` row (scraper_name = brand source) only when the run has finished.
"""

from __future__ import annotations

import psycopg


def latest_catalog_run(conn: psycopg.Connection, source: str) -> str | None:
    row = conn.execute(
        "SELECT run_id FROM scraper_logs WHERE scraper_name = %s AND status <> 'error' "
        "AND run_id IS NOT NULL ORDER BY started_at DESC, id DESC LIMIT 1",
        (source,),
    ).fetchone()
    return str(row[0]) if row else None
