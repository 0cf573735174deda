"""Validate a downloaded product photo before it is uploaded to S3.

A pure function on bytes (no I/O), so it can run in a worker thread and be tested
alone. The CDN behind a residential proxy returns many kinds of garbage with status
200: HTML block pages, empty bodies, bodies cut short by a dropped connection. Those are
rejected with a reason code naming the cause. Real photos in unusual encodings (CMYK
JPEGs, palette and alpha PNGs, 16-bit greyscale, WebP or PNG under a ``.jpg`` URL, GIF,
MPO) are accepted (SPEC §6): the collage stage normalises them to RGB, so rejecting
them here only lost the SKU. The accepted formats and modes are the collage stage's own
(``collages/photos.py``), so the two stages cannot drift apart. The original bytes are
stored unchanged; nothing is re-encoded here.

Size limits use the upright size (EXIF orientation applied, as the collage does).

Why a decode (``img.load()``) and not only ``Image.verify()``: for JPEG, Pillow's
``verify()`` does not decode the entropy-coded data, so a body truncated mid-scan
passes it. ``load()`` decodes the data and raises on truncation. A JPEG is decoded at
its smallest DCT scale (``Image.draft``, 1/8 of each side): libjpeg still reads every
Huffman-coded coefficient of every scan, so a cut body fails exactly where a full decode
fails (checked at every 0.5% cut of a baseline and a progressive JPEG by the unit
tests), but the inverse DCT and colour conversion work on 1/64 of the pixels: a
1920x2880 photo takes ~7 ms of CPU instead of ~22 (``bench/downloader_bench.py``,
2-core machine). At the politeness bound (~70
photos/s at full size) that CPU was what held the downloads below it. The downloader
calls ``validate_with_preview``: the same decode, at the preview's DCT scale (1/4 for a
1920x2880 photo), also gives the original's preview, so a photo is decoded once, not
twice. It runs off the event loop via ``asyncio.to_thread``.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass

from PIL import Image, ImageFile, JpegImagePlugin, UnidentifiedImageError

from unde_dagster.collages.photos import (
    OPEN_FORMATS,
    PHOTO_FORMATS,
    PHOTO_MODES,
    looks_like_html,
    mode_code,
    orientation,
    upright_size,
)
from unde_dagster.storage.thumbnails import (
    ORIGINAL_BOX,
    PreviewPlan,
    finish_preview,
    plan_preview,
)

log = logging.getLogger(__name__)


class PhotoError(Exception):
    """One photo (or a whole SKU) failed: ``reason`` is a short machine code that
    metadata counts by (``http_404``, ``truncated``, ``bad_mode_CMYK`` ...), ``message``
    is for people. ``n`` and ``url`` say which photo when known. Messages never hold
    proxy credentials (the proxy URL is never put into them)."""

    def __init__(self, reason: str, message: str, *, n: int | None = None, url: str = "") -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.n = n
        self.url = url

    def for_photo(self, n: int, url: str) -> PhotoError:
        """A copy that names the photo (so the SKU error says which one failed)."""
        return PhotoError(self.reason, self.message, n=n, url=url)

    def __str__(self) -> str:
        where = f"photo {self.n}: " if self.n is not None else ""
        return f"{where}{self.reason}: {self.message}"


@dataclass(frozen=True)
class ValidationSettings:
    """Limits for an acceptable original photo (production defaults)."""

    min_side: int = 200
    """Smaller than this on either side is a thumbnail or a tracking pixel."""
    max_side: int = 12_000
    """Larger than this on either side is not a product photo."""
    max_pixels: int = 50_000_000
    """Header-claimed pixel count above which we refuse to decode (decompression bomb).
    Kept below Pillow's own ``MAX_IMAGE_PIXELS`` (~89 MP) so our check fires first."""
    max_aspect: float = 5.0
    """Long side over short side above this is a sliver (a strip, a spacer, a banner), not
    a product photo: brand CDNs serve 2:3, 3:4 and 3:2 shots. In a collage it would be
    scaled to the tallest height, several times the width of the SKU's real photos."""
    allowed_formats: tuple[str, ...] = PHOTO_FORMATS
    allowed_modes: tuple[str, ...] = tuple(sorted(PHOTO_MODES))


@dataclass(frozen=True)
class PhotoInfo:
    """What we learnt about a valid photo (goes into metadata and logs). ``width`` and
    ``height`` are upright (EXIF ``orientation`` applied), as the collage will lay it out."""

    width: int
    height: int
    mode: str
    format: str
    size_bytes: int
    orientation: int = 1


def validate_photo(data: bytes, settings: ValidationSettings | None = None) -> PhotoInfo:
    """Return ``PhotoInfo`` for an acceptable photo, raise ``PhotoError`` otherwise.

    Order matters for the readability of the reason: cheap sniffing first (empty,
    HTML), then the header (bomb, dimensions, sliver, mode, format), then the decode.
    """
    return _validate(data, settings or ValidationSettings(), with_preview=False)[0]


def validate_with_preview(
    data: bytes, settings: ValidationSettings | None = None
) -> tuple[PhotoInfo, bytes | None]:
    """``validate_photo`` and the photo's preview (``storage/thumbnails.py``) from the same
    decode: a JPEG is decoded once, at the preview's DCT scale, instead of once to validate
    and once more to preview. The preview is None when it cannot be made (the photo itself
    is valid; the stage then makes it from the bytes, or warns)."""
    return _validate(data, settings or ValidationSettings(), with_preview=True)


def _validate(
    data: bytes, s: ValidationSettings, *, with_preview: bool
) -> tuple[PhotoInfo, bytes | None]:
    if not data:
        raise PhotoError("zero_bytes", "empty body (0 bytes)")
    if looks_like_html(data):
        snippet = data[:60].decode("utf-8", "replace").strip().replace("\n", " ")
        raise PhotoError("html_body", f"body is HTML/XML, not an image: {snippet!r}")
    preview = None
    try:
        # Warnings as errors: Pillow warns (not raises) between MAX_IMAGE_PIXELS and 2x.
        # catch_warnings is process-global state; our own max_pixels check below is
        # the real guard, this is belt and braces.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=OPEN_FORMATS) as img:
                info = _check_header(img, data, s)
                plan = _preview_plan(img, data) if with_preview else None
                if plan is not None:
                    plan.draft(img)  # every coefficient is still read, as at 1/8
                elif isinstance(img, JpegImagePlugin.JpegImageFile):  # MPO too
                    img.draft(None, (1, 1))
                img.load()  # only the first frame of an animated GIF/WebP, as the collage
                if plan is not None:
                    preview = _finish_preview(img, plan)
    except PhotoError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PhotoError("decompression_bomb", f"decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        other = _other_format(data)
        if other:
            raise PhotoError(
                f"bad_format_{mode_code(other)}",
                f"format {other}; need one of {', '.join(s.allowed_formats)}",
            ) from exc
        raise PhotoError("not_image", f"not a recognised image ({len(data)} bytes)") from exc
    except OSError as exc:
        msg = str(exc)
        if "truncated" in msg.lower() or "premature end" in msg.lower():
            raise PhotoError("truncated", f"image data truncated: {msg}") from exc
        raise PhotoError("corrupt", f"image does not decode: {msg}") from exc
    except (SyntaxError, ValueError, EOFError, IndexError) as exc:
        # Pillow plugins signal broken headers with these.
        raise PhotoError("corrupt", f"image does not decode: {exc}") from exc
    return info, preview


def _preview_plan(img: ImageFile.ImageFile, data: bytes) -> PreviewPlan | None:
    try:
        return plan_preview(img, data, max_width=ORIGINAL_BOX, max_height=ORIGINAL_BOX)
    except Exception as exc:  # the photo is judged by the validator, not by its preview
        log.info("no preview from the validating decode: %s: %s", type(exc).__name__, exc)
        return None


def _finish_preview(img: Image.Image, plan: PreviewPlan) -> bytes | None:
    try:
        return finish_preview(img, plan)
    except Exception as exc:
        log.info("no preview from the validating decode: %s: %s", type(exc).__name__, exc)
        return None


def _other_format(data: bytes) -> str | None:
    """The name of a format Pillow knows but a photo may not be in (EPS, PSD, ICO ...).

    Header only: no decoder runs (EPS would start Ghostscript only on load)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                return img.format
    except Exception:  # any failure just means "not an image"
        return None


def _check_header(img: ImageFile.ImageFile, data: bytes, s: ValidationSettings) -> PhotoInfo:
    width, height = img.size
    fmt = img.format or "unknown"
    if width * height > s.max_pixels:
        raise PhotoError(
            "decompression_bomb",
            f"{width}x{height} = {width * height} px exceeds the {s.max_pixels} px limit",
        )
    if max(width, height) > s.max_side:
        raise PhotoError(
            "dimensions_too_large", f"{width}x{height}: a side exceeds {s.max_side} px"
        )
    if min(width, height) <= 0 or max(width, height) / min(width, height) > s.max_aspect:
        raise PhotoError(
            "sliver", f"{width}x{height}: sides more than {s.max_aspect:g} to 1 apart"
        )
    if min(width, height) < s.min_side:
        raise PhotoError(
            "dimensions_too_small", f"{width}x{height}: a side is below {s.min_side} px"
        )
    if img.mode not in s.allowed_modes:
        raise PhotoError(
            f"bad_mode_{mode_code(img.mode)}",
            f"colour mode {img.mode} ({fmt}); need one of {', '.join(s.allowed_modes)}",
        )
    if fmt not in s.allowed_formats:
        raise PhotoError(
            f"bad_format_{mode_code(fmt)}",
            f"format {fmt}; need one of {', '.join(s.allowed_formats)}",
        )
    orient = orientation(img, data)
    # Min/max side checks above do not depend on orientation; the reported size does.
    w, h = upright_size((width, height), orient)
    return PhotoInfo(w, h, img.mode, fmt, len(data), orient)
