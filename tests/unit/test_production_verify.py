"""Which staging SKUs may go to production, and the reason recorded when not."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from unde_dagster.production.verify import StagingSku, skip_reason

GOOD = StagingSku(
    id=1, source="apify_zara", external_id="500-800", brand="zara", name="BLAZER",
    description=None, price=Decimal("199.00"), currency="AED", category="woman-blazers",
    colour="Black", sizes=[{"name": "S"}], composition=None,
    image_urls=["https://unde-images.hel1.example.com/originals/zara/500-800/1.jpg"],
    collage_url="https://unde-images.hel1.example.com/collages/zara/500-800.jpg",
    updated_at=None, last_seen_run_id="r1",
)


def test_a_complete_sku_passes() -> None:
    assert skip_reason(GOOD) is None
    assert skip_reason(replace(GOOD, sizes=None)) is None


@pytest.mark.parametrize(("change", "reason"), [
    ({"name": "  "}, "missing_name"),
    ({"price": None}, "missing_price"),
    ({"price": Decimal("0")}, "non_positive_price"),
    ({"currency": ""}, "missing_currency"),
    ({"collage_url": None}, "missing_collage_url"),
    ({"collage_url": "collages/zara/500-800.jpg"}, "missing_collage_url"),
    ({"image_urls": []}, "no_images"),
    ({"image_urls": None}, "no_images"),
    ({"image_urls": ["ftp://x/y.jpg"]}, "bad_image_url"),
    ({"sizes": {"S": 1}}, "bad_sizes"),
])
def test_incomplete_skus_are_skipped_with_a_reason(change: dict, reason: str) -> None:
    assert skip_reason(replace(GOOD, **change)) == reason
