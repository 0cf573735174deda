"""Previews of originals and collages (issue #18): key convention, sizes, upright RGB from
every accepted encoding, cheap decoding, and a failure that never costs the SKU."""

from __future__ import annotations

import io
import logging

import botocore.exceptions as boto
import pytest
from PIL import Image, ImageOps

from tests.unit.test_originals_validate import (
    ODD_VALID,
    QUADRANTS,
    SIZE,
    odd_body,
    quadrants,
    sideways_jpeg,
)
from tests.unit.test_outage_classification import client_error
from unde_dagster.collages import stage as collage_stage
from unde_dagster.originals import stage as originals_stage
from unde_dagster.originals import validate_photo, validate_with_preview
from unde_dagster.outages import ServiceOutage
from unde_dagster.storage import collage_key, original_key, thumbnail_key
from unde_dagster.storage.thumbnails import (
    collage_thumbnail,
    original_thumbnail,
    thumbnail,
    thumbnail_size,
)


def _jpeg(img: Image.Image, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, **params)
    return buf.getvalue()


def _png(img: Image.Image, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **params)
    return buf.getvalue()


def _open(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    assert img.format == "JPEG" and img.mode == "RGB"
    assert "exif" not in img.info  # upright pixels, no orientation tag left to misapply
    img.load()
    return img


def _centres(img: Image.Image) -> list[tuple[int, int]]:
    """The centres of the four quadrants, in ``QUADRANTS`` order."""
    w, h = img.size
    return [(x * w // 4, y * h // 4) for y in (1, 3) for x in (1, 3)]


def _close(a: tuple[int, ...], b: tuple[int, ...], tol: int = 12) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


# --- keys ----------------------------------------------------------------------------------


def test_thumbnail_key_is_the_key_under_the_thumbnails_prefix() -> None:
    assert thumbnail_key(original_key("zara", "123-800", 1)) == (
        "thumbnails/originals/zara/123-800/1.jpg"
    )
    assert thumbnail_key(collage_key("zara", "123-800")) == "thumbnails/collages/zara/123-800.jpg"
    assert thumbnail_key("originals/massimo_dutti/9.1-5/12.jpg") == (
        "thumbnails/originals/massimo_dutti/9.1-5/12.jpg"
    )


@pytest.mark.parametrize(
    "key",
    [
        "thumbnails/originals/zara/1-2/1.jpg",  # no thumbnail of a thumbnail
        "model_library/zara/x.jpg",
        "originals/zara/1-2/0.jpg",
        "originals/zara/1-2/1.png",
        "originals/zara/1.jpg",
        "originals/zara/a/b/1.jpg",
        "originals/../etc/1.jpg",
        "originals/zara/..x/1.jpg",
        "collages/zara/.hidden.jpg",
        "collages/zara/1-2/3.jpg",
        "/originals/zara/1-2/1.jpg",
        "",
    ],
)
def test_thumbnail_key_refuses_anything_but_an_original_or_a_collage(key: str) -> None:
    with pytest.raises(ValueError):
        thumbnail_key(key)


# --- sizes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1920, 2880), (267, 400)),
        ((2880, 1920), (400, 267)),
        ((800, 800), (400, 400)),
        ((401, 100), (400, 100)),
        ((4000, 3), (400, 1)),  # never zero
        ((300, 200), (300, 200)),  # never upscaled
        ((400, 400), (400, 400)),
    ],
)
def test_originals_fit_within_400_px(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert thumbnail_size(size, max_width=400, max_height=400) == expected
    assert _open(original_thumbnail(_jpeg(Image.new("RGB", size, "teal")))).size == expected


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((9600, 2880), (1333, 400)),  # five 1920x2880 photos
        ((1900, 600), (1267, 400)),
        ((800, 400), (800, 400)),
        ((1200, 300), (1200, 300)),  # never upscaled
    ],
)
def test_collages_are_400_px_high(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert thumbnail_size(size, max_width=None, max_height=400) == expected
    collage = _jpeg(Image.new("RGB", size, "teal"), subsampling=0)
    assert _open(collage_thumbnail(collage)).size == expected


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError):
        thumbnail(_jpeg(Image.new("RGB", (10, 10))), max_width=None, max_height=0)


def test_a_large_jpeg_is_decoded_at_a_reduced_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    """Image.draft: a 1920x2880 photo is decoded at 480x720 (a 16th of the pixels), not in
    full, for its 267x400 preview; a 9600x2880 collage at 2400x720."""
    loaded: list[tuple[int, int]] = []
    resize = Image.Image.resize

    def spy(self: Image.Image, size: tuple[int, int], *args: object, **kw: object) -> Image.Image:
        loaded.append(self.size)
        return resize(self, size, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Image.Image, "resize", spy)
    original_thumbnail(_jpeg(Image.new("RGB", (1920, 2880), "teal")))
    collage_thumbnail(_jpeg(Image.new("RGB", (9600, 2880), "teal"), subsampling=0))
    assert loaded == [(480, 720), (2400, 720)]


def test_the_preview_keeps_the_picture() -> None:
    """Four flat quadrants survive the reduced decode and the resize in place."""
    img = _open(original_thumbnail(_jpeg(quadrants((1920, 2880)))))
    for colour, xy in zip(QUADRANTS, _centres(img), strict=True):
        assert _close(img.getpixel(xy), colour), (xy, img.getpixel(xy), colour)


# --- orientation and encodings -------------------------------------------------------------


@pytest.mark.parametrize("orient", range(1, 9))
def test_an_exif_rotated_photo_comes_out_upright(orient: int) -> None:
    body = _jpeg(quadrants()) if orient == 1 else sideways_jpeg(orient)
    img = _open(original_thumbnail(body))
    assert img.size == (267, 400)  # SIZE (400x600) upright, within 400x400
    for colour, xy in zip(QUADRANTS, _centres(img), strict=True):
        assert _close(img.getpixel(xy), colour), (orient, xy, img.getpixel(xy), colour)
    # the same turn as ImageOps.exif_transpose
    with Image.open(io.BytesIO(body)) as src:
        assert ImageOps.exif_transpose(src).size == SIZE


@pytest.mark.parametrize("kind", [*sorted(ODD_VALID), "large_jpeg", "large_progressive"])
def test_the_validating_decode_gives_the_same_preview(kind: str) -> None:
    """The downloader's preview, made from the decode that validated the photo, is the one
    the stage would make from the bytes, byte for byte."""
    if kind.startswith("large"):
        body = _jpeg(quadrants((1920, 2880)), progressive=kind.endswith("progressive"))
    else:
        body = odd_body(kind, quadrants())
    info, preview = validate_with_preview(body)
    assert info == validate_photo(body)
    assert preview is not None
    assert preview == original_thumbnail(body)


def test_a_preview_that_fails_leaves_the_photo_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object, **_kw: object) -> bytes:
        raise MemoryError("no room for the preview")

    monkeypatch.setattr("unde_dagster.originals.validate.finish_preview", broken)
    body = _jpeg(quadrants((1920, 2880)))
    info, preview = validate_with_preview(body)
    assert (info.width, info.height, preview) == (1920, 2880, None)


@pytest.mark.parametrize("kind", sorted(ODD_VALID))
def test_every_encoding_the_stages_accept_gives_an_rgb_jpeg(kind: str) -> None:
    img = _open(original_thumbnail(odd_body(kind, quadrants())))
    assert img.size == (267, 400)


def test_cmyk_is_converted_to_rgb() -> None:
    cmyk = Image.new("RGB", (800, 1200), (200, 30, 30)).convert("CMYK")
    img = _open(original_thumbnail(_jpeg(cmyk)))
    assert _close(img.getpixel((100, 100)), (200, 30, 30), tol=16)


def test_transparency_reads_as_white() -> None:
    rgba = Image.new("RGBA", (800, 1200), (0, 0, 0, 0))
    rgba.paste((255, 0, 0, 255), (0, 0, 400, 1200))
    img = _open(original_thumbnail(_png(rgba)))
    assert _close(img.getpixel((50, 200)), (255, 0, 0))
    assert _close(img.getpixel((220, 200)), (255, 255, 255))


def test_a_palette_with_a_transparent_entry_reads_as_white() -> None:
    pal = Image.new("P", (800, 1200), 0)
    pal.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    pal.paste(1, (0, 0, 400, 1200))
    img = _open(original_thumbnail(_png(pal, transparency=0)))
    assert _close(img.getpixel((50, 200)), (0, 0, 255))
    assert _close(img.getpixel((220, 200)), (255, 255, 255))


def test_sixteen_bit_grey_is_scaled_to_eight_bits() -> None:
    """Mid-grey in 16 bits (32768) is mid-grey, not clipped to white."""
    grey = Image.new("I", (800, 1200), 32768).convert("I;16")
    img = _open(original_thumbnail(_png(grey)))
    assert _close(img.getpixel((100, 100)), (128, 128, 128), tol=3)


def test_what_no_stage_accepts_is_refused() -> None:
    with pytest.raises(Image.UnidentifiedImageError):
        original_thumbnail(b"<html>denied</html>")
    buf = io.BytesIO()
    Image.new("LAB", (50, 50)).save(buf, "TIFF")
    with pytest.raises(ValueError, match="colour mode"):
        original_thumbnail(buf.getvalue())


# --- in the stages: a failed preview never costs the SKU; an outage is still an outage ------


@pytest.mark.parametrize("stage", [originals_stage, collage_stage])
def test_a_failed_preview_is_a_warning(stage: object, caplog: pytest.LogCaptureFixture) -> None:
    stored: dict[str, bytes] = {}

    def upload(key: str, body: bytes) -> str:
        stored[key] = body
        return key

    with caplog.at_level(logging.WARNING):
        stage._upload_thumbnail(upload, "originals/zara/1-2/1.jpg", b"not a photo")  # type: ignore[attr-defined]
    assert stored == {}
    assert "thumbnails/" not in caplog.text and "originals/zara/1-2/1.jpg" in caplog.text

    def refused(key: str, body: bytes) -> str:
        raise client_error("EntityTooLarge", 400)  # this object refused, not an outage

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        body = _jpeg(Image.new("RGB", (9, 9)))
        stage._upload_thumbnail(refused, "collages/zara/1-2.jpg", body)  # type: ignore[attr-defined]
    assert "EntityTooLarge" in caplog.text


@pytest.mark.parametrize("stage", [originals_stage, collage_stage])
def test_an_object_store_outage_while_storing_a_preview_propagates(stage: object) -> None:
    def down(key: str, body: bytes) -> str:
        raise boto.EndpointConnectionError(endpoint_url="http://127.0.0.1:1")

    body = _jpeg(Image.new("RGB", (9, 9)))
    with pytest.raises(boto.EndpointConnectionError):
        stage._upload_thumbnail(down, "collages/zara/1-2.jpg", body)  # type: ignore[attr-defined]

    def also_down(key: str, body: bytes) -> str:
        raise ServiceOutage("object store", OSError("down"))

    with pytest.raises(ServiceOutage):
        stage._upload_thumbnail(also_down, "collages/zara/1-2.jpg", body)  # type: ignore[attr-defined]


def test_the_preview_is_stored_beside_the_original() -> None:
    stored: dict[str, bytes] = {}

    def upload(key: str, body: bytes) -> str:
        stored[key] = body
        return key

    key = original_key("zara", "1-2", 3)
    wide, tall = _jpeg(Image.new("RGB", (900, 600))), _jpeg(Image.new("RGB", (600, 900)))
    collage_stage._upload_thumbnail(upload, collage_key("zara", "1-2"), wide)
    originals_stage._upload_thumbnail(upload, key, tall)
    assert {k: Image.open(io.BytesIO(v)).size for k, v in stored.items()} == {
        "thumbnails/collages/zara/1-2.jpg": (600, 400),
        "thumbnails/originals/zara/1-2/3.jpg": (267, 400),
    }
