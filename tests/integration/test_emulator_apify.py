"""The Apify emulator driven by the real apify-client 3.4 over HTTP."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator
from datetime import timedelta

import pytest
import requests
from aiohttp import web
from apify_client import ApifyClient
from apify_client.errors import ApifyApiError

from unde_local.emulators import Emulators, EmulatorUrls
from unde_local.emulators.faults import FaultInjector

TOKEN = "test-apify-token"
TASKS = {"unde~zara-catalog-ae": "zara", "unde~oysho-catalog-ae": "oysho"}


@pytest.fixture(scope="module")
def emulators() -> Iterator[Emulators]:
    em = Emulators(tasks=TASKS, items_per_brand=1203, apify_token=TOKEN, run_duration_s=0.3)
    em.start()
    yield em
    em.stop()


@pytest.fixture()
def urls(emulators: Emulators) -> Iterator[EmulatorUrls]:
    assert emulators.urls is not None
    emulators.faults["apify"].clear(stats=True)
    yield emulators.urls
    emulators.faults["apify"].clear(stats=True)


def client(urls: EmulatorUrls, token: str = TOKEN) -> ApifyClient:
    return ApifyClient(token, api_url=urls.apify_api_url, api_public_url=urls.apify_api_url,
                       min_delay_between_retries=timedelta(milliseconds=10))


def test_task_call_and_paginated_dataset(urls: EmulatorUrls, emulators: Emulators) -> None:
    apify = client(urls)
    run = apify.task("unde/zara-catalog-ae").call()  # '/' form goes on the wire as '~'
    assert run is not None
    assert run.status == "SUCCEEDED"
    assert run.finished_at is not None and run.options.memory_mbytes >= 128
    items = list(apify.dataset(run.default_dataset_id).iterate_items(clean=True))
    assert len(items) == 1203
    assert len({i["id"] for i in items}) == 1203
    assert items[0]["brand"] == "Zara"
    assert "{width}" in items[0]["colorsSizesImagesJSON"][0]["xmedia"][0]
    pages = emulators.faults["apify"].requests("/items")
    offsets = [t["target"].split("offset=")[1].split("&")[0] for t in pages]
    assert offsets == ["0", "1000", "1203"]  # the client stops only on an empty page
    assert apify.dataset(run.default_dataset_id).get().item_count == 1203
    assert apify.task("unde~zara-catalog-ae").get().name == "zara-catalog-ae"


def test_items_wire_format(urls: EmulatorUrls) -> None:
    run = client(urls).task("unde~oysho-catalog-ae").call()
    assert run is not None
    url = f"{urls.apify_api_url}/v2/datasets/{run.default_dataset_id}/items"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    page = requests.get(url, params={"offset": 10, "limit": 5, "desc": "true"}, headers=auth,
                        timeout=10)
    assert page.status_code == 200
    body = page.json()
    assert isinstance(body, list) and len(body) == 5
    assert {k: page.headers[f"X-Apify-Pagination-{k}"] for k in
            ("Offset", "Limit", "Count", "Total", "Desc")} == {
        "Offset": "10", "Limit": "5", "Count": "5", "Total": "1203", "Desc": "true"}
    end = requests.get(url, params={"offset": 1203}, headers=auth, timeout=10)
    assert end.json() == [] and end.headers["X-Apify-Pagination-Count"] == "0"
    fields = requests.get(url, params={"limit": 2, "fields": "id,price"}, headers=auth, timeout=10)
    assert all(set(i) == {"id", "price"} for i in fields.json())


def test_gzip_input_body(urls: EmulatorUrls, emulators: Emulators) -> None:
    task_input = {"startUrls": [{"url": f"https://www.zara.com/ae/en/p{i}.html"}
                                for i in range(60)]}
    run = client(urls).task("unde~zara-catalog-ae").call(task_input=task_input)
    assert run is not None and run.status == "SUCCEEDED"
    posts = [r for r in emulators.faults["apify"].requests("/runs") if r["method"] == "POST"]
    assert posts[-1]["content_encoding"] == "gzip"  # the client compresses bodies >= 1 KiB
    assert run.stats.input_body_len is not None and run.stats.input_body_len > 1024


@pytest.mark.parametrize("status", ["FAILED", "TIMED-OUT", "ABORTED"])
def test_forced_terminal_status(urls: EmulatorUrls, status: str) -> None:
    control = f"{urls.apify_api_url}/_emulator/apify/next-run-status"
    assert requests.post(control, json={"brand": "oysho", "status": status},
                         timeout=10).status_code == 200
    apify = client(urls)
    run = apify.task("unde~oysho-catalog-ae").call()
    assert run is not None and run.status == status  # call() does not raise on failures
    again = apify.task("unde~oysho-catalog-ae").call()
    assert again is not None and again.status == "SUCCEEDED"  # the override is one-shot


def test_500_then_ok_and_429_are_retried(urls: EmulatorUrls, emulators: Emulators) -> None:
    faults = emulators.faults["apify"]
    faults.add(match=r"/v2/actor-tasks/[^/]+/runs", method="POST", status=500, times=1,
               json={"error": {"type": "internal-error", "message": "boom"}})
    added = requests.post(f"{urls.apify_api_url}/_emulator/faults", timeout=10, json={
        "match": "/items", "status": 429, "times": 2, "retry_after": 1,
        "json": {"error": {"type": "rate-limit-exceeded", "message": "slow down"}}})
    assert added.status_code == 201
    apify = client(urls)
    run = apify.task("unde~oysho-catalog-ae").call()
    assert run is not None and run.status == "SUCCEEDED"
    assert len(list(apify.dataset(run.default_dataset_id).iterate_items())) == 1203
    statuses = [(r["method"], r["key"], r["status"]) for r in faults.requests()]
    assert statuses[:2] == [("POST", "POST /v2/actor-tasks/{task_id}/runs", 500),
                            ("POST", "POST /v2/actor-tasks/{task_id}/runs", 201)]
    assert [s for _, k, s in statuses if k.endswith("/items")][:3] == [429, 429, 200]
    assert faults.rules() == []  # both rules expired


def test_auth_and_not_found(urls: EmulatorUrls) -> None:
    with pytest.raises(ApifyApiError) as err:
        client(urls, token="wrong").task("unde~zara-catalog-ae").get()
    assert err.value.status_code == 401
    resp = requests.post(f"{urls.apify_api_url}/v2/actor-tasks/unde~nope/runs", timeout=10,
                         headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 404
    assert resp.json()["error"]["type"] == "record-not-found"


def test_catalog_control_snapshots_per_run(urls: EmulatorUrls) -> None:
    control = f"{urls.apify_api_url}/_emulator/apify/catalog/oysho"
    original = requests.get(control, timeout=30).json()
    apify = client(urls)
    before = apify.task("unde~oysho-catalog-ae").call()
    edited = [original[0], original[0], {"id": 7, "name": "NO COLOURS"}, {}]
    try:
        assert requests.put(control, json=edited, timeout=30).status_code == 200
        after = apify.task("unde~oysho-catalog-ae").call()
        assert after is not None and before is not None
        assert list(apify.dataset(after.default_dataset_id).iterate_items()) == edited
        clean = list(apify.dataset(after.default_dataset_id).iterate_items(clean=True))
        assert clean == edited[:3]  # clean=true skips empty items
        old = apify.dataset(before.default_dataset_id).list_items(limit=1)
        assert old.total == 1203  # an earlier run's dataset is a snapshot
    finally:
        requests.put(control, data=json.dumps(original), timeout=30)


def test_runner_hosts_optional_emulators(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("unde_local.emulators.ximilar")

    async def ping(request: web.Request) -> web.Response:
        return web.json_response({"status": {"code": 200}})

    def create_app(faults: FaultInjector) -> web.Application:
        app = web.Application(middlewares=[faults.middleware])
        app.router.add_post("/similarity/fashion-new/v2/ping", ping)
        faults.add_routes(app)
        return app

    fake.create_app = create_app  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "unde_local.emulators.ximilar", fake)
    with Emulators(items_per_brand=5) as urls:
        assert urls.ximilar_api_url is not None and "localhost" in urls.ximilar_api_url
        port = urls.ports["ximilar"]
        resp = requests.post(f"http://127.0.0.1:{port}/similarity/fashion-new/v2/ping", timeout=10)
        assert resp.json() == {"status": {"code": 200}}
        stats = requests.get(f"http://127.0.0.1:{port}/_emulator/stats", timeout=10).json()
        assert stats["total"] == 1
