"""Ordered plain-SQL migrations with a version table.

Each database (staging, production) has a folder of `NNNN_name.sql` files under
`unde_dagster/migrations/`. A file is applied once, in its own transaction, which first
takes a transaction-scoped advisory lock and then re-reads the version table: two processes
starting at once do not race, and nothing depends on session state, so it works through
PgBouncer in transaction mode (a session lock would be taken on one server connection and
released on another). Every file is also written
to be idempotent on its own, because the staging DB may have been created by the old
servers without any version table.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import psycopg

Database = Literal["staging", "production"]

_LOCK_ID = 0x554E4445  # "UNDE"
# gen_random_uuid() is built in from 13 on; the migrations need no extension.
MIN_SERVER_VERSION = 130000
_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS unde_schema_migrations (
    version TEXT PRIMARY KEY,
    checksum TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
)
"""


# Tables the migrations alter; each must belong to the migrating role (or a role it is in).
_OWNED_TABLES = {
    "staging": ("raw_products", "scraper_logs", "raw_availability", "raw_stores"),
    "production": ("model_library", "catalog_products"),
}
ROLE_NEEDED = (
    "The {database} migration must run as the role that owns its tables (on a database the "
    "old servers created, the owner of raw_products), or as a member of that role; it needs "
    "CREATE on the schema for new tables."
)


class MigrationRoleError(RuntimeError):
    """The migrating role cannot alter the tables: says which role it needs."""


@dataclass(frozen=True)
class Migration:
    version: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(database: Database) -> list[Migration]:
    folder = resources.files("unde_dagster") / "migrations" / database
    files = sorted(f for f in folder.iterdir() if f.name.endswith(".sql"))
    return [Migration(f.name.removesuffix(".sql"), f.read_text()) for f in files]


def migrate(conninfo: str, database: Database) -> list[str]:
    """Apply pending migrations; return the versions applied now (empty if up to date)."""
    applied_now: list[str] = []
    with psycopg.connect(conninfo, autocommit=True, prepare_threshold=None) as conn:
        if conn.info.server_version < MIN_SERVER_VERSION:
            found = conn.info.parameter_status("server_version")
            raise RuntimeError(
                f"{database}: the server is PostgreSQL {found}; the migrations need 13 or "
                "newer (they use the built-in gen_random_uuid(), no extension)"
            )
        check_role(conn, database)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
            conn.execute(_VERSION_TABLE)
        for migration in load_migrations(database):
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
                done = conn.execute(
                    "SELECT 1 FROM unde_schema_migrations WHERE version = %s",
                    (migration.version,),
                ).fetchone()
                if done:
                    continue
                try:
                    conn.execute(migration.sql)  # type: ignore[arg-type]
                except psycopg.errors.InsufficientPrivilege as exc:
                    raise MigrationRoleError(
                        f"{ROLE_NEEDED.format(database=database)} {migration.version}: {exc}"
                    ) from exc
                conn.execute(
                    "INSERT INTO unde_schema_migrations (version, checksum) VALUES (%s, %s)",
                    (migration.version, migration.checksum),
                )
            applied_now.append(migration.version)
    return applied_now


def check_role(conn: psycopg.Connection, database: Database) -> None:
    """Fail before any change, naming the owner, when the connected role cannot migrate."""
    user, can_create = conn.execute(
        "SELECT current_user, has_schema_privilege(current_schema(), 'CREATE')"
    ).fetchone() or ("?", False)
    foreign = conn.execute(
        "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c "
        "WHERE c.oid = ANY(ARRAY(SELECT to_regclass(t) FROM unnest(%s::text[]) t)) "
        "AND NOT pg_has_role(current_user, c.relowner, 'USAGE') ORDER BY 1",
        (list(_OWNED_TABLES[database]),),
    ).fetchall()
    problems = [f"{table} belongs to {owner!r}" for table, owner in foreign]
    if not can_create:
        problems.append("no CREATE on the schema")
    if problems:
        raise MigrationRoleError(
            f"{ROLE_NEEDED.format(database=database)} Connected as {user!r}: "
            + "; ".join(problems) + "."
        )


def main() -> None:
    parser = argparse.ArgumentParser(description="Apply the UNDE schema migrations.")
    parser.add_argument("--staging-url", default=os.environ.get("STAGING_DB_URL"))
    parser.add_argument("--production-url", default=os.environ.get("PRODUCTION_DB_URL"))
    args = parser.parse_args()
    if not args.staging_url and not args.production_url:
        parser.error("set STAGING_DB_URL and/or PRODUCTION_DB_URL (or pass --staging-url)")
    for database, url in (("staging", args.staging_url), ("production", args.production_url)):
        if url:
            try:
                applied = migrate(url, database)
            except MigrationRoleError as exc:
                raise SystemExit(str(exc)) from None
            print(f"{database}: applied {applied or 'nothing (up to date)'}")


if __name__ == "__main__":
    main()
