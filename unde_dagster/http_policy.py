"""The HTTP session policy of the `requests` clients: retries by urllib3, pacing by pyrate-limiter.

One place says how a client retries: `requests`' `HTTPAdapter` with urllib3's `Retry` —
the statuses worth another try, exponential backoff, `Retry-After`, and POST retried only
when the caller says its calls are idempotent (connection failures before anything was sent
are retried for any method, as urllib3 does). After the last retry the last response is
handed back (`raise_on_status=False`), so each client maps the status to its own error.

Three deliberate departures from urllib3's defaults, all in `PolicyRetry`:
- the first retry waits `backoff_s` and each further one twice the last (urllib3 waits
  nothing before the first retry); every wait is capped at `max_backoff_s`;
- `Retry-After` can lengthen a wait, never shorten it, and is capped like any wait (an
  unreadable one is ignored); it does not make a status outside `statuses` retryable;
- the waits go through an injectable `sleep`, and every attempt — first and retries —
  can pass one rate limiter and an `on_attempt` callback (request counting).

Plain Python, no Dagster: the domain packages import this.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import requests
from pyrate_limiter import GCRA, AbstractClock, Limiter, Rate, SingleBucketFactory, StateBucket
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

log = logging.getLogger(__name__)

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
OnAttempt = Callable[[int], None]  # called before each attempt with its retry number (0: first)
_LIMITER_KEY = "http"


@dataclass(frozen=True)
class RetryPolicy:
    """How one client retries. `retries` is the number of tries after the first."""

    retries: int
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    statuses: Collection[int] = TRANSIENT_STATUSES
    idempotent_post: bool = False  # True only when every POST of the client may be repeated


class PolicyRetry(Retry):
    """urllib3's `Retry` with the waits of this policy (see the module docstring)."""

    # Only `status_forcelist` decides which statuses are retried (urllib3 also retries
    # 413/429/503 whenever they carry Retry-After).
    RETRY_AFTER_STATUS_CODES = frozenset()

    def __init__(self, *args: Any, sleep: Callable[[float], None] = time.sleep,
                 on_attempt: OnAttempt | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sleep_fn, self.on_attempt = sleep, on_attempt

    def new(self, **kw: Any) -> PolicyRetry:
        kw.setdefault("sleep", self.sleep_fn)
        kw.setdefault("on_attempt", self.on_attempt)
        return super().new(**kw)

    def get_backoff_time(self) -> float:
        if not self.history:
            return 0.0
        return min(self.backoff_max, self.backoff_factor * 2 ** (len(self.history) - 1))

    def wait_for(self, response: Any = None) -> float:
        """Seconds to wait before the next attempt, `Retry-After` of `response` included."""
        wait = self.get_backoff_time()
        if response is not None and self.respect_retry_after_header:
            try:
                hinted = self.get_retry_after(response)
            except InvalidHeader:
                hinted = None
            if hinted is not None:
                wait = min(self.backoff_max, max(wait, hinted))
        return wait

    def sleep(self, response: Any = None) -> None:
        wait = self.wait_for(response)
        if self.history:
            last = self.history[-1]
            log.warning("HTTP %s %s: %s, retry %d in %.1fs", last.method, last.url,
                        last.status or type(last.error).__name__, len(self.history), wait)
        if wait > 0:
            self.sleep_fn(wait)
        if self.on_attempt is not None:
            self.on_attempt(len(self.history))


class PolicyAdapter(HTTPAdapter):
    """`HTTPAdapter` that calls `on_attempt(0)` before each request's first attempt (the
    retries call it from `PolicyRetry.sleep`)."""

    def __init__(self, retry: PolicyRetry, on_attempt: OnAttempt | None = None) -> None:
        super().__init__(max_retries=retry)
        self.on_attempt = on_attempt

    def send(self, request: requests.PreparedRequest, *args: Any,
             **kwargs: Any) -> requests.Response:
        if self.on_attempt is not None:
            self.on_attempt(0)
        return super().send(request, *args, **kwargs)


def rate_limiter(per_second: float, clock: AbstractClock | None = None) -> Limiter | None:
    """At most `per_second` acquisitions a second, evenly spaced (GCRA with a burst of 1,
    so idle time is not banked into a burst); thread-safe. None when `per_second` ≤ 0."""
    if per_second <= 0:
        return None
    interval_ms = max(1, math.ceil(1000 / per_second))
    bucket = StateBucket([Rate(1, interval_ms, burst=1)], algorithm=GCRA(), clock=clock)
    # No leak thread: a state bucket has nothing to leak. No buffer: GCRA's wait is exact.
    return Limiter(SingleBucketFactory(bucket, schedule_leak=False), buffer_ms=0)


def acquire(limiter: Limiter) -> None:
    """Wait for the limiter's next slot."""
    limiter.try_acquire(_LIMITER_KEY, blocking=True)


def adapter(policy: RetryPolicy, *, limiter: Limiter | None = None,
            on_attempt: OnAttempt | None = None,
            sleep: Callable[[float], None] = time.sleep) -> PolicyAdapter:
    """An adapter that retries by `policy`; each attempt waits for `limiter`, then calls
    `on_attempt` with its retry number."""

    def attempt(n: int) -> None:
        if limiter is not None:
            acquire(limiter)
        if on_attempt is not None:
            on_attempt(n)

    methods = Retry.DEFAULT_ALLOWED_METHODS | ({"POST"} if policy.idempotent_post else set())
    retry = PolicyRetry(
        total=policy.retries, status_forcelist=frozenset(policy.statuses),
        allowed_methods=methods, backoff_factor=policy.backoff_s,
        backoff_max=policy.max_backoff_s, respect_retry_after_header=True,
        raise_on_status=False, sleep=sleep, on_attempt=attempt)
    return PolicyAdapter(retry, on_attempt=attempt)


def mount(session: requests.Session, policy_adapter: HTTPAdapter) -> requests.Session:
    """Route every http(s) request of `session` through `policy_adapter` (idempotent)."""
    for prefix in ("https://", "http://"):
        if session.adapters.get(prefix) is not policy_adapter:
            session.mount(prefix, policy_adapter)
    return session


def session(policy: RetryPolicy, *, limiter: Limiter | None = None,
            on_attempt: OnAttempt | None = None, sleep: Callable[[float], None] = time.sleep,
            headers: dict[str, str] | None = None) -> requests.Session:
    """A `requests.Session` whose http(s) requests follow `policy` (see `adapter`)."""
    s = requests.Session()
    if headers:
        s.headers.update(headers)
    return mount(s, adapter(policy, limiter=limiter, on_attempt=on_attempt, sleep=sleep))
