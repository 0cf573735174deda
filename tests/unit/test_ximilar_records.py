"""Records of a SKU: deterministic ids, metadata, progressive and photo-change selection."""

from decimal import Decimal

import pytest

from unde_dagster.ximilar.records import SkuForIndex, format_price, record_id


def sku(**kw: object) -> SkuForIndex:
    base: dict = dict(id=1, brand="zara", external_id="123-45", name="Dress", category="dresses",
                      price=Decimal("599"), currency="AED",
                      image_urls=("u1", "u2", "u3"), synced_urls=(), target_count=2,
                      status="pending")
    base.update(kw)
    return SkuForIndex(**base)


def test_record_id_is_deterministic_and_unambiguous() -> None:
    assert record_id("zara", "123-45", 1) == record_id("zara", "123-45", 1) == "zara:123-45:1"
    assert record_id("zara", "123-45", 2) != record_id("zara", "123-4", 52)
    with pytest.raises(ValueError):
        record_id("zara", "x", 0)


def test_price_is_a_two_decimal_string() -> None:
    assert format_price(Decimal("599")) == "599.00"
    assert format_price(12.5) == "12.50"
    assert format_price(None) is None


def test_first_target_photos_with_metadata() -> None:
    records = sku().missing_records()
    assert [r["_id"] for r in records] == ["zara:123-45:1", "zara:123-45:2"]
    assert records[0]["_url"] == "u1"
    assert {k: records[0][k] for k in ("sku_id", "brand", "name", "category", "price",
                                       "currency")} == {
        "sku_id": "123-45", "brand": "zara", "name": "Dress", "category": "dresses",
        "price": "599.00", "currency": "AED"}


def test_progressive_ingestion_sends_only_extra_photos() -> None:
    raised = sku(status="synced", synced_urls=("u1", "u2"), target_count=3)
    assert [r["_id"] for r in raised.missing_records()] == ["zara:123-45:3"]
    assert sku(status="synced", synced_urls=("u1", "u2")).missing_records() == []


def test_target_above_photo_count_is_capped() -> None:
    few = sku(image_urls=("u1",), target_count=4)
    assert few.effective_target == 1
    assert [r["_url"] for r in few.missing_records()] == ["u1"]
    assert sku(image_urls=()).missing_records() == []


def test_pending_with_synced_urls_means_photos_replaced() -> None:
    replaced = sku(status="pending", synced_urls=("u1", "u2"))
    assert replaced.photos_replaced
    assert len(replaced.missing_records()) == 2  # positional S3 URLs: resend both
    assert replaced.indexed_ids() == ["zara:123-45:1", "zara:123-45:2"]
    assert not sku(status="partial", synced_urls=("u1",)).photos_replaced


def test_indexed_ids_cover_earlier_higher_targets() -> None:
    lowered = sku(status="synced", synced_urls=("u1", "u2", "u3"), target_count=2)
    assert lowered.indexed_ids()[-1] == "zara:123-45:3"
