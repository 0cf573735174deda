"""PostgreSQL connections (psycopg 3) for the Staging and Production databases."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg
from pydantic import Field


class PostgresDatabase(dg.ConfigurableResource):
    """A database reached by URL. Works through PgBouncer in transaction mode: no session
    state is relied on between transactions and prepared statements are off."""

    url: str = Field(description="postgresql:// URL (from an env var; it holds the password)")
    application_name: str = "unde-dagster"
    connect_timeout_s: int = 10

    @contextmanager
    def connect(self, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
        conn = psycopg.connect(
            self.url,
            autocommit=autocommit,
            application_name=self.application_name,
            connect_timeout=self.connect_timeout_s,
            prepare_threshold=None,
        )
        try:
            yield conn
        finally:
            conn.close()


class StagingDatabase(PostgresDatabase):
    """The Staging DB every stage coordinates through (`raw_products`, `scraper_logs`, …)."""


class ProductionDatabase(PostgresDatabase):
    """The Production DB: the verified catalog and the model library."""
