"""HTTP calls to the locator and store-stock endpoints, with bounded retries.

Why retry 403 too: Akamai answers a burst with 403 as readily as with 429; both are
retried with a growing wait (Retry-After honoured, capped), then the batch fails with a
clear error and the poll goes on with the next batch. Malformed JSON is never retried.
The retries are `unde_dagster.http_policy`'s (GET only, so nothing here is unsafe to repeat).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from unde_dagster import http_policy

RETRY_STATUSES = frozenset({403, 408, 429, 500, 502, 503, 504})


class AvailabilityError(RuntimeError):
    """A request failed for good; `kind` is a short code (http_403, http_429, bad_json, …)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class HttpPolicy:
    """Per request: `max_attempts` in all, the first retry after `backoff_s`, doubling."""

    timeout_s: float = 30.0
    max_attempts: int = 3
    backoff_s: float = 2.0
    max_backoff_s: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    _adapter: HTTPAdapter | None = field(default=None, init=False, repr=False, compare=False)

    def adapter(self) -> HTTPAdapter:
        """The retrying adapter of this policy, made once so its connections are reused."""
        if self._adapter is None:
            self._adapter = http_policy.adapter(
                http_policy.RetryPolicy(retries=self.max_attempts - 1, backoff_s=self.backoff_s,
                                        max_backoff_s=self.max_backoff_s,
                                        statuses=RETRY_STATUSES),
                sleep=self.sleep)
        return self._adapter


def get_json(session: requests.Session, url: str, params: Sequence[tuple[str, Any]],
             policy: HttpPolicy) -> Any:
    """GET and decode JSON; raises AvailabilityError once the attempts are spent.

    The session's own headers and cookies are used; its http(s) adapter becomes the
    policy's (mounted on the first call)."""
    http_policy.mount(session, policy.adapter())
    try:
        response = session.get(url, params=list(params), timeout=policy.timeout_s,
                               allow_redirects=False)
    except requests.RequestException as exc:
        raise AvailabilityError("network", f"{type(exc).__name__} calling {url}") from exc
    if response.status_code != 200:
        raise AvailabilityError(f"http_{response.status_code}",
                                f"{url} answered HTTP {response.status_code}")
    try:
        return response.json()
    except ValueError as exc:
        ctype = response.headers.get("Content-Type", "?")
        raise AvailabilityError(
            "bad_json", f"{url} answered 200 with non-JSON body ({ctype})") from exc


def locator_params(lat: float, lng: float) -> list[tuple[str, Any]]:
    return [("lat", lat), ("lng", lng), ("isGlobalSearch", "true"),
            ("showOnlyPickup", "false"), ("isDonationOnly", "false"), ("ajax", "true")]


def stock_params(store_ids: Sequence[int], references: Sequence[str],
                 section: str) -> list[tuple[str, Any]]:
    params: list[tuple[str, Any]] = [("physicalStoreIds", s) for s in store_ids]
    params += [("references", r) for r in references]
    params += [("sectionName", section), ("ajax", "true")]
    return params


_STORE_KEYS = ("physicalStoreId", "storeId", "physicalStore", "id")


def parse_stock(payload: Any, store_ids: Sequence[int]) -> dict[int, dict[str, str]]:
    """`productAvailability` → {store id: {reference: stock}} for the stores it names.

    The key naming the store inside an entry is not confirmed (EXTERNAL_APIS §5), so the
    usual candidates are tried; an entry without one is only accepted when a single store
    was asked. Stores absent from the reply get no rows (no data is not "out of stock").
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("productAvailability"), list):
        raise AvailabilityError("bad_shape", "reply has no productAvailability list")
    out: dict[int, dict[str, str]] = {}
    for entry in payload["productAvailability"]:
        if not isinstance(entry, dict):
            raise AvailabilityError("bad_shape", "productAvailability entry is not an object")
        store = next((entry[k] for k in _STORE_KEYS if k in entry), None)
        if store is None and len(store_ids) == 1:
            store = store_ids[0]
        try:
            store_id = int(store)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise AvailabilityError("bad_shape", "entry does not name its store") from None
        if store_id not in store_ids:
            continue
        products = entry.get("availableProducts") or []
        if not isinstance(products, list):
            raise AvailabilityError("bad_shape", "availableProducts is not a list")
        stock = out.setdefault(store_id, {})
        for product in products:
            if isinstance(product, dict) and isinstance(product.get("reference"), str):
                stock[product["reference"]] = _level(product.get("stock"))
    return out


def _level(value: Any) -> str:
    """Stock as text: levels pass through, quantities become in_stock/out_of_stock."""
    if isinstance(value, bool):
        return "in_stock" if value else "out_of_stock"
    if isinstance(value, int | float):
        return "in_stock" if value > 0 else "out_of_stock"
    return str(value) if value else "in_stock"
