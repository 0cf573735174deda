"""Small JPEG previews of originals and collages (issue #18), plain functions (no Dagster).

The preview of the object at key K is stored at ``thumbnails/K`` (``keys.thumbnail_key``),
so the layout downstream consumers read (SPEC §3) is untouched. Originals fit within
400×400 px, collages are 400 px high (width follows); neither is ever upscaled, aspect is
kept. Output: upright, RGB, JPEG quality 85, no metadata.

Photos are opened exactly as the collage stage opens them (``collages/photos.py``: the
same formats, modes and EXIF orientation, read from the header), and brought to RGB by
the collage's own mode handling (CMYK, palette, 16-bit grey scaled to 8 bits, alpha
composited on white). A JPEG is decoded at the smallest DCT scale that still covers the
preview (``Image.draft``: a 1920×2880 photo decodes at 480×720 for a 267×400 preview, a
16th of the pixels; a 9600×2880 collage at 2400×720), then Lanczos takes it to the exact
size; other formats are box-reduced by an integer factor first (``reducing_gap``). The
turn to upright is done on the small result. Against a full-resolution Lanczos resample
the preview differs by ~0.5 levels of 255 on average (max ~7), for 1/4 of the CPU
(about 20 ms for a 1920×2880 photo, 140 ms for a 5-photo collage of them).
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO

from PIL import Image

from unde_dagster.collages.compose import to_pasteable
from unde_dagster.collages.photos import (
    OPEN_FORMATS,
    PHOTO_MODES,
    orientation,
    upright,
    upright_size,
)

ORIGINAL_BOX = 400
"""Originals fit within ORIGINAL_BOX × ORIGINAL_BOX px."""
COLLAGE_HEIGHT = 400
"""Collages are COLLAGE_HEIGHT px high, their width follows."""
QUALITY = 85
DRAFT_GAP = 1.0
"""A JPEG is decoded at the smallest DCT scale giving at least DRAFT_GAP × the preview's
size (``Image.thumbnail`` uses 2.0: ~0.2 instead of ~0.5 levels off a full-resolution
resample, but a collage's preview then costs 1.6× the CPU)."""
REDUCING_GAP = 2.0
"""Other formats are box-reduced to no less than REDUCING_GAP × the preview, then Lanczos
(``Image.resize``'s ``reducing_gap``, as ``Image.thumbnail``)."""

_WHITE = (255, 255, 255, 255)


def thumbnail_size(
    size: tuple[int, int], *, max_width: int | None, max_height: int
) -> tuple[int, int]:
    """(width, height) of the preview of an upright ``size``: fits the bounds, aspect kept,
    never larger than ``size``."""
    w, h = size
    if max_height < 1 or (max_width is not None and max_width < 1):
        raise ValueError("thumbnail bounds must be positive")
    if w < 1 or h < 1:
        raise ValueError(f"empty image {w}x{h}")
    scale = max_height / h if max_width is None else min(max_height / h, max_width / w)
    if scale >= 1:
        return w, h
    tw = min(max(1, round(w * scale)), max_width or w)
    th = min(max(1, round(h * scale)), max_height)
    return tw, th


@dataclass(frozen=True)
class PreviewPlan:
    """What a preview of an opened (not yet loaded) photo will be: its EXIF orientation,
    and its size before the turn to upright, which is also what the JPEG draft aims at."""

    orientation: int
    stored: tuple[int, int]

    def draft(self, img: Image.Image) -> None:
        """Decode a JPEG at the smallest DCT scale still covering the preview (must be called
        before ``load``; other formats ignore it)."""
        if self.stored != img.size:
            img.draft(None, (int(self.stored[0] * DRAFT_GAP), int(self.stored[1] * DRAFT_GAP)))


def plan_preview(
    img: Image.Image, body: bytes, *, max_width: int | None, max_height: int
) -> PreviewPlan:
    """The plan for the preview of ``img``, opened from ``body`` and not loaded yet."""
    if img.mode not in PHOTO_MODES:
        raise ValueError(f"colour mode {img.mode} is not supported")
    orient = orientation(img, body)
    target = thumbnail_size(
        upright_size(img.size, orient), max_width=max_width, max_height=max_height
    )
    return PreviewPlan(orient, upright_size(target, orient))


def finish_preview(img: Image.Image, plan: PreviewPlan) -> bytes:
    """The JPEG preview of ``img``, loaded after ``plan.draft``."""
    small = to_pasteable(img)  # RGB, L or a mode with alpha
    if small.size != plan.stored:
        small = small.resize(plan.stored, Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)
    rgb = _flatten(upright(small, plan.orientation))
    buf = BytesIO()
    rgb.save(buf, format="JPEG", quality=QUALITY)
    return buf.getvalue()


def thumbnail(body: bytes, *, max_width: int | None, max_height: int) -> bytes:
    """The JPEG preview of the photo ``body`` (any encoding the stages accept).

    Raises ``ValueError`` for a colour mode no stage accepts, Pillow's own errors
    (``UnidentifiedImageError``, ``OSError`` ...) for bytes that are no readable image.
    """
    with Image.open(BytesIO(body), formats=OPEN_FORMATS) as img:
        plan = plan_preview(img, body, max_width=max_width, max_height=max_height)
        plan.draft(img)
        img.load()
        return finish_preview(img, plan)


def original_thumbnail(body: bytes) -> bytes:
    """An original's preview: within 400×400 px."""
    return thumbnail(body, max_width=ORIGINAL_BOX, max_height=ORIGINAL_BOX)


def collage_thumbnail(body: bytes) -> bytes:
    """A collage's preview: 400 px high."""
    return thumbnail(body, max_width=None, max_height=COLLAGE_HEIGHT)


def _flatten(img: Image.Image) -> Image.Image:
    """RGB; transparency reads as white."""
    if img.mode == "RGB":
        return img
    if "A" in img.getbands() or img.mode in ("RGBa", "La"):
        rgba = img.convert("LA").convert("RGBA") if img.mode == "La" else img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, _WHITE)
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return img.convert("RGB")
