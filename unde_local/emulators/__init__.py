"""Runner hosting every local emulator in one background thread with its own event loop.

Why a thread: the pipeline code under test is synchronous (Dagster ops, requests, boto3)
or runs its own event loop, so the emulators must live on a separate loop that tests,
benchmarks and the local-stack CLI can start and stop from plain Python.

Optional emulators (`ximilar`, `fal`, `availability`) are modules in this package exposing
`create_app(faults: FaultInjector) -> aiohttp.web.Application`; they are picked up if present.
"""

from __future__ import annotations

import asyncio
import importlib
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from unde_local.emulators import apify, cdn_proxy
from unde_local.emulators.faults import FaultInjector
from unde_local.fixtures.photos import PhotoPool, pool_sizes_from_env

DEFAULT_CDN_BASE_URL = f"http://{cdn_proxy.DEFAULT_CDN_HOST}"
# name -> attribute of EmulatorUrls holding its base URL
OPTIONAL_EMULATORS: dict[str, str] = {
    "ximilar": "ximilar_api_url",
    "fal": "fal_queue_url",
    "availability": "availability_api_url",
}


@dataclass(frozen=True)
class EmulatorUrls:
    """Where the pipeline should point its clients (the env vars of CONVENTIONS.md)."""

    apify_api_url: str
    cdn_base_url: str
    proxy_url: str
    ximilar_api_url: str | None = None
    fal_queue_url: str | None = None
    availability_api_url: str | None = None
    ports: dict[str, int] = field(default_factory=dict)


def _bind(host: str, port: int | None) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port or 0))
    sock.listen(512)
    sock.setblocking(False)
    return sock


class Emulators:
    """Start/stop all emulators; `.faults[name]` is each emulator's `FaultInjector`."""

    def __init__(self, host: str = "127.0.0.1", ports: dict[str, int] | None = None, *,
                 tasks: dict[str, str] | None = None, items_per_brand: int = 300,
                 apify_token: str = "local-apify-token", proxy_user: str = "brd-customer-local",
                 proxy_password: str = "local-proxy-password", data_dir: Path | None = None,
                 cdn_base_url: str = DEFAULT_CDN_BASE_URL, run_duration_s: float = 0.5,
                 seed: int = 0, warm_photos: bool = False,
                 photo_sizes: tuple[tuple[int, int], ...] | None = None) -> None:
        self.host, self.ports = host, dict(ports or {})
        self.tasks = dict(tasks if tasks is not None else default_tasks())
        self.items_per_brand, self.apify_token = items_per_brand, apify_token
        self.proxy_user, self.proxy_password = proxy_user, proxy_password
        self.data_dir, self.cdn_base_url = data_dir, cdn_base_url.rstrip("/")
        self.run_duration_s, self.seed, self.warm_photos = run_duration_s, seed, warm_photos
        self.faults: dict[str, FaultInjector] = {}
        # photo_sizes: every photo at these sizes (None: UNDE_LOCAL_PHOTO_SIZE if set, else
        # the pool's realistic default sizes).
        self.photo_pool = PhotoPool(seed, data_dir / "photo-cache" if data_dir else None,
                                    sizes=photo_sizes or pool_sizes_from_env())
        self.urls: EmulatorUrls | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runners: list[web.AppRunner] = []

    def _factories(self) -> dict[str, Callable[[FaultInjector], web.Application]]:
        cdn_host = self.cdn_base_url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
        factories: dict[str, Callable[[FaultInjector], web.Application]] = {
            "apify": lambda f: apify.create_app(
                f, token=self.apify_token, tasks=self.tasks, items_per_brand=self.items_per_brand,
                cdn_base_url=self.cdn_base_url, run_duration_s=self.run_duration_s,
                seed=self.seed),
            "cdn_proxy": lambda f: cdn_proxy.create_app(
                f, user=self.proxy_user, password=self.proxy_password, cdn_hosts=(cdn_host,),
                pool=self.photo_pool),
        }
        for name in OPTIONAL_EMULATORS:
            try:
                module = importlib.import_module(f"unde_local.emulators.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"unde_local.emulators.{name}":
                    raise  # the module exists but is broken: say so
                continue
            factories[name] = module.create_app
        return factories

    def _injector(self, name: str) -> FaultInjector:
        if name == "cdn_proxy":
            return cdn_proxy.make_injector(name, self.seed)
        return FaultInjector(name, seed=self.seed)

    async def _start_all(self) -> dict[str, int]:
        bound: dict[str, int] = {}
        for name, factory in self._factories().items():
            injector = self._injector(name)
            app = factory(injector)
            runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None,
                                   handler_cancellation=True)
            await runner.setup()
            sock = _bind(self.host, self.ports.get(name))
            await web.SockSite(runner, sock).start()
            self._runners.append(runner)
            self.faults[name] = injector
            bound[name] = sock.getsockname()[1]
        return bound

    def start(self, timeout: float = 30.0) -> EmulatorUrls:
        """Bind every emulator (port 0/None = a free loopback port) and return their URLs."""
        if self.urls is not None:
            return self.urls
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="unde-emulators",
                                        daemon=True)
        self._thread.start()
        try:
            ports = asyncio.run_coroutine_threadsafe(self._start_all(), self._loop).result(timeout)
        except BaseException:
            self.stop()
            raise
        self.urls = self._make_urls(ports)
        if self.warm_photos:  # ~5 s of CPU once; the disk cache in data_dir makes it one-off
            threading.Thread(target=self.photo_pool.warm, name="unde-photo-warm",
                             daemon=True).start()
        return self.urls

    def _make_urls(self, ports: dict[str, int]) -> EmulatorUrls:
        host = f"[{self.host}]" if ":" in self.host else self.host
        extra: dict[str, Any] = {}
        for name, attr in OPTIONAL_EMULATORS.items():
            if name in ports:
                module = importlib.import_module(f"unde_local.emulators.{name}")
                # Ximilar's client insists on "localhost" in the host name (EXTERNAL_APIS §2).
                url_host = "localhost" if name == "ximilar" and self.host == "127.0.0.1" else host
                extra[attr] = f"http://{url_host}:{ports[name]}{getattr(module, 'BASE_PATH', '')}"
        auth = f"{quote(self.proxy_user, safe='')}:{quote(self.proxy_password, safe='')}"
        return EmulatorUrls(
            apify_api_url=f"http://{host}:{ports['apify']}",
            cdn_base_url=self.cdn_base_url,
            proxy_url=f"http://{auth}@{host}:{ports['cdn_proxy']}",
            ports=ports, **extra)

    def base_url(self, name: str) -> str:
        """Plain http base URL of one emulator (for its `/_emulator/...` control routes)."""
        if self.urls is None:
            raise RuntimeError("emulators are not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.urls.ports[name]}"

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        """Run a coroutine on the emulators' loop (e.g. to inspect app state) and wait."""
        if self._loop is None:
            raise RuntimeError("emulators are not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None:
            return

        async def _cleanup() -> None:
            for runner in reversed(self._runners):
                await runner.cleanup()

        try:
            if loop.is_running():
                asyncio.run_coroutine_threadsafe(_cleanup(), loop).result(15)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            if thread is not None:
                thread.join(10)
            loop.close()
            self._loop = self._thread = None
            self._runners.clear()
            self.urls = None

    def __enter__(self) -> EmulatorUrls:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def default_tasks() -> dict[str, str]:
    """Task ids of the six brands, in the `user~name` form the API uses on the wire."""
    brands = ("zara", "bershka", "pullandbear", "stradivarius", "massimodutti", "oysho")
    return {f"unde~{b}-catalog-ae": b for b in brands}


__all__ = ["EmulatorUrls", "Emulators", "FaultInjector", "default_tasks"]
