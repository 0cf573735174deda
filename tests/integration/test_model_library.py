"""`model_library` with the real fal-client against the fal emulator, real S3 and PostgreSQL."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import dagster as dg
import psycopg
import pytest
import requests
from PIL import Image

from unde_dagster.defs.model_library.assets import model_library
from unde_dagster.model_library.templates import all_templates
from unde_dagster.resources.fal import FalResource
from unde_local.stack import LocalStack

TEMPLATES = list(all_templates())[::97][:3]  # three different templates


@pytest.fixture()
def fal_control(stack: LocalStack, staging: psycopg.Connection) -> Iterator[str]:
    assert stack.emulators is not None
    base = stack.emulators.base_url("fal")
    yield base
    requests.put(f"{base}/_emulator/fal/config", json={"processing_s": 0.3}, timeout=10)


@pytest.fixture()
def production(stack: LocalStack, staging: psycopg.Connection) -> Iterator[psycopg.Connection]:
    with psycopg.connect(stack.env["PRODUCTION_DB_URL"], autocommit=True) as conn:
        yield conn


def generate(template_id: str, resources: dict[str, Any],
             instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return dg.materialize([model_library], partition_key=template_id, resources=resources,
                          instance=instance, raise_on_error=False)


def fetch(url: str) -> bytes:
    response = requests.get(url, timeout=10)
    response.raise_for_status()
    return response.content


def test_three_templates_then_a_second_version(
    stack: LocalStack, fal_control: str, production: psycopg.Connection,
    staging: psycopg.Connection, resources: dict, instance: dg.DagsterInstance
) -> None:
    assert stack.emulators is not None
    faults = stack.emulators.faults["fal"]
    # fal-client retries these itself (EXTERNAL_APIS §3): a 429 and an nginx 503 at ingress
    faults.add(match="^/fal-ai/flux/dev$", method="POST", status=429, times=1,
               json={"detail": "rate limited"})
    faults.add(match="/status", status=503, text="<html><center>nginx</center></html>", times=1)
    for template_id in TEMPLATES:
        assert generate(template_id, resources, instance).success
    assert [r["status"] for r in faults.requests("/fal-ai/flux/dev")][:1] == [429]
    assert generate(TEMPLATES[0], resources, instance).success
    rows = production.execute(
        "SELECT template_id, version, image_url, thumbnail_url, gender, pose, prompt, "
        "fal_request_id, processing_time_ms, metadata FROM model_library "
        "ORDER BY template_id, version").fetchall()
    assert sorted((r[0], r[1]) for r in rows) == sorted(
        [(t, 1) for t in TEMPLATES] + [(TEMPLATES[0], 2)])
    fal_ids = {r["request_id"] for r in requests.get(
        f"{fal_control}/_emulator/fal/requests", timeout=10).json()}
    for tid, version, image_url, thumb_url, gender, pose, prompt, rid, ms, meta in rows:
        t = all_templates()[tid]
        assert image_url.endswith(f"/models/{tid}/v{version}.jpg")
        assert thumb_url.endswith(f"/models/{tid}/v{version}_thumb.jpg")
        assert (gender, pose, prompt) == (t.gender, t.pose, t.prompt)
        assert prompt.startswith(f"Fashion model, {t.gender}, {t.age_range} years old")
        assert rid in fal_ids and ms > 0
        assert meta["seed"] is not None and meta["image_size"] == "portrait_4_3"
        image = Image.open(io.BytesIO(fetch(image_url)))  # public-read objects
        thumb = Image.open(io.BytesIO(fetch(thumb_url)))
        assert image.format == thumb.format == "JPEG"
        assert image.size == (768, 1024) and thumb.size[0] <= 384 and thumb.size[1] <= 512
    logs = staging.execute("SELECT status, records_new FROM scraper_logs "
                           "WHERE scraper_name = 'model_generator'").fetchall()
    assert logs == [("success", 1)] * 4


def test_fal_errors_fail_the_template_and_write_nothing(
    stack: LocalStack, fal_control: str, production: psycopg.Connection,
    staging: psycopg.Connection, resources: dict, instance: dg.DagsterInstance
) -> None:
    assert stack.emulators is not None
    requests.post(f"{fal_control}/_emulator/fal/fail-next", timeout=10, json={
        "status": 500, "detail": "CUDA out of memory", "error_type": "internal_error"})
    failed = generate(TEMPLATES[0], resources, instance)
    assert not failed.success
    stack.emulators.faults["fal"].add(match="^/fal-ai/flux/dev$", method="POST", status=422,
                                      json={"detail": [{"msg": "bad input"}]}, times=1)
    rejected = generate(TEMPLATES[1], resources, instance)
    assert not rejected.success
    assert production.execute("SELECT count(*) FROM model_library").fetchone() == (0,)
    logs = staging.execute("SELECT status, error_message, metadata->>'kind' FROM scraper_logs "
                           "WHERE scraper_name = 'model_generator' ORDER BY id").fetchall()
    assert [r[0] for r in logs] == ["error", "error"]
    assert "CUDA out of memory" in logs[0][1] and logs[0][2] == "internal_error"
    assert logs[1][2] == "http_422"
    assert stack.env["FAL_KEY"] not in str(logs)


def test_a_result_slower_than_the_limit_times_out_and_is_cancelled(
    stack: LocalStack, fal_control: str, production: psycopg.Connection,
    staging: psycopg.Connection, resources: dict, instance: dg.DagsterInstance
) -> None:
    requests.put(f"{fal_control}/_emulator/fal/config", json={"processing_s": 30}, timeout=10)
    impatient = {**resources, "fal": FalResource(
        queue_url=stack.env["FAL_QUEUE_URL"], key=stack.env["FAL_KEY"], timeout_s=1.5)}
    result = generate(TEMPLATES[2], impatient, instance)
    assert not result.success
    kinds = staging.execute("SELECT metadata->>'kind' FROM scraper_logs "
                            "WHERE scraper_name = 'model_generator'").fetchall()
    assert kinds == [("timeout",)]
    seen = requests.get(f"{fal_control}/_emulator/fal/requests", timeout=10).json()
    assert [r["cancelled"] for r in seen if r["prompt"] == all_templates()[TEMPLATES[2]].prompt]
    assert any(r["cancelled"] for r in seen)
    assert production.execute("SELECT count(*) FROM model_library").fetchone() == (0,)
