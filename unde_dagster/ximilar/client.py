"""HTTP client of Ximilar's collection API (`requests`), rate-limited and retrying.

Why not ximilar-client: it never raises on HTTP status, does not retry `requests`
exceptions and insists on "localhost" in local URLs (EXTERNAL_APIS.md §2); the three calls
we need are plain JSON POSTs. Every request — retries included — passes one rate limiter,
so the run as a whole stays under `rate_limit_per_s`; 429/5xx/connection errors back off
exponentially (honouring `Retry-After`) and give up after `max_retries`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

DEFAULT_PATH_PREFIX = "similarity/fashion-new/v2/"
MAX_RECORDS_PER_REQUEST = 10
# Per-record codes that mean "the record is in the collection" (411: already there).
PRESENT_CODES = frozenset({411})


class XimilarError(Exception):
    """A request that did not succeed; `reason` is a short key for metadata and logs."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class XimilarAuthError(XimilarError):
    """401/403: configuration, not data — the run should stop, SKUs keep their state."""


class XimilarUnavailable(XimilarError):
    """429/5xx/connection errors that outlasted the retries."""


@dataclass(frozen=True)
class ClientSettings:
    api_url: str
    token: str = field(repr=False)
    collection_id: str
    path_prefix: str = DEFAULT_PATH_PREFIX
    rate_limit_per_s: float = 10.0
    timeout_s: float = 30.0
    max_retries: int = 5
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0

    @property
    def base_url(self) -> str:
        return f"{self.api_url.rstrip('/')}/{self.path_prefix.strip('/')}/"


class RateLimiter:
    """At most `rate` calls per second: each call waits until 1/rate after the previous."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._clock, self._sleep = clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = self._clock()
            if now < self._next:
                self._sleep(self._next - now)
                now = self._next
            self._next = now + self.interval


@dataclass
class InsertOutcome:
    """Per-record result of one insert call: `_id`s now in the collection, and failures."""

    present: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def _reason_of(skipped: dict[str, Any]) -> str:
    status = ((skipped.get("_reason") or {}).get("status")) or {}
    code, text = status.get("code"), str(status.get("text") or "").lower()
    if "download" in text or "url" in text:
        return "image_not_downloadable"
    if code == 412 or "capacity" in text:
        return "capacity_exceeded"
    return f"record_{code}" if code else "record_rejected"


class XimilarClient:
    """insert / delete / get / search against one collection. Counts `requests_made`."""

    def __init__(self, settings: ClientSettings, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self.session = session or requests.Session()
        scheme = "JWT" if len(settings.token) >= 70 else "Token"
        self.session.headers.update({
            "Authorization": f"{scheme} {settings.token}",
            "collection-id": settings.collection_id,
            "Content-Type": "application/json",
        })
        self._sleep = sleep
        self.limiter = RateLimiter(settings.rate_limit_per_s, sleep=sleep)
        self.requests_made = 0
        self.retries = 0

    def close(self) -> None:
        self.session.close()

    # --- API methods --------------------------------------------------------------------
    def insert(self, records: Sequence[dict[str, Any]]) -> InsertOutcome:
        """Insert ≤ 10 records; per-record failures come back in `failed`, not as errors."""
        if len(records) > MAX_RECORDS_PER_REQUEST:
            raise ValueError(f"at most {MAX_RECORDS_PER_REQUEST} records per insert")
        body = self._post("insert", {"records": list(records)})
        outcome = InsertOutcome(present=[r["_id"] for r in body.get("records") or []
                                         if isinstance(r, dict) and "_id" in r])
        for skipped in body.get("skipped_records") or []:
            rid = skipped.get("_id")
            code = ((skipped.get("_reason") or {}).get("status") or {}).get("code")
            if code in PRESENT_CODES:
                outcome.present.append(rid)
            else:
                outcome.failed[rid] = _reason_of(skipped)
        answered = set(outcome.present) | set(outcome.failed)
        for record in records:  # a reply that forgets a record must not count it as sent
            if record["_id"] not in answered:
                outcome.failed[record["_id"]] = "no_answer_for_record"
        return outcome

    def delete(self, ids: Sequence[str]) -> int:
        """Delete ≤ 10 records; ids not in the collection are fine. Returns how many went."""
        if len(ids) > MAX_RECORDS_PER_REQUEST:
            raise ValueError(f"at most {MAX_RECORDS_PER_REQUEST} records per delete")
        body = self._post("delete", {"records": [{"_id": i} for i in ids]})
        return len(body.get("records") or [])

    def get(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        return list(self._post("get", {"records": [{"_id": i} for i in ids]}).get("records")
                    or [])

    def search(self, query: dict[str, Any], k: int = 5,
               filter: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"query_record": query, "k": k, "fields_to_return": ["_id"]}
        if filter:
            body["filter"] = filter
        return list(self._post("visualTagsKNN", body).get("answer_records") or [])

    def ping(self) -> bool:
        return self._post("ping", {}).get("status", {}).get("code") == 200

    # --- transport ----------------------------------------------------------------------
    def _post(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        url = self.settings.base_url + method
        attempt = 0
        while True:
            self.limiter.wait()
            self.requests_made += 1
            retry_after: float | None = None
            try:
                resp = self.session.post(url, json=payload, timeout=self.settings.timeout_s)
            except (requests.ConnectionError, requests.Timeout) as exc:
                reason, detail = "connection_error", type(exc).__name__
            else:
                if resp.status_code in (401, 403):
                    raise XimilarAuthError("auth", f"Ximilar {method}: HTTP {resp.status_code}")
                if resp.status_code == 429 or resp.status_code >= 500:
                    reason, detail = f"http_{resp.status_code}", resp.reason or ""
                    retry_after = _retry_after(resp)
                elif resp.status_code >= 400:
                    raise XimilarError(f"http_{resp.status_code}",
                                       f"Ximilar {method}: HTTP {resp.status_code} "
                                       f"{_status_text(resp)}")
                else:
                    try:
                        body = resp.json()
                    except ValueError:
                        reason, detail = "not_json", "reply is not JSON"
                    else:
                        if isinstance(body, dict):
                            return body
                        reason, detail = "not_json", "reply is not a JSON object"
            if attempt >= self.settings.max_retries:
                raise XimilarUnavailable(reason, f"Ximilar {method}: {reason} {detail} "
                                         f"after {attempt + 1} attempts")
            delay = min(self.settings.backoff_max_s, self.settings.backoff_base_s * 2**attempt)
            if retry_after is not None:
                delay = min(self.settings.backoff_max_s, max(delay, retry_after))
            attempt += 1
            self.retries += 1
            self._sleep(delay)


def _retry_after(resp: requests.Response) -> float | None:
    try:
        return float(resp.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


def _status_text(resp: requests.Response) -> str:
    try:
        return str(resp.json().get("status", {}).get("text", ""))[:200]
    except (ValueError, AttributeError):
        return resp.text[:200]
