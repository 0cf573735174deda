"""Collage composition: seed geometry, seed-close pixels, JPEG settings, bad input, pool.

Tests that resample run with both resamplers (the ``resampler`` fixture): cykooz.resizer
(skipped where it is not installed) and Pillow's LANCZOS, the fallback, forced through
``UNDE_COLLAGE_RESAMPLER`` as a worker would be.
"""

from __future__ import annotations

import importlib.util
import os
import random
import struct
import subprocess
import sys
import zlib
from collections.abc import Sequence
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageOps, ImageStat, JpegImagePlugin

from bench.seed_collage import seed_collage, seed_geometry
from tests.unit.test_originals_validate import (
    ODD_VALID,
    QUADRANTS,
    SIZE,
    odd_body,
    quadrants,
    sideways_jpeg,
)
from unde_dagster.collages.canvas import RGB_PIXEL_BYTES, CanvasMemory
from unde_dagster.collages.compose import (
    CollageError,
    CollageResult,
    build_collage,
    collage_geometry,
    lanczos3_upscale,
)
from unde_dagster.collages.pool import CollagePool
from unde_dagster.collages.resampler import (
    CYKOOZ,
    ENV_VAR,
    PILLOW,
    Resampler,
    ResamplerUnavailable,
    active,
    select,
)
from unde_dagster.collages.verify import _size as stored_collage_source_size

HAVE_CYKOOZ = importlib.util.find_spec("cykooz_resizer") is not None

MIXED = [(192, 288), (150, 225), (102, 154), (192, 256), (80, 120)]


def photo(w: int, h: int, seed: int = 0, fmt: str = "JPEG", **save: object) -> bytes:
    """A small photo-like RGB JPEG (gradients + noise)."""
    rnd = random.Random(seed)
    lin = Image.linear_gradient("L").resize((w, h)).rotate(rnd.uniform(0, 90))
    noise = Image.effect_noise((w, h), 40)
    img = Image.merge("RGB", (lin, noise, Image.radial_gradient("L").resize((w, h))))
    buf = BytesIO()
    img.save(buf, fmt, quality=90, **save)
    return buf.getvalue()


def encoded(img: Image.Image, fmt: str = "PNG", **save: object) -> bytes:
    buf = BytesIO()
    img.save(buf, fmt, **save)
    return buf.getvalue()


def decode(data: bytes) -> Image.Image:
    img = Image.open(BytesIO(data))
    img.load()
    return img


@pytest.fixture(params=[CYKOOZ, PILLOW] if HAVE_CYKOOZ else [PILLOW])
def resampler(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Resampler:
    """The test runs once per installed resampler (cykooz: the fast-collage extra, in dev
    where a wheel exists), chosen by the environment variable."""
    monkeypatch.setenv(ENV_VAR, request.param)
    chosen = active()
    assert chosen.name == request.param
    return chosen


# --- choosing the resampler ------------------------------------------------------------


def test_auto_is_cykooz_when_importable_and_pillow_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert active().name == (CYKOOZ if HAVE_CYKOOZ else PILLOW)
    assert select("pillow").name == select(" Pillow ").name == PILLOW
    monkeypatch.setitem(sys.modules, "cykooz_resizer", None)  # import fails, as on aarch64
    assert select("auto").name == select("").name == PILLOW
    with pytest.raises(ResamplerUnavailable, match=r"cykooz\.resizer cannot be imported"):
        select("cykooz")  # forced: an error, not a silent slowdown


def test_bad_resampler_setting_fails_the_pool_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "lanczos")
    with pytest.raises(ResamplerUnavailable, match="use one of auto, cykooz, pillow"):
        active()
    with pytest.raises(ResamplerUnavailable, match="UNDE_COLLAGE_RESAMPLER='lanczos'"):
        CollagePool(1)  # before any SKU is claimed or submitted


def test_collages_without_cykooz_installed() -> None:
    """A host without the extra (aarch64 Linux) imports the collage modules and gets the
    seed's collage from Pillow's LANCZOS; a forced cykooz says what to install."""
    code = (
        "import sys; sys.modules['cykooz_resizer'] = None\n"
        "from bench.seed_collage import seed_collage\n"
        "from tests.unit.test_collage_compose import MIXED, photo\n"
        "from unde_dagster.collages import compose, pool, resampler\n"
        "photos = [photo(w, h, i) for i, (w, h) in enumerate(MIXED)]\n"
        "assert resampler.active().name == 'pillow'\n"
        "assert compose.build_collage(photos).jpeg == seed_collage(photos)\n"
        "try:\n"
        "    resampler.select('cykooz')\n"
        "except resampler.ResamplerUnavailable as exc:\n"
        "    print(exc)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True, cwd=Path(__file__).resolve().parents[2])
    assert "install the fast-collage extra" in out.stdout


# --- geometry --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sizes",
    [
        MIXED,
        [(1920, 2880), (1500, 2250), (1024, 1536), (1920, 2560), (800, 1200)],
        [(1000, 1499), (333, 777), (1, 3), (4096, 2731)],
        [(640, 960)] * 5,
    ],
)
def test_geometry_is_the_seeds(sizes: list[tuple[int, int]]) -> None:
    assert collage_geometry(sizes) == seed_geometry(sizes)


def test_geometry_random_sizes_match_seed() -> None:
    rnd = random.Random(7)
    for _ in range(500):
        sizes = [(rnd.randint(1, 5000), rnd.randint(1, 5000)) for _ in range(rnd.randint(1, 6))]
        assert collage_geometry(sizes) == seed_geometry(sizes)


def test_geometry_rejects_nothing() -> None:
    with pytest.raises(CollageError, match="no photos"):
        collage_geometry([])


# --- output ------------------------------------------------------------------------------


def channel_diffs(a: Image.Image, b: Image.Image) -> tuple[float, int, float]:
    """(mean |a - b|, max |a - b|, share of values off by more than 4 levels), all channels."""
    assert a.size == b.size and a.mode == b.mode
    hist = [0] * 256
    for band in ImageChops.difference(a, b).split():
        for level, count in enumerate(band.histogram()):
            hist[level] += count
    total = sum(hist)
    mean = sum(level * count for level, count in enumerate(hist)) / total
    return mean, max(level for level, count in enumerate(hist) if count), sum(hist[5:]) / total


def resized_like_seed(photos: Sequence[bytes], resample: Image.Resampling) -> bytes:
    """The seed's collage with another resampler (to show the pixel tolerance can fail)."""
    images = [decode(data) for data in photos]
    targets, width, height = seed_geometry([img.size for img in images])
    canvas = Image.new("RGB", (width, height), "white")
    x = 0
    for img, (w, h) in zip(images, targets, strict=True):
        canvas.paste(img.resize((w, h), resample), (x, 0))
        x += w
    return encoded(canvas, "JPEG", quality=95, subsampling=0)


# Pixel tolerance vs the seed where photos are upscaled. cykooz's Lanczos3 is another
# library's (fixed-point rounding differs by 1-2 levels before encoding; JPEG q95 spreads
# that over 8x8 blocks), so bytes differ. Measured on these noisy photos: mean 0.22, max 9,
# 0.08% of values off by > 4. Pillow's LANCZOS (the fallback) is the seed's own: 0 and 0.
# The bounds fail for any other kernel (Pillow BICUBIC: mean 2.6, 21% off by > 4), for
# Lanczos3 in the other pass order (mean 1.15, 2.6%), and for any slot shifted by a pixel,
# so they still pin the seed's resampling, not just "looks alike".
MAX_MEAN_DIFF = 0.5
MAX_SHARE_OFF_BY_5 = 0.005
MAX_DIFF = 16


def test_mixed_output_has_seed_geometry_close_pixels_jpeg_444_q95(resampler: Resampler) -> None:
    photos = [photo(w, h, i) for i, (w, h) in enumerate(MIXED)]
    result = build_collage(photos)
    if resampler.name == PILLOW:  # the fallback is the seed's resampler, bit for bit
        assert result.jpeg == seed_collage(photos)
    assert isinstance(result, CollageResult)
    targets, width, height = seed_geometry(MIXED)
    assert (result.width, result.height) == (width, height)
    assert list(result.photo_sizes) == targets
    assert list(result.source_sizes) == MIXED

    ours, seed = decode(result.jpeg), decode(seed_collage(photos))
    assert ours.format == "JPEG" and ours.mode == "RGB"
    assert ours.size == seed.size == (width, height)
    assert JpegImagePlugin.get_sampling(ours) == 0  # 4:4:4
    reference = decode(encoded(Image.new("RGB", (8, 8)), "JPEG", quality=95, subsampling=0))
    assert ours.quantization == reference.quantization  # quality 95 tables
    mean, worst, share = channel_diffs(ours, seed)
    assert mean < MAX_MEAN_DIFF and share < MAX_SHARE_OFF_BY_5 and worst <= MAX_DIFF
    # Slot by slot too, so one bad photo cannot hide in the average of five.
    x = 0
    for w, h in targets:
        box = (x, 0, x + w, h)
        slot_mean, slot_worst, slot_share = channel_diffs(ours.crop(box), seed.crop(box))
        assert slot_mean < MAX_MEAN_DIFF and slot_share < MAX_SHARE_OFF_BY_5, (w, h)
        assert slot_worst <= MAX_DIFF
        x += w
    # The photo already at full height is not resampled: its slot (8-px aligned, so no
    # 4:4:4 JPEG block straddles a neighbour) is the seed's, exactly.
    box = (0, 0, *targets[0])
    assert MIXED[0] == targets[0] and ours.crop(box).tobytes() == seed.crop(box).tobytes()

    # The tolerance is not vacuous: another kernel or a one-pixel shift breaks it.
    bicubic = decode(resized_like_seed(photos, Image.Resampling.BICUBIC))
    mean, _, share = channel_diffs(bicubic, seed)
    assert mean >= MAX_MEAN_DIFF and share >= MAX_SHARE_OFF_BY_5
    shifted = Image.new("RGB", ours.size)
    shifted.paste(ours.crop((1, 0, width, height)), (0, 0))
    assert channel_diffs(shifted, seed)[0] >= MAX_MEAN_DIFF


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
@pytest.mark.parametrize("size", [(331, 507), (150, 400), (151, 231)])
def test_upscale_is_pillow_lanczos_within_two_levels(
    mode: str, size: tuple[int, int], resampler: Resampler
) -> None:
    noise = [Image.effect_noise((150, 230), 60).rotate(a, expand=False) for a in (0, 90, 180, 270)]
    img = Image.merge(mode, noise[: len(mode)])
    ours, pillow = lanczos3_upscale(img, size), img.resize(size, Image.Resampling.LANCZOS)
    assert ours.mode == pillow.mode == mode and ours.size == pillow.size == size
    if mode == "RGBA":  # where it matters: composited over white, as the collage does
        ours, pillow = (_over_white(i) for i in (ours, pillow))
    mean, worst, _ = channel_diffs(ours, pillow)
    assert worst <= 3 and mean < 0.05
    if resampler.name == PILLOW:
        assert worst == 0


def _over_white(img: Image.Image) -> Image.Image:
    out = Image.new("RGB", img.size, "white")
    out.paste(img, (0, 0), img)
    return out


@pytest.mark.parametrize("progressive", [False, True])
def test_equal_heights_decoded_into_canvas_match_seed(
    progressive: bool, resampler: Resampler
) -> None:
    photos = [photo(160, 240, i, progressive=progressive) for i in range(4)]
    result = build_collage(photos)
    assert (result.width, result.height) == (640, 240)
    assert result.jpeg == seed_collage(photos)


def test_quality_is_honoured(resampler: Resampler) -> None:
    photos = [photo(64, 96, 1), photo(40, 60, 2)]
    low = decode(build_collage(photos, quality=50).jpeg)
    ref = decode(encoded(Image.new("RGB", (8, 8)), "JPEG", quality=50, subsampling=0))
    assert low.quantization == ref.quantization


# --- modes -----------------------------------------------------------------------------


def test_alpha_and_palette_transparency_composite_on_white(resampler: Resampler) -> None:
    rgba = Image.new("RGBA", (40, 60), (255, 0, 0, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 20, 60))  # left half fully transparent black
    pal = Image.new("P", (40, 60), 0)
    pal.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    pal.paste(1, (20, 0, 40, 60))
    la = Image.new("LA", (40, 60), (0, 0))
    photos = [
        encoded(rgba),
        encoded(pal, transparency=0),
        encoded(la),
        photo(40, 60, 3),
    ]
    out = decode(build_collage(photos).jpeg).convert("RGB")
    assert out.size == (160, 60)

    def near(px: tuple[int, ...], want: tuple[int, int, int]) -> bool:
        return all(abs(a - b) <= 8 for a, b in zip(px, want, strict=True))

    assert near(out.getpixel((5, 30)), (255, 255, 255))  # transparent -> white
    assert near(out.getpixel((35, 30)), (255, 0, 0))
    assert near(out.getpixel((45, 30)), (255, 255, 255))  # palette transparency -> white
    assert near(out.getpixel((75, 30)), (0, 0, 255))
    assert near(out.getpixel((100, 30)), (255, 255, 255))  # fully transparent LA


def test_cmyk_grey_bilevel_and_16_bit_are_converted(resampler: Resampler) -> None:
    cmyk = encoded(Image.new("CMYK", (30, 60), (0, 255, 255, 0)), "JPEG", quality=95)
    grey = encoded(Image.new("L", (30, 30), 100), "JPEG", quality=95)
    bilevel = encoded(Image.new("1", (30, 60), 1))
    rows = struct.pack("<H", 65535) * (30 * 30) + struct.pack("<H", 32768) * (30 * 30)
    deep = Image.frombytes("I;16", (30, 60), rows)
    out = decode(build_collage([cmyk, grey, bilevel, encoded(deep)]).jpeg)
    assert out.size == (30 + 60 + 30 + 30, 60)
    r, g, b = out.getpixel((15, 30))
    assert r > 200 and g < 60 and b < 60  # CMYK red is red
    assert all(abs(v - 100) <= 4 for v in out.getpixel((60, 30)))  # grey stays grey
    assert min(out.getpixel((105, 30))) > 245  # "1" white pixels
    assert min(out.getpixel((135, 10))) > 250  # 16-bit full scale -> 255, not clipped noise
    assert all(abs(v - 128) <= 3 for v in out.getpixel((135, 50)))  # 32768 -> 128


# --- odd encodings and EXIF orientation (SPEC §6) -------------------------------------------


def normalised_reference(data: bytes) -> Image.Image:
    """What the collage should show for a photo: first frame, upright, 16-bit scaled to 8,
    transparency over white; built with plain Pillow calls, independently of compose.py."""
    img = ImageOps.exif_transpose(decode(data))
    if img.mode.startswith("I;16"):
        img = img.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    out = Image.new("RGB", img.size, "white")
    rgba = img.convert("RGBA")
    out.paste(rgba, (0, 0), rgba)
    return out


@pytest.mark.parametrize("kind", sorted(ODD_VALID))
def test_odd_encodings_become_rgb_slots_of_the_upright_size(
    kind: str, resampler: Resampler
) -> None:
    data = odd_body(kind)
    result = build_collage([photo(*SIZE, 1), data])
    assert result.source_sizes == (SIZE, SIZE) and (result.width, result.height) == (800, 600)
    out = decode(result.jpeg)
    assert out.mode == "RGB" and JpegImagePlugin.get_sampling(out) == 0
    slot = out.crop((400, 0, 800, 600))
    mean, _, share = channel_diffs(slot, normalised_reference(data))
    assert mean < 2.5 and share < 0.05, (kind, mean, share)  # JPEG q95 of noise, nothing more


@pytest.mark.parametrize("orient", [2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("upright_size", [SIZE, (200, 300)])  # at full height / upscaled
def test_exif_orientation_is_applied(
    orient: int, upright_size: tuple[int, int], resampler: Resampler
) -> None:
    """The collage shows the photo upright: its geometry follows the upright size and its
    pixels are turned (the red quadrant top left, green top right, blue, yellow below)."""
    stored = sideways_jpeg(orient, quadrants(upright_size))
    assert decode(stored).size == (
        upright_size[::-1] if orient >= 5 else upright_size
    )
    result = build_collage([photo(*SIZE, 2), stored])
    assert result.source_sizes == (SIZE, upright_size)
    assert (result.width, result.height) == (800, 600)  # 200x300 upscaled to 400x600
    assert stored_collage_source_size(stored) == upright_size  # the dimension check agrees
    out = decode(result.jpeg)
    for i, colour in enumerate(QUADRANTS):
        x, y = 400 + 100 + (i % 2) * 200, 150 + (i // 2) * 300
        box = (x - 40, y - 40, x + 40, y + 40)
        got = ImageStat.Stat(out.crop(box)).mean
        assert all(abs(g - c) < 8 for g, c in zip(got, colour, strict=True)), (i, got)


def test_red_top_half_stays_on_top() -> None:
    """The plain case of the issue: a photo stored on its side (EXIF 6 or 8) with a red top
    half once upright comes out red on top, blue below, at the upright size."""
    upright = Image.new("RGB", SIZE, (0, 0, 255))
    upright.paste((255, 0, 0), (0, 0, SIZE[0], SIZE[1] // 2))
    for orient in (6, 8):
        out = decode(build_collage([sideways_jpeg(orient, upright)]).jpeg)
        assert out.size == SIZE
        r, g, b = out.getpixel((200, 100))
        assert r > 240 and g < 15 and b < 15
        r, g, b = out.getpixel((200, 500))
        assert r < 15 and g < 15 and b > 240


def test_png_exif_after_the_pixel_data_is_found() -> None:
    """A PNG may carry eXIf after IDAT; Pillow finds it only by decoding, we read it ahead."""
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encoded(quadrants().transpose(Image.Transpose.ROTATE_90), exif=exif)
    start = data.index(b"eXIf") - 4
    (length,) = struct.unpack(">I", data[start : start + 4])
    chunk = data[start : start + 12 + length]
    data = data.replace(chunk, b"")
    end = data.index(b"IEND") - 4
    moved = data[:end] + chunk + data[end:]
    assert moved.index(b"eXIf") > moved.index(b"IDAT")
    result = build_collage([photo(*SIZE, 3), moved])
    assert result.source_sizes == (SIZE, SIZE)
    assert ImageStat.Stat(decode(result.jpeg).crop((420, 20, 580, 280))).mean[0] > 240


def test_a_broken_exif_block_counts_as_upright() -> None:
    data = bytearray(sideways_jpeg(6))
    at = data.index(b"Exif\x00\x00")
    data[at + 6 : at + 14] = b"XX\x00\x2a\xff\xff\xff\xff"  # no TIFF byte order
    result = build_collage([bytes(data)])
    assert result.source_sizes == (SIZE[::-1],)


def test_a_sliver_is_composed_the_downloader_is_the_gate() -> None:
    """1x2000 never reaches here from our downloader (``sliver``); an old server's original
    still gets the seed's geometry rather than an error."""
    sliver = odd_body("sliver")
    result = build_collage([photo(*SIZE, 4), sliver])
    assert (result.width, result.height) == seed_geometry([SIZE, (1, 2000)])[1:]


# --- bad input -----------------------------------------------------------------------------


def _png_with_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (IHDR rewritten, CRC fixed)."""
    data = bytearray(encoded(Image.new("L", (1, 1))))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17]))
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "zero bytes"),
        (b"<!DOCTYPE html><html><body>Access denied</body></html>", "HTML"),
        (b"\x00\x01garbage" * 50, "not an image"),
        (_png_with_size(20_000, 20_000), "decompression bomb"),
        (_png_with_size(8_000, 8_000), "decompression bomb"),
    ],
)
def test_bad_photo_is_a_readable_error(payload: bytes, reason: str) -> None:
    with pytest.raises(CollageError, match=reason) as err:
        build_collage([photo(40, 60), payload])
    assert err.value.reason.startswith("photo 2:")


def _garbled_png() -> bytes:
    """A PNG whose compressed pixel data is damaged (its header is fine)."""
    data = bytearray(encoded(Image.effect_noise((300, 300), 40)))
    at = data.index(b"IDAT")
    for k in range(at + 40, at + 200):
        data[k] ^= 0x55
    return bytes(data)


def _lab_tiff() -> bytes:
    return encoded(Image.new("LAB", (40, 60), (50, 10, 10)), "TIFF")


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"", "zero_bytes"),
        (b"<!DOCTYPE html><html><body>Access denied</body></html>", "html_body"),
        (b'{"error": "not found"}', "not_image"),
        (odd_body("truncated_jpeg"), "truncated"),
        (odd_body("bomb_jpeg"), "decompression_bomb"),
        (_png_with_size(20_000, 20_000), "decompression_bomb"),
        (_garbled_png(), "corrupt"),
        (_lab_tiff(), "bad_mode_LAB"),
    ],
)
def test_photo_errors_carry_a_code_naming_the_cause(
    payload: bytes, code: str, resampler: Resampler
) -> None:
    """Errors are counted by ``code`` (not ``photo_2``); the message keeps the number."""
    with pytest.raises(CollageError) as err:
        build_collage([photo(*SIZE, 5), payload])
    assert err.value.code == code
    assert err.value.reason.startswith(f"photo 2: {code}: ")
    assert str(err.value) == err.value.reason


def test_canvas_errors_carry_codes() -> None:
    with pytest.raises(CollageError) as err:
        build_collage([])
    assert err.value.code == "no_photos"
    with pytest.raises(CollageError) as err:
        build_collage([photo(40, 60), photo(40, 60)], max_canvas_pixels=1000)
    assert err.value.code == "collage_too_large"


@pytest.mark.parametrize("progressive", [False, True])
def test_truncated_jpeg_is_rejected(progressive: bool, resampler: Resampler) -> None:
    good = photo(200, 300, 4, progressive=progressive)
    with pytest.raises(CollageError, match="truncated"):
        build_collage([good, good[: len(good) // 2]])
    with pytest.raises(CollageError, match="truncated"):
        build_collage([photo(100, 150, 5), good[: len(good) // 2]])  # resized path too


def test_no_photos_and_oversized_canvas_are_rejected() -> None:
    with pytest.raises(CollageError, match="no photos"):
        build_collage([])
    strip = encoded(Image.new("RGB", (4000, 4), "white"))
    tall = encoded(Image.new("RGB", (4, 400), "white"))
    with pytest.raises(CollageError, match="JPEG limit"):
        build_collage([strip, tall])
    with pytest.raises(CollageError, match="px limit"):
        build_collage([photo(40, 60), photo(40, 60)], max_canvas_pixels=1000)


# --- pool ----------------------------------------------------------------------------------


# --- reused canvas memory ------------------------------------------------------------------


def transparent_half(w: int, h: int) -> bytes:
    """A PNG whose left half is transparent black: stale canvas pixels would show through."""
    img = Image.new("RGBA", (w, h), (0, 128, 0, 255))
    img.paste((0, 0, 0, 0), (0, 0, w // 2, h))
    return encoded(img)


def test_reused_canvas_memory_gives_the_same_collages_as_fresh_memory(
    resampler: Resampler,
) -> None:
    """SKUs of every kind one after another on one worker's memory: no pixel of an earlier
    SKU may survive into a later one, whatever the widths, heights and modes."""
    skus = [
        [photo(w, h, i) for i, (w, h) in enumerate(MIXED)],
        [photo(160, 240, 9, progressive=True), photo(160, 240, 8)],
        [transparent_half(60, 90), photo(40, 60, 3)],
        [encoded(Image.new("L", (30, 45), 200)), photo(120, 180, 4), transparent_half(20, 30)],
        [photo(300, 100, 5), photo(30, 10, 6)],
    ]
    memory = CanvasMemory()
    for photos in skus * 2:
        assert build_collage(photos, canvas_memory=memory).jpeg == build_collage(photos).jpeg
    assert memory.kept_bytes >= (288 + 1) * sum(w for w, _ in collage_geometry(MIXED)[0]) * 4


def test_canvas_memory_is_kept_up_to_its_limit() -> None:
    limit = (240 + 1) * 640 * RGB_PIXEL_BYTES
    memory = CanvasMemory(keep_bytes=limit)
    small = [photo(160, 240, i) for i in range(4)]
    build_collage(small, canvas_memory=memory)
    assert memory.kept_bytes == limit
    wide = [photo(160, 240, i) for i in range(5)]
    result = build_collage(wide, canvas_memory=memory)
    assert result.jpeg == seed_collage(wide)
    assert memory.kept_bytes == limit  # the bigger canvas had memory of its own


def dying_worker(photos: Sequence[bytes], quality: int) -> CollageResult:
    """Simulates a worker killed mid-SKU (e.g. by the OOM killer)."""
    if photos and photos[0] == b"die":
        os._exit(3)
    return build_collage(photos, quality=quality)


def test_pool_reports_per_sku_errors_and_keeps_going() -> None:
    good = [photo(48, 72, 1), photo(32, 48, 2)]
    skus = [("a", good), ("bad", [b""]), ("html", [b"<html>"]), ("b", good), ("none", [])]
    with CollagePool(2, max_in_flight=2) as pool:
        results = dict(pool.map(iter(skus)))
    assert set(results) == {"a", "bad", "html", "b", "none"}
    a, b = results["a"], results["b"]
    assert isinstance(a, CollageResult) and isinstance(b, CollageResult)
    assert a.jpeg == b.jpeg == build_collage(good).jpeg  # the worker is build_collage, as is
    for key in ("bad", "html", "none"):
        assert isinstance(results[key], CollageError)
    bad = results["bad"]
    assert isinstance(bad, CollageError) and "zero bytes" in bad.reason
    assert bad.code == "zero_bytes"  # the code survives the trip back from the worker


def test_pool_survives_a_dead_worker() -> None:
    good = [photo(48, 72, 1)]
    skus = [("dies", [b"die"]), ("after-1", good), ("after-2", good)]
    with CollagePool(2, max_in_flight=1, worker=dying_worker) as pool:
        results = dict(pool.map(skus))
    dead = results["dies"]
    assert isinstance(dead, CollageError) and "died" in dead.reason
    assert isinstance(results["after-1"], CollageResult)
    assert isinstance(results["after-2"], CollageResult)
