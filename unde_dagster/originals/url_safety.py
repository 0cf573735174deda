"""Photo URLs may only reach public hosts (SPEC §6): no loopback, private, link-local
(cloud metadata), multicast, reserved or unspecified address, by literal or by DNS.

Catalog URLs come from scraped third-party pages, so they are hostile input: without
this check a URL like ``http://169.254.169.254/latest/meta-data/`` would be fetched
with our proxy credentials (or straight from the run host when no proxy is set).

Three layers, all here and wired in ``fetch.py``:

* ``check_url`` (no I/O, before a slot is taken): scheme, then the host as written.
  IP literals are classified (IPv4-mapped / 6to4 IPv6 by their embedded IPv4); legacy
  IPv4 spellings that ``inet_aton`` and many proxies accept (``2130706433``,
  ``0x7f000001``, ``0177.0.0.1``, ``127.1``) are refused whatever they decode to,
  because another parser may read them differently; anything that is not a plain DNS
  name (``%``-escapes, odd characters) is refused too.
* ``resolve_checked`` (before every attempt, with or without the proxy): the host is
  resolved HERE and refused if ANY address is non-public, or if it does not resolve.
  With the proxy this is on purpose: the proxy resolves the name on its own network,
  where an internal name or address would reach the proxy operator's hosts. A name
  that rebinds between our lookup and the proxy's cannot be caught from here; that is
  the proxy's own network, not ours.
* ``SafeResolver`` (direct, no proxy): every connection aiohttp opens resolves through
  it, so the address connected to is the address checked (no DNS rebinding window).

``allowlist`` holds exact host names exempt from all three (the local profile's
emulated CDN host, which resolves nowhere); empty in production.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

ALLOWLIST_ENV = "UNDE_PHOTO_HOST_ALLOWLIST"
"""Comma-separated host names exempt from the check (the local stack sets its CDN host)."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class UnsafeUrl(OSError):
    """A photo URL refused by policy. An ``OSError`` so that, raised inside
    ``SafeResolver``, aiohttp surfaces it as ``ClientConnectorDNSError`` before any
    connection is made."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ResolveFailed(Exception):
    """The host did not resolve (possibly transient); it cannot be checked, so no request."""


def normalize_host(host: str) -> str:
    """Lower case without trailing dots: ``LOCALHOST.`` and ``localhost`` are one host."""
    return host.lower().rstrip(".")


def parse_allowlist(text: str | Iterable[str] | None) -> frozenset[str]:
    """``"a.test, b.test"`` (or an iterable of names) -> normalised host names."""
    if text is None:
        return frozenset()
    items = text.split(",") if isinstance(text, str) else text
    return frozenset(normalize_host(h.strip()) for h in items if h.strip())


def refusal(ip: IPAddress) -> str | None:
    """Why this address is not a public destination, or ``None`` when it is."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            why = refusal(embedded)
            return f"{why} (IPv4 {embedded} inside IPv6)" if why else None
    checks = (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("unspecified", ip.is_unspecified),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        ("not globally routable", not ip.is_global),
    )
    return next((name for name, hit in checks if hit), None)


@dataclass(frozen=True)
class Target:
    """A URL that passed the static check: ``needs_dns`` when ``host`` is a name to
    resolve (not an IP literal, not allowlisted)."""

    host: str
    port: int
    needs_dns: bool


def check_url(url: str, allowlist: frozenset[str] = frozenset()) -> Target:
    """Scheme and host as written; raise ``UnsafeUrl``. No I/O."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError) as exc:
        raise UnsafeUrl(f"unparseable URL: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise UnsafeUrl(f"scheme {parsed.scheme or '(none)'!r} is not http(s)")
    raw = parsed.raw_host  # what aiohttp connects to and writes in the request line
    if not raw:
        raise UnsafeUrl("URL has no host")
    host = normalize_host(raw)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if host in allowlist:
        return Target(host, port, needs_dns=False)
    if ":" in host:
        try:
            ip: IPAddress = ipaddress.IPv6Address(parsed.host or host)
        except ValueError:
            raise UnsafeUrl(f"host {host!r} is not a valid IPv6 address") from None
        _refuse_ip(host, ip)
        return Target(host, port, needs_dns=False)
    try:
        ip = ipaddress.IPv4Address(host)
    except ValueError:
        pass
    else:
        _refuse_ip(host, ip)
        return Target(host, port, needs_dns=False)
    if _NUMERIC_LABEL.match(host.rsplit(".", 1)[-1]):
        decoded = _legacy_ipv4(host)
        means = f" (= {decoded})" if decoded else ""
        raise UnsafeUrl(f"host {host!r}{means} is not a canonical dotted-quad IPv4 address")
    if len(host) > 253 or not _HOSTNAME.match(host):
        raise UnsafeUrl(f"host {host[:80]!r} is not a plain DNS name")
    return Target(host, port, needs_dns=True)


async def resolve_checked(target: Target, resolver: AbstractResolver) -> None:
    """Resolve ``target.host`` (every family) and refuse it if ANY address is non-public.

    Raise ``UnsafeUrl`` or ``ResolveFailed``."""
    if not target.needs_dns:
        return
    try:
        results = await resolver.resolve(target.host, target.port, family=socket.AF_UNSPEC)
    except UnsafeUrl:
        raise
    except OSError as exc:
        raise ResolveFailed(f"{target.host} does not resolve: {exc.strerror or exc}") from None
    if not results:
        raise ResolveFailed(f"{target.host} resolves to no address")
    _refuse_results(target.host, results)


class SafeResolver(AbstractResolver):
    """Wraps a real resolver; refuses a host if any address it resolves to is
    non-public. ``trusted`` (the configured proxy's host) and ``allowlist`` pass as is.

    Given to the ``TCPConnector``, so it sees every name aiohttp connects to: the
    connection goes to exactly the addresses checked here."""

    def __init__(
        self, inner: AbstractResolver, allowlist: frozenset[str], trusted: Iterable[str] = ()
    ) -> None:
        self._inner = inner
        self._pass = allowlist | {normalize_host(h) for h in trusted}

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if normalize_host(host) not in self._pass:
            _refuse_results(host, results)
        return results

    async def close(self) -> None:
        await self._inner.close()


def _refuse_ip(host: str, ip: IPAddress) -> None:
    why = refusal(ip)
    if why:
        raise UnsafeUrl(f"host {host} is not a public address: {why}")


def _refuse_results(host: str, results: Iterable[ResolveResult]) -> None:
    for result in results:
        try:
            ip = ipaddress.ip_address(result["host"])
        except ValueError:
            raise UnsafeUrl(f"{host} resolves to unparseable {result['host']!r}") from None
        why = refusal(ip)
        if why:
            raise UnsafeUrl(f"{host} resolves to {result['host']} ({why})")


def _legacy_ipv4(host: str) -> str | None:
    """What ``inet_aton`` (and so glibc's resolver) makes of a legacy numeric host."""
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return None
