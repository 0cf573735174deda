"""The brand table and the S3 key builders (hostile ids must never escape their prefix)."""

from __future__ import annotations

import pytest

from unde_dagster.brands import load_brands, parse_brands
from unde_dagster.defs.partitions import brand_partitions
from unde_dagster.storage import collage_key, original_key


def test_six_inditex_brands_with_seed_hours() -> None:
    brands = load_brands()
    assert list(brands) == [
        "zara", "bershka", "pullandbear", "stradivarius", "massimodutti", "oysho",
    ]
    assert [b.catalog_hour for b in brands.values()] == [2, 3, 4, 5, 6, 7]
    assert brand_partitions.get_partition_keys() == list(brands)
    assert brands["zara"].source == "apify_zara"


@pytest.mark.parametrize(
    "text",
    [
        "brands: {}",
        "brands: {Zara: {display_name: Z, apify_task_id: t, catalog_hour: 2}}",
        "brands: {zara: {display_name: Z, apify_task_id: t, catalog_hour: 24}}",
        "brands: {zara: {display_name: Z, apify_task_id: t, catalog_hour: 2, index_scope: x}}",
    ],
)
def test_bad_brand_tables_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_brands(text)


def test_keys_follow_the_bucket_layout() -> None:
    assert original_key("zara", "512913640-800", 1) == "originals/zara/512913640-800/1.jpg"
    assert collage_key("zara", "512913640-800") == "collages/zara/512913640-800.jpg"


@pytest.mark.parametrize("hostile", ["../x", "a/b", "..", "", "a b", "x\n", "%2e%2e", "/abs"])
def test_hostile_ids_are_refused_in_keys(hostile: str) -> None:
    with pytest.raises(ValueError):
        original_key("zara", hostile, 1)
    with pytest.raises(ValueError):
        collage_key("zara", hostile)


def test_photo_numbers_start_at_one() -> None:
    with pytest.raises(ValueError):
        original_key("zara", "1-2", 0)
