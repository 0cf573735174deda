"""Build one SKU's collage: every photo scaled to the tallest height, glued left to right.

The geometry is the seed's (``bench/seed_collage.py``), exactly: target height = max height,
width ``int(w * (target_height / h))``, so canvas size and every slot's width and offset are
identical. Output: JPEG quality 95 with 4:4:4 chroma on white, as in the seed.

Resampling: photos smaller than the tallest are upscaled (never downscaled) with the
seed's Lanczos3 kernel, through ``resampler.py``: ``cykooz.resizer`` (SIMD, ~4x less CPU
on the upscales; the ``fast-collage`` extra) when it is installed, else Pillow's own
LANCZOS; ``UNDE_COLLAGE_RESAMPLER=auto|cykooz|pillow`` forces one. With Pillow the
collage is the seed's, byte for byte. With cykooz, fixed-point rounding differs, so pixels
are close to the seed's, not identical: each resized photo is within 2 levels of Pillow's
(mean ~0.01). On ``bench/collage_bench.py``'s mixed set (5 photos, 4 upscaled; both JPEG
collages decoded, every channel) mean |ours - seed| = 0.06 levels, max 9, 99.9th
percentile 2. Photos already at the target height are not resampled, so the equal-heights
set stays byte-identical (mean 0, max 0) with either.

Work saved around the codec and resampler calls:

- headers are read first (``Image.open`` is lazy), so geometry and size limits are checked
  before a single pixel is decoded;
- a photo already at the target height (RGB JPEG) is decoded *straight into its slot of the
  canvas* (the decoder writes at a column offset), so it is never copied, resized or pasted;
- other photos are decoded, resized (only if their height differs) and released one at a
  time, the decoded photo freed after the first resize pass; an RGB photo's second pass
  writes straight into its slot, other modes are pasted. At most two of decoded /
  half-resized / resized photo live next to the canvas (the seed held every decoded photo
  and every resized copy at once); Pillow's LANCZOS pastes its second pass instead;
- the canvas is memory the worker reuses from SKU to SKU (``canvas.py``: no page faults,
  no clearing), because the photos cover it exactly (only the slots of photos with
  transparency are painted white first); it is encoded once.

Mode handling (the seed pasted whatever Pillow opened; we document each case):

- ``RGB``: as is.  ``L`` (and ``1``, made ``L`` because Pillow resizes ``1`` with NEAREST):
  resized as greyscale (a third of the work), then pasted, which replicates grey into R=G=B
  exactly like converting first would.
- ``RGBA``, ``LA``, ``PA``, ``P`` with a transparency entry: resized in premultiplied form
  and composited over white (the seed dropped alpha, showing whatever colour the
  transparent pixels held, often black). ``LA`` always goes through Pillow's LANCZOS
  (rare; cykooz has no two-channel PIL mode).
- ``P`` without transparency: converted to RGB before resizing (the seed resized palette
  images with NEAREST, because Pillow forces that for ``P``).
- ``CMYK`` (incl. Adobe-inverted JPEGs): Pillow's naive CMYK->RGB, no ICC profile.
- ``I;16*`` / ``I`` / ``F`` (16-bit or float greyscale): scaled to 8 bits (``v / 256`` when
  the range exceeds 8 bits) instead of clipping everything above 255 to white.
- anything else (``YCbCr``, ``LAB``, ``HSV`` ...): ``convert("RGB")``.

- any other mode: rejected as ``bad_mode_<MODE>`` (``photos.PHOTO_MODES`` lists the
  accepted ones; the downloader accepts the same).

EXIF orientation is applied (the seed ignored it, so a rotated photo came out sideways): the
tag is read from the header, the upright size goes into the geometry, and the decoded photo
is transposed before it is resized (transposing the smaller image). Only photos with a
rotation tag pay for it (one transpose; they lose the decode-into-the-canvas shortcut).
ICC profiles are ignored, as in the seed.

Errors carry a ``code`` naming the cause (``zero_bytes``, ``html_body``, ``not_image``,
``corrupt``, ``truncated``, ``decompression_bomb``, ``bad_mode_<MODE>``,
``collage_too_large``), the same codes the downloader's validation uses; the message keeps
the photo's number: ``photo 2: truncated: ...``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO

from PIL import Image, ImageFile, JpegImagePlugin

from unde_dagster.collages.canvas import Canvas, CanvasMemory
from unde_dagster.collages.photos import (
    OPEN_FORMATS,
    PHOTO_MODES,
    looks_like_html,
    mode_code,
    orientation,
    upright,
    upright_size,
)
from unde_dagster.collages.resampler import Resampler
from unde_dagster.collages.resampler import active as active_resampler

JPEG_MAX_DIMENSION = 65_535
PREVIEW_HEIGHT = 400
"""The collage's preview (under `thumbnails/`) is PREVIEW_HEIGHT px high, made from the
canvas before it is encoded: no second decode of a 10,000 px JPEG."""
PREVIEW_QUALITY = 85
DEFAULT_MAX_PHOTO_PIXELS = 50_000_000
DEFAULT_MAX_CANVAS_PIXELS = 120_000_000

_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_GREY_MODES = frozenset({"L"})
_DEEP_MODES = frozenset({"I", "F", "I;16", "I;16L", "I;16B", "I;16N"})


class CollageError(Exception):
    """A SKU's photos cannot become a collage: ``reason`` says why in plain words (it becomes
    the row's error message), ``code`` is the short cause that errors are counted by (empty
    when raised without one, e.g. by the pool for a dead worker)."""

    def __init__(self, reason: str, code: str = "") -> None:
        super().__init__(reason, code)  # both in args: the error pickles back from a worker
        self.reason = reason
        self.code = code

    def __str__(self) -> str:
        return self.reason


def _photo_error(index: int, code: str, detail: str) -> CollageError:
    return CollageError(f"photo {index + 1}: {code}: {detail}", code)


@dataclass(frozen=True, slots=True)
class CollageResult:
    """The encoded collage plus the sizes that produced it (for asset metadata)."""

    jpeg: bytes
    width: int
    height: int
    photo_sizes: tuple[tuple[int, int], ...]
    source_sizes: tuple[tuple[int, int], ...]
    preview_jpeg: bytes = b""  # PREVIEW_HEIGHT px high (never upscaled)


def collage_geometry(
    sizes: Sequence[tuple[int, int]],
) -> tuple[list[tuple[int, int]], int, int]:
    """Target (w, h) of every photo and the canvas (width, height), as the seed computes them.

    The float arithmetic is the seed's on purpose (``ratio = th / h`` then ``int(w * ratio)``)
    so that widths never drift by a pixel from collages produced by the old workers.
    """
    if not sizes:
        raise CollageError("no photos", "no_photos")
    for w, h in sizes:
        if w <= 0 or h <= 0:
            raise CollageError(f"photo has an empty size {w}x{h}", "corrupt")
    target_height = max(h for _, h in sizes)
    targets: list[tuple[int, int]] = []
    for w, h in sizes:
        ratio = target_height / h
        targets.append((int(w * ratio), target_height))
    return targets, sum(w for w, _ in targets), target_height


def _open(index: int, data: bytes, max_pixels: int) -> tuple[ImageFile.ImageFile, int]:
    """Open lazily (header only), reject what must never be decoded; with its orientation."""
    if not data:
        raise _photo_error(index, "zero_bytes", "zero bytes")
    try:
        img = Image.open(BytesIO(data), formats=OPEN_FORMATS)
    except Image.DecompressionBombError as exc:
        raise _photo_error(index, "decompression_bomb", f"decompression bomb ({exc})") from None
    except Image.UnidentifiedImageError:
        if looks_like_html(data):
            raise _photo_error(index, "html_body", "not an image (got an HTML/XML page)") from None
        raise _photo_error(index, "not_image", "not an image (unrecognised format)") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        raise _photo_error(index, "corrupt", f"unreadable image header ({exc})") from None
    w, h = img.size
    problem: CollageError | None = None
    if w <= 0 or h <= 0:
        problem = _photo_error(index, "corrupt", f"empty image {w}x{h}")
    elif w * h > max_pixels:
        problem = _photo_error(
            index, "decompression_bomb",
            f"decompression bomb guard, {w}x{h} = {w * h} px > {max_pixels} px",
        )
    elif img.mode not in PHOTO_MODES:
        problem = _photo_error(
            index, f"bad_mode_{mode_code(img.mode)}", f"colour mode {img.mode} is not supported"
        )
    if problem is not None:
        img.close()
        raise problem
    return img, orientation(img, data)


def _load(index: int, img: ImageFile.ImageFile) -> None:
    """Decode, turning every decoder failure into a CollageError that names the cause."""
    try:
        img.load()
    except Image.DecompressionBombError as exc:
        raise _photo_error(index, "decompression_bomb", f"decompression bomb ({exc})") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, MemoryError) as exc:
        text = str(exc) or type(exc).__name__
        if "truncated" in text or "premature end" in text.lower():
            raise _photo_error(index, "truncated", f"truncated image ({text})") from None
        raise _photo_error(index, "corrupt", f"corrupt image data ({text})") from None


def _decode_into(index: int, img: ImageFile.ImageFile, canvas: Image.Image, x: int) -> bool:
    """Decode a baseline RGB JPEG directly into ``canvas`` at column ``x``; False if unsuitable.

    Pillow decoders write into the tile's extents of ``self.im``; pointing that at the canvas
    with the extents shifted by ``x`` saves the photo's own buffer, a copy and a paste.
    """
    if (
        type(img) is not JpegImagePlugin.JpegImageFile
        or img.mode != "RGB"
        or len(img.tile) != 1
        or img.tile[0][0] != "jpeg"
    ):
        return False
    tile = img.tile[0]
    w, h = img.size
    if tuple(tile[1]) != (0, 0, w, h) or h != canvas.height:
        return False
    img.tile = [ImageFile._Tile(tile[0], (x, 0, x + w, h), tile[2], tile[3])]
    img.im = canvas.im
    try:
        _load(index, img)
    finally:
        img._im = None  # detach: closing the photo must not touch the canvas
    return True


def to_pasteable(img: Image.Image) -> Image.Image:
    """Bring any mode to RGB, L (pasted as grey) or an alpha mode (composited on white)."""
    mode = img.mode
    if mode == "RGB" or mode in _GREY_MODES or mode in _ALPHA_MODES - {"PA"}:
        return img
    if mode == "1":
        return img.convert("L")  # Pillow would resize "1" with NEAREST
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in img.info
        return img.convert("RGBA" if has_alpha else "RGB")
    if mode in _DEEP_MODES:
        # I;16* is 16-bit by definition; I / F only when their values exceed 8 bits.
        wide = img if mode in ("I", "F") else img.convert("I")
        hi = wide.getextrema()[1]
        if mode.startswith("I;16") or (isinstance(hi, (int, float)) and hi > 255):
            wide = wide.point(lambda v: v * (1 / 256))
        return wide.convert("L")
    return img.convert("RGB")


def lanczos3_upscale(
    img: Image.Image, size: tuple[int, int], resampler: Resampler | None = None
) -> Image.Image:
    """Lanczos3 to ``size`` (the geometry only scales up), same mode out.

    Two passes in Pillow's order, horizontal then vertical, each clipped to 8 bits: cykooz's
    own one-call order is vertical first, which moves ringing pixels at sharp edges by up
    to 12 levels from the seed's; in Pillow's order they stay within 2. ``resampler``
    defaults to the one ``UNDE_COLLAGE_RESAMPLER`` picks (``resampler.active``).
    """
    r = resampler or active_resampler()
    if img.mode == "RGBA":  # premultiplied while resampling, like Pillow's own resize
        return lanczos3_upscale(img.convert("RGBa"), size, r).convert("RGBA")
    if img.mode not in r.modes:
        return img.resize(size, Image.Resampling.LANCZOS)
    if size[0] != img.width and size[1] != img.height:
        img = r.resize(img, (size[0], img.height))
    return r.resize(img, size)


def _place(
    img: Image.Image, size: tuple[int, int], canvas: Canvas, x: int, r: Resampler,
    orient: int = 1,
) -> None:
    """Write the decoded ``img``, turned upright by ``orient``, at ``size`` into the canvas
    at column ``x``.

    An RGB photo's last resize pass writes into its slot of the canvas (straight, with
    cykooz; Pillow's result is pasted); other modes are resized on their own and pasted.
    The decoded photo is closed as soon as the first pass has read it, so at most two of
    photo, half-resized photo and resized photo are alive at once (Pillow's own one-call
    resize holds all three).
    """
    src = to_pasteable(img)
    if src is not img:
        img.close()
    turned = upright(src, orient)  # before resizing: the smaller image is transposed
    if turned is not src:
        src.close()
        src = turned
    if src.mode in r.modes and src.width != size[0] and src.height != size[1]:
        mid = r.resize(src, (size[0], src.height))
        src.close()
        src = mid
    if src.size == size:
        _paste(canvas.image, src, x)
    elif src.mode == "RGB":
        r.resize_into(src, canvas.slot(x, size[0]))
    else:
        _paste(canvas.image, lanczos3_upscale(src, size, r), x)
    src.close()


def _paste(canvas: Image.Image, img: Image.Image, x: int) -> None:
    """Paste at (x, 0); alpha photos go over a white slot so transparency reads as white."""
    if img.mode in _ALPHA_MODES:
        canvas.paste((255, 255, 255), (x, 0, x + img.width, img.height))
        canvas.paste(img, (x, 0), img)
    else:
        canvas.paste(img, (x, 0))


def build_collage(
    photos: Sequence[bytes],
    *,
    quality: int = 95,
    max_photo_pixels: int = DEFAULT_MAX_PHOTO_PIXELS,
    max_canvas_pixels: int = DEFAULT_MAX_CANVAS_PIXELS,
    canvas_memory: CanvasMemory | None = None,
    resampler: Resampler | None = None,
) -> CollageResult:
    """Glue one SKU's photos into a JPEG (q=95, 4:4:4) at the tallest photo's full height.

    Raises CollageError for no photos, empty/HTML/non-image/truncated/corrupt bytes,
    decompression bombs (per photo and for the resulting canvas) and canvases wider than
    JPEG allows. Memory: the canvas plus at most one decoded photo and its resized copy.
    ``canvas_memory`` is the worker's reusable canvas memory; without it the canvas gets
    memory of its own, released with the collage. ``resampler`` defaults to the one
    ``UNDE_COLLAGE_RESAMPLER`` picks (``resampler.active``: cykooz if installed).
    """
    if not photos:
        raise CollageError("no photos", "no_photos")
    r = resampler or active_resampler()
    opened: list[ImageFile.ImageFile] = []
    orients: list[int] = []
    try:
        for i, data in enumerate(photos):
            img, orient = _open(i, data, max_photo_pixels)
            opened.append(img)
            orients.append(orient)
        sources = tuple(upright_size(img.size, o) for img, o in zip(opened, orients, strict=True))
        targets, width, height = collage_geometry(sources)
        if width > JPEG_MAX_DIMENSION or height > JPEG_MAX_DIMENSION:
            raise CollageError(
                f"collage {width}x{height} exceeds the JPEG limit of {JPEG_MAX_DIMENSION} px",
                "collage_too_large",
            )
        if width * height > max_canvas_pixels:
            raise CollageError(
                f"collage {width}x{height} = {width * height} px exceeds the "
                f"{max_canvas_pixels} px limit (decompression bomb guard)",
                "collage_too_large",
            )
        canvas = (canvas_memory or CanvasMemory(keep_bytes=0)).canvas(width, height)
        x = 0
        for i, (img, orient, target) in enumerate(zip(opened, orients, targets, strict=True)):
            fits = orient == 1 and img.size == target
            if not (fits and _decode_into(i, img, canvas.image, x)):
                _load(i, img)
                _place(img, target, canvas, x, r, orient)
            img.close()
            x += target[0]
        opened.clear()
        buf = BytesIO()
        canvas.image.save(buf, format="JPEG", quality=quality, subsampling=0)
        preview = canvas_preview(canvas.image)
        del canvas
        return CollageResult(
            jpeg=buf.getvalue(),
            width=width,
            height=height,
            photo_sizes=tuple(targets),
            source_sizes=sources,
            preview_jpeg=preview,
        )
    finally:
        for img in opened:
            img.close()


def canvas_preview(image: Image.Image, height: int = PREVIEW_HEIGHT) -> bytes:
    """A `height` px high JPEG of the composed canvas (its own size if smaller): an integer
    `reduce` first, then Lanczos to the exact size, so it costs a few ms, not a decode."""
    w, h = image.size
    if h > height:
        factor = h // height
        small = image.reduce(factor) if factor >= 2 else image
        image = small.resize((max(1, round(w * height / h)), height), Image.Resampling.LANCZOS)
    buf = BytesIO()
    image.save(buf, format="JPEG", quality=PREVIEW_QUALITY)
    return buf.getvalue()
