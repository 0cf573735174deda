"""Which photo URLs may be fetched (SPEC §6): public hosts only, by literal and by DNS."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from unde_dagster.originals.url_safety import (
    ResolveFailed,
    SafeResolver,
    Target,
    UnsafeUrl,
    check_url,
    parse_allowlist,
    refusal,
    resolve_checked,
)
from unde_dagster.resources.downloader import PhotoDownloader

REFUSED = [
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
    "https://10.0.0.5/x.jpg",
    "http://172.16.0.1/a.jpg",
    "http://192.168.1.1/a.jpg",
    "http://127.0.0.1/a.jpg",
    "http://127.0.0.1./a.jpg",
    "http://0.0.0.0/a.jpg",
    "http://100.64.0.1/a.jpg",  # carrier-grade NAT: not globally routable
    "http://224.0.0.1/a.jpg",
    "http://240.0.0.1/a.jpg",
    "http://255.255.255.255/a.jpg",
    "http://[::1]/a.jpg",
    "http://[::]/a.jpg",
    "http://[::ffff:127.0.0.1]/a.jpg",  # IPv4-mapped IPv6
    "http://[::ffff:7f00:1]/a.jpg",
    "http://[::ffff:169.254.169.254]/a.jpg",
    "http://[64:ff9b::a9fe:a9fe]/a.jpg",  # NAT64 of 169.254.169.254
    "http://[2002:a00:1::]/a.jpg",  # 6to4 of 10.0.0.1
    "http://[fe80::1%25eth0]/a.jpg",
    "http://[fc00::1]/a.jpg",
    "http://[ff02::1]/a.jpg",
    "http://2130706433/a.jpg",  # decimal integer 127.0.0.1
    "http://2852039166/latest/meta-data/",  # decimal integer 169.254.169.254
    "http://0x7f000001/a.jpg",  # hex
    "http://0177.0.0.1/a.jpg",  # octal
    "http://017700000001/a.jpg",
    "http://127.1/a.jpg",  # short form
    "http://0x7f.1/a.jpg",
    "http://134744072/a.jpg",  # 8.8.8.8 as an integer: refused too, parsers disagree
    "http://%31%32%37.0.0.1/a.jpg",  # percent-escaped host
    "http://cdn..test/a.jpg",
    "http://cdn_test!/a.jpg",
    "ftp://cdn.example.com/a.jpg",
    "file:///etc/passwd",
    "gopher://cdn.example.com/a",
    "http:///a.jpg",
    "not a url",
]


@pytest.mark.parametrize("url", REFUSED)
def test_refused_without_any_lookup(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        check_url(url)


def test_refusal_names_the_reason() -> None:
    with pytest.raises(UnsafeUrl, match="link-local"):
        check_url("http://169.254.169.254/latest/meta-data/")
    with pytest.raises(UnsafeUrl, match=r"loopback \(IPv4 127.0.0.1 inside IPv6\)"):
        check_url("http://[::ffff:127.0.0.1]/a.jpg")
    with pytest.raises(UnsafeUrl, match=r"= 127.0.0.1"):
        check_url("http://2130706433/a.jpg")


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("http://8.8.8.8/a.jpg", Target("8.8.8.8", 80, needs_dns=False)),
        ("https://[2606:4700:4700::1111]/a.jpg", Target("2606:4700:4700::1111", 443, False)),
        ("https://static.zara.net/photos/a.jpg?w=1920", Target("static.zara.net", 443, True)),
        ("HTTP://Static.Zara.NET.:8080/a.jpg", Target("static.zara.net", 8080, True)),
    ],
)
def test_public_literals_pass_and_names_need_dns(url: str, target: Target) -> None:
    assert check_url(url) == target


def test_ip_classification() -> None:
    assert refusal(ipaddress.ip_address("::ffff:10.1.2.3")) == "private (IPv4 10.1.2.3 inside IPv6)"
    assert refusal(ipaddress.ip_address("::ffff:8.8.8.8")) is None
    assert refusal(ipaddress.ip_address("2a00:1450:4001::200e")) is None
    assert refusal(ipaddress.ip_address("169.254.169.254")) == "link-local"
    assert refusal(ipaddress.ip_address("239.1.1.1")) == "multicast"


def test_allowlist_is_exact_and_normalised() -> None:
    allow = parse_allowlist(" CDN.Brand-Images.test. , ,")
    assert allow == {"cdn.brand-images.test"}
    assert parse_allowlist(None) == frozenset() and parse_allowlist("") == frozenset()
    assert check_url("http://cdn.brand-images.test/zara/a.jpg", allow).needs_dns is False
    assert check_url("http://img.cdn.brand-images.test/a.jpg", allow).needs_dns is True
    with pytest.raises(UnsafeUrl):
        check_url("http://127.0.0.1/a.jpg", allow)


class FakeDns(AbstractResolver):
    """Stands in for DNS with fixed answers."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            ResolveResult(hostname=host, host=a, port=port, family=socket.AF_INET, proto=0,
                          flags=0)
            for a in self.answers[host]
        ]

    async def close(self) -> None:
        return None


def test_names_resolving_to_loopback_are_refused() -> None:
    """The real resolver (the event loop's getaddrinfo): ``localhost`` is 127.0.0.1/::1."""

    async def main() -> None:
        resolver = aiohttp.ThreadedResolver()
        for url in ("http://localhost/a.jpg", "http://LOCALHOST./a.jpg"):
            with pytest.raises(UnsafeUrl, match="loopback"):
                await resolve_checked(check_url(url), resolver)
        with pytest.raises(ResolveFailed):
            await resolve_checked(check_url("http://no-such-host.invalid/a.jpg"), resolver)

    asyncio.run(main())


def test_any_non_public_address_refuses_the_name() -> None:
    dns = FakeDns({"mixed.test": ["93.184.216.34", "10.0.0.7"], "public.test": ["8.8.4.4"]})

    async def main() -> None:
        with pytest.raises(UnsafeUrl, match=r"10\.0\.0\.7 \(private\)"):
            await resolve_checked(Target("mixed.test", 80, True), dns)
        await resolve_checked(Target("public.test", 80, True), dns)
        await resolve_checked(Target("anything.test", 80, False), dns)  # allowlisted: no lookup

    asyncio.run(main())


def test_safe_resolver_checks_every_connection() -> None:
    dns = FakeDns({"evil.test": ["127.0.0.1"], "proxy.test": ["10.1.1.1"],
                   "cdn.local.test": ["127.0.0.1"], "public.test": ["8.8.4.4"]})
    safe = SafeResolver(dns, frozenset({"cdn.local.test"}), trusted=["Proxy.test"])

    async def main() -> None:
        with pytest.raises(UnsafeUrl, match="loopback"):
            await safe.resolve("evil.test", 80)
        assert (await safe.resolve("proxy.test", 80))[0]["host"] == "10.1.1.1"  # configured
        assert (await safe.resolve("cdn.local.test", 80))[0]["host"] == "127.0.0.1"
        assert (await safe.resolve("public.test", 80))[0]["host"] == "8.8.4.4"
        with pytest.raises(OSError):  # an OSError: aiohttp reports it before connecting
            await safe.resolve("evil.test", 80)

    asyncio.run(main())


def test_downloader_resource_allowlist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UNDE_PHOTO_HOST_ALLOWLIST", raising=False)
    assert PhotoDownloader().fetch_settings().host_allowlist == ()  # production: nothing
    monkeypatch.setenv("UNDE_PHOTO_HOST_ALLOWLIST", "cdn.brand-images.test")
    assert PhotoDownloader().fetch_settings().host_allowlist == ("cdn.brand-images.test",)
    explicit = PhotoDownloader(host_allowlist="")  # explicit config wins over the env
    assert explicit.fetch_settings().host_allowlist == ()
