"""Apify item → colour SKUs: shape, prices, photos, and per-item rejection of bad input."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from unde_dagster.catalog.items import DatasetParser, parse_item, parse_price

SOURCE = "apify_zara"


def make_item(**overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": 512913640,
        "reference": "02086797-V2026",
        "brand": "Zara",
        "name": "ZW COLLECTION ASYMMETRIC BLAZER",
        "description": "Blazer with a notched lapel collar.",
        "price": 69900,
        "category": "woman-outerwear-padded",
        "colors": "Black, Ecru",
        "sizes": "XS, S, M, L",
        "detailedComposition": {"parts": [{"description": "OUTER SHELL"}]},
        "colorsSizesImagesJSON": [
            {
                "id": "800",
                "name": "Black",
                "productId": 512918856,
                "xmedia": [
                    f"https://static.zara.net/photos/02086797800-{s}.jpg?w={{width}}"
                    for s in ("p", "e1", "e2", "e3", "e4", "e5", "e6")
                ],
                "sizes": [
                    {"name": "XS", "sku": 512913641, "availability": "in_stock", "price": 69900},
                    {"name": "S", "sku": 512913642, "availability": "out_of_stock"},
                ],
            },
            {
                "id": "712",
                "name": "Ecru",
                "productId": 512918857,
                "xmedia": ["https://static.zara.net/photos/02086797712-p.jpg?w={width}"],
                "sizes": [{"name": "M", "sku": 512913650, "availability": "in_stock"}],
            },
        ],
    }
    item.update(overrides)
    return item


def test_one_row_per_colour_with_its_own_photos_and_sizes() -> None:
    parsed = parse_item(make_item(), "zara", SOURCE)
    assert parsed.rejections == []
    black, ecru = parsed.rows
    assert (black.external_id, ecru.external_id) == ("512913640-800", "512913640-712")
    assert (black.colour, ecru.colour) == ("Black", "Ecru")
    assert [s["name"] for s in black.sizes] == ["XS", "S"]
    assert [s["name"] for s in ecru.sizes] == ["M"]
    assert ecru.original_image_urls == [
        "https://static.zara.net/photos/02086797712-p.jpg?w=1920"
    ]
    assert black.raw_data["colorsSizesImagesJSON"][0]["id"] == "800"
    assert len(black.raw_data["colorsSizesImagesJSON"]) == 1


def test_price_in_fils_becomes_aed() -> None:
    row = parse_item(make_item(price=69950), "zara", SOURCE).rows[0]
    assert row.price == Decimal("699.50")
    assert row.currency == "AED"


def test_width_placeholder_is_1920_and_first_five_photos_kept() -> None:
    row = parse_item(make_item(), "zara", SOURCE).rows[0]
    assert len(row.original_image_urls) == 5
    assert all(u.endswith("?w=1920") and "{width}" not in u for u in row.original_image_urls)
    assert row.original_image_urls[0].endswith("-p.jpg?w=1920")


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), (0, Decimal("0.00")), ("12345", Decimal("123.45")), (100.0, Decimal("1.00"))],
)
def test_parse_price_accepts(value: Any, expected: Decimal | None) -> None:
    assert parse_price(value) == expected


@pytest.mark.parametrize("value", [-100, "abc", True, 10**12, 12.5, "NaN", [1], {"a": 1}])
def test_parse_price_rejects_odd_prices(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_price(value)


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ("not a dict", "not_an_object"),
        (make_item(id=None), "bad_id"),
        (make_item(id="../../etc"), "bad_id"),
        (make_item(id="a/b"), "bad_id"),
        (make_item(name="  "), "missing_name"),
        (make_item(price="free"), "bad_price"),
        (make_item(price=-1), "bad_price"),
        (make_item(colorsSizesImagesJSON=[]), "no_colours"),
        (make_item(colorsSizesImagesJSON=None), "no_colours"),
    ],
)
def test_malformed_items_are_rejected_with_a_reason(item: Any, reason: str) -> None:
    parsed = parse_item(item, "zara", SOURCE)
    assert parsed.rows == []
    assert [r.reason for r in parsed.rejections] == [reason]


def test_a_bad_colour_is_rejected_alone() -> None:
    item = make_item()
    item["colorsSizesImagesJSON"][1]["xmedia"] = ["not a url", 42, None]
    item["colorsSizesImagesJSON"].append({"id": "..", "name": "Hostile", "xmedia": ["https://x/y"]})
    item["colorsSizesImagesJSON"].append("junk")
    parsed = parse_item(item, "zara", SOURCE)
    assert [r.external_id for r in parsed.rows] == ["512913640-800"]
    assert sorted(r.reason for r in parsed.rejections) == [
        "bad_colour", "bad_colour_id", "no_photos",
    ]


def test_duplicate_items_in_a_dataset_keep_the_first() -> None:
    parser = DatasetParser("zara", SOURCE)
    first = parser.parse([make_item()])
    again = parser.parse([make_item(name="Renamed")])
    assert len(first.rows) == 2
    assert again.rows == []
    assert again.reasons() == {"duplicate_sku": 2}


def test_content_hash_follows_content_not_order_of_keys() -> None:
    a = parse_item(make_item(), "zara", SOURCE).rows[0]
    reordered = dict(reversed(list(make_item().items())))
    b = parse_item(reordered, "zara", SOURCE).rows[0]
    assert a.content_hash == b.content_hash
    changed = make_item()
    changed["colorsSizesImagesJSON"][0]["xmedia"] = list(
        reversed(changed["colorsSizesImagesJSON"][0]["xmedia"])
    )
    c = parse_item(changed, "zara", SOURCE).rows[0]
    assert c.content_hash != a.content_hash


def test_input_item_is_not_mutated() -> None:
    item = make_item()
    before = copy.deepcopy(item)
    parse_item(item, "zara", SOURCE)
    assert item == before
