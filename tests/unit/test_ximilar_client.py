"""The Ximilar client against a fake HTTP transport (a requests adapter)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter

from unde_dagster.ximilar.client import (
    ClientSettings,
    RateLimiter,
    XimilarAuthError,
    XimilarClient,
    XimilarUnavailable,
)

Reply = tuple[int, Any, dict[str, str]]


class FakeAdapter(BaseAdapter):
    """Answers each request with the next scripted reply and keeps what was sent."""

    def __init__(self, replies: list[Reply | Callable[[dict], Reply]]) -> None:
        super().__init__()
        self.replies, self.sent = list(replies), []

    def send(self, request: requests.PreparedRequest, **kw: Any) -> requests.Response:
        body = json.loads(request.body or b"{}")
        self.sent.append((request.url, dict(request.headers), body))
        reply = self.replies.pop(0)
        status, payload, headers = reply(body) if callable(reply) else reply
        resp = requests.Response()
        resp.status_code, resp.url, resp.request = status, request.url, request
        resp.headers.update(headers)
        resp._content = json.dumps(payload).encode() if payload is not None else b"<html>"
        return resp

    def close(self) -> None:
        pass


def make(replies: list, token: str = "t0k3n", **kw: Any) -> tuple[XimilarClient, FakeAdapter,
                                                                  list[float]]:
    adapter, sleeps = FakeAdapter(replies), []
    session = requests.Session()
    session.mount("http://", adapter)
    settings = ClientSettings(api_url="http://localhost:1", token=token, collection_id="c1",
                              rate_limit_per_s=0, **kw)
    return XimilarClient(settings, session=session, sleep=sleeps.append), adapter, sleeps


def inserted(body: dict) -> Reply:
    return 200, {"records": body["records"], "status": {"code": 210}}, {}


def test_headers_url_and_path_prefix() -> None:
    client, adapter, _ = make([inserted], path_prefix="similarity/photos/v2")
    client.insert([{"_id": "a", "_url": "http://x/1.jpg"}])
    url, headers, _ = adapter.sent[0]
    assert url == "http://localhost:1/similarity/photos/v2/insert"
    assert headers["Authorization"] == "Token t0k3n"
    assert headers["collection-id"] == "c1"
    long_client, long_adapter, _ = make([inserted], token="x" * 80)
    long_client.insert([{"_id": "a", "_url": "u"}])
    assert long_adapter.sent[0][1]["Authorization"].startswith("JWT ")


def test_more_than_ten_records_is_refused_before_sending() -> None:
    client, adapter, _ = make([])
    with pytest.raises(ValueError):
        client.insert([{"_id": str(i), "_url": "u"} for i in range(11)])
    assert adapter.sent == []


def test_per_record_outcomes() -> None:
    reply = (200, {"records": [{"_id": "ok"}], "skipped_records": [
        {"_id": "dup", "_reason": {"status": {"code": 411, "text": "record duplicate"}}},
        {"_id": "bad", "_reason": {"status": {"code": 400,
                                              "text": "image could not be downloaded"}}},
    ], "status": {"code": 211}}, {})
    client, _, _ = make([reply])
    out = client.insert([{"_id": i, "_url": "u"} for i in ("ok", "dup", "bad", "lost")])
    assert sorted(out.present) == ["dup", "ok"]
    assert out.failed == {"bad": "image_not_downloadable", "lost": "no_answer_for_record"}


def test_429_and_5xx_back_off_then_succeed() -> None:
    client, _, sleeps = make([(429, {}, {"Retry-After": "3"}), (503, None, {}), inserted],
                                   backoff_base_s=0.5)
    out = client.insert([{"_id": "a", "_url": "u"}])
    assert out.present == ["a"]
    assert sleeps == [3.0, 1.0]  # Retry-After honoured, then 0.5 * 2**1
    assert client.requests_made == 3 and client.retries == 2


def test_storm_outlasting_retries_raises_unavailable() -> None:
    client, _, sleeps = make([(500, {}, {})] * 3, max_retries=2, backoff_base_s=1,
                             backoff_max_s=1.5)
    with pytest.raises(XimilarUnavailable) as info:
        client.insert([{"_id": "a", "_url": "u"}])
    assert info.value.reason == "http_500"
    assert sleeps == [1, 1.5]


def test_auth_failure_is_not_retried() -> None:
    client, adapter, _ = make([(401, {"detail": "Invalid token."}, {})])
    with pytest.raises(XimilarAuthError):
        client.delete(["a"])
    assert len(adapter.sent) == 1


def test_rate_limiter_spaces_calls() -> None:
    now, slept = [0.0], []

    def sleep(s: float) -> None:
        slept.append(round(s, 6))
        now[0] += s

    limiter = RateLimiter(10, clock=lambda: now[0], sleep=sleep)
    for _ in range(4):
        limiter.wait()
    assert slept == [0.1, 0.1, 0.1]
    now[0] += 5  # idle time is not banked into a burst
    limiter.wait()
    limiter.wait()
    assert slept[-1] == 0.1
