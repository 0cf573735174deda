"""The Ximilar client with HTTP faked at the boundary (`responses`).

`responses` replays urllib3's retry decisions (which statuses, how many times, POST or
not) but neither waits nor passes the limiter between attempts, so those are checked on the
client's own `Retry` here and end to end in test_http_policy.py; `requests_made` counting
retries is checked against the emulator in tests/integration/test_ximilar_index.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import responses
from pyrate_limiter import AbstractClock
from urllib3 import HTTPResponse
from urllib3.exceptions import MaxRetryError

from unde_dagster import http_policy
from unde_dagster.ximilar.client import (
    ClientSettings,
    XimilarAuthError,
    XimilarClient,
    XimilarError,
    XimilarUnavailable,
)

BASE = "http://localhost:1/similarity/fashion-new/v2/"
INSERT = BASE + "insert"


def make(token: str = "t0k3n", **kw: Any) -> XimilarClient:
    kw.setdefault("rate_limit_per_s", 0)
    return XimilarClient(ClientSettings(api_url="http://localhost:1", token=token,
                                        collection_id="c1", **kw))


def inserted(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
    records = json.loads(request.body or b"{}")["records"]
    return 200, {}, json.dumps({"records": records, "status": {"code": 210}})


def add_inserted(url: str = INSERT) -> None:
    responses.add_callback(responses.POST, url, callback=inserted)


@responses.activate
def test_headers_url_and_path_prefix() -> None:
    add_inserted("http://localhost:1/similarity/photos/v2/insert")
    make(path_prefix="similarity/photos/v2").insert([{"_id": "a", "_url": "http://x/1.jpg"}])
    sent = responses.calls[0].request
    assert sent.url == "http://localhost:1/similarity/photos/v2/insert"
    assert sent.headers["Authorization"] == "Token t0k3n"
    assert sent.headers["collection-id"] == "c1"
    assert sent.headers["Content-Type"] == "application/json"
    add_inserted()
    make(token="x" * 80).insert([{"_id": "a", "_url": "u"}])
    assert responses.calls[1].request.headers["Authorization"].startswith("JWT ")


@responses.activate
def test_more_than_ten_records_is_refused_before_sending() -> None:
    with pytest.raises(ValueError):
        make().insert([{"_id": str(i), "_url": "u"} for i in range(11)])
    assert len(responses.calls) == 0


@responses.activate
def test_per_record_outcomes() -> None:
    responses.post(INSERT, json={"records": [{"_id": "ok"}], "skipped_records": [
        {"_id": "dup", "_reason": {"status": {"code": 411, "text": "record duplicate"}}},
        {"_id": "bad", "_reason": {"status": {"code": 400,
                                              "text": "image could not be downloaded"}}},
    ], "status": {"code": 211}})
    out = make().insert([{"_id": i, "_url": "u"} for i in ("ok", "dup", "bad", "lost")])
    assert sorted(out.present) == ["dup", "ok"]
    assert out.failed == {"bad": "image_not_downloadable", "lost": "no_answer_for_record"}


@responses.activate
def test_429_with_retry_after_and_503_are_retried_then_succeed() -> None:
    responses.post(INSERT, status=429, json={}, headers={"Retry-After": "3"})
    responses.post(INSERT, status=503, body="<html>")
    add_inserted()
    assert make(max_retries=5).insert([{"_id": "a", "_url": "u"}]).present == ["a"]
    assert len(responses.calls) == 3  # POSTs are retried: a repeated insert is a no-op


def test_waits_honour_retry_after_then_double_from_the_base() -> None:
    waits: list[float] = []
    client = XimilarClient(ClientSettings(api_url="http://localhost:1", token="t",
                                          collection_id="c1", rate_limit_per_s=0,
                                          backoff_base_s=0.5, backoff_max_s=30),
                           sleep=waits.append)
    retry = client.session.get_adapter(INSERT).max_retries  # what urllib3 runs on each try
    for status, headers in [(429, {"Retry-After": "3"}), (503, {}), (502, {})]:
        reply = HTTPResponse(status=status, headers=headers)
        retry = retry.increment("POST", INSERT, response=reply)
        retry.sleep(reply)
    assert waits == [3.0, 1.0, 2.0]  # Retry-After honoured, then 0.5 * 2**1, 0.5 * 2**2


@responses.activate
def test_storm_outlasting_retries_raises_unavailable() -> None:
    responses.post(INSERT, status=500, json={})
    with pytest.raises(XimilarUnavailable) as info:
        make(max_retries=2).insert([{"_id": "a", "_url": "u"}])
    assert info.value.reason == "http_500"
    assert len(responses.calls) == 3  # the first try and 2 retries


def test_the_retry_budget_is_max_retries() -> None:
    retry = make(max_retries=2).session.get_adapter(INSERT).max_retries
    reply = HTTPResponse(status=503)
    retry = retry.increment("POST", INSERT, response=reply).increment(
        "POST", INSERT, response=reply)
    with pytest.raises(MaxRetryError):
        retry.increment("POST", INSERT, response=reply)


@responses.activate
@pytest.mark.parametrize("status", [401, 403])
def test_auth_failure_is_not_retried(status: int) -> None:
    responses.post(BASE + "delete", status=status, json={"detail": "Invalid token."})
    with pytest.raises(XimilarAuthError):
        make().delete(["a"])
    assert len(responses.calls) == 1


@responses.activate
def test_a_refused_request_is_an_error_of_its_records_not_retried() -> None:
    responses.post(INSERT, status=400, json={"status": {"text": "bad record"}})
    with pytest.raises(XimilarError) as info:
        make().insert([{"_id": "a", "_url": "u"}])
    assert type(info.value) is XimilarError and info.value.reason == "http_400"
    assert "bad record" in str(info.value) and len(responses.calls) == 1


@responses.activate
def test_connection_error_is_unavailable() -> None:
    responses.post(INSERT, body=requests.ConnectionError("reset"))
    with pytest.raises(XimilarUnavailable) as info:
        make().insert([{"_id": "a", "_url": "u"}])
    assert info.value.reason == "connection_error"


@responses.activate
def test_a_200_that_is_not_json_is_unavailable() -> None:
    responses.post(BASE + "get", body="<html>maintenance</html>")
    with pytest.raises(XimilarUnavailable) as info:
        make().get(["a"])
    assert info.value.reason == "not_json" and len(responses.calls) == 1


class Clock(AbstractClock):
    def __init__(self) -> None:
        self.ms = 0

    def now(self) -> int:
        return self.ms


@responses.activate
def test_requests_take_the_rate_limiters_slots() -> None:
    clock = Clock()
    limiter = http_policy.rate_limiter(10, clock=clock)  # SPEC: ≤ 10 requests/s
    assert limiter is not None
    client = XimilarClient(ClientSettings(api_url="http://localhost:1", token="t",
                                          collection_id="c1"), limiter=limiter)
    add_inserted()
    client.insert([{"_id": "a", "_url": "u"}])
    assert client.requests_made == 1
    assert not limiter.try_acquire("probe", blocking=False)  # the request took this slot
    clock.ms = 100
    assert limiter.try_acquire("probe", blocking=False)  # the next one is 100 ms later
    assert make().limiter is None and make(rate_limit_per_s=10).limiter is not None
