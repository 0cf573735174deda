"""`product_originals` against the local stack: real proxy/CDN emulator, PostgreSQL, S3.

Faults are injected at the CDN/proxy emulator (HTTP boundary) per photo URL; the production
downloader runs with test-sized delays, backoffs and timeouts.
"""

from __future__ import annotations

import io
import threading
from collections import Counter
from typing import Any

import dagster as dg
import psycopg
import pytest
import requests
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus
from PIL import Image

from tests.integration.image_stage_helpers import (
    RETRY_CONFIG,
    cdn,
    fast_downloader,
    fault_on,
    load_catalog,
    logs,
    materialize,
    metadata,
    object_store,
    photo_requests,
    pin_body,
    pinned_bodies,
    put_catalog,
    skus,
    small_catalog,
    smooth_photo,
    warm_photos,
)
from tests.unit.test_originals_validate import BROKEN, ODD_VALID, odd_body
from unde_dagster.db.claims import DOWNLOAD_QUEUE, ClaimRules, claim_batch
from unde_dagster.defs.originals.assets import product_originals
from unde_dagster.storage import key_of, original_key, thumbnail_key
from unde_local.fixtures.photos import BAD_BODY_KINDS, bad_body
from unde_local.stack import LocalStack

BRAND = "oysho"

# body kind / status / action → the reason code the SKU must end with
PHOTO_FAULTS: list[tuple[dict[str, Any], tuple[str, ...]]] = [
    ({"body": "truncated"}, ("truncated",)),
    ({"body": "html200"}, ("html_body",)),
    ({"body": "zero"}, ("zero_bytes",)),
    ({"body": "text"}, ("not_image",)),
    ({"body": "bomb"}, ("decompression_bomb",)),
    ({"status": 404}, ("http_404",)),
    ({"status": 403}, ("http_403",)),
    ({"status": 429}, ("http_429_exhausted",)),
    ({"status": 503}, ("http_503_exhausted",)),
    ({"status": 500}, ("http_500",)),
    ({"reset": True}, ("reset",)),
    ({"hang": True, "hang_max_s": 30}, ("timeout", "sku_timeout")),
]


@pytest.fixture()
def downloader_resources(stack: LocalStack, resources: dict[str, Any]) -> dict[str, Any]:
    warm_photos(stack)
    return {**resources, "photo_downloader": fast_downloader(stack)}


def run_originals(
    resources: dict[str, Any], instance: dg.DagsterInstance, retry: bool = False
) -> dg.ExecuteInProcessResult:
    return materialize(
        [product_originals], BRAND, resources, instance, RETRY_CONFIG if retry else None
    )


def anonymous_get(url: str) -> requests.Response:
    return requests.get(url, timeout=10)  # no credentials: the bucket must be public-read


def test_each_bad_photo_fails_only_its_sku_and_the_batch_goes_on(
    stack: LocalStack, staging: psycopg.Connection, downloader_resources: dict[str, Any],
    instance: dg.DagsterInstance,
) -> None:
    n_good = 4
    for kind in BAD_BODY_KINDS:  # the emulator builds (and caches) these on first use
        bad_body(kind)
    with small_catalog(stack, BRAND, len(PHOTO_FAULTS) + n_good + 1, photos=2):
        load_catalog(BRAND, downloader_resources, instance)
        rows = list(skus(staging, BRAND).values())
        bad, flaky, good = rows[: len(PHOTO_FAULTS)], rows[len(PHOTO_FAULTS)], rows[-n_good:]
        expected: dict[str, tuple[str, ...]] = {}
        for (rule, reasons), row in zip(PHOTO_FAULTS, bad, strict=True):
            # The second photo fails: the first one of the SKU is fine.
            cdn(stack).add(match=fault_on(row["original_image_urls"][1]), **rule)
            expected[row["external_id"]] = reasons
        cdn(stack).add(match=fault_on(flaky["original_image_urls"][0]), status=429, times=2)

        short_timeouts = fast_downloader(stack, photo_timeout_s=2.0, sku_timeout_s=10.0)
        result = run_originals({**downloader_resources, "photo_downloader": short_timeouts},
                               instance)

        after = skus(staging, BRAND)
        for ext, reasons in expected.items():
            row = after[ext]
            assert row["image_status"] == "error", (ext, reasons, row["error_message"])
            message = row["error_message"]
            reason = message.removeprefix("photo 2: ").split(":")[0]
            assert reason in reasons, (reasons, message)
            assert message.startswith("photo 2: ") or reason == "sku_timeout"
            assert row["image_urls"] in (None, [])
            assert row["claim_token"] is None and row["image_error_stage"] == "download"
        for row in [flaky, *good]:
            done = after[row["external_id"]]
            assert done["image_status"] == "uploaded", done["error_message"]
            assert len(done["image_urls"]) == 2
        # 429 twice, then the photo came: three requests for it.
        assert photo_requests(stack, BRAND).count(flaky["original_image_urls"][0]) == 3

        meta = metadata(result, "product_originals")
        assert meta["claimed"] == len(rows)
        assert meta["uploaded"] == n_good + 1
        assert meta["errors"] == len(PHOTO_FAULTS)
        assert sum(meta["errors_by_reason"].values()) == len(PHOTO_FAULTS)
        assert meta["skus_by_image_status"] == {"error": len(PHOTO_FAULTS), "uploaded": n_good + 1}
        thumb = f"/thumbnails/originals/{BRAND}/"
        assert meta["preview"].startswith("[![") and meta["preview"].count(thumb) == min(
            n_good + 1, 6)  # the brand's latest SKUs, each thumbnail linking its photo
        samples = {r.data["reason"] for r in meta["error_samples"].records}
        assert samples <= set(meta["errors_by_reason"]) and len(samples) == min(
            len(PHOTO_FAULTS), 10)
        [log] = logs(staging, "photo_downloader")
        assert (log["status"], log["records_fetched"], log["records_new"]) == (
            "partial", len(rows), n_good + 1
        )
        assert log["records_errors"] == len(PHOTO_FAULTS)
        assert log["run_id"] == result.run_id


# The emulator's own odd bodies (fault rules), rejected before issue 14, served as they are.
EMULATOR_ODD_KINDS = ("cmyk", "palette", "rgba", "i16")


def test_odd_encodings_are_uploaded_unchanged_and_broken_bodies_fail_with_their_cause(
    stack: LocalStack, staging: psycopg.Connection, downloader_resources: dict[str, Any],
    instance: dg.DagsterInstance,
) -> None:
    """SPEC §6: one SKU per odd encoding (photo 2; CMYK, alpha/palette PNG, 16-bit grey,
    WebP/PNG/GIF/MPO under a .jpg URL, progressive, EXIF-rotated) among good ones: all are
    uploaded with the bytes the CDN served; slivers, tiny, truncated and bomb bodies fail
    with reasons that name the cause."""
    odd, broken, n_good = sorted(ODD_VALID), sorted(BROKEN.items()), 2
    n = len(EMULATOR_ODD_KINDS) + len(odd) + len(broken) + n_good
    with small_catalog(stack, BRAND, n, photos=2), pinned_bodies(stack):
        load_catalog(BRAND, downloader_resources, instance)
        rows = iter(skus(staging, BRAND).values())
        served: dict[str, bytes] = {}  # external_id -> the body of its photo 2
        for kind in EMULATOR_ODD_KINDS:
            row = next(rows)
            cdn(stack).add(match=fault_on(row["original_image_urls"][1]), body=kind)
            served[row["external_id"]] = bad_body(kind)[0]
        for i, kind in enumerate(odd):
            row = next(rows)
            served[row["external_id"]] = body = odd_body(kind, smooth_photo(i))
            pin_body(stack, row["original_image_urls"][1], body)  # as image/jpeg
        failing: dict[str, str] = {}
        for kind, reason in broken:
            row = next(rows)
            pin_body(stack, row["original_image_urls"][1], odd_body(kind, smooth_photo()))
            failing[row["external_id"]] = reason
        good = [row["external_id"] for row in rows]
        assert len(good) == n_good

        result = run_originals(downloader_resources, instance)

        after = skus(staging, BRAND)
        store = object_store(stack)
        s3 = store.get_client()
        for ext, body in served.items():
            row = after[ext]
            assert row["image_status"] == "uploaded", (ext, row["error_message"])
            assert len(row["image_urls"]) == 2
            assert store.get_bytes(s3, original_key(BRAND, ext, 2)) == body  # not re-encoded
        for ext, reason in failing.items():
            row = after[ext]
            assert row["image_status"] == "error" and row["image_error_stage"] == "download"
            assert row["error_message"].startswith(f"photo 2: {reason}: "), row["error_message"]
        for ext in good:
            assert after[ext]["image_status"] == "uploaded", after[ext]["error_message"]
        meta = metadata(result, "product_originals")
        assert meta["uploaded"] == len(served) + n_good
        assert meta["errors_by_reason"] == dict(Counter(failing.values()))


def test_photos_are_public_and_unchanged_photos_are_never_fetched_again(
    stack: LocalStack, staging: psycopg.Connection, downloader_resources: dict[str, Any],
    instance: dg.DagsterInstance,
) -> None:
    with small_catalog(stack, BRAND, 3, photos=3) as items:
        load_catalog(BRAND, downloader_resources, instance)
        first = metadata(run_originals(downloader_resources, instance), "product_originals")
        assert first["uploaded"] == 3 and first["photos_uploaded"] == 9
        base = stack.env["S3_PUBLIC_BASE_URL"]
        store = object_store(stack)
        s3 = store.get_client()
        for ext, row in skus(staging, BRAND).items():
            assert row["image_status"] == "uploaded"
            assert row["image_urls"] == [
                f"{base}/originals/{BRAND}/{ext}/{n}.jpg" for n in (1, 2, 3)
            ]
            for url in row["image_urls"]:
                got = anonymous_get(url)
                assert got.status_code == 200
                with Image.open(io.BytesIO(got.content)) as img:
                    assert img.format == "JPEG" and img.mode == "RGB"
                    w, h = img.size
                # Its preview beside it (issue #18): within 400x400, aspect kept, no upscale.
                thumb = store.get_bytes(s3, thumbnail_key(key_of(base, url)))
                scale = min(1, 400 / w, 400 / h)
                assert Image.open(io.BytesIO(thumb)).size == (round(w * scale), round(h * scale))
        assert len(photo_requests(stack, BRAND)) == 9

        # Nothing pending: nothing fetched.
        cdn(stack).clear(stats=True)
        again = metadata(run_originals(downloader_resources, instance), "product_originals")
        assert again["claimed"] == 0
        assert photo_requests(stack, BRAND) == []

        # Sent back to pending with the same photo URLs: done from the store, no fetch.
        with staging.transaction():  # a deliberate step back (the guard refuses others)
            staging.execute("SET LOCAL unde.allow_backward = 'on'")
            staging.execute("UPDATE raw_products SET image_status = 'pending'")
        same = metadata(run_originals(downloader_resources, instance), "product_originals")
        assert (same["uploaded"], same["photos_skipped_unchanged"]) == (3, 9)
        assert photo_requests(stack, BRAND) == []

        # The catalog changes the third photo of one SKU: only that photo is fetched.
        colour = items[1]["colorsSizesImagesJSON"][0]
        colour["xmedia"][2] = colour["xmedia"][2].replace(".jpg?", "-restyled.jpg?")
        put_catalog(stack, BRAND, items)
        load_catalog(BRAND, downloader_resources, instance)
        changed = [e for e, r in skus(staging, BRAND).items() if r["image_status"] == "pending"]
        assert changed == [f"{items[1]['id']}-{colour['id']}"]
        third = skus(staging, BRAND)[changed[0]]["original_image_urls"][2]
        meta = metadata(run_originals(downloader_resources, instance), "product_originals")
        assert (meta["uploaded"], meta["photos_uploaded"], meta["photos_skipped_unchanged"]) == (
            1, 1, 2
        )
        assert photo_requests(stack, BRAND) == [third]
        row = skus(staging, BRAND)[changed[0]]
        assert row["image_status"] == "uploaded" and row["original_sources"]["3"] == third
        assert len(row["image_urls"]) == 3


def test_retry_pass_waits_an_hour_and_stops_after_three_attempts(
    stack: LocalStack, staging: psycopg.Connection, downloader_resources: dict[str, Any],
    instance: dg.DagsterInstance,
) -> None:
    with small_catalog(stack, BRAND, 3, photos=2):
        load_catalog(BRAND, downloader_resources, instance)
        broken, healed, fine = skus(staging, BRAND).values()
        cdn(stack).add(match=fault_on(broken["original_image_urls"][0]), status=404)
        cdn(stack).add(match=fault_on(healed["original_image_urls"][0]), status=404, times=1)
        run_originals(downloader_resources, instance)

        def state() -> dict[str, tuple[str, int]]:
            return {e: (r["image_status"], r["image_attempts"]) for e, r in skus(
                staging, BRAND).items()}

        def an_hour_passes() -> None:
            staging.execute(
                "UPDATE raw_products SET image_attempted_at = image_attempted_at - "
                "interval '61 minutes'"
            )

        b, h, f = broken["external_id"], healed["external_id"], fine["external_id"]
        assert state() == {b: ("error", 1), h: ("error", 1), f: ("uploaded", 1)}
        assert "http_404" in skus(staging, BRAND)[b]["error_message"]

        # Within the hour: the retry pass takes nothing and asks the CDN nothing.
        cdn(stack).clear(stats=True)
        cdn(stack).add(match=fault_on(broken["original_image_urls"][0]), status=404)
        assert metadata(run_originals(downloader_resources, instance, retry=True),
                        "product_originals")["claimed"] == 0
        assert photo_requests(stack, BRAND) == []
        assert logs(staging, "photo_downloader_retry") == []

        an_hour_passes()
        meta = metadata(run_originals(downloader_resources, instance, retry=True),
                        "product_originals")
        assert (meta["claimed"], meta["uploaded"]) == (2, 1)
        assert state() == {b: ("error", 2), h: ("uploaded", 2), f: ("uploaded", 1)}

        an_hour_passes()
        run_originals(downloader_resources, instance, retry=True)
        assert state()[b] == ("error", 3)

        # Three attempts made: never claimed again, however long we wait.
        an_hour_passes()
        cdn(stack).clear(stats=True)
        assert metadata(run_originals(downloader_resources, instance, retry=True),
                        "product_originals")["claimed"] == 0
        assert state()[b] == ("error", 3)
        assert photo_requests(stack, BRAND) == []

        first_pass = logs(staging, "photo_downloader")
        assert [(r["records_fetched"], r["records_new"]) for r in first_pass] == [(3, 1)]
        retries = logs(staging, "photo_downloader_retry")
        assert [(r["status"], r["records_fetched"], r["records_new"]) for r in retries] == [
            ("partial", 2, 1), ("error", 1, 0)
        ]


def test_object_store_failure_is_a_per_sku_error_and_the_run_goes_on(
    stack: LocalStack, staging: psycopg.Connection, downloader_resources: dict[str, Any],
    instance: dg.DagsterInstance,
) -> None:
    broken_store = object_store(stack, bucket="unde-no-such-bucket")
    with small_catalog(stack, BRAND, 3, photos=2):
        load_catalog(BRAND, downloader_resources, instance)
        cdn(stack).add(match=fault_on(next(iter(skus(staging, BRAND).values()))[
            "original_image_urls"][0]), status=404)
        result = run_originals({**downloader_resources, "object_store": broken_store}, instance)
        rows = list(skus(staging, BRAND).values())
        assert [r["image_status"] for r in rows] == ["error"] * 3
        assert "http_404" in rows[0]["error_message"]
        for row in rows[1:]:
            assert row["error_message"].startswith("store_error: ")
            assert "NoSuchBucket" in row["error_message"]
            assert row["image_urls"] in (None, []) and row["claim_token"] is None
        assert metadata(result, "product_originals")["errors_by_reason"] == {
            "http_404": 1, "store_error": 2
        }
        # The store is back an hour later: the retry pass finishes the work.
        staging.execute(
            "UPDATE raw_products SET image_attempted_at = NOW() - interval '2 hours'"
        )
        cdn(stack).clear()
        run_originals(downloader_resources, instance, retry=True)
        assert [r["image_status"] for r in skus(staging, BRAND).values()] == ["uploaded"] * 3


def test_two_runs_at_once_never_process_one_sku_twice(
    stack: LocalStack, staging: psycopg.Connection, downloader_resources: dict[str, Any],
    instance: dg.DagsterInstance,
) -> None:
    # Dagster's in-process executor is not thread-safe (two `materialize` calls in threads
    # deadlock in its logging), so the other run is played at the claim level: workers
    # racing for batches from their own connections, then a live run holding SKUs while
    # `product_originals` runs.
    n = 12
    rules = ClaimRules(batch_size=2, lease_s=600, max_attempts=3, retry_after_s=3600)
    with small_catalog(stack, BRAND, n, photos=2):
        load_catalog(BRAND, downloader_resources, instance)
        claims: dict[str, list[int]] = {"a": [], "b": [], "c": []}

        def worker(token: str) -> None:
            with psycopg.connect(stack.env["STAGING_DB_URL"], autocommit=True) as conn:
                while rows := claim_batch(conn, DOWNLOAD_QUEUE, brand=BRAND, token=token,
                                          rules=rules, retry=False):
                    claims[token].extend(r["id"] for r in rows)

        threads = [threading.Thread(target=worker, args=(t,)) for t in claims]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        every = [i for ids in claims.values() for i in ids]
        assert len(every) == len(set(every)) == n
        owners = staging.execute("SELECT claim_token, image_attempts FROM raw_products "
                                 "WHERE brand = %s ORDER BY id", (BRAND,)).fetchall()
        assert {a for _, a in owners} == {1}

        # A run that is alive (STARTED in the instance) holds 4 SKUs; ours must leave them.
        live = DagsterRun(job_name="__ephemeral_asset_job__", status=DagsterRunStatus.STARTED)
        instance.add_run(live)
        staging.execute("UPDATE raw_products SET claim_token = NULL, claimed_until = NULL, "
                        "image_attempts = 0")
        held = claim_batch(staging, DOWNLOAD_QUEUE, brand=BRAND, token=live.run_id,
                           rules=ClaimRules(4, 600, 3, 3600), retry=False)
        result = run_originals(downloader_resources, instance)
        meta = metadata(result, "product_originals")
        assert (meta["claimed"], meta["uploaded"]) == (n - 4, n - 4)
        rows = skus(staging, BRAND)
        held_ids = {r["id"] for r in held}
        for row in rows.values():
            if row["id"] in held_ids:
                assert row["image_status"] == "pending" and row["claim_token"] == live.run_id
                assert row["image_attempts"] == 1
            else:
                assert row["image_status"] == "uploaded" and row["image_attempts"] == 1
        fetched = Counter(photo_requests(stack, BRAND))
        assert len(fetched) == 2 * (n - 4) and set(fetched.values()) == {1}
        held_urls = {u for r in held for u in r["original_image_urls"]}
        assert not held_urls & set(fetched)


def test_rerun_after_a_killed_run_finishes_its_work_without_duplicates(
    stack: LocalStack, staging: psycopg.Connection, downloader_resources: dict[str, Any],
    instance: dg.DagsterInstance,
) -> None:
    with small_catalog(stack, BRAND, 4, photos=2):
        load_catalog(BRAND, downloader_resources, instance)
        # A run that died mid-batch leaves its SKUs claimed under a long lease.
        rules = ClaimRules(batch_size=3, lease_s=1800, max_attempts=3, retry_after_s=3600)
        dead = claim_batch(staging, DOWNLOAD_QUEUE, brand=BRAND, token="dead-run-0001",
                           rules=rules, retry=False)
        assert len(dead) == 3
        result = run_originals(downloader_resources, instance)
        meta = metadata(result, "product_originals")
        # The dead run's claims were released at once (its lease had 30 min to go).
        assert (meta["claimed"], meta["uploaded"]) == (4, 4)
        rows = skus(staging, BRAND).values()
        assert all(r["image_status"] == "uploaded" and r["claim_token"] is None for r in rows)
        assert all(len(r["image_urls"]) == 2 for r in rows)
        fetched = Counter(photo_requests(stack, BRAND))
        assert len(fetched) == 8 and set(fetched.values()) == {1}
        assert [r["run_id"] for r in logs(staging, "photo_downloader")] == [result.run_id]
