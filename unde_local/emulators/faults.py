"""Fault injection shared by every emulator: rules, an aiohttp middleware, control routes, stats.

Why one injector per emulator app: tests and benchmarks must be able to make *one* service
misbehave (429 twice, then OK; a reset at the proxy; HTML with status 200 from the CDN)
while the others stay healthy, and must be able to count what the pipeline actually sent.

Rule JSON (`POST /_emulator/faults`, or `FaultInjector.add(**rule)`):
    {"match": "regex searched in the target URL", "method": "GET",          # both optional
     "status": 429, "json": {...} | "text": "..." | "html": "...",          # answer with status
     "headers": {...}, "retry_after": 5,
     "reset": true,                    # abort the TCP connection instead of answering
     "hang": true, "hang_max_s": 60,   # never answer (until client leaves or the bound)
     "body": "html200|truncated|zero|text|cmyk|palette|rgba|i16|bomb", "content_type": "...",
     "latency_ms": 200,                # delay; alone it delays and passes through
     "times": 2,                       # apply N times then expire (null = forever)
     "probability": 0.3}               # seeded RNG decides each matching request
The target URL is the absolute URL for proxy requests and the path+query otherwise.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

from unde_local.fixtures.photos import BAD_BODY_KINDS, bad_body

CONTROL_PREFIX = "/_emulator"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class FaultRule:
    """One fault; see the module docstring for the JSON form."""

    match: str = ""
    method: str | None = None
    status: int | None = None
    json: Any = None
    text: str | None = None
    html: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    retry_after: int | None = None
    reset: bool = False
    hang: bool = False
    hang_max_s: float = 60.0
    body: str | None = None
    content_type: str | None = None
    latency_ms: float = 0.0
    times: int | None = None
    probability: float | None = None
    id: int = 0
    applied: int = 0

    def __post_init__(self) -> None:
        actions = sum([self.status is not None, self.reset, self.hang, self.body is not None])
        if actions > 1:
            raise ValueError("a rule takes at most one of status / reset / hang / body")
        if self.body is not None and self.body not in BAD_BODY_KINDS:
            raise ValueError(f"unknown body kind {self.body!r}; expected one of {BAD_BODY_KINDS}")
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        self._regex = re.compile(self.match)

    def matches(self, method: str, target: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        return self._regex.search(target) is not None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


def _default_target(request: web.Request) -> str:
    # Absolute-form requests (through a proxy) keep their full URL in raw_path.
    raw = request.raw_path
    return raw if raw.startswith(("http://", "https://")) else str(request.rel_url)


def _default_key(request: web.Request) -> str:
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    canonical = getattr(resource, "canonical", None)
    return f"{request.method} {canonical or request.path}"


class FaultInjector:
    """Thread-safe rule set + request log for one emulator app.

    `target` maps a request to the string rules match against, `key` to the stats bucket
    (default: the route pattern, e.g. ``GET /v2/datasets/{dataset_id}/items``)."""

    def __init__(self, name: str, seed: int = 0,
                 target: Callable[[web.Request], str] = _default_target,
                 key: Callable[[web.Request], str] = _default_key,
                 max_log: int = 200_000) -> None:
        self.name = name
        self.latency_ms = 0.0
        self._target, self._key = target, key
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._log: deque[dict[str, Any]] = deque(maxlen=max_log)

    # --- Python API -------------------------------------------------------------------
    def add(self, **rule: Any) -> FaultRule:
        """Add a rule (keywords as in the JSON form); returns it (its `id` is assigned)."""
        rule.pop("id", None)
        rule.pop("applied", None)
        parsed = FaultRule(**rule)
        with self._lock:
            parsed.id = next(self._ids)
            self._rules.append(parsed)
        return parsed

    def remove(self, rule_id: int) -> None:
        """Drop one rule (a no-op when it has expired already)."""
        with self._lock:
            self._rules = [r for r in self._rules if r.id != rule_id]

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.to_json() for r in self._rules]

    def clear(self, stats: bool = False) -> None:
        """Drop every rule and the global latency; with `stats=True` also the request log."""
        with self._lock:
            self._rules.clear()
            self.latency_ms = 0.0
            if stats:
                self._counts.clear()
                self._log.clear()

    def set_latency(self, ms: float) -> None:
        """Delay every (non-control) request by `ms`, e.g. 50 ms of CDN round trip in benchmarks."""
        self.latency_ms = max(0.0, float(ms))

    def stats(self, include_requests: bool = True) -> dict[str, Any]:
        """Counts per route pattern, and each request's wall time, key, target, status, fault."""
        with self._lock:
            out: dict[str, Any] = {"name": self.name, "total": sum(self._counts.values()),
                                   "by_key": dict(self._counts)}
            if include_requests:
                out["requests"] = list(self._log)
            return out

    def requests(self, pattern: str = "") -> list[dict[str, Any]]:
        """Logged requests whose target contains `pattern` (plain substring)."""
        with self._lock:
            return [r for r in self._log if pattern in r["target"]]

    def _pick(self, method: str, target: str) -> FaultRule | None:
        with self._lock:
            for rule in self._rules:
                if not rule.matches(method, target):
                    continue
                if rule.probability is not None and self._rng.random() >= rule.probability:
                    continue
                rule.applied += 1
                if rule.times is not None and rule.applied >= rule.times:
                    self._rules.remove(rule)
                return rule
            return None

    def _record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._counts[entry["key"]] += 1
            self._log.append(entry)

    # --- aiohttp integration ----------------------------------------------------------
    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX) and not request.raw_path.startswith("http"):
            return await handler(request)
        target = self._target(request)
        entry: dict[str, Any] = {"t": time.time(), "method": request.method,
                                 "key": self._key(request), "target": target,
                                 "status": None, "fault": None,
                                 "content_encoding": request.headers.get("Content-Encoding")}
        self._record(entry)
        rule = self._pick(request.method, target)
        delay = self.latency_ms + (rule.latency_ms if rule else 0.0)
        if delay > 0:
            await asyncio.sleep(delay / 1000)
        if rule is not None:
            entry["fault"] = rule.id
            response = await self._apply(rule, request)
            if response is not None:
                entry["status"] = response.status
                return response
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            entry["status"] = exc.status
            raise
        entry["status"] = response.status
        return response

    async def _apply(self, rule: FaultRule, request: web.Request) -> web.StreamResponse | None:
        if rule.reset:
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=499)  # never reaches the client
        if rule.hang:
            deadline = time.monotonic() + rule.hang_max_s
            while time.monotonic() < deadline:
                transport = request.transport
                if transport is None or transport.is_closing():
                    break
                await asyncio.sleep(0.05)
            return web.Response(status=504, text="emulator hang ended")
        headers = dict(rule.headers)
        if rule.retry_after is not None:
            headers["Retry-After"] = str(rule.retry_after)
        if rule.body is not None:
            body, ctype = await asyncio.to_thread(bad_body, rule.body)
            headers.setdefault("Content-Type", rule.content_type or ctype)
            return web.Response(status=200, body=body, headers=headers)
        if rule.status is not None:
            if rule.json is not None:
                return web.json_response(rule.json, status=rule.status, headers=headers)
            if rule.html is not None:
                return web.Response(status=rule.status, text=rule.html, content_type="text/html",
                                    headers=headers)
            text = rule.text if rule.text is not None else f"emulated fault {rule.status}\n"
            return web.Response(status=rule.status, text=text, headers=headers)
        return None  # latency-only rule: pass through

    # --- control routes ---------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        """Mount `/_emulator/faults`, `/_emulator/latency` and `/_emulator/stats` on `app`."""
        app.router.add_get(f"{CONTROL_PREFIX}/faults", self._h_list)
        app.router.add_post(f"{CONTROL_PREFIX}/faults", self._h_add)
        app.router.add_delete(f"{CONTROL_PREFIX}/faults", self._h_clear)
        app.router.add_put(f"{CONTROL_PREFIX}/latency", self._h_latency)
        app.router.add_get(f"{CONTROL_PREFIX}/stats", self._h_stats)
        app.router.add_delete(f"{CONTROL_PREFIX}/stats", self._h_stats_clear)

    async def _h_list(self, request: web.Request) -> web.Response:
        return web.json_response({"rules": self.rules(), "latency_ms": self.latency_ms})

    async def _h_add(self, request: web.Request) -> web.Response:
        payload = await request.json()
        try:
            rules = payload if isinstance(payload, list) else [payload]
            added = [self.add(**r).to_json() for r in rules]
        except (TypeError, ValueError) as exc:
            return web.json_response({"error": {"type": "invalid-rule", "message": str(exc)}},
                                     status=400)
        return web.json_response({"rules": added}, status=201)

    async def _h_clear(self, request: web.Request) -> web.Response:
        self.clear(stats=request.query.get("stats") == "true")
        return web.json_response({"rules": []})

    async def _h_latency(self, request: web.Request) -> web.Response:
        self.set_latency(float((await request.json()).get("latency_ms", 0)))
        return web.json_response({"latency_ms": self.latency_ms})

    async def _h_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats(request.query.get("requests", "true") != "false"))

    async def _h_stats_clear(self, request: web.Request) -> web.Response:
        with self._lock:
            self._counts.clear()
            self._log.clear()
        return web.json_response({"total": 0})

