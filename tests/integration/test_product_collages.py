"""`product_collages` against the local stack: originals downloaded by the real downloader,
then edited in S3 to give mixed sizes, a missing photo and a corrupt one."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import requests
from PIL import Image, ImageChops, ImageStat, JpegImagePlugin
from psycopg.types.json import Jsonb

from tests.integration.image_stage_helpers import (
    fast_downloader,
    load_catalog,
    logs,
    materialize,
    metadata,
    object_store,
    pin_body,
    pinned_bodies,
    skus,
    small_catalog,
    smooth_photo,
    warm_photos,
)
from tests.unit.test_originals_validate import ODD_VALID, QUADRANTS, SIZE, odd_body
from unde_dagster.collages.compose import collage_geometry
from unde_dagster.defs.collages.assets import product_collages
from unde_dagster.defs.originals.assets import product_originals
from unde_dagster.storage import collage_key, original_key, thumbnail_key
from unde_local.stack import LocalStack

BRAND = "stradivarius"
MIXED_SIZES = [(400, 600), (300, 450), (640, 480), (250, 500)]


def _seed_module() -> Any:
    path = Path(__file__).resolve().parents[2] / "bench" / "seed_collage.py"
    spec = importlib.util.spec_from_file_location("seed_collage", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _photo(size: tuple[int, int], shade: int) -> bytes:
    img = Image.linear_gradient("L").resize(size).convert("RGB")
    img.paste((shade, 40, 255 - shade), (size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_collages_match_the_seed_geometry_and_bad_originals_fail_alone(
    stack: LocalStack, staging: psycopg.Connection, resources: dict[str, Any],
    instance: dg.DagsterInstance,
) -> None:
    seed = _seed_module()
    store = object_store(stack)
    s3 = store.get_client()
    with small_catalog(stack, BRAND, 4, photos=2):
        res = {**resources, "photo_downloader": fast_downloader(stack)}
        load_catalog(BRAND, res, instance)
        materialize([product_originals], BRAND, res, instance)
        mixed, downloaded, missing, corrupt = skus(staging, BRAND).values()
        assert {r["image_status"] for r in (mixed, downloaded, missing, corrupt)} == {"uploaded"}

        # SKU 1: four originals of mixed sizes (one smaller than the tallest: upscaled).
        urls = []
        for n, size in enumerate(MIXED_SIZES, start=1):
            key = original_key(BRAND, mixed["external_id"], n)
            urls.append(store.put_public(s3, key, _photo(size, 60 * n)))
        staging.execute(
            "UPDATE raw_products SET image_urls = %s WHERE id = %s", (Jsonb(urls), mixed["id"]),
        )
        # SKU 3: its second original is gone from the store; SKU 4: the first is an HTML page.
        s3.delete_object(Bucket=store.bucket, Key=original_key(BRAND, missing["external_id"], 2))
        store.put_public(s3, original_key(BRAND, corrupt["external_id"], 1),
                         b"<!DOCTYPE html><html><body>Access Denied</body></html>")

        result = materialize([product_collages], BRAND, resources, instance)

        after = skus(staging, BRAND)
        for ext in (mixed["external_id"], downloaded["external_id"]):
            row = after[ext]
            assert row["image_status"] == "collage_ready", row["error_message"]
            assert row["collage_url"] == store.public_url(collage_key(BRAND, ext))
            assert row["collage_attempts"] == 1 and row["claim_token"] is None
            got = requests.get(row["collage_url"], timeout=10)  # anonymous: public-read
            assert got.status_code == 200
            originals = [store.get_bytes(s3, original_key(BRAND, ext, n))
                         for n in range(1, len(row["image_urls"]) + 1)]
            sizes = [Image.open(io.BytesIO(p)).size for p in originals]
            seed_targets, seed_w, seed_h = seed.seed_geometry(sizes)
            assert collage_geometry(sizes) == (seed_targets, seed_w, seed_h)
            with Image.open(io.BytesIO(got.content)) as img:
                assert img.format == "JPEG" and img.mode == "RGB"
                assert img.size == (seed_w, seed_h)
                assert JpegImagePlugin.get_sampling(img) == 0  # 4:4:4
                ours = img.convert("RGB")
            # Its preview beside it (issue #18): 400 px high, width follows, no upscale.
            thumb = store.get_bytes(s3, thumbnail_key(collage_key(BRAND, ext)))
            thumb_h = min(400, seed_h)
            assert Image.open(io.BytesIO(thumb)).size == (round(seed_w * thumb_h / seed_h), thumb_h)
            if ext == mixed["external_id"]:
                assert seed_h == 600 and seed_w == 400 + 400 + 800 + 300
                with Image.open(io.BytesIO(seed.seed_collage(originals))) as theirs:
                    assert theirs.size == ours.size
                    diff = ImageChops.difference(ours, theirs.convert("RGB"))
                # Same geometry, pixels within the resampler's rounding: our Lanczos3 is
                # another library's (tests/unit/test_collage_compose.py pins the kernel on
                # noisy photos). On these smooth photos: mean 0.002, max 7; Pillow BICUBIC
                # instead would score 0.024, and a one-pixel slot shift far more.
                assert max(ImageStat.Stat(diff).mean) < 0.01
                assert max(high for _, high in diff.getextrema()) <= 16

        gone = after[missing["external_id"]]
        assert gone["image_status"] == "error" and gone["image_error_stage"] == "collage"
        assert gone["error_message"].startswith("original_unreadable: ")
        assert "NoSuchKey" in gone["error_message"]
        bad = after[corrupt["external_id"]]
        assert bad["image_status"] == "error" and bad["image_error_stage"] == "collage"
        assert bad["error_message"] == "photo 1: html_body: not an image (got an HTML/XML page)"
        for row in (gone, bad):
            assert row["collage_url"] is None and row["claim_token"] is None

        meta = metadata(result, "product_collages")
        assert (meta["claimed"], meta["collages_made"], meta["errors"]) == (4, 2, 2)
        assert meta["errors_by_reason"] == {"original_unreadable": 1, "html_body": 1}
        assert meta["skus_by_image_status"] == {"collage_ready": 2, "error": 2}
        assert meta["preview"].startswith("[![")
        assert meta["preview"].count(f"/thumbnails/collages/{BRAND}/") == 2
        assert after[mixed["external_id"]]["collage_url"] in meta["preview"] or (
            after[downloaded["external_id"]]["collage_url"] in meta["preview"]
        )
        [log] = logs(staging, "collage_worker")
        assert (log["status"], log["records_fetched"], log["records_new"],
                log["records_errors"]) == ("partial", 4, 2, 2)
        assert log["run_id"] == result.run_id

        # A re-run has nothing to do: errors wait for the retry pass after the cooldown.
        again = metadata(materialize([product_collages], BRAND, resources, instance),
                         "product_collages")
        assert again["claimed"] == 0
        assert len(logs(staging, "collage_worker")) == 1


def _lab_tiff() -> bytes:
    buf = io.BytesIO()
    Image.new("LAB", SIZE, (50, 10, 10)).save(buf, "TIFF")
    return buf.getvalue()


# Originals that fail at the collage stage (put in the store after the download, as an old
# server's or a damaged copy would be): code each must be counted under.
BROKEN_ORIGINALS = {
    "truncated": lambda: odd_body("truncated_jpeg", smooth_photo()),
    "decompression_bomb": lambda: odd_body("bomb_jpeg"),
    "bad_mode_LAB": _lab_tiff,
}


def test_odd_encodings_end_collage_ready_upright_and_broken_originals_fail_with_their_cause(
    stack: LocalStack, staging: psycopg.Connection, resources: dict[str, Any],
    instance: dg.DagsterInstance,
) -> None:
    """Through the real stages: one SKU per odd encoding (photo 2, served by the CDN
    emulator under a .jpg URL) among good ones. All are downloaded and end collage_ready,
    RGB, at the geometry of their upright sizes (EXIF-rotated photos turned upright, pixels
    too); originals broken in the store fail with a code naming the cause."""
    warm_photos(stack)
    store = object_store(stack)
    s3 = store.get_client()
    odd, n_good = sorted(ODD_VALID), 2
    with small_catalog(stack, BRAND, len(odd) + len(BROKEN_ORIGINALS) + n_good, photos=2), \
            pinned_bodies(stack):
        res = {**resources, "photo_downloader": fast_downloader(stack)}
        load_catalog(BRAND, res, instance)
        rows = list(skus(staging, BRAND).values())
        kinds = {row["external_id"]: kind for row, kind in zip(rows, odd, strict=False)}
        for row in rows[: len(odd)]:
            body = odd_body(kinds[row["external_id"]], smooth_photo(row["id"]))
            pin_body(stack, row["original_image_urls"][1], body)
        materialize([product_originals], BRAND, res, instance)
        assert {r["image_status"] for r in skus(staging, BRAND).values()} == {"uploaded"}
        broken = dict(zip((r["external_id"] for r in rows[len(odd):]), BROKEN_ORIGINALS,
                          strict=False))
        for ext, code in broken.items():
            store.put_public(s3, original_key(BRAND, ext, 2), BROKEN_ORIGINALS[code]())

        result = materialize([product_collages], BRAND, resources, instance)

        after = skus(staging, BRAND)
        for ext, code in broken.items():
            row = after[ext]
            assert row["image_status"] == "error" and row["image_error_stage"] == "collage"
            assert row["error_message"].startswith(f"photo 2: {code}: "), row["error_message"]
        ready = [ext for ext in after if ext not in broken]
        assert len(ready) == len(odd) + n_good
        for ext in ready:
            row = after[ext]
            assert row["image_status"] == "collage_ready", (kinds.get(ext), row["error_message"])
            first = Image.open(io.BytesIO(store.get_bytes(s3, original_key(BRAND, ext, 1))))
            second = SIZE if ext in kinds else Image.open(io.BytesIO(
                store.get_bytes(s3, original_key(BRAND, ext, 2)))).size
            targets, width, height = collage_geometry([first.size, second])
            got = requests.get(row["collage_url"], timeout=10)
            assert got.status_code == 200
            with Image.open(io.BytesIO(got.content)) as img:
                assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (width, height))
                collage = img.convert("RGB")
            if kinds.get(ext, "").startswith("exif"):  # stored on its side, shown upright
                x0, (w, h) = targets[0][0], targets[1]
                for i, colour in enumerate(QUADRANTS):
                    x, y = x0 + w // 4 + (i % 2) * w // 2, h // 4 + (i // 2) * h // 2
                    box = (x - w // 10, y - h // 10, x + w // 10, y + h // 10)
                    mean = ImageStat.Stat(collage.crop(box)).mean
                    assert all(abs(m - c) < 8 for m, c in zip(mean, colour, strict=True))

        meta = metadata(result, "product_collages")
        assert meta["collages_made"] == len(ready)
        assert meta["errors_by_reason"] == {code: 1 for code in BROKEN_ORIGINALS}
