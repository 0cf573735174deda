"""fal.ai queue emulator for `fal-ai/flux/dev` (EXTERNAL_APIS.md §3), driven by real fal-client.

Why literal: fal-client 1.0.3 follows the `status_url`/`response_url`/`cancel_url` of the
submit reply and raises KeyError if `queue_position`/`logs` are missing, so the reply
shapes here match the real queue. The URLs point back at this emulator, and the result's
images are real JPEGs served by it (so the pipeline's copy into the object store is real).

Any non-empty `Authorization: Key …` is accepted unless `create_app(key=...)` pins one.
Control API (no auth): `PUT /_emulator/fal/config` {"processing_s": 0.3},
`POST /_emulator/fal/fail-next` {"status": 500, "detail": "...", "error_type": "..."}
(the next submitted request completes with that error), `GET /_emulator/fal/requests`.
"""

from __future__ import annotations

import asyncio
import io
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image, ImageDraw

from unde_local.emulators.faults import FaultInjector

BASE_PATH = ""
APP_ID = "fal-ai/flux/dev"
IMAGE_SIZES: dict[str, tuple[int, int]] = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}
QUEUE_SHARE = 0.3  # first 30% of the processing time the request is IN_QUEUE


@dataclass
class FalRequest:
    id: str
    arguments: dict[str, Any]
    width: int
    height: int
    seed: int
    submitted: float
    processing_s: float
    failure: dict[str, Any] | None = None
    cancelled: bool = False
    images: dict[int, bytes] = field(default_factory=dict)

    def status(self, now: float) -> str:
        if self.cancelled:
            return "COMPLETED"
        elapsed = now - self.submitted
        if elapsed >= self.processing_s:
            return "COMPLETED"
        return "IN_QUEUE" if elapsed < self.processing_s * QUEUE_SHARE else "IN_PROGRESS"


@dataclass
class FalState:
    key: str | None
    processing_s: float = 0.3
    fail_next: list[dict[str, Any]] = field(default_factory=list)
    requests: dict[str, FalRequest] = field(default_factory=dict)


STATE: web.AppKey[FalState] = web.AppKey("fal", FalState)


def render_model_jpeg(width: int, height: int, seed: int) -> bytes:
    """A plain studio-like picture of a figure: a real, decodable JPEG of the asked size."""
    rng = random.Random(seed)
    img = Image.new("RGB", (width, height), (236, 236, 236))
    draw = ImageDraw.Draw(img)
    for y in range(0, height, 8):  # soft vertical gradient, the "studio backdrop"
        shade = 245 - int(30 * y / height)
        draw.rectangle((0, y, width, y + 8), fill=(shade, shade, shade + 2))
    cloth = tuple(rng.randint(40, 200) for _ in range(3))
    skin = rng.choice([(241, 204, 176), (198, 144, 110), (141, 85, 60), (224, 172, 140)])
    cx, unit = width // 2, height / 10
    draw.ellipse((cx - unit * 0.45, unit * 0.6, cx + unit * 0.45, unit * 1.6), fill=skin)
    draw.rounded_rectangle((cx - unit * 1.1, unit * 1.8, cx + unit * 1.1, unit * 5.6),
                           radius=int(unit * 0.4), fill=cloth)
    draw.rectangle((cx - unit * 0.9, unit * 5.6, cx - unit * 0.1, unit * 9.3), fill=cloth)
    draw.rectangle((cx + unit * 0.1, unit * 5.6, cx + unit * 0.9, unit * 9.3), fill=cloth)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=88)
    return out.getvalue()


def _detail(status: int, detail: Any, error_type: str | None = None) -> web.Response:
    body: dict[str, Any] = {"detail": detail}
    headers = {}
    if error_type:
        body["error_type"] = error_type
        headers["x-fal-error-type"] = error_type
    return web.json_response(body, status=status, headers=headers)


def _size(value: Any) -> tuple[int, int] | None:
    if value is None:
        return IMAGE_SIZES["landscape_4_3"]
    if isinstance(value, str):
        return IMAGE_SIZES.get(value)
    if isinstance(value, dict):
        w, h = value.get("width"), value.get("height")
        if isinstance(w, int) and isinstance(h, int) and 64 <= w <= 2048 and 64 <= h <= 2048:
            return w, h
    return None


def _validate(args: Any) -> tuple[list[dict[str, Any]], tuple[int, int] | None]:
    errors: list[dict[str, Any]] = []
    if not isinstance(args, dict):
        return [{"loc": ["body"], "msg": "body must be an object", "type": "type_error"}], None
    if not isinstance(args.get("prompt"), str) or not args["prompt"].strip():
        errors.append({"loc": ["body", "prompt"], "msg": "field required",
                       "type": "value_error.missing"})
    size = _size(args.get("image_size"))
    if size is None:
        errors.append({"loc": ["body", "image_size"], "msg": "invalid image size",
                       "type": "value_error"})
    n = args.get("num_images", 1)
    if not isinstance(n, int) or not 1 <= n <= 4:
        errors.append({"loc": ["body", "num_images"], "msg": "must be 1..4", "type": "value_error"})
    return errors, size


def create_app(faults: FaultInjector, *, key: str | None = None,
               processing_s: float = 0.3) -> web.Application:
    state = FalState(key=key, processing_s=processing_s)
    app = web.Application(middlewares=[faults.middleware])
    app[STATE] = state
    faults.add_routes(app)

    def authorized(request: web.Request) -> bool:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Key" or not value.strip():
            return False
        return state.key is None or value.strip() == state.key

    def base(request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    def lookup(request: web.Request) -> FalRequest:
        req = state.requests.get(request.match_info["request_id"])
        if req is None:
            raise web.HTTPNotFound(text='{"detail": "Request not found"}',
                                   content_type="application/json")
        return req

    async def submit(request: web.Request) -> web.Response:
        if not authorized(request):
            return _detail(401, "No user found for Key ID and Secret", "authentication_error")
        try:
            args = await request.json()
        except ValueError:
            return _detail(422, [{"loc": ["body"], "msg": "invalid JSON", "type": "json"}])
        errors, size = _validate(args)
        if errors or size is None:
            return _detail(422, errors, "validation_error")
        rid = str(uuid.uuid4())
        seed = args.get("seed") if isinstance(args.get("seed"), int) else random.randrange(2**31)
        state.requests[rid] = FalRequest(
            id=rid, arguments=args, width=size[0], height=size[1], seed=seed,
            submitted=time.monotonic(), processing_s=state.processing_s,
            failure=state.fail_next.pop(0) if state.fail_next else None)
        url = f"{base(request)}/fal-ai/flux/requests/{rid}"
        return web.json_response({
            "status": "IN_QUEUE", "request_id": rid, "response_url": url,
            "status_url": f"{url}/status", "cancel_url": f"{url}/cancel",
            "queue_position": 0}, headers={"x-fal-request-id": rid})

    async def status(request: web.Request) -> web.Response:
        if not authorized(request):
            return _detail(401, "No user found for Key ID and Secret", "authentication_error")
        req = lookup(request)
        now = time.monotonic()
        current = req.status(now)
        body: dict[str, Any] = {"status": current, "request_id": req.id,
                                "response_url": f"{base(request)}/fal-ai/flux/requests/{req.id}"}
        if current == "IN_QUEUE":
            body["queue_position"] = 0
            return web.json_response(body, status=202)
        body["logs"] = None
        if current == "IN_PROGRESS":
            return web.json_response(body, status=202)
        body["metrics"] = {"inference_time": round(req.processing_s * (1 - QUEUE_SHARE), 3)}
        if req.failure is not None:
            body["error"] = req.failure.get("detail", "Internal server error")
            body["error_type"] = req.failure.get("error_type", "internal_error")
        return web.json_response(body)

    async def result(request: web.Request) -> web.Response:
        if not authorized(request):
            return _detail(401, "No user found for Key ID and Secret", "authentication_error")
        req = lookup(request)
        if req.status(time.monotonic()) != "COMPLETED":
            return _detail(400, "Request is still in progress")
        if req.cancelled:
            return _detail(400, "Request was cancelled", "request_cancelled")
        if req.failure is not None:
            return _detail(int(req.failure.get("status", 500)),
                           req.failure.get("detail", "Internal server error"),
                           req.failure.get("error_type", "internal_error"))
        n = int(req.arguments.get("num_images", 1))
        images = [{"url": f"{base(request)}/files/{req.id}/{i}.jpeg", "width": req.width,
                   "height": req.height, "content_type": "image/jpeg"} for i in range(n)]
        return web.json_response({
            "images": images,
            "timings": {"inference": round(req.processing_s * (1 - QUEUE_SHARE), 3)},
            "seed": req.seed, "has_nsfw_concepts": [False] * n,
            "prompt": req.arguments["prompt"]}, headers={"x-fal-request-id": req.id})

    async def cancel(request: web.Request) -> web.Response:
        req = lookup(request)
        if req.status(time.monotonic()) == "COMPLETED":
            return web.json_response({"status": "ALREADY_COMPLETED"}, status=400)
        req.cancelled = True
        return web.json_response({"status": "CANCELLATION_REQUESTED"}, status=202)

    async def file(request: web.Request) -> web.Response:
        req = lookup(request)
        n = int(request.match_info["n"])
        if req.failure is not None or req.cancelled or n >= int(req.arguments.get("num_images", 1)):
            raise web.HTTPNotFound()
        if n not in req.images:
            req.images[n] = await asyncio.to_thread(
                render_model_jpeg, req.width, req.height, req.seed + n)
        return web.Response(body=req.images[n], content_type="image/jpeg")

    async def set_config(request: web.Request) -> web.Response:
        payload = await request.json()
        if "processing_s" in payload:
            state.processing_s = max(0.0, float(payload["processing_s"]))
        return web.json_response({"processing_s": state.processing_s})

    async def fail_next(request: web.Request) -> web.Response:
        state.fail_next.append(dict(await request.json()))
        return web.json_response({"pending_failures": len(state.fail_next)}, status=201)

    async def list_requests(request: web.Request) -> web.Response:
        now = time.monotonic()
        return web.json_response([
            {"request_id": r.id, "status": r.status(now), "cancelled": r.cancelled,
             "failed": r.failure is not None, "prompt": r.arguments.get("prompt")}
            for r in state.requests.values()])

    app.router.add_post(f"/{APP_ID}", submit)
    app.router.add_get("/fal-ai/flux/requests/{request_id}/status", status)
    app.router.add_get("/fal-ai/flux/requests/{request_id}", result)
    app.router.add_put("/fal-ai/flux/requests/{request_id}/cancel", cancel)
    app.router.add_get(r"/files/{request_id}/{n:\d+}.jpeg", file)
    app.router.add_put("/_emulator/fal/config", set_config)
    app.router.add_post("/_emulator/fal/fail-next", fail_next)
    app.router.add_get("/_emulator/fal/requests", list_requests)
    return app
