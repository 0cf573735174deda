"""One `scraper_logs` row per batch per stage, in the seed's shape.

The seed's statuses are success | partial | error. A batch of the image stages also opens its
row when it starts (`running`) and closes it when it ends, `crashed` if it stopped before its
end; a row left `running` by a process or a database that went away is closed as `crashed`
by the stage's next run (`close_abandoned_logs`), so every batch that started has its row.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from unde_dagster.catalog.clean import clean_text


@dataclass
class BatchLog:
    """Counts of one batch; `status` follows the seed: success | partial | error, plus
    `crashed` for a batch that stopped before its end (an outage, a bug, an interrupt)."""

    scraper_name: str
    run_id: str
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    fetched: int = 0
    new: int = 0
    updated: int = 0
    errors: int = 0
    error_message: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    crashed: bool = False
    started_monotonic: float = field(default_factory=time.monotonic, repr=False)
    """The batch's start on the monotonic clock, which `duration_s` counts from."""

    @property
    def duration_s(self) -> float:
        return time.monotonic() - self.started_monotonic

    @property
    def status(self) -> str:
        if self.crashed:
            return "crashed"
        if self.error_message is not None:
            return "error"
        if self.errors and self.errors >= self.fetched:
            return "error"
        return "partial" if self.errors else "success"


def write_scraper_log(conn: psycopg.Connection, log: BatchLog) -> None:
    with conn.transaction():
        conn.execute(
            """
            INSERT INTO scraper_logs (
                scraper_name, run_id, status, records_fetched, records_new, records_updated,
                records_errors, started_at, completed_at, duration_seconds, error_message,
                metadata
            ) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, NOW(), %s, %s, %s)
            """,
            (
                log.scraper_name,
                log.run_id,
                log.status,
                log.fetched,
                log.new,
                log.updated,
                log.errors,
                log.started_at,
                round(log.duration_s),
                clean_text(log.error_message) if log.error_message else None,
                Jsonb(log.metadata),
            ),
        )


RUNNING = "running"
ABANDONED = "the batch did not close its row: its process or the database went away"


def open_scraper_log(conn: psycopg.Connection, log: BatchLog) -> int:
    """Insert the batch's row as `running` (before its work); returns its id."""
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO scraper_logs (scraper_name, run_id, status, started_at, metadata) "
            "VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (log.scraper_name, log.run_id, RUNNING, log.started_at, Jsonb(log.metadata)),
        ).fetchone()
    assert row is not None
    return int(row[0])


def close_scraper_log(conn: psycopg.Connection, log_id: int, log: BatchLog) -> None:
    """Give the opened row its final status and counts."""
    with conn.transaction():
        conn.execute(
            """
            UPDATE scraper_logs SET status = %s, records_fetched = %s, records_new = %s,
                   records_updated = %s, records_errors = %s, completed_at = NOW(),
                   duration_seconds = %s, error_message = %s, metadata = %s
             WHERE id = %s
            """,
            (log.status, log.fetched, log.new, log.updated, log.errors, round(log.duration_s),
             clean_text(log.error_message) if log.error_message else None,
             Jsonb(log.metadata), log_id),
        )


def close_abandoned_logs(
    conn: psycopg.Connection, scraper_names: list[str], brand: str,
    run_is_over: Callable[[str], bool],
) -> int:
    """Close as `crashed` the brand's rows left `running` by runs that are over."""
    rows = conn.execute(
        "SELECT id, run_id FROM scraper_logs WHERE status = %s AND scraper_name = ANY(%s) "
        "AND metadata->>'brand' = %s",
        (RUNNING, scraper_names, brand),
    ).fetchall()
    abandoned = [log_id for log_id, run_id in rows if run_is_over(str(run_id))]
    if abandoned:
        with conn.transaction():
            conn.execute(
                "UPDATE scraper_logs SET status = 'crashed', completed_at = NOW(), "
                "error_message = %s WHERE id = ANY(%s) AND status = %s",
                (ABANDONED, abandoned, RUNNING),
            )
    return len(abandoned)
