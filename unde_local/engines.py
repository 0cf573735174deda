"""Role-host Docker engines on one machine, for the deployment test (plain Python, no Dagster).

A "netns" engine is a second dockerd with its own network namespace (veth on the host bridge
`unde-br0`, 10.77.0.0/24), data root (/var/lib/unde-engines/<name>/docker), exec root,
pidfile, managed containerd, hostname and mount namespace. It listens with --tlsverify on
tcp://<its IP>:2376 with certificates from the project's deploy/tls/make-docker-certs.sh,
plus a unix socket (/run/unde-engines/<name>/docker.sock) for the harness. In its mount
namespace /etc/unde is /var/lib/unde-engines/<name>/etc-unde, so the launcher's
`env_file: /etc/unde/run.env` is a per-host file as on real role hosts (`write_run_env`).
The "host" engine is this machine's dockerd (where the control plane runs: dagster.yaml's
`control` host) behind a mutual-TLS proxy (Python ssl, client certificate required) on
tcp://10.77.0.1:2376.

Containers on every engine reach the host at HOST_ADDRESS (10.77.0.1, the bridge's address):
what they use there (PgBouncer's published port, the stack's PostgreSQL and emulators) must
listen on it or on 0.0.0.0, not on 127.0.0.1.

    python -m unde_local engines up [--netns N] [--no-host-proxy] | down [--purge] | status
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
BRIDGE = "unde-br0"
HOST_ADDRESS = "10.77.0.1"
PREFIX_LEN = 24
PORT = 2376
API_VERSION = "1.41"  # Docker 20.10 (Debian bookworm's docker.io) serves at most 1.41
DATA_ROOT = Path(os.environ.get("UNDE_ENGINES_DATA", "/var/lib/unde-engines"))
RUN_ROOT = Path("/run/unde-engines")
STATE_DIR = PROJECT_DIR / ".local" / "engines"
CERTS_DIR = STATE_DIR / "tls"
HOST_SOCKET = "/var/run/docker.sock"
MAKE_CERTS = PROJECT_DIR / "deploy" / "tls" / "make-docker-certs.sh"
RUN_UID = 10001  # the images' dagster user: run.env is 0400 for it


def default_images() -> list[str]:
    return [os.environ.get("UNDE_USER_CODE_IMAGE", "unde-dagster:local")]


@dataclass(frozen=True)
class Engine:
    name: str
    kind: str  # "netns": own dockerd; "host": the machine's dockerd behind the mTLS proxy
    address: str

    @property
    def url(self) -> str:
        return f"tcp://{self.address}:{PORT}"

    @property
    def socket(self) -> str:
        return str(RUN_ROOT / self.name / "docker.sock") if self.kind == "netns" else HOST_SOCKET

    @property
    def unix_url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def data_dir(self) -> Path:
        return DATA_ROOT / self.name

    @property
    def run_dir(self) -> Path:
        return RUN_ROOT / self.name

    @property
    def netns(self) -> str:
        return f"unde-{self.name}"

    @property
    def veth(self) -> str:
        return f"ue-{self.name}"[:15]

    @property
    def pidfile(self) -> Path:
        return self.run_dir / ("docker.pid" if self.kind == "netns" else "proxy.pid")

    @property
    def run_env_path(self) -> Path:
        """This engine's /etc/unde/run.env, as seen from the host."""
        if self.kind == "netns":
            return self.data_dir / "etc-unde" / "run.env"
        return Path("/etc/unde/run.env")


def default_engines(netns: int = 2, host_proxy: bool = True) -> list[Engine]:
    engines = [Engine(f"role-{'abcdefgh'[i]}", "netns", f"10.77.0.{11 + i}") for i in range(netns)]
    return [*engines, Engine("host", "host", HOST_ADDRESS)] if host_proxy else engines


# --- helpers -------------------------------------------------------------------------------


def _run(*cmd: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), check=check, text=True, capture_output=True, **kw)


def _ok(*cmd: str) -> bool:
    return _run(*cmd, check=False).returncode == 0


def _live_pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _http_ok(sock: socket.socket) -> bool:
    sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
    return sock.recv(64).startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))


def ping_unix(path: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(3)
            s.connect(path)
            return _http_ok(s)
    except OSError:
        return False


def client_tls_paths(certs: Path = CERTS_DIR) -> dict[str, str]:
    """The control plane's client certificate, in the launcher's `tls:` key names."""
    d = certs / "client"
    return {"ca_cert": str(d / "ca.pem"), "client_cert": str(d / "cert.pem"),
            "client_key": str(d / "key.pem")}


def ping_tls(engine: Engine, certs: Path = CERTS_DIR, timeout: float = 3) -> bool:
    """GET /_ping over mutual TLS with the control plane's client certificate."""
    paths = client_tls_paths(certs)
    ctx = ssl.create_default_context(cafile=paths["ca_cert"])
    ctx.load_cert_chain(paths["client_cert"], paths["client_key"])
    try:
        raw = socket.create_connection((engine.address, PORT), timeout=timeout)
        with raw, ctx.wrap_socket(raw, server_hostname=engine.address) as s:
            return _http_ok(s)
    except (OSError, ssl.SSLError):
        return False


def client(engine: Engine, certs: Path = CERTS_DIR) -> Any:
    """docker-py client on the engine's mTLS URL. trust_env off (REQUESTS_CA_BUNDLE would
    replace our CA), and a fixed API version: the "auto" probe runs before it can be off."""
    import docker
    import docker.tls

    p = client_tls_paths(certs)
    tls = docker.tls.TLSConfig(client_cert=(p["client_cert"], p["client_key"]),
                               ca_cert=p["ca_cert"], verify=True)
    c = docker.DockerClient(base_url=engine.url, tls=tls, version=API_VERSION, timeout=60)
    c.api.trust_env = False
    return c


def containers_ran(engine: Engine, label: str = "dagster/run_id") -> list[dict[str, Any]]:
    """Every container (running or exited) with `label`, asked of the engine's own API."""
    c = client(engine)
    try:
        return [{"id": k.id, "name": k.name, "image": k.attrs["Config"]["Image"],
                 "image_id": k.attrs["Image"], "status": k.status, "labels": k.labels}
                for k in c.containers.list(all=True, filters={"label": label})]
    finally:
        c.close()


# --- certificates and network --------------------------------------------------------------


def ensure_certs(engines: Sequence[Engine], certs: Path = CERTS_DIR) -> None:
    """deploy/tls/make-docker-certs.sh into `certs` for engines without a server cert yet
    (the script keeps an existing CA; it signs the client certificate again each time)."""
    missing = [e for e in engines if not (certs / e.name / "server-cert.pem").exists()]
    if missing or not (certs / "client" / "key.pem").exists():
        pairs = [f"{e.name}={e.address}" for e in (missing or engines[:1])]
        _run("bash", str(MAKE_CERTS), str(certs), *pairs)


def ensure_bridge() -> None:
    if not _ok("ip", "link", "show", BRIDGE):
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
    _run("ip", "addr", "replace", f"{HOST_ADDRESS}/{PREFIX_LEN}", "dev", BRIDGE)
    _run("ip", "link", "set", BRIDGE, "up")


def _ensure_netns(e: Engine) -> None:
    if e.netns not in _run("ip", "netns", "list").stdout.split():
        _run("ip", "netns", "add", e.netns)
    if not _ok("ip", "link", "show", e.veth):
        _run("ip", "link", "add", e.veth, "type", "veth", "peer", "name", "eth0", "netns", e.netns)
    _run("ip", "link", "set", e.veth, "master", BRIDGE, "up")
    ns = ("ip", "-n", e.netns)
    _run(*ns, "addr", "replace", f"{e.address}/{PREFIX_LEN}", "dev", "eth0")
    _run(*ns, "link", "set", "eth0", "up")
    _run(*ns, "link", "set", "lo", "up")
    _run(*ns, "route", "replace", "default", "via", HOST_ADDRESS)


# --- netns engines -------------------------------------------------------------------------


def _daemon_json(e: Engine, certs: Path) -> dict[str, Any]:
    n = int(e.address.rsplit(".", 1)[1])
    tls = certs / e.name
    return {
        "data-root": str(e.data_dir / "docker"), "exec-root": str(e.run_dir / "exec"),
        "pidfile": str(e.pidfile), "hosts": [e.unix_url, e.url],
        "tls": True, "tlsverify": True, "tlscacert": str(tls / "ca.pem"),
        "tlscert": str(tls / "server-cert.pem"), "tlskey": str(tls / "server-key.pem"),
        "storage-driver": os.environ.get("UNDE_ENGINES_STORAGE", "fuse-overlayfs"),
        "bip": f"10.78.{n}.1/24",
        "default-address-pools": [{"base": f"10.79.{n}.0/24", "size": 28}],
        "mtu": 1400, "cgroup-parent": e.netns, "live-restore": True,
        "labels": [f"unde.host={e.name}"],
        "log-driver": "json-file", "log-opts": {"max-size": "10m", "max-file": "3"},
    }


def _wait_unix(e: Engine, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not ping_unix(e.socket):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)
    return True


def _start_dockerd(e: Engine, certs: Path) -> None:
    if _live_pid(e.pidfile):  # running or starting: never two dockerds on one data root
        if _wait_unix(e, 60):
            return
        raise RuntimeError(f"dockerd {e.name} (pid {_live_pid(e.pidfile)}) does not answer")
    for d in (e.data_dir / "etc-unde", e.run_dir, Path("/etc/unde")):
        d.mkdir(parents=True, exist_ok=True)
    config = e.data_dir / "daemon.json"  # its own: the host's /etc/docker/daemon.json is not read
    config.write_text(json.dumps(_daemon_json(e, certs), indent=2))
    # Own mount and UTS namespaces: /etc/unde and the hostname are this host's; the
    # engine's mounts stay out of the host's view. nsenter/unshare exec: the pid is dockerd's.
    script = 'mount --bind "$1" /etc/unde && hostname "$3" && exec dockerd --config-file "$2"'
    cmd = ["nsenter", f"--net=/run/netns/{e.netns}", "--", "unshare", "--mount", "--uts",
           "--propagation", "private", "--", "sh", "-c", script, "sh",
           str(e.data_dir / "etc-unde"), str(config), e.name]
    log = open(e.data_dir / "dockerd.log", "ab")  # noqa: SIM115 (handed to the child)
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 90
    while not ping_unix(e.socket):
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = (e.data_dir / "dockerd.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"dockerd {e.name} did not start (exit {proc.poll()}):\n{tail}")
        time.sleep(0.3)


def _image_id(host: str, image: str) -> str:
    r = _run("docker", "-H", host, "image", "inspect", "-f", "{{.Id}}", image, check=False)
    return r.stdout.strip() if r.returncode == 0 else ""


def sync_images(e: Engine, images: Sequence[str]) -> dict[str, str]:
    """docker save | docker load into the engine, skipped when the image id already matches."""
    done: dict[str, str] = {}
    for image in images:
        want = _image_id(f"unix://{HOST_SOCKET}", image)
        if not want:
            raise RuntimeError(f"image {image} is not on the host engine: build it first")
        if e.kind == "host" or _image_id(e.unix_url, image) == want:
            done[image] = "present"
            continue
        t0 = time.monotonic()
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        _run("docker", "-H", e.unix_url, "load", "-q", stdin=save.stdout)
        if save.wait() != 0:
            raise RuntimeError(f"docker save {image} failed")
        done[image] = f"loaded in {time.monotonic() - t0:.1f}s"
    if any(v != "present" for v in done.values()):  # the replaced versions, unless in use
        _run("docker", "-H", e.unix_url, "image", "prune", "-f", check=False)
    return done


def _stop_pid(pidfile: Path, timeout: float = 40) -> None:
    pid = _live_pid(pidfile)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _live_pid(pidfile) == pid and time.monotonic() < deadline:
        time.sleep(0.2)
    if _live_pid(pidfile) == pid:
        os.kill(pid, signal.SIGKILL)


# --- host engine behind the mTLS proxy ------------------------------------------------------


def _relay(ctx: ssl.SSLContext, raw: socket.socket, target: str) -> None:
    """One client: TLS <-> the engine's unix socket in one thread (an SSL object must not be
    used by two threads at once). A client's close_notify only half-closes, as with dockerd:
    a hijacked attach stream (`docker run`) keeps receiving output after the CLI's CloseWrite."""
    try:
        with raw, ctx.wrap_socket(raw, server_side=True) as tls, socket.socket(
            socket.AF_UNIX
        ) as up:
            up.connect(target)
            client_open = True
            while True:
                if client_open and tls.pending():
                    ready: list[Any] = [tls]
                else:
                    ready = select.select([up, tls] if client_open else [up], [], [])[0]
                if tls in ready:
                    data = tls.recv(65536)
                    if data:
                        up.sendall(data)
                    else:
                        client_open = False
                        up.shutdown(socket.SHUT_WR)
                if up in ready:
                    data = up.recv(65536)
                    if not data:
                        return
                    tls.sendall(data)
    except (OSError, ssl.SSLError):
        return


def _serve_proxy(listen: str, certs: Path, name: str, target: str) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certs / name / "ca.pem"))
    ctx.load_cert_chain(certs / name / "server-cert.pem", certs / name / "server-key.pem")
    ctx.verify_mode = ssl.CERT_REQUIRED  # mutual TLS, as dockerd --tlsverify
    with socket.create_server((listen, PORT)) as server:
        while True:
            raw, _ = server.accept()
            threading.Thread(target=_relay, args=(ctx, raw, target), daemon=True).start()


def _start_proxy(e: Engine, certs: Path) -> None:
    if _live_pid(e.pidfile) and ping_tls(e, certs):
        return
    e.run_dir.mkdir(parents=True, exist_ok=True)
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    log = open(STATE_DIR / f"{e.name}-proxy.log", "ab")  # noqa: SIM115 (handed to the child)
    cmd = [sys.executable, "-m", "unde_local.engines", "_proxy", e.name, e.address, str(certs)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                            start_new_session=True, cwd=PROJECT_DIR)
    e.pidfile.write_text(str(proc.pid))
    deadline = time.monotonic() + 20
    while not ping_tls(e, certs):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"mTLS proxy for {e.name} did not start; see {log.name}")
        time.sleep(0.2)


# --- lifecycle -----------------------------------------------------------------------------


def load_engines() -> list[Engine]:
    path = STATE_DIR / "engines.json"
    return [Engine(**d) for d in json.loads(path.read_text())] if path.exists() else []


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One up/down at a time on this machine (the test's and a developer's)."""
    RUN_ROOT.mkdir(parents=True, exist_ok=True)
    with open(RUN_ROOT / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def up(engines: Sequence[Engine] | None = None, images: Sequence[str] | None = None,
       certs: Path = CERTS_DIR) -> list[Engine]:
    """Idempotent: bridge, certificates, engines, images. Default: the last set, else the
    two netns engines and the host one."""
    if os.geteuid() != 0:
        raise RuntimeError("role engines need root (ip netns, dockerd)")
    with _locked():
        return _up(engines, images, certs)


def _up(engines: Sequence[Engine] | None, images: Sequence[str] | None,
        certs: Path) -> list[Engine]:
    engines = list(engines if engines is not None else (load_engines() or default_engines()))
    ensure_bridge()
    ensure_certs(engines, certs)
    _down([e for e in load_engines() if e not in engines])  # dropped from the set
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    (STATE_DIR / "engines.json").write_text(json.dumps([asdict(e) for e in engines], indent=2))
    for e in engines:
        if e.kind == "netns":
            _ensure_netns(e)
            _start_dockerd(e, certs)
        else:
            _start_proxy(e, certs)
        sync_images(e, default_images() if images is None else images)
    return engines


def down(engines: Sequence[Engine] | None = None, purge: bool = False) -> None:
    """Stop the engines, their containers first (live-restore would keep them running).
    purge: also delete each netns engine's namespace and data root, and the bridge."""
    with _locked():
        _down(engines, purge)


def _down(engines: Sequence[Engine] | None, purge: bool = False) -> None:
    for e in load_engines() if engines is None else engines:
        if e.kind != "netns":
            _stop_pid(e.pidfile, timeout=5)
            continue
        if ping_unix(e.socket):
            ids = _run("docker", "-H", e.unix_url, "ps", "-q").stdout.split()
            if ids:
                _run("docker", "-H", e.unix_url, "stop", "-t", "10", *ids, check=False)
        _stop_pid(e.pidfile)
        if purge:
            _run("ip", "netns", "del", e.netns, check=False)
            _run("rm", "-rf", "--one-file-system", str(e.data_dir), str(e.run_dir))
    if purge and engines is None:
        _run("ip", "link", "del", BRIDGE, check=False)


def cut(e: Engine) -> None:
    """Make the engine unreachable (its link down; for "host", the proxy stopped)."""
    if e.kind == "netns":
        _run("ip", "link", "set", e.veth, "down")
    else:
        _stop_pid(e.pidfile, timeout=5)


def restore(e: Engine, certs: Path = CERTS_DIR) -> None:
    if e.kind == "netns":
        _run("ip", "link", "set", e.veth, "master", BRIDGE, "up")
    else:
        _start_proxy(e, certs)


def write_run_env(e: Engine, values: Mapping[str, str]) -> Path:
    """The engine's /etc/unde/run.env (0400, uid 10001): the launcher's `env_file`. Write it
    before runs land there: a bind of a missing file makes dockerd create a directory."""
    path = e.run_env_path
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        path.rmdir()
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    os.chown(tmp, RUN_UID, RUN_UID)
    tmp.chmod(0o400)
    tmp.replace(path)
    return path


def status(engines: Sequence[Engine] | None = None) -> list[dict[str, Any]]:
    return [{"name": e.name, "kind": e.kind, "url": e.url, "tls": "mutual", "up": ping_tls(e),
             "unix": e.unix_url, "run_env": str(e.run_env_path)}
            for e in (load_engines() if engines is None else engines)]


def cli(argv: Sequence[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m unde_local engines")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--netns", type=int, help="up: own-dockerd engines (default: as last, or 2)")
    p.add_argument("--no-host-proxy", dest="host_proxy", action="store_false",
                   help="up: without the host engine's mTLS endpoint (the control one)")
    p.add_argument("--purge", action="store_true", help="down: delete netns, data and bridge")
    args = p.parse_args(argv)
    if args.action == "up":
        t0 = time.monotonic()
        chosen = args.netns is not None or not args.host_proxy
        up(default_engines(2 if args.netns is None else args.netns, args.host_proxy)
           if chosen else None)
        print(f"engines up in {time.monotonic() - t0:.1f}s")
    elif args.action == "down":
        down(purge=args.purge)
    for row in status():
        print(json.dumps(row))


if __name__ == "__main__":
    if sys.argv[1:2] == ["_proxy"]:
        name, address, certs = sys.argv[2:5]
        _serve_proxy(address, Path(certs), name, HOST_SOCKET)
    else:
        cli(sys.argv[1:])
