"""The Dagster webserver and daemon of a local stack, as background processes.

`python -m unde_local ui` and the demo start them so an operator can open the UI; the
end-to-end tests start them on the test stack. Both read the stack's `DAGSTER_HOME` (the
project's `dagster.yaml`: PostgreSQL storage, queued runs with the role limits) and the
project's `workspace.yaml`, so what runs here is what runs in production, minus Docker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
SERVICES = ("webserver", "daemon")


@dataclass
class DagsterServices:
    """Starts, finds and stops the two processes; their pids and logs live in `run_dir`."""

    run_dir: Path
    env: dict[str, str]
    port: int = 3000
    host: str = "127.0.0.1"
    workspace: Path = PROJECT_DIR / "workspace.yaml"
    _started: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self, service: str) -> list[str]:
        bin_dir = Path(sys.executable).parent
        if service == "webserver":
            return [
                str(bin_dir / "dagster-webserver"), "-w", str(self.workspace),
                "-h", self.host, "-p", str(self.port),
            ]
        return [str(bin_dir / "dagster-daemon"), "run", "-w", str(self.workspace)]

    def start(self, services: tuple[str, ...] = SERVICES, timeout_s: float = 120) -> None:
        """Start what is not running yet and wait until the webserver answers."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for service in services:
            if self.pid(service):
                continue
            log = open(self.run_dir / f"{service}.log", "ab")  # noqa: SIM115 (child's stdout)
            proc = subprocess.Popen(
                self.command(service), env={**os.environ, **self.env}, cwd=PROJECT_DIR,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
            log.close()
            self._started[service] = proc
            (self.run_dir / f"{service}.pid").write_text(str(proc.pid))
        if "webserver" in services:
            self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.pid("webserver"):
                raise RuntimeError(f"the webserver exited; see {self.run_dir / 'webserver.log'}")
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"the webserver did not answer on {self.url} in {timeout_s:.0f}s")

    def pid(self, service: str) -> int | None:
        proc = self._started.get(service)
        if proc is not None:
            return proc.pid if proc.poll() is None else None
        return live_pid(self.run_dir / f"{service}.pid")

    def stop(self, timeout_s: float = 30) -> None:
        """SIGTERM each process group, then SIGKILL what is left of it (its code servers)."""
        for service in SERVICES:
            pid = self.pid(service)
            if pid is None:
                continue
            _signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while self.pid(service) and time.monotonic() < deadline:
                time.sleep(0.2)
            # Also the code servers the process started: they outlive a SIGTERM'd parent.
            _signal_group(pid, signal.SIGKILL)
            proc = self._started.pop(service, None)
            if proc is not None:
                proc.wait(timeout=10)
            (self.run_dir / f"{service}.pid").unlink(missing_ok=True)


def live_pid(pid_file: Path) -> int | None:
    """The pid recorded in `pid_file`, if that process still runs."""
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
