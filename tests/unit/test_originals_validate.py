"""SPEC §6 at download: real photos in odd encodings pass (bytes kept as they are), every bad
body ends in a reason code naming its cause.

The encoded bodies here (``odd_body``) are shared with the collage tests and the image-stage
integration tests, so all three see the same photos."""

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

ODD_VALID: dict[str, tuple[str, str]] = {
    # kind -> (format, mode) Pillow reports; every one a 400x600 photo once upright
    "cmyk_jpeg": ("JPEG", "CMYK"),  # Pillow writes an Adobe marker: Adobe-inverted CMYK
    "rgba_png": ("PNG", "RGBA"),
    "la_png": ("PNG", "LA"),
    "palette_png": ("PNG", "P"),  # with a transparent palette entry
    "i16_png": ("PNG", "I;16"),
    "webp": ("WEBP", "RGB"),  # served under a .jpg URL: the bytes decide, not the name
    "png_rgb": ("PNG", "RGB"),
    "gif": ("GIF", "P"),  # animated: two frames, the first is the photo
    "progressive_jpeg": ("JPEG", "RGB"),
    "mpo": ("MPO", "RGB"),
    "exif6_jpeg": ("JPEG", "RGB"),
    "exif8_jpeg": ("JPEG", "RGB"),
}
BROKEN: dict[str, str] = {
    # kind -> the reason both stages give
    "truncated_jpeg": "truncated",
    "bomb_jpeg": "decompression_bomb",  # the header claims 9000x9000
    "sliver": "sliver",  # 1x2000
    "tiny": "dimensions_too_small",
}
SIZE = (400, 600)
QUADRANTS = ((255, 0, 0), (0, 200, 0), (0, 0, 255), (255, 255, 0))
"""Top-left, top-right, bottom-left, bottom-right colours of the upright test photo."""
_STORE_SIDEWAYS = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
"""How the camera stored pixels that EXIF orientation 6 / 8 turns upright."""


def quadrants(size: tuple[int, int] = SIZE) -> Image.Image:
    """An upright photo in four flat colours: any wrong rotation or mirror shows."""
    w, h = size
    img = Image.new("RGB", size)
    for i, colour in enumerate(QUADRANTS):
        x, y = (i % 2) * w // 2, (i // 2) * h // 2
        img.paste(colour, (x, y, x + w // 2, y + h // 2))
    return img


def _save(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def sideways_jpeg(orient: int, upright: Image.Image | None = None) -> bytes:
    """A JPEG whose pixels are stored so that EXIF ``orient`` turns them into ``upright``."""
    img = upright or quadrants()
    inverse = _STORE_SIDEWAYS.get(orient) or {
        2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
        7: Image.Transpose.TRANSVERSE,
    }[orient]
    exif = Image.Exif()
    exif[0x0112] = orient
    return _save(img.transpose(inverse), "JPEG", quality=95, exif=exif)


def odd_body(kind: str, base: Image.Image | None = None) -> bytes:
    """Real encoded bodies of each odd-but-valid (``ODD_VALID``) or broken (``BROKEN``)
    kind, made by Pillow: what brand CDNs actually serve. ``base`` is the RGB picture
    (``SIZE``; noise by default, which resists compression: a worst case for the codecs)."""
    photo = base or Image.effect_noise(SIZE, 48).convert("RGB")
    if kind == "cmyk_jpeg":
        return _save(photo.convert("CMYK"), "JPEG", quality=90)
    if kind == "rgba_png":
        rgba = photo.convert("RGBA")
        rgba.putalpha(Image.linear_gradient("L").resize(SIZE))
        return _save(rgba, "PNG")
    if kind == "la_png":
        return _save(photo.convert("LA"), "PNG")
    if kind == "palette_png":
        pal = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        return _save(pal, "PNG", transparency=0)
    if kind == "i16_png":
        return _save(photo.convert("L").point(lambda v: v * 256, mode="I").convert("I;16"), "PNG")
    if kind == "webp":
        return _save(photo, "WEBP", quality=90)
    if kind == "png_rgb":
        return _save(photo, "PNG")
    if kind == "gif":
        return _save(photo.convert("P"), "GIF", save_all=True,
                     append_images=[Image.new("P", SIZE, 1)], duration=100, loop=0)
    if kind == "progressive_jpeg":
        return _save(photo, "JPEG", quality=90, progressive=True)
    if kind == "mpo":
        return _save(photo, "MPO", save_all=True, append_images=[photo.rotate(180)])
    if kind in ("exif6_jpeg", "exif8_jpeg"):
        return sideways_jpeg(int(kind[4]))
    if kind == "truncated_jpeg":
        data = _save(photo, "JPEG", quality=90)
        return data[: len(data) // 2]
    if kind == "bomb_jpeg":
        return _jpeg_with_claimed_size(9000, 9000)
    if kind == "sliver":
        return _save(Image.new("RGB", (1, 2000), "grey"), "JPEG")
    if kind == "tiny":
        return _save(Image.new("RGB", (120, 160), "grey"), "JPEG")
    raise ValueError(kind)


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


def _full_decode_fails(data: bytes) -> bool:
    """Pillow's own full-resolution decode, the reference the validator's DCT-scaled
    decode must agree with."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
    except Exception:
        return True
    return False


@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
def test_a_cut_jpeg_is_rejected_wherever_a_full_decode_fails(progressive: bool) -> None:
    photo = Image.effect_noise((640, 960), 48).convert("RGB")
    buf = io.BytesIO()
    photo.save(buf, format="JPEG", quality=90, progressive=progressive)
    data = buf.getvalue()
    disagree = []
    for i in range(1, 200):
        cut = data[: len(data) * i // 200]
        try:
            validate_photo(cut)
            rejected = False
        except PhotoError:
            rejected = True
        if rejected != _full_decode_fails(cut):
            disagree.append(i / 2)
    assert disagree == [], f"validator and full decode disagree at cuts of {disagree}%"
    assert validate_photo(data).width == 640


def test_truncated_header_is_not_image_or_corrupt() -> None:
    data = make_image("RGB")
    assert reason_of(data[:40]) in ("not_image", "truncated", "corrupt")


# --- odd but real encodings: accepted, bytes untouched ---------------------------------


@pytest.mark.parametrize("kind", sorted(ODD_VALID))
def test_odd_real_encodings_are_accepted(kind: str) -> None:
    data = odd_body(kind)
    info = validate_photo(data)
    want_fmt, want_mode = ODD_VALID[kind]
    assert (info.format, info.mode) == (want_fmt, want_mode)
    assert (info.width, info.height) == (400, 600)  # upright, whatever is stored
    assert info.size_bytes == len(data)


@pytest.mark.parametrize(("kind", "stored"), [("exif6_jpeg", (600, 400)),
                                              ("exif8_jpeg", (600, 400))])
def test_exif_orientation_gives_the_upright_size(kind: str, stored: tuple[int, int]) -> None:
    data = odd_body(kind)
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == stored  # the pixels are stored on their side
    info = validate_photo(data)
    assert (info.width, info.height, info.orientation) == (400, 600, int(kind[4]))


def test_limits_apply_to_the_upright_size() -> None:
    # Stored 600x400 (a side of 400 px), shown 400x600: a 500 px height limit still bites.
    with pytest.raises(PhotoError) as info:
        validate_photo(odd_body("exif6_jpeg"), ValidationSettings(max_side=500))
    assert info.value.reason == "dimensions_too_large"


def test_unsupported_mode_names_the_mode() -> None:
    lab = io.BytesIO()
    Image.new("LAB", (300, 400), (50, 10, 10)).save(lab, "TIFF")
    assert reason_of(lab.getvalue()) == "bad_mode_LAB"
    # Configurable: a deployment may still refuse what its consumers cannot read.
    strict = ValidationSettings(allowed_modes=("RGB", "L"))
    assert reason_of(odd_body("cmyk_jpeg"), strict) == "bad_mode_CMYK"
    assert reason_of(odd_body("i16_png"), strict) == "bad_mode_I16"
    assert reason_of(odd_body("webp"), ValidationSettings(allowed_formats=("JPEG",))) == (
        "bad_format_WEBP"
    )


def test_format_no_photo_is_in_is_named() -> None:
    ico = io.BytesIO()
    Image.new("RGB", (64, 64)).save(ico, "ICO")
    assert reason_of(ico.getvalue()) == "bad_format_ICO"


def test_slivers_and_tiny_images() -> None:
    assert reason_of(odd_body("sliver")) == "sliver"  # 1x2000
    assert reason_of(make_image("RGB", (2000, 300))) == "sliver"
    assert reason_of(make_image("RGB", (150, 180))) == "dimensions_too_small"
    assert validate_photo(make_image("RGB", (1000, 200))).width == 1000  # 5:1 is the limit


@pytest.mark.parametrize(("kind", "reason"), sorted(BROKEN.items()))
def test_broken_bodies_name_their_cause(kind: str, reason: str) -> None:
    assert reason_of(odd_body(kind)) == reason


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
    assert reason_of(_jpeg_with_claimed_size(13_000, 3_000)) == "dimensions_too_large"


def test_limits_are_configurable() -> None:
    data = make_image("RGB", (400, 600))
    assert reason_of(data, ValidationSettings(max_side=500)) == "dimensions_too_large"
    assert validate_photo(data, ValidationSettings(allowed_modes=("RGB",))).mode == "RGB"
