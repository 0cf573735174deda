"""Apify item → colour SKUs: shape, prices, photos, per-item rejection, hostile text."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

import pytest

from unde_dagster.catalog.clean import MAX_DEPTH, REPLACEMENT
from unde_dagster.catalog.items import DatasetParser, parse_item, parse_price
from unde_dagster.catalog.rejections import fingerprint

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


def storable(value: Any) -> bool:
    """What PostgreSQL's text and jsonb accept: UTF-8 encodable, no NUL, no NaN/inf."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    text.encode("utf-8")  # raises on a lone surrogate
    return "\x00" not in text and "\\u0000" not in text


def hostile_item() -> dict[str, Any]:
    item = make_item(
        name="ZW\x00 BLAZER",
        description="Notched\x00 lapel \ud800 collar",
        category="woman\x00-outerwear",
        detailedComposition={"parts": [{"description": "OUTER\x00 SHELL \udc01"}]},
        extra={"de\x00ep": [{"k": "v\x00"}], "n": float("nan")},
    )
    black = item["colorsSizesImagesJSON"][0]
    black["name"] = "Bl\x00ack"
    black["sizes"][0]["name"] = "X\x00S"
    return item


def test_hostile_text_is_cleaned_and_the_item_is_kept() -> None:
    parsed = parse_item(hostile_item(), "zara", SOURCE)
    assert parsed.rejections == []
    assert [r.external_id for r in parsed.rows] == ["512913640-800", "512913640-712"]
    black = parsed.rows[0]
    assert black.name == "ZW BLAZER"
    assert black.description == f"Notched lapel {REPLACEMENT} collar"
    assert black.category == "woman-outerwear"
    assert black.colour == "Black"
    assert black.sizes[0]["name"] == "XS"
    assert black.composition is not None and "\x00" not in black.composition
    assert black.raw_data["extra"] == {"deep": [{"k": "v"}], "n": None}
    for row in parsed.rows:
        assert storable([row.name, row.description, row.category, row.colour, row.sizes,
                         row.composition, row.original_image_urls, row.raw_data])
    [cleaned] = parsed.cleaned
    assert cleaned.item_id == "512913640"
    assert cleaned.cleaning.nul_bytes >= 7 and cleaned.cleaning.surrogates == 2


def test_cleaned_item_hashes_like_the_clean_one() -> None:
    clean = make_item(name="ZW BLAZER")
    dirty = make_item(name="ZW\x00 BLAZER")
    a = parse_item(clean, "zara", SOURCE).rows[0]
    b = parse_item(dirty, "zara", SOURCE).rows[0]
    assert a.content_hash == b.content_hash


@pytest.mark.parametrize("bad_id", ["5129\x0013640", "\ud800", "512913640\x00"])
def test_nul_or_surrogate_in_an_id_rejects_instead_of_changing_the_id(bad_id: str) -> None:
    parsed = parse_item(make_item(id=bad_id), "zara", SOURCE)
    assert parsed.rows == []
    [rejection] = parsed.rejections
    assert rejection.reason == "bad_id"
    assert storable(rejection.detail)


def test_nul_in_a_colour_id_rejects_that_colour_only() -> None:
    item = make_item()
    item["colorsSizesImagesJSON"][1]["id"] = "71\x002"
    parsed = parse_item(item, "zara", SOURCE)
    assert [r.external_id for r in parsed.rows] == ["512913640-800"]
    assert [r.reason for r in parsed.rejections] == ["bad_colour_id"]
    assert storable(parsed.rejections[0].detail)


def test_dropped_photo_urls_are_reported_with_item_and_colour() -> None:
    item = make_item()
    ecru = item["colorsSizesImagesJSON"][1]
    ecru["xmedia"] = [
        "https://static.zara.net/photos/a.jpg?w={width}",
        "https://static.zara.net/photos/b\x00.jpg",
        "https://static.zara.net/photos/c\ud800.jpg",
        "javascript:alert(1)",
        42,
    ]
    parsed = parse_item(item, "zara", SOURCE)
    assert parsed.rows[1].original_image_urls == ["https://static.zara.net/photos/a.jpg?w=1920"]
    dropped = parsed.dropped_photos
    assert [(d.reason, d.item_id, d.colour_id) for d in dropped] == [
        ("bad_photo_url", "512913640", "712")
    ] * 4
    urls = [d.photo_url for d in dropped]
    assert urls[:3] == [
        "https://static.zara.net/photos/b.jpg",
        f"https://static.zara.net/photos/c{REPLACEMENT}.jpg",
        "javascript:alert(1)",
    ]
    assert urls[3] == "42" and "not a string" in dropped[3].detail
    assert storable([d.photo_url for d in dropped])


def test_a_colour_with_only_bad_urls_is_rejected_and_its_urls_reported() -> None:
    item = make_item()
    item["colorsSizesImagesJSON"][1]["xmedia"] = ["ftp://x/y"]
    parsed = parse_item(item, "zara", SOURCE)
    assert [(r.reason, r.colour_id) for r in parsed.rejections] == [("no_photos", "712")]
    assert [d.photo_url for d in parsed.dropped_photos] == ["ftp://x/y"]


def test_a_too_deep_item_is_rejected_alone() -> None:
    deep: Any = "leaf"
    for _ in range(MAX_DEPTH + 5):
        deep = {"d": deep}
    parser = DatasetParser("zara", SOURCE)
    parsed = parser.parse([make_item(extra=deep), make_item(id=7)])
    assert [r.reason for r in parsed.rejections] == ["too_deep"]
    assert parsed.rejections[0].item_id == "512913640"
    assert {r.item_id for r in parsed.rows} == {"7"}


def test_rejection_fingerprint_is_stable_and_tells_rejections_apart() -> None:
    item = make_item()
    item["colorsSizesImagesJSON"][1]["xmedia"] = ["bad one", "bad two"]
    parsed = parse_item(item, "zara", SOURCE)
    again = parse_item(copy.deepcopy(item), "zara", SOURCE)
    prints = [fingerprint(SOURCE, r) for r in [*parsed.rejections, *parsed.dropped_photos]]
    repeat = [fingerprint(SOURCE, r) for r in [*again.rejections, *again.dropped_photos]]
    assert prints == repeat
    assert len(set(prints)) == 3
