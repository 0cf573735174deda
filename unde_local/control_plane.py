"""The control plane on this machine, from deploy/control-plane/compose.yaml (the operator's file).

Writes what the compose file reads into .local/deploy/<name>/ (gitignored): `.env`,
`code-server.env`, a bcrypt `ui.htpasswd` with a generated password, the UI's TLS cert, and
a copy of the engines' client certificate readable by the daemon's uid 10001 only. Dagster
storage goes through PgBouncer (the local-db profile's PostgreSQL), the role hosts' engine
URLs are the ones of `unde_local.engines`, and nginx/PgBouncer publish on the engines' host
address (10.77.0.1), where run containers on every engine reach PgBouncer.

Images production pulls (nginx, postgres, pgbouncer's ubuntu base) have stand-ins built from
the local Debian bookworm base: deploy/local/images/{nginx,postgres}, and the project's own
pgbouncer Dockerfile with its base as a build arg. Then
`docker compose --profile local-db up -d` with Compose v2 (deploy/local/install-compose.sh).

    python -m unde_local control-plane up|down [--volumes]|logs [SERVICE]|status|check
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from unde_local import engines as eng

PROJECT_DIR = Path(__file__).resolve().parent.parent
COMPOSE_FILE = PROJECT_DIR / "deploy" / "control-plane" / "compose.yaml"
LOCAL_IMAGES = PROJECT_DIR / "deploy" / "local" / "images"
PROFILE = "local-db"
UI_USER = "unde"
BASE_IMAGE = os.environ.get("UNDE_BASE_IMAGE", "unde/bookworm-python:3.11")
IMAGES = {  # compose variable -> (local image, what builds it)
    "UNDE_NGINX_IMAGE": ("unde-local/nginx:bookworm", LOCAL_IMAGES / "nginx"),
    "UNDE_POSTGRES_IMAGE": ("unde-local/postgres:15-bookworm", LOCAL_IMAGES / "postgres"),
}
USER_CODE_IMAGE, CONTROL_IMAGE = "unde-dagster:local", "unde-dagster-control:local"
PGBOUNCER_IMAGE = "unde-dagster-pgbouncer:1"  # compose.yaml's `image:` of its build
PGBOUNCER_DIR = PROJECT_DIR / "deploy" / "control-plane" / "pgbouncer"
# What compose.yaml must let a local env set (since fd83c46).
COMPOSE_NEEDS = ("${UNDE_NGINX_IMAGE", "${UNDE_POSTGRES_IMAGE", "${UNDE_CODE_SERVER_ENV")
# dagster.yaml host -> index into the engines (modulo their number)
HOST_SPREAD = {"apify": 0, "photo-downloader": 0, "scraper": 0,
               "collage": 1, "ximilar-sync": 1, "model-generator": 1}


def compose_binary() -> str:
    out = subprocess.run(["bash", str(PROJECT_DIR / "deploy/local/install-compose.sh")],
                         check=True, capture_output=True, text=True).stdout
    return out.strip().splitlines()[-1]


def _run(cmd: Sequence[str], input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), check=True, text=True, capture_output=True, input=input)


@dataclass
class ControlPlane:
    name: str = "control-plane"
    compose_file: Path = COMPOSE_FILE
    engines: list[eng.Engine] = field(default_factory=eng.load_engines)
    host_engines: Mapping[str, str] = field(default_factory=dict)  # dagster.yaml host -> engine
    code_server_env: Mapping[str, str] = field(default_factory=dict)  # over the example's
    address: str = eng.HOST_ADDRESS

    @property
    def root(self) -> Path:
        return PROJECT_DIR / ".local" / "deploy" / self.name

    def _secret(self, key: str) -> str:
        path = self.root / "secrets" / key
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.write_text(secrets.token_urlsafe(24))
            path.chmod(0o600)
        return path.read_text().strip()

    @property
    def project(self) -> str:
        """Compose project: the file's own name for the default instance, a name of its own
        for others (the test's), so one's `down --volumes` never removes another's. They
        publish on `address`: two at once need two addresses (e.g. 10.77.0.2 on the bridge)."""
        return "unde-dagster" if self.name == "control-plane" else f"unde-dagster-{self.name}"

    @property
    def ui_url(self) -> str:
        return f"https://{self.address}"

    @property
    def ui_auth(self) -> tuple[str, str]:
        return UI_USER, self._secret("ui_password")

    def engine_urls(self) -> dict[str, str]:
        """dagster.yaml host name -> engine URL (UNDE_DOCKER_<HOST>). `control` is this
        machine's engine (the "host" one: the control plane runs there), the role hosts
        spread over the netns engines unless `host_engines` names one."""
        roles = [e for e in self.engines if e.kind == "netns"] or self.engines
        control = [e for e in self.engines if e.kind == "host"]
        if not roles or not control:
            raise RuntimeError("needs role engines and the host one: `python -m unde_local "
                               "engines up` (default: two netns engines + the host proxy)")
        by_name = {e.name: e for e in self.engines}
        urls = {h: by_name[self.host_engines.get(h) or roles[i % len(roles)].name].url
                for h, i in HOST_SPREAD.items()}
        urls["control"] = by_name[self.host_engines.get("control") or control[0].name].url
        return urls

    def run_env(self) -> dict[str, str]:
        """What a run container on any role engine needs for Dagster storage (its run.env)."""
        return {"DAGSTER_PG_URL": self.pg_url(self.address, "dagster")}

    def pg_url(self, host: str, db: str) -> str:
        return f"postgresql://dagster:{self._secret('pg_password')}@{host}:6432/{db}"

    # --- files --------------------------------------------------------------------------

    def write_config(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        tls = self._client_certs()
        ui_tls = self._ui_cert()
        htpasswd = self._htpasswd()
        code_env = self.root / "code-server.env"
        _write(code_env, self._code_server_env(), 0o600)
        env = {
            "UNDE_USER_CODE_IMAGE": os.environ.get("UNDE_USER_CODE_IMAGE", USER_CODE_IMAGE),
            "UNDE_CONTROL_IMAGE": os.environ.get("UNDE_CONTROL_IMAGE", CONTROL_IMAGE),
            **{var: image for var, (image, _) in IMAGES.items()},
            "UNDE_PGBOUNCER_BASE_IMAGE": BASE_IMAGE,
            "UNDE_CODE_SERVER_ENV": str(code_env),
            "CONTROL_PLANE_PRIVATE_IP": self.address,
            "DAGSTER_PG_PASSWORD": self._secret("pg_password"),
            "DAGSTER_PG_URL_TRANSACTION": self.pg_url("pgbouncer", "dagster"),
            "DAGSTER_PG_URL_SESSION": self.pg_url("pgbouncer", "dagster_session"),
            **{f"UNDE_DOCKER_{h.upper().replace('-', '_')}": url
               for h, url in self.engine_urls().items()},
            "UNDE_DOCKER_TLS_DIR": str(tls),
            # run workers of multi-role runs on the control engine mount it too
            "UNDE_DOCKER_TLS_DIR_MOUNT": f"{tls}:/etc/dagster/docker-tls:ro",
            "UNDE_UI_HTPASSWD": str(htpasswd),
            "UNDE_UI_TLS_DIR": str(ui_tls),
        }
        _write(self.root / ".env", env, 0o600)
        return self.root / ".env"

    def _code_server_env(self) -> dict[str, str]:
        """The example's names: our values, else the example's unless a placeholder."""
        example = self.compose_file.parent / "code-server.env.example"
        values: dict[str, str] = {}
        for line in example.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not line.lstrip().startswith("#") and "change-me" not in value:
                values[key.strip()] = value
        return {**values, **self.code_server_env}

    def _client_certs(self) -> Path:
        """engines' client cert, key 0400 for uid 10001 (the daemon image's user)."""
        src, dst = eng.CERTS_DIR / "client", self.root / "docker-tls"
        dst.mkdir(exist_ok=True)
        dst.chmod(0o755)
        for f, mode in (("ca.pem", 0o444), ("cert.pem", 0o444), ("key.pem", 0o400)):
            tmp = dst / f".{f}"
            shutil.copyfile(src / f, tmp)
            os.chown(tmp, eng.RUN_UID, eng.RUN_UID)
            tmp.chmod(mode)
            tmp.replace(dst / f)
        return dst

    def _ui_cert(self) -> Path:
        d = self.root / "ui-tls"
        if not (d / "ui.crt").exists():
            d.mkdir(exist_ok=True)
            _run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:prime256v1", "-nodes", "-days", "825", "-subj",
                  "/CN=unde-dagster-local", "-addext",
                  f"subjectAltName=IP:{self.address},DNS:localhost",
                  "-keyout", str(d / "ui.key"), "-out", str(d / "ui.crt")])
        return d

    def _htpasswd(self) -> Path:
        """bcrypt entry made by the nginx stand-in's htpasswd (password on stdin)."""
        path = self.root / "ui.htpasswd"
        user, password = self.ui_auth
        if not path.exists() or not path.read_text().startswith(f"{user}:$2"):
            line = _run(["docker", "run", "--rm", "-i", IMAGES["UNDE_NGINX_IMAGE"][0],
                         "htpasswd", "-niBC", "10", user], input=password).stdout.strip()
            path.write_text(line + "\n")
        path.chmod(0o644)  # read by nginx's workers (www-data / nginx), not root
        return path

    # --- images and compose -------------------------------------------------------------

    def build_images(self) -> dict[str, float]:
        """Stand-ins and PgBouncer on the local base; Docker's layer cache makes reruns quick."""
        times: dict[str, float] = {}
        for image, context in IMAGES.values():
            t0 = time.monotonic()
            _run(["docker", "build", "-q", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
                  "-t", image, str(context)])
            times[image] = time.monotonic() - t0
        t0 = time.monotonic()
        _run(["docker", "build", "-q", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "-t",
              PGBOUNCER_IMAGE, str(PGBOUNCER_DIR)])
        times[PGBOUNCER_IMAGE] = time.monotonic() - t0
        return times

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        text = self.compose_file.read_text()
        missing = [n for n in COMPOSE_NEEDS if n not in text]
        if missing:
            raise RuntimeError(f"{self.compose_file} lacks {missing} (a checkout before fd83c46?)")
        cmd = [compose_binary(), "--ansi", "never", "--env-file", str(self.root / ".env"), "-f",
               str(self.compose_file), "-p", self.project, "--profile", PROFILE, *args]
        return subprocess.run(cmd, check=check, text=True, capture_output=True)

    def up(self, timeout: float = 420, wait_daemon: bool = False) -> dict[str, float]:
        """Idempotent. Returns seconds per phase."""
        t0 = time.monotonic()
        eng.ensure_bridge()  # the published ports bind on its address (or one more of it)
        if self.address != eng.HOST_ADDRESS:
            subprocess.run(["ip", "addr", "replace", f"{self.address}/{eng.PREFIX_LEN}",
                            "dev", eng.BRIDGE], check=True)
        times = {f"build {k}": v for k, v in self.build_images().items()}
        self.write_config()
        t1 = time.monotonic()
        r = self.compose("up", "-d", "--no-build", check=False)
        if r.returncode:
            raise RuntimeError(f"compose up failed:\n{r.stderr[-3000:]}")
        times["compose up -d"] = time.monotonic() - t1
        self.wait(timeout, wait_daemon)
        times["healthy"] = time.monotonic() - t1
        times["total"] = time.monotonic() - t0
        return times

    def services(self) -> dict[str, dict[str, str]]:
        out = self.compose("ps", "-a", "--format", "json").stdout.strip()
        lines = [json.loads(x) for x in out.split("\n") if x and not out.startswith("[")]
        rows = json.loads(out) if out.startswith("[") else lines
        return {r["Service"]: {"state": r["State"], "health": r.get("Health", "")} for r in rows}

    def wait(self, timeout: float = 420, wait_daemon: bool = False) -> None:
        """Every service running, none unhealthy; the database path and the code server
        healthy; nginx serving /server_info with the login (so the webserver answers: its
        and nginx's first healthchecks come only 30 s after start). The daemon's health
        (first check 60 s after start) only if asked."""
        strict = {"postgres", "pgbouncer", "code-server", *(["daemon"] if wait_daemon else [])}
        deadline = time.monotonic() + timeout
        while True:
            s = self.services()
            pending = [n for n, v in s.items() if v["state"] != "running"
                       or v["health"] == "unhealthy"
                       or (n in strict and v["health"] not in ("", "healthy"))]
            if not pending and self.get("/server_info")[0] == 200:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"control plane not ready: {pending or 'nginx'}; {s}")
            time.sleep(1)

    def down(self, volumes: bool = False) -> None:
        self.compose("down", "--remove-orphans", *(["--volumes"] if volumes else []))

    def logs(self, service: str | None = None, tail: int = 200) -> str:
        only = [service] if service else []
        return self.compose("logs", "--no-color", "--tail", str(tail), *only).stdout

    # --- checks ---------------------------------------------------------------------------

    def get(
        self, path: str, auth: bool = True, body: bytes | None = None, timeout: float = 10
    ) -> tuple[int, bytes]:
        """A request to nginx (self-signed UI cert: not verified), with or without the login."""
        req = urllib.request.Request(self.ui_url + path, data=body)
        if body is not None:
            req.add_header("Content-Type", "application/json")
        if auth:
            token = base64.b64encode(":".join(self.ui_auth).encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPSHandler(context=ssl._create_unverified_context()))
        try:
            with opener.open(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()
        except OSError:
            return 0, b""

    def check(self) -> dict[str, int]:
        query = json.dumps({"query": "{ version }"}).encode()
        return {"/ without login": self.get("/", auth=False)[0],
                "/ (UI)": self.get("/")[0],
                "/server_info": self.get("/server_info")[0],
                "/graphql": self.get("/graphql", body=query)[0]}


def _write(path: Path, values: Mapping[str, str], mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    tmp.chmod(mode)
    tmp.replace(path)


def cli(argv: Sequence[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m unde_local control-plane")
    p.add_argument("action", choices=["up", "down", "logs", "status", "check"])
    p.add_argument("service", nargs="?", help="logs: one service")
    p.add_argument("--compose-file", type=Path, default=COMPOSE_FILE)
    p.add_argument("--name", default="control-plane", help="folder under .local/deploy/")
    p.add_argument("--address", default=eng.HOST_ADDRESS, help="where nginx/PgBouncer publish")
    p.add_argument("--volumes", action="store_true", help="down: delete the PostgreSQL volume")
    p.add_argument("--wait-daemon", action="store_true", help="up: until the daemon is healthy")
    args = p.parse_args(argv)
    cp = ControlPlane(name=args.name, compose_file=args.compose_file, address=args.address)
    if args.action == "up":
        for phase, secs in cp.up(wait_daemon=args.wait_daemon).items():
            print(f"{phase}: {secs:.1f}s")
        print(f"UI {cp.ui_url} (user {UI_USER}, password in {cp.root / 'secrets/ui_password'})")
    elif args.action == "down":
        cp.down(volumes=args.volumes)
    elif args.action == "logs":
        sys.stdout.write(cp.logs(args.service))
    elif args.action == "status":
        print(json.dumps(cp.services(), indent=2))
    else:
        print(json.dumps(cp.check(), indent=2))


if __name__ == "__main__":
    cli(sys.argv[1:])
