"""HTTP client of Ximilar's collection API (`requests`), rate-limited and retrying.

Why not ximilar-client: it never raises on HTTP status, does not retry `requests`
exceptions and insists on "localhost" in local URLs (EXTERNAL_APIS.md §2); the three calls
we need are plain JSON POSTs. The session follows `unde_dagster.http_policy`: every
request — retries included — passes one rate limiter, so the client stays under
`rate_limit_per_s`; 429/5xx/connection errors back off exponentially (honouring
`Retry-After`) and give up after `max_retries`. Every call may be repeated (an insert is
keyed by `_id`, a repeat answers 411), so POSTs are retried too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from pyrate_limiter import Limiter

from unde_dagster import http_policy

DEFAULT_PATH_PREFIX = "similarity/fashion-new/v2/"
MAX_RECORDS_PER_REQUEST = 10
# Per-record codes that mean "the record is in the collection" (411: already there).
PRESENT_CODES = frozenset({411})
# Retried by the session, then XimilarUnavailable: rate limiting and every server error.
RETRY_STATUSES = frozenset({429, *range(500, 600)})


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

    def __init__(self, settings: ClientSettings, limiter: Limiter | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """`limiter` defaults to `rate_limit_per_s`; `sleep` takes the retries' waits."""
        self.settings = settings
        self.limiter = (http_policy.rate_limiter(settings.rate_limit_per_s) if limiter is None
                        else limiter)
        self.requests_made = 0
        self.retries = 0
        scheme = "JWT" if len(settings.token) >= 70 else "Token"
        self.session = http_policy.session(
            http_policy.RetryPolicy(
                retries=settings.max_retries, backoff_s=settings.backoff_base_s,
                max_backoff_s=settings.backoff_max_s, statuses=RETRY_STATUSES,
                idempotent_post=True),
            limiter=self.limiter, on_attempt=self._count, sleep=sleep,
            headers={"Authorization": f"{scheme} {settings.token}",
                     "collection-id": settings.collection_id,
                     "Content-Type": "application/json"})

    def _count(self, retry: int) -> None:
        self.requests_made += 1
        if retry:
            self.retries += 1

    def close(self) -> None:
        self.session.close()
        if self.limiter is not None:
            self.limiter.close()

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

    def all_records(self, page: int, size: int = 1000) -> list[dict[str, Any]]:
        """One page (from 1) of the whole collection, records with their metadata."""
        body = self._post(f"allRecords?size={int(size)}&page={int(page)}", {})
        return [r for r in body.get("records") or [] if isinstance(r, dict)]

    def ping(self) -> bool:
        return self._post("ping", {}).get("status", {}).get("code") == 200

    # --- transport ----------------------------------------------------------------------
    def _post(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        """One call; the session retries. Raises once the status or error is final."""
        try:
            resp = self.session.post(self.settings.base_url + method, json=payload,
                                     timeout=self.settings.timeout_s)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise XimilarUnavailable("connection_error", f"Ximilar {method}: connection_error "
                                     f"{type(exc).__name__} {self._after()}") from exc
        if resp.status_code in (401, 403):
            raise XimilarAuthError("auth", f"Ximilar {method}: HTTP {resp.status_code}")
        if resp.status_code in RETRY_STATUSES:
            raise XimilarUnavailable(f"http_{resp.status_code}",
                                     f"Ximilar {method}: http_{resp.status_code} "
                                     f"{resp.reason or ''} {self._after()}")
        if resp.status_code >= 400:
            raise XimilarError(f"http_{resp.status_code}",
                               f"Ximilar {method}: HTTP {resp.status_code} {_status_text(resp)}")
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):  # not retried: a 200 is an answer, if a broken one
            raise XimilarUnavailable("not_json", f"Ximilar {method}: HTTP {resp.status_code} "
                                     "reply is not a JSON object")
        return body

    def _after(self) -> str:
        return f"after {self.settings.max_retries + 1} attempts"


def _status_text(resp: requests.Response) -> str:
    try:
        return str(resp.json().get("status", {}).get("text", ""))[:200]
    except (ValueError, AttributeError):
        return resp.text[:200]
