"""Keeping a run's claims alive while its batch works, so the lease itself can be short.

A run that dies (`kill -9`, a lost host, a CLI run Dagster never hears of again) stops
renewing, and its SKUs come back one short lease later, whoever launched it. Renewals run
on a thread with a connection of their own: psycopg connections are not safe to share
across threads. A failed renewal is logged and retried at the next beat; it never fails
the batch (only a renewal gap longer than the lease can cost the run its claims, and then
the token check on every write keeps the newer run's work safe).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType

import psycopg
from psycopg.conninfo import make_conninfo

log = logging.getLogger(__name__)

Connect = Callable[[], psycopg.Connection]


def renew_claims(conn: psycopg.Connection, token: str, lease_s: float) -> int:
    """Push the lease of every row `token` holds to NOW() + `lease_s`; returns rows renewed.

    The statement is time-boxed so a renewal stuck behind a lock cannot outlive its beat.
    """
    with conn.transaction():
        timeout_ms = str(max(1000, int(lease_s * 250)))
        conn.execute("SELECT set_config('statement_timeout', %s, true)", (timeout_ms,))
        cur = conn.execute(
            "UPDATE raw_products SET claimed_until = NOW() + make_interval(secs => %s) "
            "WHERE claim_token = %s",
            (float(lease_s), token),
        )
        return cur.rowcount


def sibling_connect(conn: psycopg.Connection) -> Connect:
    """Opens connections like `conn` (same server, role and database) for another thread.

    Prepared statements stay off as on the stage's own connection (PgBouncer in
    transaction mode).
    """
    info = conn.info
    extra: dict[str, str] = {}
    if info.password:
        extra["password"] = info.password
    app = info.parameter_status("application_name")
    extra["application_name"] = f"{app or 'unde-dagster'}:lease"
    conninfo = make_conninfo(info.dsn, **extra)

    def connect() -> psycopg.Connection:
        return psycopg.connect(
            conninfo, autocommit=True, prepare_threshold=None, connect_timeout=10
        )

    return connect


class LeaseHeartbeat:
    """Renews `token`'s claims every `every_s` seconds while the `with` block runs."""

    def __init__(
        self, connect: Connect, token: str, *, lease_s: float, every_s: float
    ) -> None:
        if not 0 < every_s < lease_s:
            raise ValueError(f"renew every {every_s} s must be shorter than the lease {lease_s} s")
        self._connect, self.token = connect, token
        self.lease_s, self.every_s = lease_s, every_s
        self.renewals = 0
        self.failures: list[str] = []  # one line per failed renewal, for the run's log
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"lease-{token[:8]}", daemon=True
        )

    def __enter__(self) -> LeaseHeartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        # A renewal in flight is bounded by its statement timeout and the connect timeout.
        self._thread.join(timeout=self.lease_s + 15)

    def _beat(self) -> None:
        conn: psycopg.Connection | None = None
        try:
            while not self._stop.wait(self.every_s):
                try:
                    if conn is None or conn.closed:
                        conn = self._connect()
                    renew_claims(conn, self.token, self.lease_s)
                    self.renewals += 1
                except Exception as exc:  # the next beat retries on a fresh connection
                    line = f"lease renewal failed: {type(exc).__name__}: {exc}".strip()
                    self.failures.append(line)
                    log.warning("%s (run %s)", line, self.token)
                    conn = _close_quietly(conn)
        finally:
            _close_quietly(conn)


def _close_quietly(conn: psycopg.Connection | None) -> None:
    if conn is not None:
        try:
            conn.close()
        except Exception:  # closing a broken connection may fail too; it is gone either way
            log.debug("closing the lease connection failed", exc_info=True)
