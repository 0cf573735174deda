"""An outage is not a bad SKU: one classification of failures for every stage.

An item fault (this SKU's bytes, this URL's 4xx) stays a per-SKU error that spends an
attempt. An outage — the object store, a database or an HTTP API unreachable, answering
5xx after its retries, or refusing our credentials — would fail every SKU the same way, so
it stops the batch instead (`ServiceOutage`), and the SKUs keep their attempts.
"""

from __future__ import annotations

from typing import Any

import botocore.exceptions as boto
import httpx
import psycopg
import requests

OBJECT_STORE = "object store"
STAGING_DB = "Staging DB"
HTTP_API = "HTTP API"

# S3 error codes that say our credentials or the service are refused, not one object.
_S3_REFUSED = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "ExpiredToken",
    "InvalidToken",
    "ServiceUnavailable",
    "SlowDown",
    "InternalError",
}


class ServiceOutage(Exception):
    """A service every SKU needs is down; `outcome` carries what the batch did before."""

    def __init__(self, service: str, cause: BaseException, outcome: Any = None) -> None:
        super().__init__(f"{service} unavailable: {type(cause).__name__}: {cause}")
        self.service = service
        self.cause = cause
        self.outcome = outcome


def outage_of(exc: BaseException, *, db: str = STAGING_DB) -> ServiceOutage | None:
    """The outage `exc` (or an exception it was raised from) means, or None for an item fault.

    `db` names the database a psycopg error came from (the Staging DB unless told).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ServiceOutage):
            return current
        service = _service_down(current, db)
        if service is not None:
            return ServiceOutage(service, current)
        current = current.__cause__  # `raise ... from`, not whatever was being handled
    return None


def _service_down(exc: BaseException, db: str) -> str | None:
    if isinstance(exc, boto.ClientError):
        return OBJECT_STORE if _client_error_is_outage(exc) else None
    if isinstance(
        exc,
        boto.ConnectionError
        | boto.HTTPClientError
        | boto.NoCredentialsError
        | boto.PartialCredentialsError,
    ):
        return OBJECT_STORE
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return db
    if isinstance(exc, requests.HTTPError):
        status = exc.response.status_code if exc.response is not None else None
        return _api(exc.request.url if exc.request else None) if _status_is_outage(status) else None
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return _api(exc.request.url if exc.request else None)
    if isinstance(exc, httpx.HTTPStatusError):
        return _api(str(exc.request.url)) if _status_is_outage(exc.response.status_code) else None
    if isinstance(exc, httpx.TransportError):
        return _api(_httpx_url(exc))
    return None


def _client_error_is_outage(exc: boto.ClientError) -> bool:
    error = exc.response.get("Error", {}) or {}
    status = (exc.response.get("ResponseMetadata", {}) or {}).get("HTTPStatusCode")
    return error.get("Code") in _S3_REFUSED or (isinstance(status, int) and status >= 500)


def _status_is_outage(status: int | None) -> bool:
    return status is not None and (status >= 500 or status in (401, 403))


def _httpx_url(exc: httpx.TransportError) -> str | None:
    try:
        return str(exc.request.url)
    except RuntimeError:  # raised without a request
        return None


def _api(url: str | None) -> str:
    host = httpx.URL(url).host if url else ""
    return f"{HTTP_API} {host}" if host else HTTP_API
