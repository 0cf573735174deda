"""Shared plumbing of the image-stage integration tests (catalogs, runs, DB and CDN reads)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import psycopg
import requests
from PIL import Image
from psycopg.rows import dict_row

from unde_dagster.defs.catalog.assets import raw_products
from unde_dagster.resources.check_thresholds import CheckThresholds
from unde_dagster.resources.downloader import PhotoDownloader
from unde_dagster.resources.object_store import ObjectStore
from unde_local.emulators.faults import FaultInjector
from unde_local.stack import LocalStack

RETRY_CONFIG = {"ops": {"product_originals": {"config": {"retry_errors": True}}}}


@contextmanager
def small_catalog(
    stack: LocalStack, brand: str, n_skus: int, photos: int = 2
) -> Iterator[list[dict[str, Any]]]:
    """Trim the brand's emulated catalog to `n_skus` one-colour items of `photos` photos each
    (restored after); yields the items as served."""
    assert stack.emulators is not None
    url = f"{stack.emulators.base_url('apify')}/_emulator/apify/catalog/{brand}"
    original = requests.get(url, timeout=10).json()
    items = []
    for item in original:
        colour = item["colorsSizesImagesJSON"][0]
        if len(colour["xmedia"]) < photos:
            continue
        items.append({**item, "colorsSizesImagesJSON": [
            {**colour, "xmedia": colour["xmedia"][:photos]}
        ]})
        if len(items) == n_skus:
            break
    assert len(items) == n_skus
    put_catalog(stack, brand, items)
    try:
        yield items
    finally:
        requests.put(url, json=original, timeout=10).raise_for_status()


def put_catalog(stack: LocalStack, brand: str, items: list[dict[str, Any]]) -> None:
    assert stack.emulators is not None
    url = f"{stack.emulators.base_url('apify')}/_emulator/apify/catalog/{brand}"
    requests.put(url, json=items, timeout=10).raise_for_status()


def fast_downloader(stack: LocalStack, **overrides: Any) -> PhotoDownloader:
    """The real downloader with test-sized delays, backoffs and timeouts."""
    settings: dict[str, Any] = {
        "proxy_url": stack.env["PROXY_URL"],
        "delay_min_s": 0.0,
        "delay_max_s": 0.01,
        "backoff_s": "0.05,0.1,0.2",
        "photo_timeout_s": 10.0,
        "sku_timeout_s": 30.0,
        **overrides,
    }
    return PhotoDownloader(**settings)


def object_store(stack: LocalStack, bucket: str | None = None) -> ObjectStore:
    """The production object-store resource with concrete values (usable outside a run)."""
    env = stack.env
    return ObjectStore(
        endpoint_url=env["S3_ENDPOINT"], aws_access_key_id=env["S3_ACCESS_KEY"],
        aws_secret_access_key=env["S3_SECRET_KEY"], region_name="us-east-1",
        bucket=bucket or env["S3_BUCKET"], public_base_url=env["S3_PUBLIC_BASE_URL"],
    )


def warm_photos(stack: LocalStack) -> None:
    """Have the CDN emulator draw its photo pool now, not during a timed download."""
    assert stack.emulators is not None
    stack.emulators.photo_pool.warm()


def cdn(stack: LocalStack) -> FaultInjector:
    assert stack.emulators is not None
    return stack.emulators.faults["cdn_proxy"]


def photo_requests(stack: LocalStack, brand: str) -> list[str]:
    """Absolute photo URLs the proxy was asked for (one entry per request)."""
    return [r["target"] for r in cdn(stack).requests(f"/{brand}/photos/")]


def fault_on(url: str) -> str:
    """A fault-rule regex matching exactly this photo URL."""
    return "^" + re.escape(url) + "$"


# The stage tests feed deliberately bad SKUs, often most of a batch: the error-rate gate (a
# step fails when over 20% of its SKUs do) is off for them and has its own test
# (test_stage_health.py), which passes `gate=True`.
NO_ERROR_RATE_GATE = CheckThresholds(max_batch_error_rate=1.0)


def materialize(
    assets: list[Any],
    brand: str,
    resources: dict[str, Any],
    instance: dg.DagsterInstance,
    run_config: dict[str, Any] | None = None,
    gate: bool = False,
) -> dg.ExecuteInProcessResult:
    if not gate:
        resources = {**resources, "check_thresholds": NO_ERROR_RATE_GATE}
    result = dg.materialize(
        assets, partition_key=brand, resources=resources, instance=instance,
        run_config=run_config, raise_on_error=False,
    )
    if not result.success:
        failures = [
            e.event_specific_data.error.to_string()  # type: ignore[union-attr]
            for e in result.all_events if e.is_step_failure
        ]
        raise AssertionError(f"run failed: {failures}")
    return result


def load_catalog(
    brand: str, resources: dict[str, Any], instance: dg.DagsterInstance
) -> None:
    materialize([raw_products], brand, resources, instance)


def metadata(result: dg.ExecuteInProcessResult, node: str) -> dict[str, Any]:
    """The stage's materialization metadata; for a run that claimed nothing (which records
    no materialization, only an observation) the observation's."""
    mats = result.asset_materializations_for_node(node)
    observed = [e.asset_observation_data.asset_observation for e in result.all_events
                if e.event_type_value == "ASSET_OBSERVATION"]
    assert len(mats) + len(observed) == 1, (mats, observed)
    event = mats[0] if mats else observed[0]
    values = {k: v.value for k, v in event.metadata.items()}
    assert bool(mats) == (values["claimed"] > 0), values
    return values


def skus(conn: psycopg.Connection, brand: str) -> dict[str, dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT id, external_id, image_status, error_message, image_error_stage, "
            "image_attempts, collage_attempts, image_urls, original_image_urls, "
            "original_sources, collage_url, claim_token, claimed_until "
            "FROM raw_products WHERE brand = %s ORDER BY id",
            (brand,),
        )
        return {r["external_id"]: r for r in cur.fetchall()}


def logs(conn: psycopg.Connection, scraper_name: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT run_id, status, records_fetched, records_new, records_errors, metadata "
            "FROM scraper_logs WHERE scraper_name = %s ORDER BY id",
            (scraper_name,),
        )
        return cur.fetchall()


def pin_body(stack: LocalStack, url: str, body: bytes, content_type: str = "image/jpeg") -> None:
    """Have the CDN emulator serve exactly `body` for this photo URL (its path, any query),
    under the Content-Type a sloppy CDN would claim."""
    assert stack.emulators is not None
    route = f"{stack.emulators.base_url('cdn_proxy')}/_emulator/cdn/bodies{urlsplit(url).path}"
    requests.put(route, data=body, headers={"Content-Type": content_type},
                 timeout=10).raise_for_status()


@contextmanager
def pinned_bodies(stack: LocalStack) -> Iterator[None]:
    """Forget every pinned body afterwards (the session's stack is shared)."""
    assert stack.emulators is not None
    try:
        yield
    finally:
        requests.delete(f"{stack.emulators.base_url('cdn_proxy')}/_emulator/cdn/bodies",
                        timeout=10).raise_for_status()


def smooth_photo(seed: int = 0) -> Image.Image:
    """A 400x600 photo-like RGB picture that compresses well (bodies stay small)."""
    img = Image.linear_gradient("L").resize((400, 600)).convert("RGB")
    img.paste((40 + seed * 9 % 200, 90, 200), (100, 150, 300, 450))
    return img
