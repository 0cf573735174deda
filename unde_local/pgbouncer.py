"""PgBouncer in front of a PostgreSQL server, as production reaches the Staging DB.

Debian's `pgbouncer` (`bash scripts/setup.sh` installs it), in the foreground, in transaction
pool mode with SCRAM: the userlist holds plain passwords, so PgBouncer checks the clients and
logs in to the server itself. Every database name routes through (`* = host=… port=…`).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import stat
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import quote, urlsplit

import psycopg

from unde_local.postgres import LocalPostgres, free_port

DEBIAN_BINARY = "/usr/sbin/pgbouncer"
PROBE_USER = "unde_pgbouncer_probe"  # a stats user: proves the listener takes a login


def pgbouncer_binary() -> str:
    found = shutil.which("pgbouncer") or DEBIAN_BINARY
    if not os.access(found, os.X_OK):
        raise RuntimeError("pgbouncer is not installed: bash scripts/setup.sh installs "
                           "Debian's package")
    return found


def _quoted(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


class PgBouncer:
    """Starts PgBouncer on a free loopback port; `url()` gives client URLs through it."""

    def __init__(
        self,
        server_url: str,
        users: Mapping[str, str],
        workdir: Path,
        *,
        port: int | None = None,
        pool_mode: str = "transaction",
        pool_size: int = 10,
        admin_users: Iterable[str] = (),
    ) -> None:
        parts = urlsplit(server_url)
        self.server_host = parts.hostname or "127.0.0.1"
        self.server_port = parts.port or 5432
        self.users = dict(users)
        self.workdir = workdir
        self.port = port
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.admin_users = list(admin_users)
        self._probe_password = secrets.token_urlsafe(18)
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "pgbouncer.log"

    def start(self) -> None:
        binary = pgbouncer_binary()
        if self.port is None:
            self.port = free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        entries = {**self.users, PROBE_USER: self._probe_password}
        userlist = self.workdir / "userlist.txt"
        userlist.write_text("".join(f"{_quoted(u)} {_quoted(p)}\n" for u, p in entries.items()))
        userlist.chmod(0o600)
        ini = self.workdir / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"* = host={self.server_host} port={self.server_port}\n"
            "\n[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = scram-sha-256\nauth_file = {userlist}\n"
            f"pool_mode = {self.pool_mode}\nmax_client_conn = 200\n"
            f"default_pool_size = {self.pool_size}\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"admin_users = {','.join(self.admin_users)}\nstats_users = {PROBE_USER}\n"
        )
        run_as = LocalPostgres._unprivileged_user() if os.geteuid() == 0 else None
        if run_as:
            self._hand_over(run_as)
        with self.log_path.open("ab") as log:  # root's fd: the child inherits it
            self._proc = subprocess.Popen(
                [binary, str(ini)], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                user=run_as, group=pwd.getpwnam(run_as).pw_gid if run_as else None,
                extra_groups=[] if run_as else None,
            )
        self._wait_ready(timeout=20)

    def url(self, user: str, database: str) -> str:
        password = quote(self.users[user], safe="")
        return f"postgresql://{quote(user, safe='')}:{password}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> PgBouncer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        probe = f"postgresql://{PROBE_USER}:{self._probe_password}@127.0.0.1:{self.port}/pgbouncer"
        deadline = time.monotonic() + timeout
        error: Exception | None = None
        while time.monotonic() < deadline and self._proc.poll() is None:
            try:
                with psycopg.connect(probe, connect_timeout=2):
                    if self._proc.poll() is None:  # ours answered, not another listener
                        return
            except psycopg.OperationalError as e:
                error = e
                time.sleep(0.2)
        code = self._proc.poll()
        self.stop()
        tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
        state = f"exited with {code}" if code is not None else f"no login within {timeout:.0f} s"
        raise RuntimeError(f"pgbouncer on port {self.port} {state} ({error}); its log:\n{tail}")

    def _hand_over(self, user: str) -> None:
        """As root PgBouncer refuses to run: its user must own the workdir (as postgres.py)."""
        entry = pwd.getpwnam(user)
        for p in [self.workdir, *self.workdir.rglob("*")]:
            os.chown(p, entry.pw_uid, entry.pw_gid)
        for parent in self.workdir.parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(mode | stat.S_IXOTH)
