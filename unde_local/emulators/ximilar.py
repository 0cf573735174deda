"""Ximilar visual-search collection API emulator (fashion, photos, products…).

Why a real in-memory collection: idempotency, removal and crash recovery can only be
checked by reading back what was indexed, so tests see exactly the records an actual
collection would hold. Wire format per EXTERNAL_APIS.md §2: every method is a JSON POST
under `/similarity/{kind}/v2/`, headers `Authorization: Token|JWT …` and `collection-id`;
answers carry `status: {code, text, request_id}`; per-record failures are reported in
`skipped_records[]._reason.status` (the HTTP status stays 200).

Emulated behaviour:
- insert: at most 10 records (else HTTP 400); `_id` required; one of `_url`/`_base64`/
  `_file`; a `_url` that is not http(s), has a `.invalid` host (RFC 2606) or matches an
  "unfetchable" pattern is skipped as not downloadable; an existing `_id` is skipped with
  411 "record duplicate" (no second copy). Codes: 210 all / 211 some / 400 none inserted.
- delete: 220 all deleted, 206 some not found, 404 none found. get, allRecords, ping.
- visualTagsKNN: deterministic pseudo-distances; a query `_id` ranks itself first; simple
  Mongo-style `filter` (equality, `$in`, `$eq`, `$ne`).

Auth: any non-empty token, unless `XIMILAR_EMULATOR_TOKEN` is set (then only that one).
Control API (no auth): `GET|DELETE /_emulator/ximilar/collection/{id}`,
`POST|DELETE /_emulator/ximilar/unfetchable` {"match": "regex"}, plus `faults.py` routes.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from unde_local.emulators.faults import FaultInjector

BASE_PATH = ""
MAX_INSERT_RECORDS = 10
STATE: web.AppKey[XimilarState] = web.AppKey("ximilar_state")
_IMAGE_FIELDS = ("_url", "_base64", "_file")
_request_ids = itertools.count(1)


@dataclass
class XimilarState:
    token: str | None
    collections: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    unfetchable: list[re.Pattern[str]] = field(default_factory=list)

    def collection(self, cid: str) -> dict[str, dict[str, Any]]:
        return self.collections.setdefault(cid, {})


def _status(code: int, text: str) -> dict[str, Any]:
    return {"code": code, "text": text, "request_id": f"emu-{next(_request_ids):08d}"}


def _reply(code: int, text: str, http: int = 200, **body: Any) -> web.Response:
    return web.json_response({**body, "status": _status(code, text)}, status=http)


def _skip(record: dict[str, Any], code: int, text: str) -> dict[str, Any]:
    out = {k: v for k, v in record.items() if k not in ("_base64", "_file")}
    out["_reason"] = {"status": {"code": code, "text": text}}
    return out


@web.middleware
async def _auth(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.path.startswith("/_emulator") or request.path.endswith("/ping"):
        return await handler(request)
    state = request.app[STATE]
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme not in ("Token", "JWT") or not token.strip():
        return web.json_response(
            {"detail": "Authentication credentials were not provided."}, status=401)
    if state.token is not None and token.strip() != state.token:
        return web.json_response({"detail": "Invalid token."}, status=401)
    if not request.headers.get("collection-id", "").strip():
        return _reply(400, "collection-id header is required", http=400)
    return await handler(request)


async def _json_body(request: web.Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _records_of(body: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    records = (body or {}).get("records")
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        return None
    return records


def _fetchable(state: XimilarState, url: Any) -> bool:
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if parts.hostname.endswith(".invalid"):
        return False
    return not any(p.search(url) for p in state.unfetchable)


async def insert(request: web.Request) -> web.Response:
    state = request.app[STATE]
    records = _records_of(await _json_body(request))
    if records is None:
        return _reply(400, "body must be JSON with a 'records' list", http=400)
    if len(records) > MAX_INSERT_RECORDS:
        return _reply(400, f"too many records: {len(records)} > {MAX_INSERT_RECORDS} "
                      "per request", http=400)
    coll = state.collection(request.headers["collection-id"])
    inserted: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for record in records:
        rid = record.get("_id")
        if not isinstance(rid, str) or not rid:
            skipped.append(_skip(record, 400, "record has no _id"))
        elif not any(k in record for k in _IMAGE_FIELDS):
            skipped.append(_skip(record, 400, "record has no _url, _base64 or _file"))
        elif "_url" in record and not _fetchable(state, record["_url"]):
            skipped.append(_skip(record, 400, "image could not be downloaded from _url"))
        elif rid in coll:
            skipped.append(_skip(record, 411, "record duplicate"))
        else:
            stored = {k: v for k, v in record.items() if k not in ("_base64", "_file")}
            coll[rid] = stored
            inserted.append(stored)
    if not skipped:
        code, text = 210, "records inserted"
    elif inserted:
        code, text = 211, "some records inserted"
    else:
        code, text = 400, "no records inserted"
    return _reply(code, text, records=inserted, skipped_records=skipped)


async def delete(request: web.Request) -> web.Response:
    records = _records_of(await _json_body(request))
    if records is None:
        return _reply(400, "body must be JSON with a 'records' list", http=400)
    coll = request.app[STATE].collection(request.headers["collection-id"])
    deleted = [{"_id": r.get("_id")} for r in records if coll.pop(str(r.get("_id")), None)]
    missing = [{"_id": r.get("_id")} for r in records if {"_id": r.get("_id")} not in deleted]
    if not missing:
        return _reply(220, "records deleted", records=deleted)
    if deleted:
        return _reply(206, "some of the records not found", records=deleted,
                      skipped_records=missing)
    return _reply(404, "records not found", records=[], skipped_records=missing)


async def get(request: web.Request) -> web.Response:
    records = _records_of(await _json_body(request))
    if records is None:
        return _reply(400, "body must be JSON with a 'records' list", http=400)
    coll = request.app[STATE].collection(request.headers["collection-id"])
    found = [coll[str(r.get("_id"))] for r in records if str(r.get("_id")) in coll]
    if len(found) == len(records):
        return _reply(200, "OK", records=found)
    return _reply(206 if found else 404, "some of the records not found" if found
                  else "records not found", records=found)


async def all_records(request: web.Request) -> web.Response:
    coll = request.app[STATE].collection(request.headers["collection-id"])
    try:
        size = max(1, min(int(request.query.get("size", "100")), 1000))
        page = max(1, int(request.query.get("page", "1")))
    except ValueError:
        return _reply(400, "size and page must be integers", http=400)
    ids = sorted(coll)
    chunk = [coll[i] for i in ids[(page - 1) * size: page * size]]
    return _reply(200, "OK", records=chunk, count=len(ids), page=page, size=size)


def _matches(record: dict[str, Any], flt: dict[str, Any]) -> bool:
    for key, cond in flt.items():
        value = record.get(key)
        if isinstance(cond, dict):
            if "$in" in cond and value not in cond["$in"]:
                return False
            if "$eq" in cond and value != cond["$eq"]:
                return False
            if "$ne" in cond and value == cond["$ne"]:
                return False
        elif value != cond:
            return False
    return True


def _distance(query_key: str, rid: str) -> float:
    digest = hashlib.sha256(f"{query_key}|{rid}".encode()).digest()
    return round(0.05 + int.from_bytes(digest[:4], "big") / 2**32, 6)


async def visual_knn(request: web.Request) -> web.Response:
    body = await _json_body(request) or {}
    query = body.get("query_record")
    if not isinstance(query, dict) or not (query.get("_id") or query.get("_url")):
        return _reply(400, "query_record with _id or _url is required", http=400)
    coll = request.app[STATE].collection(request.headers["collection-id"])
    qid = query.get("_id")
    if qid and qid not in coll and not query.get("_url"):
        return _reply(404, "query record not found", answer_records=[], answer_distances=[],
                      answer_count=0)
    key = str(qid or query.get("_url"))
    flt = body.get("filter") if isinstance(body.get("filter"), dict) else {}
    scored = sorted((0.0 if rid == qid else _distance(key, rid), rid)
                    for rid, rec in coll.items() if _matches(rec, flt))
    k = int(body.get("k", 5))
    fields = body.get("fields_to_return") or ["_id"]
    answers = [{f: coll[rid].get(f) for f in fields if f in coll[rid]} for _, rid in scored[:k]]
    return _reply(200, "OK", answer_records=answers,
                  answer_distances=[d for d, _ in scored[:k]], answer_count=len(answers))


async def ping(request: web.Request) -> web.Response:
    return _reply(200, "OK")


async def control_collection(request: web.Request) -> web.Response:
    state = request.app[STATE]
    cid = request.match_info["collection_id"]
    if request.method == "DELETE":
        state.collections.pop(cid, None)
        return web.json_response({"collection_id": cid, "count": 0, "records": []})
    coll = state.collections.get(cid, {})
    return web.json_response({"collection_id": cid, "count": len(coll),
                              "records": [coll[i] for i in sorted(coll)]})


async def control_unfetchable(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if request.method == "DELETE":
        state.unfetchable.clear()
    else:
        body = await _json_body(request) or {}
        try:
            state.unfetchable.append(re.compile(str(body["match"])))
        except (KeyError, re.error) as exc:
            return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({"unfetchable": [p.pattern for p in state.unfetchable]})


def create_app(faults: FaultInjector, *, token: str | None = None) -> web.Application:
    """The Ximilar emulator app; `token=None` reads `XIMILAR_EMULATOR_TOKEN` (unset = any)."""
    app = web.Application(middlewares=[faults.middleware, _auth], client_max_size=32 * 1024**2)
    app[STATE] = XimilarState(token=token or os.environ.get("XIMILAR_EMULATOR_TOKEN") or None)
    r = app.router
    prefix = "/similarity/{kind}/v2"
    r.add_post(f"{prefix}/insert", insert)
    r.add_post(f"{prefix}/delete", delete)
    r.add_post(f"{prefix}/get", get)
    r.add_route("*", f"{prefix}/allRecords", all_records)
    r.add_post(f"{prefix}/visualTagsKNN", visual_knn)
    r.add_post(f"{prefix}/visualKNN", visual_knn)
    r.add_route("*", f"{prefix}/ping", ping)
    r.add_get("/_emulator/ximilar/collection/{collection_id}", control_collection)
    r.add_delete("/_emulator/ximilar/collection/{collection_id}", control_collection)
    r.add_post("/_emulator/ximilar/unfetchable", control_unfetchable)
    r.add_delete("/_emulator/ximilar/unfetchable", control_unfetchable)
    faults.add_routes(app)
    return app
