"""Validate a downloaded product photo before it is uploaded to S3.

A pure function on bytes (no I/O), so it can run in a worker thread and be tested
alone. The CDN behind a residential proxy returns many kinds of garbage with status
200: HTML block pages, empty bodies, bodies cut short by a dropped connection, CMYK or
palette files. Everything downstream (collages, Ximilar, the app) assumes an RGB or
greyscale baseline JPEG, so anything else is rejected here with a reason code.

Why a full decode (``img.load()``) and not only ``Image.verify()``: for JPEG,
Pillow's ``verify()`` does not decode the entropy-coded data, so a body truncated
mid-scan passes it. ``load()`` decodes every pixel and raises on truncation. The
cost on a 1920x2880 product photo is measured by ``bench/downloader_bench.py``
(tens of milliseconds on one core, far below the 0.5-2 s per-slot politeness
delay), so it does not limit throughput; it runs off the event loop via
``asyncio.to_thread``.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError


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
    allowed_formats: tuple[str, ...] = ("JPEG",)
    allowed_modes: tuple[str, ...] = ("RGB", "L")


@dataclass(frozen=True)
class PhotoInfo:
    """What we learnt about a valid photo (goes into metadata and logs)."""

    width: int
    height: int
    mode: str
    format: str
    size_bytes: int


_HTML_PREFIXES = (b"<!doctype", b"<html", b"<head", b"<body", b"<?xml", b"<!--", b"<")
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


def _looks_like_html(data: bytes) -> bool:
    head = data[:512]
    for bom in _BOMS:
        if head.startswith(bom):
            head = head[len(bom) :]
    head = head.lstrip().lower()
    return head.startswith(_HTML_PREFIXES)


def _mode_code(mode: str) -> str:
    """``I;16B`` -> ``I16B``: reason codes stay plain identifiers."""
    return re.sub(r"[^A-Za-z0-9]", "", mode) or "unknown"


def validate_photo(data: bytes, settings: ValidationSettings | None = None) -> PhotoInfo:
    """Return ``PhotoInfo`` for an acceptable JPEG, raise ``PhotoError`` otherwise.

    Order matters for the readability of the reason: cheap sniffing first (empty,
    HTML), then the header (dimensions, bomb, mode, format), then the full decode.
    Mode is checked before format so a palette/alpha/16-bit PNG reports the colour
    problem (``bad_mode_P``) rather than only ``bad_format_PNG``.
    """
    s = settings or ValidationSettings()
    if not data:
        raise PhotoError("zero_bytes", "empty body (0 bytes)")
    if _looks_like_html(data):
        snippet = data[:60].decode("utf-8", "replace").strip().replace("\n", " ")
        raise PhotoError("html_body", f"body is HTML/XML, not an image: {snippet!r}")
    try:
        # Warnings as errors: Pillow warns (not raises) between MAX_IMAGE_PIXELS and 2x.
        # catch_warnings is process-global state; our own max_pixels check below is
        # the real guard, this is belt and braces.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                info = _check_header(img, s, len(data))
                img.load()
    except PhotoError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PhotoError("decompression_bomb", f"decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise PhotoError("not_image", f"not a recognised image ({len(data)} bytes)") from exc
    except OSError as exc:
        msg = str(exc)
        if "truncated" in msg.lower() or "premature end" in msg.lower():
            raise PhotoError("truncated", f"image data truncated: {msg}") from exc
        raise PhotoError("corrupt", f"image does not decode: {msg}") from exc
    except (SyntaxError, ValueError, EOFError, IndexError) as exc:
        # Pillow plugins signal broken headers with these.
        raise PhotoError("corrupt", f"image does not decode: {exc}") from exc
    return info


def _check_header(img: Image.Image, s: ValidationSettings, size_bytes: int) -> PhotoInfo:
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
    if min(width, height) < s.min_side:
        raise PhotoError(
            "dimensions_too_small", f"{width}x{height}: a side is below {s.min_side} px"
        )
    if img.mode not in s.allowed_modes:
        raise PhotoError(
            f"bad_mode_{_mode_code(img.mode)}",
            f"colour mode {img.mode} ({fmt}); need one of {', '.join(s.allowed_modes)}",
        )
    if fmt not in s.allowed_formats:
        raise PhotoError(
            f"bad_format_{_mode_code(fmt)}",
            f"format {fmt}; need one of {', '.join(s.allowed_formats)}",
        )
    return PhotoInfo(width=width, height=height, mode=img.mode, format=fmt, size_bytes=size_bytes)
