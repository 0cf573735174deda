"""The CDN-behind-proxy emulator driven by real aiohttp and requests clients."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator

import aiohttp
import pytest
import requests
from PIL import Image

from unde_local.emulators import Emulators, EmulatorUrls
from unde_local.fixtures.catalog import photo_url
from unde_local.fixtures.photos import POOL_SIZES


@pytest.fixture(scope="module")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulators]:
    em = Emulators(items_per_brand=10, proxy_user="brd-customer-t-zone-res",
                   proxy_password="s3cret:pw", data_dir=tmp_path_factory.mktemp("emu"))
    em.start()
    yield em
    em.stop()


@pytest.fixture()
def urls(emulators: Emulators) -> Iterator[EmulatorUrls]:
    assert emulators.urls is not None
    emulators.faults["cdn_proxy"].clear(stats=True)
    yield emulators.urls
    emulators.faults["cdn_proxy"].clear(stats=True)


def photo(urls: EmulatorUrls, suffix: str = "p", width: int = 1920) -> str:
    template = photo_url(urls.cdn_base_url, "zara", "02086797", "800", suffix)
    return template.replace("{width}", str(width))


async def fetch(url: str, proxy: str, timeout: float = 10) -> tuple[int, str, bytes]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session, \
            session.get(url, proxy=proxy) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


def test_aiohttp_and_requests_through_proxy(urls: EmulatorUrls) -> None:
    status, ctype, body = asyncio.run(fetch(photo(urls), urls.proxy_url))
    assert (status, ctype) == (200, "image/jpeg")
    img = Image.open(io.BytesIO(body))
    img.load()
    assert img.format == "JPEG" and img.size in POOL_SIZES
    again = requests.get(photo(urls), proxies={"http": urls.proxy_url}, timeout=10)
    assert again.status_code == 200 and again.content == body  # deterministic per URL


def test_proxy_auth_and_routing_errors(urls: EmulatorUrls) -> None:
    port = urls.ports["cdn_proxy"]
    bare = requests.get(photo(urls), proxies={"http": f"http://127.0.0.1:{port}"}, timeout=10)
    assert bare.status_code == 407 and bare.headers["x-brd-err-code"] == "auth_failed"
    wrong = f"http://brd-customer-t-zone-res:nope@127.0.0.1:{port}"
    assert requests.get(photo(urls), proxies={"http": wrong}, timeout=10).status_code == 407
    proxies = {"http": urls.proxy_url}
    missing = requests.get(f"{urls.cdn_base_url}/zara/nothing-here.txt", proxies=proxies,
                           timeout=10)
    assert missing.status_code == 404
    other = requests.get("http://elsewhere.test/zara/photos/a.jpg", proxies=proxies, timeout=10)
    assert other.status_code == 502 and "x-brd-error" in other.headers


def test_width_and_direct_origin_access(urls: EmulatorUrls) -> None:
    small = requests.get(photo(urls, "e1", width=480), proxies={"http": urls.proxy_url},
                         timeout=10)
    assert Image.open(io.BytesIO(small.content)).size[0] == 480
    direct = photo(urls, "e1").replace(urls.cdn_base_url,
                                       f"http://127.0.0.1:{urls.ports['cdn_proxy']}")
    resp = requests.get(direct, timeout=10)
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "image/jpeg"


def test_429_twice_then_ok(urls: EmulatorUrls, emulators: Emulators) -> None:
    control = f"http://127.0.0.1:{urls.ports['cdn_proxy']}/_emulator/faults"
    rule = {"match": r"02086797800-e2\.jpg", "status": 429, "times": 2, "retry_after": 5}
    assert requests.post(control, json=rule, timeout=10).status_code == 201
    seen = [asyncio.run(fetch(photo(urls, "e2"), urls.proxy_url))[0] for _ in range(3)]
    assert seen == [429, 429, 200]
    stats = requests.get(control.replace("faults", "stats"), timeout=10).json()
    assert stats["by_key"] == {"proxy zara": 3}
    assert [r["fault"] is not None for r in stats["requests"]] == [True, True, False]
    assert requests.get(control, timeout=10).json()["rules"] == []


def test_reset_hang_and_bad_bodies(urls: EmulatorUrls, emulators: Emulators) -> None:
    faults = emulators.faults["cdn_proxy"]
    faults.add(match="-e3", reset=True, times=1)
    with pytest.raises(requests.ConnectionError):
        requests.get(photo(urls, "e3"), proxies={"http": urls.proxy_url}, timeout=10)
    faults.add(match="-e4", hang=True, hang_max_s=5, times=1)
    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(fetch(photo(urls, "e4"), urls.proxy_url, timeout=0.5))
    faults.add(match="-e5", body="html200", times=1)
    status, ctype, body = asyncio.run(fetch(photo(urls, "e5"), urls.proxy_url))
    assert status == 200 and ctype.startswith("text/html") and body.startswith(b"<!DOCTYPE html>")
    faults.add(match="-e6", body="truncated", times=1)
    status, ctype, body = asyncio.run(fetch(photo(urls, "e6"), urls.proxy_url))
    assert (status, ctype) == (200, "image/jpeg")
    with pytest.raises(OSError):
        Image.open(io.BytesIO(body)).load()
    faults.add(match="-e1", latency_ms=20, times=1)  # latency alone passes through
    assert asyncio.run(fetch(photo(urls, "e1"), urls.proxy_url))[0] == 200


def test_probability_rules_are_seeded(urls: EmulatorUrls, emulators: Emulators) -> None:
    faults = emulators.faults["cdn_proxy"]
    faults.add(match="-p", status=503, probability=0.5)
    proxies = {"http": urls.proxy_url}
    seen = {requests.get(photo(urls), proxies=proxies, timeout=10).status_code
            for _ in range(12)}
    assert seen == {200, 503}
    faults.set_latency(5)
    assert requests.get(photo(urls, "e1"), proxies=proxies, timeout=10).status_code == 200
    assert faults.stats(include_requests=False)["total"] == 13
