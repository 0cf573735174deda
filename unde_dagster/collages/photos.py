"""What a product photo may be, and how it stands upright.

Shared by the downloader's validation (``originals/validate.py``) and the collage stage
(``compose.py``) so that both accept exactly the same photos (SPEC §6: an odd encoding the
collage can normalise must never cost the SKU at download) and name failures with the same
reason codes, which operators count by.

EXIF orientation: phones and some studio pipelines store the sensor's pixels plus an
Orientation tag instead of rotating the pixels. The seed ignored it, so such a photo came
out sideways. Here the tag is read from the header alone (no decode), so the upright size
can drive the geometry and the size limits before any pixel is decoded.
"""

from __future__ import annotations

import re
import struct

from PIL import Image, ImageFile, PngImagePlugin

# Formats a product photo can plausibly be in (MPO comes through the JPEG opener).
# Restricting ``Image.open`` keeps exotic decoders (EPS runs Ghostscript, for one) out of
# reach of downloaded bytes.
_WANTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")
Image.init()
OPEN_FORMATS: tuple[str, ...] = tuple(f for f in _WANTED_FORMATS if f in Image.OPEN)
"""What ``Image.open(..., formats=OPEN_FORMATS)`` may try."""
PHOTO_FORMATS: tuple[str, ...] = (*OPEN_FORMATS, "MPO")
"""``img.format`` values a photo may report (an MPO is opened by the JPEG plugin)."""

PHOTO_MODES: frozenset[str] = frozenset({
    "1", "L", "LA", "La", "P", "PA",  # bilevel, grey, palette, with or without alpha
    "RGB", "RGBA", "RGBa", "RGBX", "YCbCr", "CMYK",  # colour (CMYK incl. Adobe-inverted)
    "I", "F", "I;16", "I;16L", "I;16B", "I;16N",  # deep greyscale, scaled to 8 bits
})
"""Modes the collage stage normalises to RGB; anything else is ``bad_mode_<MODE>``."""

ORIENTATION_TAG = 0x0112
TRANSPOSE: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
"""EXIF Orientation value -> the transpose that makes the pixels upright (as
``ImageOps.exif_transpose``)."""

_METADATA_KEYS = ("exif", "xmp", "XML:com.adobe.xmp")


def mode_code(mode: str) -> str:
    """``I;16B`` -> ``I16B``: reason codes stay plain identifiers."""
    return re.sub(r"[^A-Za-z0-9]", "", mode) or "unknown"


def looks_like_html(data: bytes) -> bool:
    """An HTML/XML page (block page, S3 error) served where a photo was expected."""
    head = data[:512]
    for bom in (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"):
        head = head.removeprefix(bom)
    return head.lstrip().startswith(b"<")


def orientation(img: ImageFile.ImageFile, data: bytes) -> int:
    """The photo's EXIF orientation (1 = upright as stored), read without decoding pixels.

    Only metadata already parsed from the header is looked at. A PNG may carry its eXIf
    chunk after the pixel data, where Pillow finds it only by decoding (its ``getexif``
    loads the image), so that chunk is located in the bytes instead. A broken EXIF block
    counts as upright: it must not cost a photo whose pixels are fine.
    """
    try:
        if isinstance(img, PngImagePlugin.PngImageFile) and "exif" not in img.info:
            raw = _png_exif(data)
            if raw is None:
                return 1
            exif = Image.Exif()
            exif.load(raw)
        elif img.format == "TIFF" or any(k in img.info for k in _METADATA_KEYS):
            exif = img.getexif()
        else:
            return 1
        value = exif.get(ORIENTATION_TAG, 1)
    except (SyntaxError, ValueError, TypeError, KeyError, OSError, struct.error):
        return 1
    return value if isinstance(value, int) and value in TRANSPOSE else 1


def upright_size(size: tuple[int, int], orient: int) -> tuple[int, int]:
    """The (width, height) the photo has once ``orient`` is applied."""
    w, h = size
    return (h, w) if orient in (5, 6, 7, 8) else (w, h)


def upright(img: Image.Image, orient: int) -> Image.Image:
    """The decoded ``img`` turned upright (the same object when it already is)."""
    method = TRANSPOSE.get(orient)
    return img if method is None else img.transpose(method)


def _png_exif(data: bytes) -> bytes | None:
    """The payload of a PNG's eXIf chunk, wherever it sits, or None (walks the chunks: a
    plain search could hit the four letters inside compressed pixel data)."""
    at = 8
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        if kind == b"eXIf":
            payload = data[at + 8 : at + 8 + length]
            return payload if len(payload) == length else None
        if kind == b"IEND":
            return None
        at += 12 + length
    return None
