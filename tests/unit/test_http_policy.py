"""The HTTP session policy through the real requests/urllib3 stack, against a loopback stub.

Not `responses` here: it replaces `HTTPAdapter.send` and replays urllib3's retry decisions
without urllib3's waits, so the waits, `Retry-After` and the per-attempt limiter would go
untested. Waits go through a recording `sleep`; the limiter runs on a hand-moved clock.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from pyrate_limiter import AbstractClock

from unde_dagster import http_policy
from unde_dagster.http_policy import RetryPolicy

Reply = tuple[int, dict[str, str]]
OK: Reply = (200, {})


class Stub:
    """Loopback HTTP server: each request gets the next scripted reply (the last repeats)."""

    def __init__(self, replies: list[Reply]) -> None:
        self.replies, self.seen = list(replies), []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                stub.seen.append((self.command, self.path))
                status, headers = stub.replies.pop(0) if len(stub.replies) > 1 else stub.replies[0]
                body = b'{"ok": true}'
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/x"
        threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def stub() -> Iterator[Any]:
    made: list[Stub] = []

    def make(*replies: Reply) -> Stub:
        made.append(Stub(list(replies)))
        return made[-1]

    yield make
    for s in made:
        s.close()


class Recorder:
    """The session's hooks: waits asked of `sleep`, and the attempts in order."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.attempts: list[int] = []

    def session(self, policy: RetryPolicy, **kw: Any) -> requests.Session:
        return http_policy.session(policy, sleep=self.waits.append,
                                   on_attempt=self.attempts.append, **kw)


def test_429_waits_for_retry_after_then_succeeds(stub: Any) -> None:
    s, rec = stub((429, {"Retry-After": "3"}), OK), Recorder()
    resp = rec.session(RetryPolicy(retries=3, backoff_s=1)).get(s.url, timeout=5)
    assert resp.status_code == 200 and resp.json() == {"ok": True}
    assert rec.waits == [3.0]  # Retry-After longer than the first backoff wins
    assert rec.attempts == [0, 1] and len(s.seen) == 2


def test_503_backs_off_from_backoff_s_doubling(stub: Any) -> None:
    s, rec = stub((503, {}), (503, {}), (500, {}), OK), Recorder()
    resp = rec.session(RetryPolicy(retries=5, backoff_s=0.5)).get(s.url, timeout=5)
    assert resp.status_code == 200
    assert rec.waits == [0.5, 1.0, 2.0] and rec.attempts == [0, 1, 2, 3]


def test_retry_after_is_capped_and_never_shortens_the_backoff(stub: Any) -> None:
    s = stub((503, {"Retry-After": "100"}), (429, {"Retry-After": "0"}),
             (503, {"Retry-After": "soon"}), OK)
    rec = Recorder()
    rec.session(RetryPolicy(retries=5, backoff_s=1, max_backoff_s=10)).get(s.url, timeout=5)
    assert rec.waits == [10, 2, 4]  # capped; 0 keeps the backoff; unreadable is ignored


def test_gives_up_after_n_retries_with_the_last_response(stub: Any) -> None:
    s, rec = stub((503, {})), Recorder()
    resp = rec.session(RetryPolicy(retries=2, backoff_s=1, max_backoff_s=1.5)).get(
        s.url, timeout=5)
    assert resp.status_code == 503  # handed back for the client to map to its own error
    assert len(s.seen) == 3 and rec.waits == [1, 1.5] and rec.attempts == [0, 1, 2]


@pytest.mark.parametrize("reply", [(404, {}), (400, {}), (413, {"Retry-After": "1"})])
def test_statuses_outside_the_list_are_not_retried(stub: Any, reply: Reply) -> None:
    s, rec = stub(reply, OK), Recorder()
    resp = rec.session(RetryPolicy(retries=3)).get(s.url, timeout=5)
    assert resp.status_code == reply[0] and len(s.seen) == 1 and rec.waits == []


def test_post_is_retried_only_when_declared_idempotent(stub: Any) -> None:
    plain, rec = stub((503, {}), OK), Recorder()
    assert rec.session(RetryPolicy(retries=3)).post(plain.url, json={}, timeout=5
                                                    ).status_code == 503
    assert len(plain.seen) == 1 and rec.waits == []

    keyed, rec = stub((503, {}), OK), Recorder()
    session = rec.session(RetryPolicy(retries=3, idempotent_post=True))
    assert session.post(keyed.url, json={}, timeout=5).status_code == 200
    assert keyed.seen == [("POST", "/x"), ("POST", "/x")] and rec.waits == [1.0]


def test_connection_refused_is_retried_then_raises() -> None:
    with socket.socket() as sock:  # a port that was just free: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    rec = Recorder()
    with pytest.raises(requests.ConnectionError):
        rec.session(RetryPolicy(retries=2, backoff_s=1)).post(
            f"http://127.0.0.1:{port}/x", json={}, timeout=5)  # nothing was sent: safe
    assert rec.attempts == [0, 1, 2] and rec.waits == [1, 2]


class Clock(AbstractClock):
    def __init__(self) -> None:
        self.ms = 0

    def now(self) -> int:
        return self.ms


def test_rate_limiter_spaces_acquisitions_evenly() -> None:
    clock = Clock()
    limiter = http_policy.rate_limiter(10, clock=clock)
    assert limiter is not None

    def takes() -> int:
        return sum(limiter.try_acquire("http", blocking=False) for _ in range(20))

    assert takes() == 1  # one slot per 100 ms, however many ask at once
    clock.ms = 99
    assert takes() == 0
    clock.ms = 100
    assert takes() == 1
    clock.ms = 10_000  # idle time is not banked into a burst
    assert takes() == 1
    assert http_policy.rate_limiter(0) is None


def test_rate_limiter_rounds_a_fractional_rate_to_the_strict_side() -> None:
    clock = Clock()
    limiter = http_policy.rate_limiter(3, clock=clock)
    assert limiter is not None and limiter.try_acquire("http", blocking=False)
    clock.ms = 333
    assert not limiter.try_acquire("http", blocking=False)
    clock.ms = 334
    assert limiter.try_acquire("http", blocking=False)


class CountingLimiter:
    """Stands in for a pyrate `Limiter`: counts the blocking acquisitions."""

    def __init__(self) -> None:
        self.acquired = 0

    def try_acquire(self, name: str, blocking: bool = True) -> bool:
        assert blocking
        self.acquired += 1
        return True


def test_every_attempt_passes_the_limiter(stub: Any) -> None:
    s, limiter, rec = stub((429, {}), (503, {}), OK), CountingLimiter(), Recorder()
    session = rec.session(RetryPolicy(retries=3), limiter=limiter)  # type: ignore[arg-type]
    assert session.get(s.url, timeout=5).status_code == 200
    assert limiter.acquired == 3 == len(s.seen)


def test_policy_module_does_not_load_dagster() -> None:
    code = "import sys, unde_dagster.http_policy; sys.exit('dagster' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
