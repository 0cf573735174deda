"""PhotoFetcher / download_skus against a real aiohttp server acting as proxy + CDN.

Only the HTTP boundary is faked: the test server receives the client's proxy
requests (absolute-form URLs for a CDN host that does not resolve). Delays and
backoffs go through an injected ``sleep`` that records and returns at once.
"""

from __future__ import annotations

import asyncio
import base64
import io
import random
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer
from PIL import Image

from unde_dagster.originals import (
    USER_AGENTS,
    DownloadSettings,
    FetchSettings,
    PhotoError,
    PhotoFetcher,
    SkuPhotos,
    SkuResult,
    build_ssl_context,
    download_skus,
)

CDN_HOST = "cdn.photos.test"  # does not resolve: allowlisted, as the local profile does
CDN = f"http://{CDN_HOST}"
JPEG = io.BytesIO()
Image.effect_noise((300, 400), 50).convert("RGB").save(JPEG, "JPEG")
JPEG_BYTES = JPEG.getvalue()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Recorder:
    """Injected sleep: records each wait, yields once, never really waits."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        await asyncio.sleep(0)


@asynccontextmanager
async def proxy_server(handler: Handler) -> AsyncIterator[tuple[str, list[web.Request]]]:
    seen: list[web.Request] = []

    async def record(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield f"http://127.0.0.1:{server.port}", seen
    finally:
        await server.close()


@asynccontextmanager
async def fetcher_at(
    handler: Handler, sleep: Recorder | None = None, seed: int = 1, **kw: object
) -> AsyncIterator[tuple[PhotoFetcher, list[web.Request]]]:
    """A proxy/CDN server plus a fetcher configured to go through it."""
    async with proxy_server(handler) as (proxy, seen):
        f = PhotoFetcher(settings(proxy, **kw), rng=random.Random(seed), sleep=sleep or Recorder())
        async with f:
            yield f, seen


def settings(proxy: str, **kw: object) -> FetchSettings:
    base = FetchSettings(proxy_url=proxy, photo_timeout_s=5.0, host_allowlist=(CDN_HOST,))
    return replace(base, **kw)  # type: ignore[arg-type]


async def ok(request: web.Request) -> web.StreamResponse:
    return web.Response(body=JPEG_BYTES, content_type="image/jpeg")


async def fetch_one(handler: Handler, url: str = f"{CDN}/a.jpg", **kw: object):
    sleep = Recorder()
    async with fetcher_at(handler, sleep, **kw) as (f, seen):
        try:
            result: object = await f.fetch(url)
        except PhotoError as err:
            result = err
    return result, sleep.calls, seen


def scripted(*statuses: int) -> Handler:
    """Answer with these statuses in turn, then 200 + JPEG."""
    queue = list(statuses)

    async def handler(request: web.Request) -> web.StreamResponse:
        if queue:
            return web.Response(status=queue.pop(0), text="busy")
        return await ok(request)

    return handler


def run(coro: Awaitable[object]) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


@pytest.mark.parametrize("status", [403, 404, 410])
def test_client_errors_fail_immediately(status: int) -> None:
    err, sleeps, seen = run(fetch_one(scripted(status)))  # type: ignore[misc]
    assert isinstance(err, PhotoError) and err.reason == f"http_{status}"
    assert len(seen) == 1
    assert len(sleeps) == 1 and 0.5 <= sleeps[0] <= 2.0  # only the slot's politeness delay


def test_redirect_is_not_followed() -> None:
    async def moved(request: web.Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": "https://elsewhere.test/a.jpg"})

    err, _, seen = run(fetch_one(moved))  # type: ignore[misc]
    assert isinstance(err, PhotoError) and err.reason == "redirect" and len(seen) == 1


@pytest.mark.parametrize("status", [429, 503])
def test_backoff_then_success(status: int) -> None:
    got, sleeps, seen = run(fetch_one(scripted(status, status)))  # type: ignore[misc]
    assert got.data == JPEG_BYTES and got.attempts == 3  # type: ignore[union-attr]
    assert sleeps[:2] == [5.0, 15.0] and len(sleeps) == 3
    assert len(seen) == 3


@pytest.mark.parametrize("status", [429, 503])
def test_backoff_exhausted(status: int) -> None:
    err, sleeps, seen = run(fetch_one(scripted(*[status] * 10)))  # type: ignore[misc]
    assert isinstance(err, PhotoError) and err.reason == f"http_{status}_exhausted"
    assert sleeps[:3] == [5.0, 15.0, 45.0] and len(seen) == 4
    assert "after 4 attempts" in err.message


def test_other_5xx_small_retry_then_error() -> None:
    err, sleeps, seen = run(fetch_one(scripted(*[502] * 10)))  # type: ignore[misc]
    assert isinstance(err, PhotoError) and err.reason == "http_502"
    assert sleeps[:2] == [2.0, 6.0] and len(seen) == 3
    got, _, _ = run(fetch_one(scripted(500)))  # type: ignore[misc]
    assert got.attempts == 2  # type: ignore[union-attr]


def test_connection_reset() -> None:
    async def reset(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    err, sleeps, seen = run(fetch_one(reset))  # type: ignore[misc]
    assert isinstance(err, PhotoError) and err.reason == "reset"
    # 3 attempts; aiohttp itself may re-send an idempotent GET once on a dropped
    # connection, so the server can see up to 6 requests.
    assert 3 <= len(seen) <= 6 and sleeps[:2] == [2.0, 6.0]


def test_timeout() -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(1.0)
        return await ok(request)

    err, _, seen = run(  # type: ignore[misc]
        fetch_one(slow, photo_timeout_s=0.1, transient_backoff_s=(0.0,))
    )
    assert isinstance(err, PhotoError) and err.reason == "timeout"
    assert len(seen) == 2


def test_too_large_body() -> None:
    err, _, _ = run(fetch_one(ok, max_body_bytes=1000))  # type: ignore[misc]
    assert isinstance(err, PhotoError) and err.reason == "too_large"


def test_goes_through_proxy_with_credentials_and_random_ua() -> None:
    async def main() -> None:
        async with proxy_server(ok) as (proxy, seen):
            host_port = proxy.removeprefix("http://")
            s = settings(f"http://brd-customer-x:s%40cret@{host_port}")
            assert "cret" not in repr(s) and "cret" not in s.proxy_display
            async with PhotoFetcher(s, rng=random.Random(7), sleep=Recorder()) as f:
                for i in range(30):
                    await f.fetch(f"{CDN}/p/{i}.jpg")
        uas = set()
        for req in seen:
            assert req.raw_path.startswith(f"{CDN}/p/")  # absolute-form: a proxy request
            expected = base64.b64encode(b"brd-customer-x:s@cret").decode()
            assert req.headers["Proxy-Authorization"] == f"Basic {expected}"
            assert req.headers["User-Agent"] in USER_AGENTS
            uas.add(req.headers["User-Agent"])
        assert len(uas) >= 4
        assert len(USER_AGENTS) >= 8

    run(main())


def test_bad_proxy_credentials_are_not_leaked() -> None:
    async def deny(request: web.Request) -> web.StreamResponse:
        return web.Response(status=407, headers={"x-brd-err-code": "auth_failed"})

    async def main() -> PhotoError:
        async with proxy_server(deny) as (proxy, _):
            s = settings(proxy.replace("http://", "http://u:topsecret@"))
            async with PhotoFetcher(s, sleep=Recorder()) as f:
                with pytest.raises(PhotoError) as info:
                    await f.fetch(f"{CDN}/a.jpg")
        return info.value

    err = run(main())
    assert err.reason == "proxy_auth" and "auth_failed" in str(err)  # type: ignore[union-attr]
    assert "topsecret" not in str(err)


def test_max_in_flight_is_ten() -> None:
    state = {"now": 0, "max": 0}
    ten = asyncio.Event()

    async def counting(request: web.Request) -> web.StreamResponse:
        state["now"] += 1
        state["max"] = max(state["max"], state["now"])
        if state["now"] >= 10:
            ten.set()
        try:
            await asyncio.wait_for(ten.wait(), 5)  # hold until 10 are in flight together
            return await ok(request)
        finally:
            state["now"] -= 1

    async def main() -> None:
        async with fetcher_at(counting) as (f, seen):
            await asyncio.gather(*(f.fetch(f"{CDN}/{i}.jpg") for i in range(40)))
        assert len(seen) == 40

    run(main())
    assert state["max"] == 10


def test_slot_waits_its_own_delay_before_next_request() -> None:
    """Two slots, three photos: the third request waits until a slot's delay is over."""
    events: list[str] = []
    gates: list[asyncio.Event] = []

    async def gated_sleep(seconds: float) -> None:
        events.append(f"delay {seconds:.3f}")
        gate = asyncio.Event()
        gates.append(gate)
        await gate.wait()

    async def logging_ok(request: web.Request) -> web.StreamResponse:
        events.append(f"request {request.raw_path.rsplit('/', 1)[1]}")
        return await ok(request)

    async def main() -> None:
        async with proxy_server(logging_ok) as (proxy, _):
            s = settings(proxy, max_in_flight=2)
            f = PhotoFetcher(s, rng=random.Random(3), sleep=gated_sleep)
            async with f:
                tasks = [asyncio.create_task(f.fetch(f"{CDN}/{i}.jpg")) for i in range(3)]
                done, _ = await asyncio.wait(tasks[:2])  # first two return before delays end
                assert all(t.result().data == JPEG_BYTES for t in done)
                for _ in range(50):
                    await asyncio.sleep(0.01)
                assert not tasks[2].done() and len(gates) == 2
                assert sum(e.startswith("request") for e in events) == 2
                freed = gates[0]
                freed.set()  # one slot's delay ends -> the third request may go
                third = await tasks[2]
                assert third.slot in (0, 1)
                while len(gates) < 3:
                    await asyncio.sleep(0.01)
                for g in gates:
                    g.set()

    run(main())
    delays = [float(e.split()[1]) for e in events if e.startswith("delay")]
    assert len(delays) == 3 and all(0.5 <= d <= 2.0 for d in delays)
    kinds = [e.split()[0] for e in events]
    assert kinds == ["request", "delay", "request", "delay", "request", "delay"] or kinds == [
        "request", "request", "delay", "delay", "request", "delay"
    ]


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    """A throwaway CA-style self-signed cert for ``localhost`` (stands in for the
    proxy's MITM root certificate)."""
    cert, key = tmp / "ca.crt", tmp / "ca.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext",
         "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def test_ca_bundle_context_keeps_verification_on(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    ctx = build_ssl_context(str(cert))
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    default_cas = build_ssl_context(None).cert_store_stats()["x509_ca"]
    assert ctx.cert_store_stats()["x509_ca"] == default_cas + 1  # added, not replaced

    async def main() -> tuple[object, object]:
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(cert, key)
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", ok)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        url = f"https://localhost:{port}/a.jpg"
        results = []
        try:
            for bundle in (str(cert), None):  # trusted via bundle; untrusted without
                s = FetchSettings(
                    proxy_ca_bundle=bundle, transient_backoff_s=(), host_allowlist=("localhost",)
                )
                async with PhotoFetcher(s, sleep=Recorder()) as f:
                    try:
                        results.append(await f.fetch(url))
                    except PhotoError as err:
                        results.append(err)
        finally:
            await runner.cleanup()
        return results[0], results[1]

    trusted, untrusted = run(main())  # type: ignore[misc]
    assert trusted.data == JPEG_BYTES  # type: ignore[union-attr]
    assert isinstance(untrusted, PhotoError) and untrusted.reason == "tls_error"


def test_a_failing_callback_stops_the_batch_and_is_raised() -> None:
    """An outage (or a bug) in the callback fails every SKU alike: no SKU starts after it."""
    skus = [SkuPhotos(f"s{i}", [f"{CDN}/s{i}.jpg"]) for i in range(6)]
    done: list[str] = []

    async def on_done(sku: SkuPhotos, result: SkuResult) -> None:
        done.append(sku.sku_id)
        if sku.sku_id == "s1":
            raise RuntimeError("S3 down")

    async def main() -> list[str]:
        async with fetcher_at(ok) as (f, seen):
            with pytest.raises(RuntimeError, match="S3 down"):
                await download_skus(skus, f, on_done, DownloadSettings(sku_window=1))
        return [r.raw_path for r in seen]

    fetched = run(main())
    assert done == ["s0", "s1"]
    assert fetched == [f"{CDN}/s0.jpg", f"{CDN}/s1.jpg"]


def test_download_skus_end_to_end() -> None:
    """Good SKU, SKU with a 404 photo, SKU with an HTML-200 body, skipped photos."""

    async def cdn(request: web.Request) -> web.StreamResponse:
        path = request.raw_path
        if "missing" in path:
            return web.Response(status=404)
        if "blocked" in path:
            return web.Response(text="<html>Access denied</html>", content_type="image/jpeg")
        assert "w=1920" in path
        return await ok(request)

    skus = [
        SkuPhotos("good", [f"{CDN}/g{i}.jpg?w={{width}}" for i in range(7)]),
        SkuPhotos("missing", [f"{CDN}/ok.jpg?w={{width}}", f"{CDN}/missing.jpg"]),
        SkuPhotos("html", [f"{CDN}/blocked.jpg"]),
        SkuPhotos("empty", []),
        SkuPhotos(
            "partly",
            [f"{CDN}/p1.jpg?w={{width}}", f"{CDN}/p2.jpg?w={{width}}"],
            already_uploaded={1: f"{CDN}/p1.jpg?w={{width}}", 2: f"{CDN}/old.jpg"},
        ),
    ]
    done: dict[str, SkuResult] = {}

    async def on_done(sku: SkuPhotos, result: SkuResult) -> None:
        done[sku.sku_id] = result

    async def main() -> object:
        async with fetcher_at(cdn) as (f, seen):
            summary = await download_skus(skus, f, on_done, DownloadSettings())
        assert not any("p1.jpg" in r.raw_path for r in seen)
        return summary

    summary = run(main())
    assert [p.n for p in done["good"].photos] == [1, 2, 3, 4, 5]
    assert done["good"].photos[0].info.format == "JPEG"
    assert done["missing"].error is not None and done["missing"].error.reason == "http_404"
    assert done["missing"].error.n == 2
    assert done["html"].error is not None and done["html"].error.reason == "html_body"
    assert done["empty"].error is not None and done["empty"].error.reason == "no_photos"
    assert done["partly"].skipped == [1] and [p.n for p in done["partly"].photos] == [2]
    assert summary.skus_ok == 2 and summary.skus_error == 3  # type: ignore[attr-defined]
    assert summary.callback_errors == 0  # type: ignore[attr-defined]
    assert summary.errors_by_reason == {  # type: ignore[attr-defined]
        "http_404": 1, "html_body": 1, "no_photos": 1
    }


def test_sku_timeout() -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.6)
        return await ok(request)

    async def main() -> SkuResult:
        out: list[SkuResult] = []

        async def on_done(sku: SkuPhotos, result: SkuResult) -> None:
            out.append(result)

        async with fetcher_at(slow) as (f, _):
            sku = SkuPhotos("slow", [f"{CDN}/a.jpg"])
            await download_skus([sku], f, on_done, DownloadSettings(sku_timeout_s=0.2))
        return out[0]

    result = run(main())
    assert result.error is not None and result.error.reason == "sku_timeout"  # type: ignore[union-attr]


def test_fetcher_outside_context_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        run(PhotoFetcher().fetch(f"{CDN}/a.jpg"))


def test_client_session_not_shared_with_env_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # HTTP(S)_PROXY from the environment must not silently reroute photo requests.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    got, _, seen = run(fetch_one(ok))  # type: ignore[misc]
    assert got.data == JPEG_BYTES and len(seen) == 1  # type: ignore[union-attr]


# --- public-address check (SPEC §6) and proxy CONNECT failures --------------------------

UNSAFE_LITERALS = [
    "http://169.254.169.254/latest/meta-data/",
    "https://10.0.0.5/x.jpg",
    "http://127.0.0.1/a.jpg",
    "http://[::ffff:127.0.0.1]/a.jpg",
    "http://2130706433/a.jpg",
    "http://0x7f000001/a.jpg",
    "file:///etc/passwd",
]


class ScriptedDns(AbstractResolver):
    """Stands in for DNS: each name answers its addresses in turn (the last one repeats)."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        queue = self.answers[host]
        addr = queue.pop(0) if len(queue) > 1 else queue[0]
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        return [ResolveResult(hostname=host, host=addr, port=port, family=fam, proto=0, flags=0)]

    async def close(self) -> None:
        return None


def test_unsafe_urls_are_refused_before_any_request() -> None:
    async def main() -> tuple[list[object], list[float], list[web.Request]]:
        sleep = Recorder()
        async with fetcher_at(ok, sleep) as (f, seen):
            results: list[object] = []
            for url in [*UNSAFE_LITERALS, "http://localhost/a.jpg", f"{CDN}/good.jpg"]:
                try:
                    results.append(await f.fetch(url))
                except PhotoError as err:
                    results.append(err)
        return results, sleep.calls, seen

    results, sleeps, seen = run(main())  # type: ignore[misc]
    *refused, good = results
    assert all(isinstance(e, PhotoError) and e.reason == "unsafe_url" for e in refused), refused
    assert "127.0.0.1" in refused[-1].message  # localhost: refused by what it resolves to
    assert good.data == JPEG_BYTES  # type: ignore[union-attr]
    assert [r.raw_path for r in seen] == [f"{CDN}/good.jpg"]  # nothing else reached the proxy
    assert len(sleeps) == 2  # literal hosts took no slot; localhost and the good photo did


def test_direct_connection_goes_only_to_the_checked_address() -> None:
    """DNS rebinding: public at the check, loopback at connect time -> refused, no packet."""

    async def main() -> tuple[object, list[web.Request], ScriptedDns]:
        dns = ScriptedDns({"rebind.photos.test": ["93.184.216.34", "127.0.0.1"]})
        async with proxy_server(ok) as (origin, seen):
            port = origin.rsplit(":", 1)[1]
            async with PhotoFetcher(FetchSettings(), sleep=Recorder(), resolver=dns) as f:
                with pytest.raises(PhotoError) as info:
                    await f.fetch(f"http://rebind.photos.test:{port}/a.jpg")
        return info.value, seen, dns

    err, seen, dns = run(main())  # type: ignore[misc]
    assert err.reason == "unsafe_url" and "127.0.0.1" in err.message  # type: ignore[attr-defined]
    assert seen == [] and dns.asked == ["rebind.photos.test"] * 2  # no retry either


@asynccontextmanager
async def connect_proxy(status: int) -> AsyncIterator[tuple[str, list[str]]]:
    """A proxy answering every CONNECT (https tunnel) with ``status``."""
    tunnels: list[str] = []

    @web.middleware
    async def connect(request: web.Request, handler: Handler) -> web.StreamResponse:
        # A middleware: the router cannot match CONNECT's authority-form target.
        assert request.method == "CONNECT"
        tunnels.append(request.raw_path)
        return web.Response(status=status, headers={"x-brd-err-code": "target_failed"})

    app = web.Application(middlewares=[connect])
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield f"http://u:pw@127.0.0.1:{server.port}", tunnels
    finally:
        await server.close()


@pytest.mark.parametrize(
    ("status", "reason", "attempts"),
    [(502, "proxy_connect", 3), (503, "proxy_connect", 3), (407, "proxy_auth", 1),
     (403, "proxy_connect", 1)],
)
def test_failed_connect_is_retried_like_a_5xx(status: int, reason: str, attempts: int) -> None:
    async def main() -> tuple[PhotoError, list[str], list[float]]:
        sleep = Recorder()
        async with connect_proxy(status) as (proxy, tunnels), \
                PhotoFetcher(settings(proxy), sleep=sleep) as f:
            with pytest.raises(PhotoError) as info:
                await f.fetch(f"https://{CDN_HOST}/a.jpg")
        return info.value, tunnels, sleep.calls

    err, tunnels, sleeps = run(main())  # type: ignore[misc]
    assert err.reason == reason and "target_failed" in err.message
    assert tunnels == [f"{CDN_HOST}:443"] * attempts
    assert sleeps[: attempts - 1] == [2.0, 6.0][: attempts - 1]
    assert "pw" not in str(err)


def test_unreachable_proxy_is_proxy_connect() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    async def main() -> PhotoError:
        s = settings(f"http://127.0.0.1:{port}")
        async with PhotoFetcher(s, sleep=Recorder()) as f:
            with pytest.raises(PhotoError) as info:
                await f.fetch(f"{CDN}/a.jpg")
        return info.value

    assert run(main()).reason == "proxy_connect"  # type: ignore[attr-defined]


def test_allowlist_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNDE_PHOTO_HOST_ALLOWLIST", " CDN.Brand-Images.test. , ,b.test")
    assert FetchSettings.from_env().host_allowlist == ("b.test", "cdn.brand-images.test")
    monkeypatch.delenv("UNDE_PHOTO_HOST_ALLOWLIST")
    assert FetchSettings.from_env().host_allowlist == ()
