"""Polite photo fetching through the residential proxy.

Politeness model (seed numbers, SPEC §4): at most ``max_in_flight`` (10) requests in
flight, and **each slot** waits a random ``delay_min_s``..``delay_max_s`` (0.5-2 s)
after its own request before it takes the next one. So the rate is bounded by
``slots / (latency + mean delay)`` and never bursts; a global delay between requests
would instead serialise everything. The caller gets the response as soon as the
request ends: the slot's delay runs in the background and holds the slot, not the
caller.

Retry policy, all within ONE slot (a retrying photo keeps its slot, so a rate-limited
CDN sees us slow down rather than other slots taking its place):

* 429 / 503: wait ``rate_limit_backoff_s`` (5 s, 15 s, 45 s) then give up with
  ``http_429_exhausted`` / ``http_503_exhausted``. ``Retry-After`` is ignored (seed).
* other 5xx, connection reset, connect error, per-attempt timeout: transient; wait
  ``transient_backoff_s`` (2 s, 6 s), i.e. at most 3 attempts, then ``http_5xx`` /
  ``reset`` / ``connect_error`` / ``timeout``. Small on purpose: each timeout costs
  30 s and the SKU has 120 s in total.
* proxy unreachable or answering CONNECT (https) with 5xx/429, host not resolving:
  transient like a 5xx, then ``proxy_connect`` / ``dns_error``.
* 407 (proxy credentials, also on CONNECT) -> ``proxy_auth``; other 4xx ->
  ``http_<status>`` (``proxy_connect`` on CONNECT); TLS certificate failure ->
  ``tls_error``; 3xx -> ``redirect`` (not followed, see ``_attempt``, so no hop can
  lead to an internal host); no retry.
* host is, or resolves to, a non-public address -> ``unsafe_url`` before any request,
  with or without the proxy (``url_safety.py``); no retry.
* body larger than ``max_body_bytes`` -> ``too_large``; no retry.

``photo_timeout_s`` (30 s) bounds each attempt (connect + headers + body); the
120 s SKU bound lives in ``download.py``.

TLS: verification stays on. ``build_ssl_context`` adds ``PROXY_CA_BUNDLE`` (the
proxy's MITM root, e.g. Bright Data's ``brightdata_root_ca_44445.crt``) to the default
trust store. The proxy credentials go in ``proxy_headers`` (never logged, never in
``repr``); only the credential-free proxy URL is passed as ``proxy=``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType

import aiohttp
import aiohttp.abc
from yarl import URL

from unde_dagster.originals import url_safety as safety
from unde_dagster.originals.user_agents import USER_AGENTS, random_user_agent
from unde_dagster.originals.validate import PhotoError

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class FetchSettings:
    """Every politeness/timeout number (production defaults = seed). The local profile
    shortens the delays with ``dataclasses.replace``."""

    proxy_url: str | None = field(default=None, repr=False)
    """``http://user:pass@host:port``; hidden from ``repr`` so it never reaches logs/UI."""
    proxy_ca_bundle: str | None = None
    max_in_flight: int = 10
    delay_min_s: float = 0.5
    delay_max_s: float = 2.0
    photo_timeout_s: float = 30.0
    rate_limit_backoff_s: tuple[float, ...] = (5.0, 15.0, 45.0)
    transient_backoff_s: tuple[float, ...] = (2.0, 6.0)
    max_body_bytes: int = 30 * 1024 * 1024
    user_agents: tuple[str, ...] = USER_AGENTS
    host_allowlist: tuple[str, ...] = ()
    """Host names exempt from the public-address check (only the local CDN emulator)."""

    @classmethod
    def from_env(cls, **overrides: object) -> FetchSettings:
        """``PROXY_URL``, ``PROXY_CA_BUNDLE``, ``UNDE_PHOTO_HOST_ALLOWLIST`` (all optional)."""
        allow = safety.parse_allowlist(os.environ.get(safety.ALLOWLIST_ENV))
        base: dict[str, object] = {
            "proxy_url": os.environ.get("PROXY_URL") or None,
            "proxy_ca_bundle": os.environ.get("PROXY_CA_BUNDLE") or None,
            "host_allowlist": tuple(sorted(allow)),
        }
        base.update(overrides)
        return cls(**base)  # type: ignore[arg-type]

    @property
    def proxy_display(self) -> str:
        """The proxy URL with credentials removed, safe for logs."""
        if not self.proxy_url:
            return "(direct)"
        return str(URL(self.proxy_url).with_user(None).with_password(None))


def build_ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    """Default trust store plus the proxy's CA bundle; verification and hostname
    checking stay on (the seed turned verification off for the proxy; we never do)."""
    ctx = ssl.create_default_context()
    if ca_bundle:
        ctx.load_verify_locations(cafile=ca_bundle)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    return ctx


def split_proxy(proxy_url: str | None) -> tuple[str | None, dict[str, str]]:
    """Credential-free proxy URL and the ``Proxy-Authorization`` header for it
    (credentials percent-decoded). aiohttp 3.14 deprecates ``proxy_auth=BasicAuth``;
    its replacement ``proxy_headers`` only reaches the proxy on CONNECT (https), so
    for plain-http targets the header goes with the absolute-form request itself
    (the proxy consumes it; it never reaches the CDN)."""
    if not proxy_url:
        return None, {}
    url = URL(proxy_url)
    headers = {}
    if url.user is not None:
        headers["Proxy-Authorization"] = aiohttp.encode_basic_auth(url.user, url.password or "")
    return str(url.with_user(None).with_password(None)), headers


class SlotPool:
    """``size`` slots; a slot is held for its request and then for a random delay.

    Slots carry ids (0..size-1) so tests and logs can see which slot did what.
    """

    def __init__(
        self, size: int, delay_min_s: float, delay_max_s: float, rng: random.Random, sleep: Sleep
    ) -> None:
        self._free: asyncio.Queue[int] = asyncio.Queue()
        for i in range(size):
            self._free.put_nowait(i)
        self._delay = (delay_min_s, delay_max_s)
        self._rng = rng
        self._sleep = sleep
        self._cooling: set[asyncio.Task[None]] = set()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[int]:
        slot_id = await self._free.get()
        try:
            yield slot_id
        finally:
            delay = self._rng.uniform(*self._delay)
            task = asyncio.get_running_loop().create_task(self._cool_down(slot_id, delay))
            self._cooling.add(task)
            task.add_done_callback(self._cooling.discard)

    async def _cool_down(self, slot_id: int, delay: float) -> None:
        try:
            await self._sleep(delay)
        finally:
            self._free.put_nowait(slot_id)

    async def drain(self) -> None:
        """Wait for every slot's pending delay (call before closing the loop)."""
        while self._cooling:
            await asyncio.gather(*list(self._cooling), return_exceptions=True)


@dataclass(frozen=True)
class Fetched:
    """A successful response body and how many attempts it took."""

    url: str
    data: bytes
    status: int
    content_type: str
    attempts: int
    slot: int


_RESET_ERRORS = (
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientPayloadError,
    aiohttp.ClientOSError,
    ConnectionResetError,
)


class PhotoFetcher:
    """Fetch one photo URL at a time per slot, under the politeness rules above.

    Use as ``async with PhotoFetcher(settings) as f: await f.fetch(url)``. ``rng``,
    ``sleep`` and ``clock`` are injectable so tests need no real delays; ``resolver``
    is the DNS underneath the safety check (default: the event loop's getaddrinfo).
    """

    def __init__(
        self,
        settings: FetchSettings | None = None,
        *,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        resolver: aiohttp.abc.AbstractResolver | None = None,
    ) -> None:
        self.settings = settings or FetchSettings()
        self._rng = rng or random.Random()
        self._sleep = sleep
        self.clock = clock
        self._proxy, self._proxy_headers = split_proxy(self.settings.proxy_url)
        self._ssl = build_ssl_context(self.settings.proxy_ca_bundle)
        self._allow = safety.parse_allowlist(self.settings.host_allowlist)
        self._inner_resolver = resolver
        self._resolver: aiohttp.abc.AbstractResolver | None = None
        self._session: aiohttp.ClientSession | None = None
        self._pool: SlotPool | None = None

    async def __aenter__(self) -> PhotoFetcher:
        s = self.settings
        # ThreadedResolver (loop.getaddrinfo) needs the running loop; it holds nothing to close.
        self._resolver = self._inner_resolver or aiohttp.ThreadedResolver()
        trusted = [URL(self._proxy).host or ""] if self._proxy else []  # configured, not input
        safe = safety.SafeResolver(self._resolver, self._allow, trusted)
        connector = aiohttp.TCPConnector(limit=s.max_in_flight, ssl=self._ssl, resolver=safe)
        self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        self._pool = SlotPool(s.max_in_flight, s.delay_min_s, s.delay_max_s, self._rng, self._sleep)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._pool is not None:
            await self._pool.drain()
        if self._session is not None:
            await self._session.close()

    async def fetch(self, url: str, on_start: Callable[[], None] | None = None) -> Fetched:
        """Download ``url`` (retries included) in one slot; raise ``PhotoError``.

        ``on_start`` is called once the slot is acquired (download.py starts the
        SKU clock there, so SKUs queued behind busy slots are not timed out)."""
        if self._pool is None or self._session is None:
            raise RuntimeError("PhotoFetcher must be used as an async context manager")
        try:
            target = safety.check_url(url, self._allow)  # literal host: refused without a slot
        except safety.UnsafeUrl as exc:
            raise PhotoError("unsafe_url", exc.message) from None
        async with self._pool.slot() as slot_id:
            if on_start is not None:
                on_start()
            return await self._fetch_with_retries(url, target, slot_id)

    async def _fetch_with_retries(self, url: str, target: safety.Target, slot_id: int) -> Fetched:
        s = self.settings
        rate_limited = transient = 0
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(url, target, slot_id, attempt)
            except _Retry as r:
                if r.kind == "rate_limit":
                    if rate_limited >= len(s.rate_limit_backoff_s):
                        raise PhotoError(
                            f"http_{r.status}_exhausted",
                            f"HTTP {r.status} after {attempt} attempts "
                            f"(backoff {'/'.join(f'{d:g}' for d in s.rate_limit_backoff_s)} s)",
                        ) from None
                    wait = s.rate_limit_backoff_s[rate_limited]
                    rate_limited += 1
                else:
                    if transient >= len(s.transient_backoff_s):
                        msg = f"{r.message} (after {attempt} attempts)"
                        raise PhotoError(r.reason, msg) from None
                    wait = s.transient_backoff_s[transient]
                    transient += 1
                log.info("photo %s: %s, retry in %gs", url, r.reason, wait)
                await self._sleep(wait)

    async def _attempt(
        self, url: str, target: safety.Target, slot_id: int, attempt: int
    ) -> Fetched:
        assert self._session is not None and self._resolver is not None
        s = self.settings
        headers = {
            "User-Agent": random_user_agent(self._rng, s.user_agents),
            "Accept": "image/avif,image/webp,image/apng,image/*,*/*;q=0.8",
        }
        tunnel = url.startswith("https:")
        if not tunnel:
            headers.update(self._proxy_headers)
        try:
            # Resolved here even through the proxy: it would resolve on its own network.
            async with asyncio.timeout(s.photo_timeout_s):
                await safety.resolve_checked(target, self._resolver)
            async with self._session.get(
                url,
                proxy=self._proxy,
                proxy_headers=(self._proxy_headers or None) if tunnel else None,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=s.photo_timeout_s),
                # No auto-redirects: an http->https hop would carry our plain-http
                # Proxy-Authorization header into the tunnel, to the origin.
                allow_redirects=False,
            ) as resp:
                status, brd = resp.status, _brd(resp.headers)
                if status == 407:
                    raise PhotoError("proxy_auth", f"proxy rejected credentials{brd}")
                if status in (429, 503):
                    raise _Retry("rate_limit", f"http_{status}", f"HTTP {status}", status)
                if status >= 500:
                    raise _Retry("transient", f"http_{status}", f"HTTP {status}{brd}")
                if 300 <= status < 400:
                    where = resp.headers.get("Location", "?")[:120]
                    raise PhotoError("redirect", f"HTTP {status} redirect to {where}")
                if status >= 400 or status < 200:
                    raise PhotoError(f"http_{status}", f"HTTP {status} {resp.reason or ''}")
                data = await _read_limited(resp, s.max_body_bytes)
                return Fetched(
                    url=url,
                    data=data,
                    status=status,
                    content_type=resp.headers.get("Content-Type", ""),
                    attempts=attempt,
                    slot=slot_id,
                )
        except (PhotoError, _Retry):
            raise
        except safety.UnsafeUrl as exc:
            raise PhotoError("unsafe_url", exc.message) from None
        except safety.ResolveFailed as exc:
            raise _Retry("transient", "dns_error", str(exc)) from exc
        except TimeoutError as exc:
            raise _Retry(
                "transient", "timeout", f"no complete response within {s.photo_timeout_s:g} s"
            ) from exc
        except aiohttp.ClientSSLError as exc:
            # Certificate not trusted (wrong/missing PROXY_CA_BUNDLE): retrying won't help.
            raise PhotoError("tls_error", f"TLS verification failed: {exc.os_error}") from exc
        except aiohttp.ClientConnectorDNSError as exc:
            if isinstance(exc.os_error, safety.UnsafeUrl):  # SafeResolver, at connect time
                raise PhotoError("unsafe_url", exc.os_error.message) from None
            raise _Retry("transient", "connect_error", f"cannot resolve: {exc.os_error}") from exc
        except aiohttp.ClientProxyConnectionError as exc:
            # The proxy itself is unreachable; the message names its host:port only.
            raise _Retry("transient", "proxy_connect", f"proxy: {exc.os_error}") from exc
        except aiohttp.ClientConnectorError as exc:
            raise _Retry("transient", "connect_error", f"cannot connect: {exc.os_error}") from exc
        except aiohttp.ClientHttpProxyError as exc:
            raise _proxy_refused(exc) from exc
        except _RESET_ERRORS as exc:
            raise _Retry("transient", "reset", f"connection reset: {type(exc).__name__}") from exc
        except aiohttp.ClientError as exc:
            raise PhotoError("client_error", f"{type(exc).__name__}") from exc


class _Retry(Exception):
    """Internal: a retryable failure of one attempt."""

    def __init__(self, kind: str, reason: str, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.kind = kind
        self.reason = reason
        self.message = message
        self.status = status


def _brd(headers: Mapping[str, str] | None) -> str:
    """Bright Data's error headers, when present, make proxy failures readable."""
    code = (headers or {}).get("x-brd-err-code") or (headers or {}).get("x-brd-error")
    return f" (proxy: {code})" if code else ""


def _proxy_refused(exc: aiohttp.ClientHttpProxyError) -> Exception:
    """A non-200 CONNECT (https tunnel): 407 = credentials, 5xx/429 = retry like a 5xx."""
    detail = f"proxy answered CONNECT with {exc.status}{_brd(exc.headers)}"
    if exc.status == 407:
        return PhotoError("proxy_auth", f"proxy rejected credentials{_brd(exc.headers)}")
    if exc.status >= 500 or exc.status == 429:
        return _Retry("transient", "proxy_connect", detail)
    return PhotoError("proxy_connect", detail)


async def _read_limited(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    declared = resp.content_length
    if declared is not None and declared > limit:
        raise PhotoError("too_large", f"Content-Length {declared} exceeds {limit} bytes")
    chunks: list[bytes] = []
    total = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        total += len(chunk)
        if total > limit:
            raise PhotoError("too_large", f"body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)

