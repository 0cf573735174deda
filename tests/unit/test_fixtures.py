"""Generated catalog items and photos: shape, determinism and the malformed-body kinds."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from PIL import Image

from unde_local.fixtures.catalog import BRAND_NAMES, generate_catalog
from unde_local.fixtures.photos import BAD_BODY_KINDS, PhotoPool, bad_body

CDN = "http://cdn.brand-images.test"


def test_catalog_shape_matches_datasaurus_items() -> None:
    items = generate_catalog("pullandbear", 200, CDN, seed=3)
    assert len({i["id"] for i in items}) == 200
    assert len({i["reference"] for i in items}) == 200
    for item in items:
        assert isinstance(item["id"], int) and item["brand"] == "Pull&Bear"
        assert re.fullmatch(r"\d{8}-V2026", item["reference"])
        assert isinstance(item["price"], int) and item["price"] % 100 == 0  # fils
        assert item["category"].split("-")[0] in ("woman", "man")
        assert "parts" in item["detailedComposition"]
        colours = item["colorsSizesImagesJSON"]
        assert 1 <= len(colours) <= 4
        assert item["colors"] == ", ".join(c["name"] for c in colours)
        assert item["sizes"] == ", ".join(s["name"] for s in colours[0]["sizes"])
        for colour in colours:
            assert re.fullmatch(r"\d{3}", colour["id"]) and isinstance(colour["productId"], int)
            assert 3 <= len(colour["xmedia"]) <= 7
            for url in colour["xmedia"]:
                assert url.startswith(f"{CDN}/pullandbear/photos/") and url.endswith("?w={width}")
            assert all(set(s) == {"name", "sku", "availability", "price"}
                       for s in colour["sizes"])


def test_catalog_is_deterministic_and_seeded() -> None:
    assert generate_catalog("zara", 20, CDN) == generate_catalog("zara", 20, CDN)
    assert generate_catalog("zara", 20, CDN, seed=1) != generate_catalog("zara", 20, CDN)
    prefixes = {generate_catalog(b, 1, CDN)[0]["reference"][:1] for b in BRAND_NAMES}
    assert len(prefixes) == len(BRAND_NAMES)  # references never collide across brands


def test_full_size_photo_looks_like_a_photo() -> None:
    pool = PhotoPool(seed=0)
    index = next(i for i, size in enumerate(pool.sizes) if size == (1920, 2880))
    data = pool.get(index)
    assert 200_000 <= len(data) <= 600_000
    img = Image.open(io.BytesIO(data))
    assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (1920, 2880))


def test_pool_maps_urls_stably_and_caches_on_disk(tmp_path: Path) -> None:
    sizes = ((192, 288), (288, 192), (150, 225))
    pool = PhotoPool(seed=5, cache_dir=tmp_path, sizes=sizes)
    key = "/zara/photos/2026/V/0208/6797/800/02086797800-p.jpg"
    first = pool.for_url(key)
    assert pool.for_url(key) == first
    assert Image.open(io.BytesIO(first)).size == sizes[pool.index_for(key)]
    assert len(list(tmp_path.glob("*.jpg"))) == 1
    assert PhotoPool(seed=5, cache_dir=tmp_path, sizes=sizes).for_url(key) == first
    keys = [f"/zara/photos/x/{n}-p.jpg" for n in range(60)]
    assert {pool.index_for(k) for k in keys} == {0, 1, 2}
    scaled = Image.open(io.BytesIO(pool.for_url(key, width=96)))
    assert scaled.size[0] == 96
    assert pool.for_url(key, width=10_000) == first  # never upscales


@pytest.mark.parametrize(("kind", "mode"), [
    ("cmyk", "CMYK"), ("palette", "P"), ("rgba", "RGBA"), ("i16", "I;16")])
def test_odd_colour_modes_decode_to_that_mode(kind: str, mode: str) -> None:
    body, _ = bad_body(kind)
    assert Image.open(io.BytesIO(body)).mode == mode


def test_broken_bodies_fail_to_decode() -> None:
    for kind in ("html200", "zero", "text"):
        with pytest.raises(Image.UnidentifiedImageError):
            Image.open(io.BytesIO(bad_body(kind)[0]))
    with pytest.raises(OSError):
        Image.open(io.BytesIO(bad_body("truncated")[0])).load()
    assert bad_body("html200")[1].startswith("text/html")
    assert {bad_body(k)[1] for k in ("zero", "text", "truncated")} == {"image/jpeg"}


def test_decompression_bomb_is_small_but_huge() -> None:
    body, ctype = bad_body("bomb")
    assert ctype == "image/png" and len(body) < 1_000_000
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(body))
    assert set(BAD_BODY_KINDS) >= {"html200", "truncated", "zero", "bomb"}
    with pytest.raises(ValueError):
        bad_body("nope")
