"""Apify item (datasaurus/zara shape) → one staging row per colour SKU.

The seed flattened every colour of an item into one row and kept only the first five
photo URLs, so other colours were lost. Here each colour of an item becomes its own SKU:
`external_id = "{item id}-{colour id}"`, with that colour's name, sizes and photos.
Bad input is rejected per item or per colour with a reason code; nothing here raises.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any

PHOTO_WIDTH = "1920"
MAX_PHOTOS_PER_SKU = 5
MAX_PRICE_FILS = 10**9  # DECIMAL(10,2) in AED holds < 10^8 AED
_ID_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.]{0,48}$")
_URL = re.compile(r"^https?://[^\s/]+/\S*$")


@dataclass(frozen=True)
class SkuRow:
    """One `raw_products` row: a product in one colour."""

    source: str
    external_id: str
    item_id: str
    colour_id: str
    brand: str
    name: str
    description: str | None
    price: Decimal | None
    currency: str
    category: str | None
    colour: str | None
    sizes: list[dict[str, Any]]
    composition: str | None
    original_image_urls: list[str]
    raw_data: dict[str, Any]
    content_hash: str = field(default="")


@dataclass(frozen=True)
class Rejection:
    """An item (or one colour of it) that was not written, and why."""

    reason: str
    item_id: str | None
    detail: str


@dataclass
class ParsedBatch:
    rows: list[SkuRow] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    def reasons(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for rejection in self.rejections:
            counts[rejection.reason] = counts.get(rejection.reason, 0) + 1
        return counts


def parse_price(value: Any) -> Decimal | None:
    """Fils → AED. Missing price is allowed (NULL, as the seed wrote); odd prices are not."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"price {value!r} is not a number")
    try:
        fils = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"price {value!r} is not a number") from None
    if not fils.is_finite() or fils < 0 or fils >= MAX_PRICE_FILS:
        raise ValueError(f"price {value!r} is out of range")
    if fils != fils.to_integral_value():
        raise ValueError(f"price {value!r} is not a whole number of fils")
    return (fils / 100).quantize(Decimal("0.01"))


def photo_urls(xmedia: Any) -> list[str]:
    """The colour's photo URLs with `{width}` set to 1920, deduplicated, first five kept."""
    if not isinstance(xmedia, list):
        return []
    urls: list[str] = []
    for raw in xmedia:
        if not isinstance(raw, str):
            continue
        url = raw.strip().replace("{width}", PHOTO_WIDTH)
        if _URL.fullmatch(url) and url not in urls:
            urls.append(url)
    return urls[:MAX_PHOTOS_PER_SKU]


def _text(value: Any, limit: int | None = None) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    return text[:limit] if limit else text


def _id_part(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    text = str(value).strip()
    if not _ID_PART.fullmatch(text) or ".." in text:
        return None
    return text


def _sizes(colour: Mapping[str, Any]) -> list[dict[str, Any]]:
    sizes = colour.get("sizes")
    if not isinstance(sizes, list):
        return []
    keep = ("name", "sku", "availability", "price")
    return [{k: s[k] for k in keep if k in s} for s in sizes if isinstance(s, Mapping)]


def content_hash(row: SkuRow) -> str:
    """Fingerprint of what the catalog says about the SKU (not when it was scraped)."""
    payload = {
        "name": row.name,
        "description": row.description,
        "price": str(row.price),
        "category": row.category,
        "colour": row.colour,
        "sizes": row.sizes,
        "composition": row.composition,
        "photos": row.original_image_urls,
    }
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def parse_item(item: Any, brand: str, source: str) -> ParsedBatch:
    """All colour SKUs of one item, or the reasons they were rejected."""
    out = ParsedBatch()
    if not isinstance(item, Mapping):
        out.rejections.append(Rejection("not_an_object", None, f"item is {type(item).__name__}"))
        return out
    item_id = _id_part(item.get("id"))
    if item_id is None:
        out.rejections.append(Rejection("bad_id", None, f"item id {item.get('id')!r} unusable"))
        return out
    name = _text(item.get("name"))
    if name is None:
        out.rejections.append(Rejection("missing_name", item_id, "item has no name"))
        return out
    try:
        price = parse_price(item.get("price"))
    except ValueError as exc:
        out.rejections.append(Rejection("bad_price", item_id, str(exc)))
        return out
    colours = item.get("colorsSizesImagesJSON")
    if not isinstance(colours, list) or not colours:
        out.rejections.append(Rejection("no_colours", item_id, "item has no colours"))
        return out

    composition = item.get("detailedComposition")
    composition_text = json.dumps(composition, ensure_ascii=False) if composition else None
    for colour in colours:
        if not isinstance(colour, Mapping):
            out.rejections.append(Rejection("bad_colour", item_id, "colour is not an object"))
            continue
        colour_id = _id_part(colour.get("id"))
        if colour_id is None:
            detail = f"colour id {colour.get('id')!r} unusable"
            out.rejections.append(Rejection("bad_colour_id", item_id, detail))
            continue
        urls = photo_urls(colour.get("xmedia"))
        if not urls:
            detail = f"colour {colour_id} has no usable photo URL"
            out.rejections.append(Rejection("no_photos", item_id, detail))
            continue
        raw = {k: v for k, v in item.items() if k != "colorsSizesImagesJSON"}
        raw["colorsSizesImagesJSON"] = [dict(colour)]
        row = SkuRow(
            source=source,
            external_id=f"{item_id}-{colour_id}",
            item_id=item_id,
            colour_id=colour_id,
            brand=brand,
            name=name,
            description=_text(item.get("description")),
            price=price,
            currency="AED",
            category=_text(item.get("category")),
            colour=_text(colour.get("name"), 100),
            sizes=_sizes(colour),
            composition=composition_text,
            original_image_urls=urls,
            raw_data=raw,
        )
        out.rows.append(replace(row, content_hash=content_hash(row)))
    return out


class DatasetParser:
    """Parses a dataset in chunks; a SKU seen twice in one dataset keeps its first occurrence."""

    def __init__(self, brand: str, source: str) -> None:
        self.brand = brand
        self.source = source
        self._seen: set[str] = set()

    def parse(self, items: Iterable[Any]) -> ParsedBatch:
        out = ParsedBatch()
        for item in items:
            parsed = parse_item(item, self.brand, self.source)
            out.rejections.extend(parsed.rejections)
            for row in parsed.rows:
                if row.external_id in self._seen:
                    detail = f"SKU {row.external_id} appears more than once in the dataset"
                    out.rejections.append(Rejection("duplicate_sku", row.item_id, detail))
                    continue
                self._seen.add(row.external_id)
                out.rows.append(row)
        return out
