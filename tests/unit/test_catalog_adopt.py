"""Which colour SKU an old item-id row becomes, and what of its state it keeps."""

from __future__ import annotations

from tests.cutover.old_servers import old_collector_photo_urls, zara_item
from unde_dagster.catalog.adopt import LegacyRow, plan_adoption
from unde_dagster.catalog.items import parse_item

BASE = "https://unde-images.test/originals/zara/1001"


def old_row(item: dict, status: str, stored: int) -> LegacyRow:
    """The row the old collector and downloader leave for `item`."""
    flat = old_collector_photo_urls(item)
    return LegacyRow(1, str(item["id"]), status, flat,
                     [f"{BASE}/{n}.jpg" for n in range(1, min(stored, 5) + 1)], False)


def plan(colours: list[tuple[str, int]], status: str, stored: int):  # type: ignore[no-untyped-def]
    item = zara_item(1001, [(c, c, n) for c, n in colours])
    rows = parse_item(item, "zara", "apify_zara").rows
    return plan_adoption(old_row(item, status, stored), rows)


def test_one_colour_all_stored_keeps_its_state() -> None:
    p = plan([("800", 3)], "collage_ready", 3)
    assert p is not None and p.sku.external_id == "1001-800"
    assert p.image_status == "collage_ready" and p.stored.complete
    assert p.stored.image_urls == [f"{BASE}/{n}.jpg" for n in (1, 2, 3)]
    assert p.stored.original_sources == {str(n): u for n, u in
                                         enumerate(p.sku.original_image_urls, 1)}
    assert p.others == []


def test_a_colour_with_fewer_than_five_shares_the_old_row_with_the_next() -> None:
    p = plan([("800", 2), ("250", 4)], "collage_ready", 5)
    assert p is not None and p.sku.external_id == "1001-800"
    assert p.image_status == "uploaded"  # its originals are all there; the collage mixed both
    assert p.stored.image_urls == [f"{BASE}/1.jpg", f"{BASE}/2.jpg"]
    [other] = p.others
    assert other.external_id == "1001-250" and not other.complete
    assert other.image_urls == [f"{BASE}/{n}.jpg" for n in (3, 4, 5)]
    assert list(other.original_sources) == ["1", "2", "3"]


def test_nothing_stored_keeps_the_error_and_its_attempts() -> None:
    p = plan([("800", 2), ("250", 2)], "error", 0)
    assert p is not None and p.image_status == "error" and p.stored.image_urls == []
    assert p.others == []


def test_more_than_five_photos_the_old_row_stored_the_first_five() -> None:
    p = plan([("800", 7)], "uploaded", 5)
    assert p is not None and p.image_status == "uploaded" and p.stored.complete
    assert len(p.stored.image_urls) == 5


def test_an_item_without_colours_is_not_adopted() -> None:
    item = zara_item(1001, [("800", "800", 2)])
    assert plan_adoption(old_row(item, "pending", 0), []) is None
