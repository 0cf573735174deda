"""PgBouncer (Debian's, transaction pool mode, SCRAM) in front of the test stack's PostgreSQL,
as production reaches the Staging DB: a role with a password logs in through it, and two
clients share one server connection (transaction pooling, pool size 1)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from unde_local.pgbouncer import PgBouncer
from unde_local.stack import LocalStack


@pytest.fixture()
def role(stack: LocalStack) -> Iterator[tuple[str, str]]:
    name, password = f"pgb_{secrets.token_hex(4)}", secrets.token_urlsafe(18)
    with psycopg.connect(stack.env["STAGING_DB_URL"], autocommit=True) as conn:
        # PgBouncer logs in with SCRAM: the server must store a SCRAM verifier
        conn.execute("SET password_encryption = 'scram-sha-256'")
        conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")  # generated, no quotes
        stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", [name])
        assert str(stored.fetchone()[0]).startswith("SCRAM-SHA-256$")  # type: ignore[index]
    yield name, password
    with psycopg.connect(stack.env["STAGING_DB_URL"], autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {name}")


def test_transaction_pooling_through_pgbouncer(
    stack: LocalStack, role: tuple[str, str], tmp_path: Path
) -> None:
    name, password = role
    server_url = stack.env["STAGING_DB_URL"]
    database = urlsplit(server_url).path.lstrip("/")
    bouncer = PgBouncer(
        server_url, {name: password}, tmp_path / "pgbouncer", pool_size=1, admin_users=[name]
    )
    with bouncer:
        url = bouncer.url(name, database)
        with (
            psycopg.connect(url, autocommit=True, prepare_threshold=None) as one,
            psycopg.connect(url, autocommit=True, prepare_threshold=None) as two,
        ):
            assert one.execute("SELECT current_user, current_database()").fetchone() == (
                name, database,
            )
            # pool size 1: both clients' transactions run on the one server connection
            pid_one = one.execute("SELECT pg_backend_pid()").fetchone()
            pid_two = two.execute("SELECT pg_backend_pid()").fetchone()
            assert pid_one == pid_two
            with one.transaction():
                one.execute("CREATE TEMP TABLE t (x int) ON COMMIT DROP")
                one.execute("INSERT INTO t VALUES (1)")
                assert one.execute("SELECT count(*) FROM t").fetchone() == (1,)

        # the admin console: an admin_users user logs in to the `pgbouncer` database
        with psycopg.connect(bouncer.url(name, "pgbouncer"), autocommit=True) as con:
            config = {row[0]: row[1] for row in con.execute("SHOW CONFIG")}
            assert config["pool_mode"] == "transaction"
            assert config["auth_type"] == "scram-sha-256"
            assert config["default_pool_size"] == "1"
            cur = con.execute("SHOW POOLS")
            columns = [c.name for c in cur.description or ()]
            pools = [dict(zip(columns, row, strict=True)) for row in cur]
            mine = [p for p in pools if p["database"] == database and p["user"] == name]
            assert mine and mine[0]["pool_mode"] == "transaction"
