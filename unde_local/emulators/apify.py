"""Apify API v2 emulator: actor-task runs, run polling and dataset pagination.

Why so literal: apify-client 3.x validates every reply with Pydantic and reads the five
`X-Apify-Pagination-*` headers unconditionally, so anything short of the real wire format
breaks the real client (EXTERNAL_APIS.md §1).  Each run snapshots the brand's current
catalog into a new dataset, so tests can edit a catalog (control API) between two runs
and see exactly what a weekly re-scrape of a changed shop would deliver.

Control API (no auth): `GET|PUT /_emulator/apify/catalog/{brand}`,
`POST /_emulator/apify/next-run-status` {"brand": "zara", "status": "FAILED"},
`GET /_emulator/apify/runs`, plus the fault routes of `faults.py`.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from unde_local.emulators.faults import FaultInjector
from unde_local.fixtures.catalog import generate_catalog

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "TIMED-OUT", "ABORTED"})
FAILURE_STATUSES = frozenset({"FAILED", "TIMED-OUT", "ABORTED"})
MAX_WAIT_S = 60.0
MAX_LIMIT = 250_000
USER_ID = "uNdEl0caLuSeR0001"
USERNAME = "unde"
ACT_ID = "dAtAsAuRuSzArA001"

def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error(status: int, type_: str, message: str) -> web.Response:
    return web.json_response({"error": {"type": type_, "message": message}}, status=status)


@dataclass
class Run:
    id: str
    task_id: str
    brand: str
    dataset_id: str
    started: float
    finishes: float
    final_status: str
    input_len: int
    options: dict[str, Any]
    aborted: bool = False

    def status(self, now: float) -> str:
        if now >= self.finishes:
            return self.final_status
        return "READY" if now - self.started < 0.05 else "RUNNING"

    def to_json(self, now: float) -> dict[str, Any]:
        status = self.status(now)
        done = status in TERMINAL
        return {
            "id": self.id, "actId": ACT_ID, "userId": USER_ID, "actorTaskId": self.task_id,
            "startedAt": _iso(self.started), "finishedAt": _iso(self.finishes) if done else None,
            "status": status,
            "statusMessage": {"SUCCEEDED": "Finished! Scraped the catalog.",
                              "FAILED": "The Actor process exited with code 1",
                              "TIMED-OUT": "Run timed out", "ABORTED": "Run aborted by user"}
            .get(status, "Scraping catalog pages"),
            "isStatusMessageTerminal": done,
            "meta": {"origin": "API", "userAgent": "ApifyClient"},
            "stats": {"inputBodyLen": self.input_len, "restartCount": 0, "resurrectCount": 0,
                      "durationMillis": int((min(now, self.finishes) - self.started) * 1000),
                      "computeUnits": 0.01},
            "options": self.options,
            "buildId": "bUiLdL0caL0000001", "buildNumber": "0.3.12",
            "exitCode": (0 if status == "SUCCEEDED" else 1) if done else None,
            "defaultKeyValueStoreId": f"kvs{self.id}", "defaultDatasetId": self.dataset_id,
            "defaultRequestQueueId": f"rq{self.id}", "generalAccess": "FOLLOW_USER_SETTING",
        }


@dataclass
class ApifyState:
    """Everything the emulator knows; mutated only on the emulator's event loop."""

    token: str
    tasks: dict[str, str]
    items_per_brand: int
    cdn_base_url: str
    run_duration_s: float = 0.5
    seed: int = 0
    catalogs: dict[str, list[Any]] = field(default_factory=dict)
    datasets: dict[str, tuple[list[Any], float, str | None]] = field(default_factory=dict)
    runs: dict[str, Run] = field(default_factory=dict)
    next_status: dict[str, list[str]] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def catalog(self, brand: str) -> list[Any]:
        if brand not in self.catalogs:
            self.catalogs[brand] = generate_catalog(brand, self.items_per_brand,
                                                    self.cdn_base_url, self.seed)
        return self.catalogs[brand]

    def task_brand(self, task_id: str) -> str | None:
        return self.tasks.get(task_id.replace("/", "~")) or self.tasks.get(task_id)

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):05d}{secrets.token_hex(4)}"


STATE = web.AppKey("apify_state", ApifyState)


def _authorized(request: web.Request, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    expected = token.encode()
    if header.startswith("Bearer ") and secrets.compare_digest(header[7:].encode(), expected):
        return True
    return secrets.compare_digest(request.query.get("token", "").encode(), expected)


@web.middleware
async def _auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.path.startswith("/v2/") and not _authorized(request, request.app[STATE].token):
        return _error(401, "token-not-valid", "Authentication token is not valid.")
    return await handler(request)


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true")


async def _read_body(request: web.Request) -> bytes:
    """aiohttp already inflates `Content-Encoding: gzip`; inflate again if a proxy did not."""
    body = await request.read()
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    return body


async def start_task_run(request: web.Request) -> web.Response:
    state = request.app[STATE]
    task_id = request.match_info["task_id"]
    brand = state.task_brand(task_id)
    if brand is None:
        return _error(404, "record-not-found", "Actor task was not found")
    body = await _read_body(request)
    if body:
        try:
            json.loads(body)
        except ValueError:
            return _error(400, "invalid-input", "Input is not valid JSON")
    queued = state.next_status.get(brand) or []
    final = queued.pop(0) if queued else "SUCCEEDED"
    items = json.loads(json.dumps(state.catalog(brand)))  # snapshot, detached from edits
    if final != "SUCCEEDED":
        items = items[: len(items) // 3]  # what had been scraped before it died
    now = time.time()
    run_id, dataset_id = state.new_id("run"), state.new_id("ds")
    timeout = int(request.query.get("timeout", 3600))
    memory = int(request.query.get("memory", 4096))
    options = {"build": request.query.get("build", "latest"), "timeoutSecs": timeout,
               "memoryMbytes": min(max(memory, 128), 32768), "diskMbytes": 2 * memory}
    if "maxItems" in request.query:
        options["maxItems"] = int(request.query["maxItems"])
        items = items[: options["maxItems"]]
    run = Run(run_id, task_id.replace("/", "~"), brand, dataset_id, now,
              now + state.run_duration_s, final, len(body), options)
    state.runs[run_id] = run
    state.datasets[dataset_id] = (items, now, run_id)
    wait = min(float(request.query.get("waitForFinish", 0) or 0), MAX_WAIT_S)
    if wait > 0:
        await asyncio.sleep(max(0.0, min(wait, run.finishes - time.time())))
    return web.json_response({"data": run.to_json(time.time())}, status=201)


async def get_run(request: web.Request) -> web.Response:
    run = request.app[STATE].runs.get(request.match_info["run_id"])
    if run is None:
        return _error(404, "record-not-found", "Actor run was not found")
    wait = min(float(request.query.get("waitForFinish", 0) or 0), MAX_WAIT_S)
    remaining = run.finishes - time.time()
    if wait > 0 and remaining > 0:
        await asyncio.sleep(min(wait, remaining))
    return web.json_response({"data": run.to_json(time.time())})


async def abort_run(request: web.Request) -> web.Response:
    run = request.app[STATE].runs.get(request.match_info["run_id"])
    if run is None:
        return _error(404, "record-not-found", "Actor run was not found")
    now = time.time()
    if run.status(now) not in TERMINAL:
        run.final_status, run.finishes = "ABORTED", now
    return web.json_response({"data": run.to_json(time.time())})


async def get_task(request: web.Request) -> web.Response:
    state = request.app[STATE]
    task_id = request.match_info["task_id"].replace("/", "~")
    brand = state.task_brand(task_id)
    if brand is None:
        return _error(404, "record-not-found", "Actor task was not found")
    name = task_id.split("~", 1)[-1]
    return web.json_response({"data": {
        "id": task_id, "userId": USER_ID, "actId": ACT_ID, "name": name, "username": USERNAME,
        "title": f"{brand} catalog", "createdAt": "2025-01-05T02:00:00.000Z",
        "modifiedAt": "2025-01-05T02:00:00.000Z",
        "options": {"build": "latest", "timeoutSecs": 3600, "memoryMbytes": 4096},
        "input": {"brand": brand, "country": "ae"},
    }})


def _dataset(request: web.Request) -> tuple[str, tuple[list[Any], float, str | None]] | None:
    state = request.app[STATE]
    dataset_id = request.match_info["dataset_id"]
    found = state.datasets.get(dataset_id)
    return (dataset_id, found) if found is not None else None


async def get_dataset(request: web.Request) -> web.Response:
    found = _dataset(request)
    if found is None:
        return _error(404, "record-not-found", "Dataset was not found")
    dataset_id, (items, created, run_id) = found
    base = f"{request.scheme}://{request.host}"
    return web.json_response({"data": {
        "id": dataset_id, "name": None, "userId": USER_ID, "createdAt": _iso(created),
        "modifiedAt": _iso(created), "accessedAt": _iso(time.time()),
        "itemCount": len(items), "cleanItemCount": sum(1 for i in items if i),
        "actId": ACT_ID, "actRunId": run_id,
        "consoleUrl": f"{base}/console/storage/datasets/{dataset_id}",
        "itemsPublicUrl": f"{base}/v2/datasets/{dataset_id}/items",
        "stats": {"readCount": 0, "writeCount": len(items), "storageBytes": 0},
    }})


def _shape(item: Any, clean: bool, fields: list[str], omit: list[str]) -> Any:
    if not isinstance(item, dict):
        return item
    if clean:
        item = {k: v for k, v in item.items() if not k.startswith("#")}
    if fields:
        item = {k: item[k] for k in fields if k in item}
    return {k: v for k, v in item.items() if k not in omit} if omit else item


async def list_items(request: web.Request) -> web.Response:
    found = _dataset(request)
    if found is None:
        return _error(404, "record-not-found", "Dataset was not found")
    items = found[1][0]
    try:
        offset = max(int(request.query.get("offset", 0)), 0)
        limit = min(max(int(request.query.get("limit", MAX_LIMIT)), 0), MAX_LIMIT)
    except ValueError:
        return _error(400, "invalid-parameter", "offset and limit must be integers")
    desc = _flag(request, "desc")
    clean = _flag(request, "clean")
    skip_empty = clean or _flag(request, "skipEmpty")
    fields = [f for f in request.query.get("fields", "").split(",") if f]
    omit = [f for f in request.query.get("omit", "").split(",") if f]
    ordered = list(reversed(items)) if desc else items
    page = ordered[offset: offset + limit]
    body = [_shape(i, clean or _flag(request, "skipHidden"), fields, omit)
            for i in page if not (skip_empty and not i)]
    headers = {
        "X-Apify-Pagination-Offset": str(offset), "X-Apify-Pagination-Limit": str(limit),
        "X-Apify-Pagination-Count": str(len(page)), "X-Apify-Pagination-Total": str(len(items)),
        "X-Apify-Pagination-Desc": "true" if desc else "false",
    }
    return web.json_response(body, headers=headers)


async def control_catalog_get(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].catalog(request.match_info["brand"]))


async def control_catalog_put(request: web.Request) -> web.Response:
    items = await request.json()
    if not isinstance(items, list):
        return _error(400, "invalid-input", "catalog must be a JSON array of items")
    request.app[STATE].catalogs[request.match_info["brand"]] = items
    return web.json_response({"brand": request.match_info["brand"], "items": len(items)})


async def control_next_status(request: web.Request) -> web.Response:
    payload = await request.json()
    brand, status = payload.get("brand"), payload.get("status")
    if status not in FAILURE_STATUSES | {"SUCCEEDED"} or not isinstance(brand, str):
        return _error(400, "invalid-input", "need brand and status FAILED|ABORTED|TIMED-OUT")
    request.app[STATE].next_status.setdefault(brand, []).append(status)
    return web.json_response({"brand": brand, "queued": request.app[STATE].next_status[brand]})


async def control_runs(request: web.Request) -> web.Response:
    now = time.time()
    return web.json_response([r.to_json(now) for r in request.app[STATE].runs.values()])


def create_app(faults: FaultInjector, *, token: str, tasks: dict[str, str],
               items_per_brand: int = 300, cdn_base_url: str = "http://cdn.brand-images.test",
               run_duration_s: float = 0.5, seed: int = 0) -> web.Application:
    """The Apify emulator app. `tasks` maps task id (`user~name` or bare id) to brand."""
    app = web.Application(middlewares=[faults.middleware, _auth_middleware],
                          client_max_size=64 * 1024**2)
    app[STATE] = ApifyState(token=token, tasks={k.replace("/", "~"): v for k, v in tasks.items()},
                            items_per_brand=items_per_brand, cdn_base_url=cdn_base_url,
                            run_duration_s=run_duration_s, seed=seed)
    r = app.router
    r.add_post("/v2/actor-tasks/{task_id}/runs", start_task_run)
    r.add_get("/v2/actor-tasks/{task_id}", get_task)
    r.add_get("/v2/actor-runs/{run_id}", get_run)
    r.add_post("/v2/actor-runs/{run_id}/abort", abort_run)
    r.add_get("/v2/datasets/{dataset_id}", get_dataset)
    r.add_get("/v2/datasets/{dataset_id}/items", list_items)
    r.add_get("/_emulator/apify/catalog/{brand}", control_catalog_get)
    r.add_put("/_emulator/apify/catalog/{brand}", control_catalog_put)
    r.add_post("/_emulator/apify/next-run-status", control_next_status)
    r.add_get("/_emulator/apify/runs", control_runs)
    faults.add_routes(app)
    return app
