"""Brand image CDN reachable through an HTTP forward proxy that mimics Bright Data.

Why a proxy and a fake host: the downloader must send every photo request through the
residential proxy (`proxy=` in aiohttp / `proxies=` in requests), and the local stack has to
prove that it does.  The CDN host (`cdn.brand-images.test`) does not resolve, so a request
that bypasses the proxy fails loudly instead of silently working.  The same CDN is also
served in origin form on the proxy's port (no auth) for debugging with a browser or curl.

Proxy requests arrive in absolute form (`GET http://cdn.brand-images.test/zara/... HTTP/1.1`);
aiohttp keeps that URL in `request.raw_path` and routes on its path, which is all we need.
CONNECT (https tunnelling) is not implemented: local CDN URLs are plain http.

A test can pin the body of one photo path (`PUT /_emulator/cdn/bodies/<path>` with the bytes
and their Content-Type; `DELETE /_emulator/cdn/bodies` forgets them all): a real WebP, GIF or
EXIF-rotated photo served under a `.jpg` URL, as brand CDNs do, beyond the fault rules'
fixed set of bad bodies.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from unde_local.emulators.faults import FaultInjector
from unde_local.fixtures.photos import PhotoPool

DEFAULT_CDN_HOST = "cdn.brand-images.test"
PHOTO_PATH = re.compile(r"^/[a-z0-9_-]+/photos/(?:[A-Za-z0-9_.-]+/)*[A-Za-z0-9_.-]+\.jpg$")


@dataclass(frozen=True)
class ProxyConfig:
    user: str
    password: str
    cdn_hosts: frozenset[str]


CONFIG = web.AppKey("cdn_proxy_config", ProxyConfig)
POOL = web.AppKey("cdn_proxy_pool", PhotoPool)
BODIES = web.AppKey("cdn_proxy_bodies", dict[str, tuple[bytes, str]])
BODIES_ROUTE = "/_emulator/cdn/bodies"


def _brd_error(status: int, code: str, message: str) -> web.Response:
    """Bright Data reports proxy-side errors in headers, with a short text body."""
    headers = {"x-brd-error": message, "x-brd-err-code": code, "x-brd-err-msg": message}
    if status == 407:
        headers["Proxy-Authenticate"] = 'Basic realm="Bright Data"'
    return web.Response(status=status, text=f"{message}\n", headers=headers)


def _proxy_auth_ok(request: web.Request, config: ProxyConfig) -> bool:
    header = request.headers.get("Proxy-Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return secrets.compare_digest(user.encode(), config.user.encode()) and \
        secrets.compare_digest(password.encode(), config.password.encode())


async def _serve_photo(request: web.Request, path: str) -> web.Response:
    if request.method not in ("GET", "HEAD"):
        return web.Response(status=405, headers={"Allow": "GET, HEAD"})
    if not PHOTO_PATH.match(path) or ".." in path:
        return web.Response(status=404, text="Not Found\n", content_type="text/plain")
    pinned = request.app[BODIES].get(path)
    if pinned is not None:
        return web.Response(body=pinned[0], headers={"Content-Type": pinned[1]})
    width = None
    if request.query.get("w", "").isdigit():
        width = int(request.query["w"])
    body = await asyncio.to_thread(request.app[POOL].for_url, path, width)
    return web.Response(body=body, content_type="image/jpeg", headers={
        "Cache-Control": "public, max-age=31536000", "Accept-Ranges": "bytes",
        "ETag": f'"{len(body):x}-{request.app[POOL].index_for(path)}"',
    })


async def handle(request: web.Request) -> web.StreamResponse:
    config = request.app[CONFIG]
    raw = request.raw_path
    if not raw.startswith(("http://", "https://")):
        return await _serve_photo(request, request.path)  # origin form: direct CDN access
    if not _proxy_auth_ok(request, config):
        return _brd_error(407, "auth_failed", "Proxy Authentication Required")
    host = (urlsplit(raw).hostname or "").lower()
    if host not in config.cdn_hosts:
        return _brd_error(502, "target_unreachable", f"Could not resolve host {host}")
    return await _serve_photo(request, request.path)


async def put_body(request: web.Request) -> web.Response:
    """Pin the body served for one photo path (whatever the query string)."""
    path = "/" + request.match_info["path"]
    body = await request.read()
    ctype = request.headers.get("Content-Type", "image/jpeg")
    request.app[BODIES][path] = (body, ctype)
    return web.json_response({"path": path, "bytes": len(body)}, status=201)


async def clear_bodies(request: web.Request) -> web.Response:
    request.app[BODIES].clear()
    return web.json_response({"bodies": 0})


async def handle_connect(request: web.Request) -> web.Response:
    return _brd_error(501, "connect_unsupported", "CONNECT is not supported by the emulator")


def _target(request: web.Request) -> str:
    raw = request.raw_path
    return raw if raw.startswith(("http://", "https://")) else str(request.rel_url)


def _stats_key(request: web.Request) -> str:
    """Bucket by access route and brand, e.g. `proxy zara` / `direct zara`."""
    via = "proxy" if request.raw_path.startswith(("http://", "https://")) else "direct"
    brand = request.path.strip("/").split("/", 1)[0] or "-"
    return f"{via} {brand}"


def make_injector(name: str = "cdn_proxy", seed: int = 0) -> FaultInjector:
    """An injector whose rules match the absolute URL and whose stats group by brand."""
    return FaultInjector(name, seed=seed, target=_target, key=_stats_key)


def create_app(faults: FaultInjector, *, user: str, password: str,
               cdn_hosts: tuple[str, ...] = (DEFAULT_CDN_HOST,),
               pool: PhotoPool | None = None) -> web.Application:
    """The proxy+CDN app. Control routes answer origin-form requests under /_emulator/."""
    app = web.Application(middlewares=[faults.middleware])
    app[CONFIG] = ProxyConfig(user, password, frozenset(h.lower() for h in cdn_hosts))
    app[POOL] = pool or PhotoPool()
    app[BODIES] = {}
    faults.add_routes(app)
    app.router.add_put(BODIES_ROUTE + "/{path:.+}", put_body)
    app.router.add_delete(BODIES_ROUTE, clear_bodies)
    app.router.add_route("CONNECT", "/{tail:.*}", handle_connect)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app
