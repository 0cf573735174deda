"""The local stack: PostgreSQL, an S3-protocol store and the external-API emulators.

Everything lives under one folder (`.local/<name>/` by default), so two stacks (the demo
and the tests) run side by side. Ports are picked free on the first start and kept in
`ports.json`, because stored public URLs of originals and collages carry the S3 port and
must still resolve after a restart.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from unde_dagster.brands import load_brands
from unde_dagster.db.migrate import migrate
from unde_dagster.originals.url_safety import ALLOWLIST_ENV
from unde_local.emulators import Emulators
from unde_local.object_store import MotoObjectStore, make_object_store
from unde_local.postgres import LocalPostgres, free_port
from unde_local.seaweedfs import PORT_NAMES as SEAWEED_PORTS
from unde_local.seaweedfs import SeaweedObjectStore

SERVICES = ("postgres", "s3", "apify", "cdn_proxy", "ximilar", "fal", "availability")
BUCKET = "unde-images"

# The local profile shortens the downloader's politeness delays (production: 0.5–2 s per
# slot, 5/15/45 s backoff) so a demo brand finishes in minutes. Production defaults live
# in the resources; this only overrides them for the local stack.
LOCAL_PROFILE = {
    "DOWNLOAD_DELAY_MIN_S": "0.05",
    "DOWNLOAD_DELAY_MAX_S": "0.2",
    "DOWNLOAD_BACKOFF_S": "0.5,1,2",
}


@dataclass
class StackSettings:
    root: Path
    items_per_brand: int = 300
    database_url: str | None = None  # an existing server the user gives (DATABASE_URL)
    ports: dict[str, int] = field(default_factory=dict)
    # Where every service listens; the deployment test binds the Docker bridge's address so
    # that run containers reach the stack (the demo and the tests: loopback only).
    host: str = "127.0.0.1"


class LocalStack:
    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.root = settings.root
        self.postgres = LocalPostgres(
            self.root / "pg", user_url=settings.database_url, host=settings.host
        )
        self.object_store: MotoObjectStore | SeaweedObjectStore | None = None
        self.emulators: Emulators | None = None
        self.env: dict[str, str] = {}

    def _ports(self) -> dict[str, int]:
        path = self.root / "ports.json"
        ports = json.loads(path.read_text()) if path.exists() else {}
        ports.update(self.settings.ports)
        for name in SERVICES:
            ports.setdefault(name, free_port(self.settings.host))
        for name in SEAWEED_PORTS:  # SeaweedFS's own ports, each distinct from the others
            while name not in ports or list(ports.values()).count(ports[name]) > 1:
                ports[name] = free_port(self.settings.host)
        path.write_text(json.dumps(ports, indent=2))
        return ports

    def _secret(self, name: str) -> str:
        path = self.root / "secrets" / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(18))
            path.chmod(0o600)
        return path.read_text().strip()

    def start(self) -> dict[str, str]:
        self.root.mkdir(parents=True, exist_ok=True)
        ports = self._ports()
        self.postgres.port = ports["postgres"]
        admin_url = self.postgres.start()
        prefix = "unde" if not self.settings.database_url else f"unde_{self.root.name}"
        dbs = self.postgres.create_databases(
            admin_url, [f"{prefix}_staging", f"{prefix}_production", f"{prefix}_dagster"]
        )
        migrate(dbs[f"{prefix}_staging"], "staging")
        migrate(dbs[f"{prefix}_production"], "production")

        self.object_store = make_object_store(
            self.root, self.settings.host, ports, self._secret("s3_secret_key")
        )
        s3_url = self.object_store.start([BUCKET])

        apify_token = self._secret("apify_token")
        proxy_password = self._secret("proxy_password")
        self.emulators = Emulators(
            host=self.settings.host,
            ports={k: v for k, v in ports.items()
                   if k not in {"postgres", "s3", *SEAWEED_PORTS}},
            tasks={b.apify_task_id: b.key for b in load_brands().values()},
            items_per_brand=self.settings.items_per_brand,
            apify_token=apify_token,
            proxy_user="brd-customer-local-zone-unde",
            proxy_password=proxy_password,
            data_dir=self.root / "emulators",
        )
        urls = self.emulators.start()
        self.env = {
            "STAGING_DB_URL": dbs[f"{prefix}_staging"],
            "PRODUCTION_DB_URL": dbs[f"{prefix}_production"],
            "DAGSTER_PG_URL": dbs[f"{prefix}_dagster"],
            "S3_ENDPOINT": s3_url,
            "S3_ACCESS_KEY": "local",
            "S3_SECRET_KEY": self._secret("s3_secret_key"),
            "S3_BUCKET": BUCKET,
            "S3_PUBLIC_BASE_URL": f"{s3_url}/{BUCKET}",
            "APIFY_API_URL": urls.apify_api_url,
            "APIFY_TOKEN": apify_token,
            "PROXY_URL": urls.proxy_url,
            # The emulated CDN host resolves nowhere, so the photo downloader's public-address
            # check (SPEC §6) would refuse it: the local profile names it, and nothing else.
            ALLOWLIST_ENV: urlsplit(urls.cdn_base_url).hostname or "",
            "XIMILAR_API_URL": urls.ximilar_api_url or "",
            "XIMILAR_TOKEN": self._secret("ximilar_token"),
            "XIMILAR_COLLECTION_ID": "unde-local-collection",
            "FAL_QUEUE_URL": urls.fal_queue_url or "",
            "FAL_KEY": self._secret("fal_key"),
            "AVAILABILITY_API_URL": urls.availability_api_url or "",
            **LOCAL_PROFILE,
        }
        self.env = {k: v for k, v in self.env.items() if v}
        env_file = self.root / "stack.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in sorted(self.env.items())))
        env_file.chmod(0o600)
        return self.env

    def stop(self) -> None:
        if self.emulators is not None:
            self.emulators.stop()
        if self.object_store is not None:
            self.object_store.stop()
        self.postgres.stop()


def read_env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                env[key.strip()] = value.strip().strip('"').strip("'")
    return env


def pipeline_env(root: Path, project_dir: Path) -> dict[str, str]:
    """The stack's variables, overridden by the user's `.env` (real credentials win)."""
    env = read_env_file(root / "stack.env")
    env.update(read_env_file(project_dir / ".env"))
    env["DAGSTER_HOME"] = str(root / "dagster_home")
    return env


def database_url_from_env() -> str | None:
    """An existing server the user gives; our databases are created next to its own."""
    return os.environ.get("DATABASE_URL") or None
