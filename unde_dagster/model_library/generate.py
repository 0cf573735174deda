"""Generate one template's image on fal.ai, keep it in our bucket, record the next version.

Why copy the image: fal's result URLs are temporary; the library must outlive them. Keys:
`models/{template_id}/v{n}.jpg` and `models/{template_id}/v{n}_thumb.jpg` (SPEC fixes no
layout for models; this mirrors `collages/…`). The version is taken under a per-template
advisory lock in the same transaction that inserts the row, so two runs never collide.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fal_client
import httpx
import psycopg
from PIL import Image, UnidentifiedImageError
from psycopg.types.json import Jsonb

from unde_dagster.model_library.templates import Template

SCRAPER_NAME = "model_generator"
THUMBNAIL_BOX = (384, 512)
MAX_IMAGE_BYTES = 40 * 1024 * 1024
Image.MAX_IMAGE_PIXELS = 64_000_000  # refuse decompression bombs


class GenerationFailed(RuntimeError):
    """fal.ai or the image copy failed; `kind` is a short code for logs and metadata."""

    def __init__(self, kind: str, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.request_id = request_id


@dataclass(frozen=True)
class GenerationSettings:
    application: str = "fal-ai/flux/dev"
    image_size: str = "portrait_4_3"
    num_inference_steps: int = 28
    guidance_scale: float = 3.5
    timeout_s: float = 300.0
    poll_interval_s: float = 0.25
    download_timeout_s: float = 60.0


@dataclass
class Generated:
    request_id: str
    output: dict[str, Any]
    image: bytes
    thumbnail: bytes
    width: int
    height: int
    processing_time_ms: int


def arguments(t: Template, s: GenerationSettings) -> dict[str, Any]:
    return {"prompt": t.prompt, "image_size": s.image_size, "num_images": 1,
            "num_inference_steps": s.num_inference_steps, "guidance_scale": s.guidance_scale,
            "output_format": "jpeg", "enable_safety_checker": True}


def to_jpeg_and_thumbnail(body: bytes) -> tuple[bytes, bytes, int, int]:
    """Validate the image; JPEG stays byte-identical, anything else is re-encoded."""
    try:
        with Image.open(io.BytesIO(body)) as img:
            img.load()
            fmt, size = img.format, img.size
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError) as exc:
        raise GenerationFailed("bad_image", f"result is not a usable image: {exc}") from exc
    if fmt != "JPEG":
        out = io.BytesIO()
        rgb.save(out, "JPEG", quality=95)
        body = out.getvalue()
    rgb.thumbnail(THUMBNAIL_BOX, Image.Resampling.LANCZOS)
    thumb = io.BytesIO()
    rgb.save(thumb, "JPEG", quality=85)
    return body, thumb.getvalue(), size[0], size[1]


def _download(url: str, timeout_s: float) -> bytes:
    try:
        with httpx.stream("GET", url, timeout=timeout_s, follow_redirects=True) as response:
            if response.status_code != 200:
                raise GenerationFailed("image_http", f"image download: HTTP {response.status_code}")
            chunks, total = [], 0
            for chunk in response.iter_bytes():
                total += len(chunk)
                if total > MAX_IMAGE_BYTES:
                    raise GenerationFailed("image_too_large", "image is over 40 MiB")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as exc:
        raise GenerationFailed("image_download", f"image download: {type(exc).__name__}") from exc


def generate(client: fal_client.SyncClient, t: Template, s: GenerationSettings) -> Generated:
    """Submit, wait (bounded by `timeout_s` in total), fetch the image and thumbnail it."""
    started = time.monotonic()
    ids: list[str] = []
    try:
        output = client.subscribe(s.application, arguments(t, s), interval=s.poll_interval_s,
                                  client_timeout=s.timeout_s, on_enqueue=ids.append)
    except fal_client.FalClientTimeoutError as exc:
        raise GenerationFailed("timeout", f"fal.ai gave no result within {s.timeout_s:g}s",
                               exc.request_id) from exc
    except fal_client.FalClientHTTPError as exc:
        kind = exc.error_type or f"http_{exc.status_code}"
        raise GenerationFailed(kind, f"fal.ai HTTP {exc.status_code}: {str(exc)[:300]}",
                               ids[0] if ids else None) from exc
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        raise GenerationFailed("protocol", f"fal.ai call failed: {type(exc).__name__}: {exc}",
                               ids[0] if ids else None) from exc
    processing_ms = int((time.monotonic() - started) * 1000)
    request_id = ids[0] if ids else ""
    images = output.get("images") if isinstance(output, dict) else None
    if not images or not isinstance(images[0], dict) or not images[0].get("url"):
        raise GenerationFailed("no_image", "fal.ai result has no image", request_id)
    if any(output.get("has_nsfw_concepts") or []):
        raise GenerationFailed("nsfw", "fal.ai flagged the image as NSFW", request_id)
    remaining = max(1.0, s.timeout_s - (time.monotonic() - started))
    body = _download(images[0]["url"], min(s.download_timeout_s, remaining))
    image, thumb, width, height = to_jpeg_and_thumbnail(body)
    return Generated(request_id, output, image, thumb, width, height, processing_ms)


def model_keys(template_id: str, version: int) -> tuple[str, str]:
    return (f"models/{template_id}/v{version}.jpg",
            f"models/{template_id}/v{version}_thumb.jpg")


def store_version(conn: psycopg.Connection, t: Template, g: Generated, s: GenerationSettings,
                  upload: Callable[[str, bytes], str]) -> tuple[int, str, str]:
    """Next version of the template: upload both images and insert the row, atomically."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('model_library:' || %s))",
                     (t.template_id,))
        row = conn.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM model_library "
                           "WHERE template_id = %s", (t.template_id,)).fetchone()
        version = int(row[0]) if row else 1
        image_key, thumb_key = model_keys(t.template_id, version)
        image_url = upload(image_key, g.image)
        thumb_url = upload(thumb_key, g.thumbnail)
        metadata = {
            "application": s.application, "image_size": s.image_size,
            "num_inference_steps": s.num_inference_steps, "guidance_scale": s.guidance_scale,
            "seed": g.output.get("seed"), "width": g.width, "height": g.height,
            "timings": g.output.get("timings"), "fal_image_url": g.output["images"][0]["url"],
            "has_nsfw_concepts": g.output.get("has_nsfw_concepts"),
        }
        conn.execute(
            """
            INSERT INTO model_library (template_id, version, image_url, thumbnail_url, gender,
                age_range, body_type, pose, style, prompt, metadata, fal_request_id,
                processing_time_ms)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            """,
            (t.template_id, version, image_url, thumb_url, t.gender, t.age_range, t.body_type,
             t.pose, t.style, t.prompt, Jsonb(metadata), g.request_id, g.processing_time_ms),
        )
    return version, image_url, thumb_url
