"""Every bad body of SPEC §6 ends in a clear reason code; good JPEGs pass."""

from __future__ import annotations

import io
import struct

import pytest
from PIL import Image

from unde_dagster.originals.validate import (
    PhotoError,
    PhotoInfo,
    ValidationSettings,
    validate_photo,
)


def make_image(mode: str = "RGB", size: tuple[int, int] = (400, 600), fmt: str = "JPEG") -> bytes:
    img = Image.new(mode, size)
    if mode in ("RGB", "CMYK", "RGBA"):
        # Some texture so the JPEG has real entropy-coded data to truncate.
        img = Image.effect_noise(size, 64).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt, quality=90)
    return buf.getvalue()


def reason_of(data: bytes, settings: ValidationSettings | None = None) -> str:
    with pytest.raises(PhotoError) as info:
        validate_photo(data, settings)
    assert info.value.message  # always a readable message
    return info.value.reason


def test_good_rgb_jpeg() -> None:
    data = make_image("RGB", (400, 600))
    assert validate_photo(data) == PhotoInfo(400, 600, "RGB", "JPEG", len(data))


def test_good_greyscale_jpeg() -> None:
    assert validate_photo(make_image("L")).mode == "L"


def test_zero_bytes() -> None:
    assert reason_of(b"") == "zero_bytes"


@pytest.mark.parametrize(
    "body",
    [
        b"<!DOCTYPE html><html><body>Access Denied</body></html>",
        b"\n\n  <html><head><title>Blocked</title></head></html>",
        b"\xef\xbb\xbf<html>captcha</html>",
        b"<?xml version='1.0'?><Error><Code>NoSuchKey</Code></Error>",
    ],
)
def test_html_body_even_if_served_as_image(body: bytes) -> None:
    assert reason_of(body) == "html_body"


@pytest.mark.parametrize("body", [b'{"error": "not found"}', b"GIF-ish garbage" * 10, b"\x00" * 50])
def test_not_image(body: bytes) -> None:
    assert reason_of(body) == "not_image"


@pytest.mark.parametrize("fraction", [0.5, 0.8, 0.95])
def test_truncated_jpeg(fraction: float) -> None:
    data = make_image("RGB", (800, 1200))
    cut = data[: int(len(data) * fraction)]
    assert reason_of(cut) == "truncated"


def test_truncated_header_is_not_image_or_corrupt() -> None:
    data = make_image("RGB")
    assert reason_of(data[:40]) in ("not_image", "truncated", "corrupt")


def test_cmyk_jpeg() -> None:
    assert reason_of(make_image("CMYK")) == "bad_mode_CMYK"


def test_palette_png() -> None:
    assert reason_of(make_image("P", fmt="PNG")) == "bad_mode_P"


def test_alpha_png() -> None:
    assert reason_of(make_image("RGBA", fmt="PNG")) == "bad_mode_RGBA"


def test_16_bit_png() -> None:
    assert reason_of(make_image("I;16", fmt="PNG")) == "bad_mode_I16"


def test_rgb_png_is_wrong_format() -> None:
    assert reason_of(make_image("RGB", fmt="PNG")) == "bad_format_PNG"


def _jpeg_with_claimed_size(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF header claims ``width`` x ``height`` (a bomb)."""
    data = bytearray(make_image("RGB", (300, 300)))
    i = 2
    while i < len(data):
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5 : i + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        i += 2 + length
    raise AssertionError("no SOF marker")


def test_decompression_bomb_by_our_pixel_limit() -> None:
    assert reason_of(_jpeg_with_claimed_size(9000, 9000)) == "decompression_bomb"


def test_decompression_bomb_by_pillow_limit() -> None:
    # Our own limit set above Pillow's: Pillow's DecompressionBombError is mapped too.
    s = ValidationSettings(max_pixels=10**12, max_side=70_000)
    assert reason_of(_jpeg_with_claimed_size(65_000, 65_000), s) == "decompression_bomb"


def test_pillow_bomb_warning_is_an_error() -> None:
    # Between Pillow's MAX_IMAGE_PIXELS (~89 MP) and 2x it Pillow only warns.
    s = ValidationSettings(max_pixels=10**12, max_side=70_000)
    assert reason_of(_jpeg_with_claimed_size(10_000, 10_000), s) == "decompression_bomb"


def test_absurd_dimensions() -> None:
    assert reason_of(_jpeg_with_claimed_size(20_000, 100)) == "dimensions_too_large"
    assert reason_of(make_image("RGB", (50, 600))) == "dimensions_too_small"


def test_limits_are_configurable() -> None:
    data = make_image("RGB", (400, 600))
    assert reason_of(data, ValidationSettings(max_side=500)) == "dimensions_too_large"
    assert validate_photo(data, ValidationSettings(allowed_modes=("RGB",))).mode == "RGB"
