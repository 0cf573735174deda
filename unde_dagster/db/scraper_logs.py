"""One `scraper_logs` row per batch per stage, in the seed's shape."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb


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
    _t0: float = field(default_factory=time.monotonic, repr=False)

    @property
    def duration_s(self) -> float:
        return time.monotonic() - self._t0

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
                log.error_message,
                Jsonb(log.metadata),
            ),
        )
