"""Availability domain without a network: references, store filter, stock parsing, retries.

HTTP is faked only at the boundary (`responses`). `responses` replays urllib3's retry
decisions without its waits, so the waits are checked on the policy's own `Retry` (the
object urllib3 runs on each try), through a recording `sleep`; test_http_policy.py runs the
same machinery over a real socket.
"""

from __future__ import annotations

import pytest
import requests
import responses
from urllib3 import HTTPResponse
from urllib3.exceptions import MaxRetryError

from unde_dagster.availability.client import (
    RETRY_STATUSES,
    AvailabilityError,
    HttpPolicy,
    get_json,
    parse_stock,
    stock_params,
)
from unde_dagster.availability.references import section_of, sku_references
from unde_dagster.availability.stores import BadLocatorReply, parse_stores
from unde_local.emulators.availability import brand_stores

URL = "https://www.zara.com/ae/en/store-stock"
SIZES = [{"name": "XS"}, {"name": "S"}, {"name": "M"}]


def test_references_are_model_colour_size_season() -> None:
    refs = sku_references("500-800", "800", "woman-dresses", SIZES,
                          {"reference": "02086797-V2026"})
    assert refs is not None
    assert refs.section == "WOMAN"
    assert [(r.reference, r.size) for r in refs.sizes] == [
        ("0208679780001-V2026", "XS"), ("0208679780002-V2026", "S"),
        ("0208679780003-V2026", "M")]
    assert all(len(r.reference.split("-")[0]) == 13 for r in refs.sizes)


@pytest.mark.parametrize(("colour", "sizes", "raw"), [
    ("800", SIZES, {"reference": "2086797-V2026"}),     # 7-digit model
    ("800", SIZES, {"reference": "02086797"}),          # no season
    ("80", SIZES, {"reference": "02086797-V2026"}),     # 2-digit colour
    ("800", [], {"reference": "02086797-V2026"}),       # no sizes
    ("800", "XS,S", {"reference": "02086797-V2026"}),   # sizes not a list
    ("800", SIZES, {}),                                 # no reference at all
    (None, SIZES, {"reference": "02086797-V2026"}),
])
def test_unusable_skus_get_no_references(colour: str | None, sizes: object, raw: dict) -> None:
    assert sku_references("x-1", colour, "woman-tops", sizes, raw) is None


def test_section_from_category() -> None:
    assert section_of("man-shirts") == "MAN"
    assert section_of("woman-jeans") == "WOMAN"
    assert section_of(None) == "WOMAN"


def test_locator_keeps_only_dubai_stores() -> None:
    payload = brand_stores("zara")
    stores = parse_stores(payload, city="Dubai", latitude=25.2, longitude=55.27, radius_km=40)
    dubai = {s["id"] for s in payload if s["city"] == "Dubai"}
    assert {s.store_id for s in stores} == dubai
    assert 4 <= len(stores) <= 6
    assert all(s.mall_name and s.address and s.latitude for s in stores)


def test_locator_without_city_falls_back_to_distance() -> None:
    payload = [{"id": 1, "name": "near", "latitude": 25.19, "longitude": 55.28},
               {"id": 2, "name": "abu dhabi", "latitude": 24.48, "longitude": 54.60},
               {"id": "x"}, {"id": True}, "junk"]
    stores = parse_stores(payload, city="Dubai", latitude=25.2, longitude=55.27, radius_km=40)
    assert [s.store_id for s in stores] == [1]


def test_locator_reply_must_be_a_list() -> None:
    with pytest.raises(BadLocatorReply):
        parse_stores({"stores": []}, city="Dubai", latitude=0, longitude=0, radius_km=1)


def test_stock_reply_per_store() -> None:
    payload = {"productAvailability": [
        {"physicalStoreId": 7, "availableProducts": [
            {"reference": "A", "size": "01", "stock": "in_stock"},
            {"reference": "B", "size": "02", "stock": 0}]},
        {"physicalStoreId": 8, "availableProducts": []},
        {"physicalStoreId": 99, "availableProducts": [{"reference": "A"}]},  # not asked
    ]}
    assert parse_stock(payload, [7, 8, 9]) == {7: {"A": "in_stock", "B": "out_of_stock"}, 8: {}}


def test_stock_entry_without_store_key() -> None:
    payload = {"productAvailability": [{"availableProducts": [{"reference": "A", "stock": 3}]}]}
    assert parse_stock(payload, [7]) == {7: {"A": "in_stock"}}
    with pytest.raises(AvailabilityError) as err:
        parse_stock(payload, [7, 8])
    assert err.value.kind == "bad_shape"


@pytest.mark.parametrize("payload", [[], {"productAvailability": "x"}, {"other": []},
                                     {"productAvailability": [1]}])
def test_stock_reply_shape_errors(payload: object) -> None:
    with pytest.raises(AvailabilityError):
        parse_stock(payload, [7])


def _policy(waits: list[float]) -> HttpPolicy:
    return HttpPolicy(timeout_s=5, max_attempts=3, backoff_s=1.0, max_backoff_s=10,
                      sleep=waits.append)


@responses.activate
def test_429_and_403_are_retried_then_succeed() -> None:
    responses.get(URL, status=429, headers={"Retry-After": "4"})
    responses.get(URL, status=403, body="<html>Access Denied</html>")
    responses.get(URL, json={"productAvailability": []})
    params = stock_params([1, 2], ["0208679780001-V2026"], "WOMAN")
    assert get_json(requests.Session(), URL, params, _policy([])) == {"productAvailability": []}
    assert len(responses.calls) == 3
    sent = responses.calls[0].request.url or ""
    assert "physicalStoreIds=1&physicalStoreIds=2" in sent and "sectionName=WOMAN" in sent


def test_waits_honour_retry_after_then_double_and_stop_at_max_attempts() -> None:
    waits: list[float] = []
    retry = _policy(waits).adapter().max_retries  # what urllib3 runs on each try
    for status, headers in [(429, {"Retry-After": "4"}), (403, {})]:
        reply = HTTPResponse(status=status, headers=headers)
        retry = retry.increment("GET", URL, response=reply)
        retry.sleep(reply)
    assert waits == [4.0, 2.0]  # Retry-After over the 1 s backoff; then 1 s * 2
    with pytest.raises(MaxRetryError):  # 3 attempts in all
        retry.increment("GET", URL, response=HTTPResponse(status=503))
    capped: list[float] = []
    retry = _policy(capped).adapter().max_retries
    reply = HTTPResponse(status=429, headers={"Retry-After": "3600"})
    retry.increment("GET", URL, response=reply).sleep(reply)
    assert capped == [10]  # max_backoff_s bounds Retry-After too


@responses.activate
@pytest.mark.parametrize("status", sorted(RETRY_STATUSES))
def test_persistent_failure_gives_up_after_max_attempts(status: int) -> None:
    responses.get(URL, status=status, body="<html>Access Denied</html>")
    with pytest.raises(AvailabilityError) as err:
        get_json(requests.Session(), URL, [], _policy([]))
    assert err.value.kind == f"http_{status}"
    assert len(responses.calls) == 3


@responses.activate
def test_malformed_json_is_not_retried() -> None:
    responses.get(URL, status=200, body="{not json", content_type="application/json")
    with pytest.raises(AvailabilityError) as err:
        get_json(requests.Session(), URL, [], _policy([]))
    assert err.value.kind == "bad_json"
    assert len(responses.calls) == 1


@responses.activate
@pytest.mark.parametrize("status", [404, 400, 302])
def test_other_statuses_are_not_retried(status: int) -> None:
    responses.get(URL, status=status, headers={"Location": "/elsewhere"})
    with pytest.raises(AvailabilityError) as err:
        get_json(requests.Session(), URL, [], _policy([]))
    assert err.value.kind == f"http_{status}" and len(responses.calls) == 1


@responses.activate
def test_network_error_is_an_availability_error() -> None:
    responses.get(URL, body=requests.ConnectionError("reset by peer"))
    with pytest.raises(AvailabilityError) as err:
        get_json(requests.Session(), URL, [], _policy([]))
    assert err.value.kind == "network"


@responses.activate
def test_one_adapter_per_policy_keeps_the_sessions_headers() -> None:
    responses.get(URL, json={"productAvailability": []})
    session, policy = requests.Session(), _policy([])
    session.headers["User-Agent"] = "ua-1"
    get_json(session, URL, [], policy)
    get_json(session, URL, [], policy)
    adapter = session.get_adapter(URL)
    assert adapter is policy.adapter()  # mounted once, its connection pool reused
    assert "POST" not in adapter.max_retries.allowed_methods
    assert responses.calls[1].request.headers["User-Agent"] == "ua-1"
