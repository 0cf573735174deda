"""No photo request reaches an internal host (SPEC §6), proved on the wire.

A plain TCP listener on loopback stands in for an internal host (cloud metadata, a
database, the proxy operator's network) and records every connection. Catalog photo URLs
point at it in every spelling a parser might accept; the real downloader runs through
the local CDN/proxy emulator (the `product_originals` asset, local-profile allowlist from
the stack's environment) and directly without a proxy. The listener must see nothing,
each hostile photo must fail its SKU with `unsafe_url`, and the good photos of the same
batch must arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import aiohttp
import dagster as dg
import psycopg
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from tests.integration.image_stage_helpers import (
    cdn,
    fast_downloader,
    fault_on,
    load_catalog,
    materialize,
    put_catalog,
    skus,
    small_catalog,
    warm_photos,
)
from unde_dagster.defs.originals.assets import product_originals
from unde_dagster.originals import (
    DownloadSettings,
    FetchSettings,
    PhotoFetcher,
    SkuPhotos,
    SkuResult,
    download_skus,
)
from unde_local.emulators.cdn_proxy import DEFAULT_CDN_HOST
from unde_local.stack import LocalStack

BRAND = "stradivarius"


class Listener:
    """Accepts on 127.0.0.1 (and ::1 when the machine has it) and records every peer."""

    def __init__(self) -> None:
        self.connections: list[tuple[Any, ...]] = []
        self._socks: list[socket.socket] = []
        first = socket.create_server(("127.0.0.1", 0))
        self.port = first.getsockname()[1]
        self._socks.append(first)
        with contextlib.suppress(OSError):
            six = socket.create_server(("::1", self.port), family=socket.AF_INET6)
            self._socks.append(six)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, args=(s,), daemon=True)
                         for s in self._socks]
        for t in self._threads:
            t.start()

    def _accept(self, sock: socket.socket) -> None:
        sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, peer = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.append(peer)
            conn.close()

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        for s in self._socks:
            s.close()


@pytest.fixture()
def internal_host() -> Iterator[Listener]:
    listener = Listener()
    # The listener really answers: a plain connection is recorded (so zero below means zero).
    with socket.create_connection(("127.0.0.1", listener.port), timeout=5):
        pass
    for _ in range(50):
        if listener.connections:
            break
        threading.Event().wait(0.02)
    assert len(listener.connections) == 1
    listener.connections.clear()
    yield listener
    listener.close()


def hostile_urls(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/latest/meta-data/a.jpg",
        f"http://localhost:{port}/a.jpg",  # a name resolving to loopback
        f"http://LOCALHOST.:{port}/a.jpg",
        f"http://[::ffff:127.0.0.1]:{port}/a.jpg",  # IPv4-mapped IPv6
        f"http://2130706433:{port}/a.jpg",  # 127.0.0.1 as a decimal integer
        f"http://0x7f000001:{port}/a.jpg",
        f"http://127.1:{port}/a.jpg",
        f"https://127.0.0.1:{port}/a.jpg",  # would be a CONNECT through the proxy
        "http://169.254.169.254/latest/meta-data/iam/a.jpg",
    ]


def test_no_packet_reaches_an_internal_host_through_the_proxy(
    stack: LocalStack, staging: psycopg.Connection, resources: dict[str, Any],
    instance: dg.DagsterInstance, internal_host: Listener,
) -> None:
    """The local profile: the asset, the emulated proxy, the allowlist from the stack env."""
    warm_photos(stack)
    hostile = hostile_urls(internal_host.port)
    with small_catalog(stack, BRAND, len(hostile) + 2, photos=2) as items:
        for item, url in zip(items, hostile, strict=False):
            item["colorsSizesImagesJSON"][0]["xmedia"] = [url]
        put_catalog(stack, BRAND, items)
        load_catalog(BRAND, resources, instance)
        rows = list(skus(staging, BRAND).values())
        by_url = {r["original_image_urls"][0]: r["external_id"] for r in rows}
        redirected, good = rows[-2], rows[-1]
        cdn(stack).clear(stats=True)
        # An allowed CDN photo that redirects to the internal host: never followed.
        cdn(stack).add(match=fault_on(redirected["original_image_urls"][0]), status=302,
                       headers={"Location": hostile[0]})

        downloader = fast_downloader(stack, backoff_s="0", photo_timeout_s=5.0)
        materialize([product_originals], BRAND, {**resources, "photo_downloader": downloader},
                    instance)

        after = skus(staging, BRAND)
        for url in hostile:
            row = after[by_url[url.replace("{width}", "1920")]]
            assert row["image_status"] == "error", (url, row["error_message"])
            assert row["error_message"].startswith("photo 1: unsafe_url: "), row["error_message"]
        assert after[redirected["external_id"]]["error_message"].startswith("photo 1: redirect")
        done = after[good["external_id"]]
        assert done["image_status"] == "uploaded" and len(done["image_urls"]) == 2
        assert internal_host.connections == []
        # The proxy was asked only for the CDN's own photos: no hostile target left the host.
        targets = [r["target"] for r in cdn(stack).requests("")]
        assert targets and all(t.startswith(f"http://{DEFAULT_CDN_HOST}/") for t in targets)


class LocalDns(AbstractResolver):
    """The machine's DNS, plus two names the test needs: the emulated CDN host at the
    emulator, and a name that rebinds from a public address to loopback."""

    def __init__(self, cdn_host: str) -> None:
        self.real = aiohttp.ThreadedResolver()
        self.fixed = {cdn_host: ["127.0.0.1"], "rebind.photos.test": ["93.184.216.34",
                                                                      "127.0.0.1"]}

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.fixed:
            return await self.real.resolve(host, port, family)
        answers = self.fixed[host]
        addr = answers.pop(0) if len(answers) > 1 else answers[0]
        return [ResolveResult(hostname=host, host=addr, port=port, family=socket.AF_INET,
                              proto=0, flags=0)]

    async def close(self) -> None:
        await self.real.close()


def test_no_packet_reaches_an_internal_host_without_a_proxy(
    stack: LocalStack, internal_host: Listener,
) -> None:
    """Direct fetching (no proxy configured): the connection goes to the checked address."""
    assert stack.emulators is not None and stack.emulators.urls is not None
    warm_photos(stack)
    emu_port = stack.emulators.urls.ports["cdn_proxy"]
    base = f"http://{DEFAULT_CDN_HOST}:{emu_port}/{BRAND}/photos/2026/V/0000"
    good = [f"{base}/0001/800/000000001800-p{i}.jpg?w=1920" for i in (1, 2)]
    redirect = f"{base}/0002/800/000000002800-p1.jpg?w=1920"
    hostile = [*hostile_urls(internal_host.port),
               f"http://rebind.photos.test:{internal_host.port}/a.jpg"]
    batch = [SkuPhotos(f"bad{i}", [url]) for i, url in enumerate(hostile)]
    batch += [SkuPhotos("redirect", [redirect]), SkuPhotos("good", good)]
    cdn(stack).clear(stats=True)
    cdn(stack).add(match=fault_on(redirect.removeprefix(f"http://{DEFAULT_CDN_HOST}:{emu_port}")),
                   status=302, headers={"Location": hostile[0]})
    results: dict[str, SkuResult] = {}

    async def on_done(sku: SkuPhotos, result: SkuResult) -> None:
        results[sku.sku_id] = result

    async def main() -> None:
        settings = FetchSettings(host_allowlist=(DEFAULT_CDN_HOST,), delay_min_s=0.0,
                                 delay_max_s=0.01, transient_backoff_s=(), photo_timeout_s=5.0)
        async with PhotoFetcher(settings, resolver=LocalDns(DEFAULT_CDN_HOST)) as fetcher:
            await download_skus(batch, fetcher, on_done, DownloadSettings())

    try:
        asyncio.run(main())
        direct = [r["target"] for r in cdn(stack).requests("")]
    finally:
        cdn(stack).clear(stats=True)
    for i, url in enumerate(hostile):
        error = results[f"bad{i}"].error
        assert error is not None and error.reason == "unsafe_url", (url, error)
    rebound = results[f"bad{len(hostile) - 1}"].error  # public at the check, then loopback
    assert "rebind.photos.test resolves to 127.0.0.1" in str(rebound)
    redirected = results["redirect"].error
    assert redirected is not None and redirected.reason == "redirect"
    assert results["good"].ok and len(results["good"].photos) == 2
    assert internal_host.connections == []
    assert sorted(direct) == sorted([u.split(str(emu_port), 1)[1] for u in [*good, redirect]])
