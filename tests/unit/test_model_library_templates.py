"""Templates, prompt, image handling and the fal client's queue routing (no network)."""

from __future__ import annotations

import io
import re

import httpx
import pytest
from fal_client import client as fal_module
from PIL import Image

from unde_dagster.model_library.generate import (
    GenerationFailed,
    model_keys,
    to_jpeg_and_thumbnail,
)
from unde_dagster.model_library.templates import all_templates, template
from unde_dagster.resources.fal import FalResource, RoutedSyncClient
from unde_local.emulators.fal import render_model_jpeg


def test_every_combination_of_the_seed_lists_is_a_template() -> None:
    templates = all_templates()
    assert len(templates) == 2 * 3 * 4 * 4 * 3
    assert all(re.fullmatch(r"[a-z0-9_-]+", tid) for tid in templates)
    t = template("female_20-30_average_front-standing_professional")
    assert t.pose == "front standing" and t.body_type == "average"
    assert t.prompt == (
        "Fashion model, female, 20-30 years old, body type: average, pose: front standing, "
        "style: professional photo, full body shot, neutral white/gray background, "
        "professional studio lighting, high quality, 8k, detailed, clean composition")
    with pytest.raises(KeyError):
        template("female_99-100_average_front-standing_professional")


def test_object_keys_per_version() -> None:
    assert model_keys("male_40-50_plus-size_sitting_casual", 3) == (
        "models/male_40-50_plus-size_sitting_casual/v3.jpg",
        "models/male_40-50_plus-size_sitting_casual/v3_thumb.jpg")


def test_jpeg_is_kept_byte_for_byte_and_thumbnailed() -> None:
    body = render_model_jpeg(768, 1024, seed=1)
    image, thumb, width, height = to_jpeg_and_thumbnail(body)
    assert image == body and (width, height) == (768, 1024)
    with Image.open(io.BytesIO(thumb)) as small:
        assert small.format == "JPEG" and small.size == (384, 512)


def test_png_is_reencoded_and_garbage_refused() -> None:
    png = io.BytesIO()
    Image.new("RGBA", (100, 80), (10, 20, 30, 128)).save(png, "PNG")
    image, _, _, _ = to_jpeg_and_thumbnail(png.getvalue())
    assert Image.open(io.BytesIO(image)).format == "JPEG"
    with pytest.raises(GenerationFailed) as err:
        to_jpeg_and_thumbnail(b"<html>not an image</html>")
    assert err.value.kind == "bad_image"
    with pytest.raises(GenerationFailed):
        to_jpeg_and_thumbnail(render_model_jpeg(64, 64, seed=2)[:200])  # truncated


def test_routed_client_sends_submit_to_its_queue_url_only() -> None:
    default = fal_module.QUEUE_URL_FORMAT
    client = RoutedSyncClient(key="k", queue_url="http://127.0.0.1:9999/")
    submit = httpx.Request("POST", default + "fal-ai/flux/dev")
    client._route(submit)
    assert str(submit.url) == "http://127.0.0.1:9999/fal-ai/flux/dev"
    assert submit.headers["Host"] == "127.0.0.1:9999"
    status = httpx.Request("GET", "http://elsewhere:1/fal-ai/flux/requests/x/status")
    client._route(status)
    assert str(status.url) == "http://elsewhere:1/fal-ai/flux/requests/x/status"
    assert default == fal_module.QUEUE_URL_FORMAT  # nothing global was patched
    assert client._client.headers["Authorization"] == "Key k"


def test_resource_uses_the_plain_client_for_the_real_queue() -> None:
    assert type(FalResource(key="k").client()).__name__ == "SyncClient"
    routed = FalResource(key="k", queue_url="http://localhost:1").client()
    assert isinstance(routed, RoutedSyncClient)
