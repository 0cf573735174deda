"""Apify item (datasaurus/zara shape) → one staging row per colour SKU.

The seed flattened every colour of an item into one row and kept only the first five
photo URLs, so other colours were lost. Here each colour of an item becomes its own SKU:
`external_id = "{item id}-{colour id}"`, with that colour's name, sizes and photos.
Bad input is rejected per item or per colour with a reason code; nothing here raises.
Text is cleaned first (`clean.py`); ids and photo URLs are checked as Apify sent them, so a
NUL inside an id rejects the item instead of quietly turning it into another item's id.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from unde_dagster.catalog.clean import Cleaning, ItemTooDeep, clean_text, clean_value

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
    """An item, one colour of it, or one photo URL that was not written, and why."""

    reason: str
    item_id: str | None
    detail: str
    colour_id: str | None = None
    photo_url: str | None = None


@dataclass(frozen=True)
class CleanedItem:
    """An item whose text had to be cleaned before it could be stored."""

    item_id: str | None
    cleaning: Cleaning


@dataclass
class ParsedBatch:
    rows: list[SkuRow] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    dropped_photos: list[Rejection] = field(default_factory=list)
    cleaned: list[CleanedItem] = field(default_factory=list)

    def extend(self, other: ParsedBatch) -> None:
        self.rejections.extend(other.rejections)
        self.dropped_photos.extend(other.dropped_photos)
        self.cleaned.extend(other.cleaned)

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


def split_photo_urls(xmedia: Any) -> tuple[list[str], list[tuple[Any, str]]]:
    """(kept URLs, dropped (value, why)): `{width}` set to 1920, deduplicated, first five.

    Dropped are the values that are not a usable URL (not a string, not http(s), control
    characters or lone surrogates inside); repeats and photos past the fifth are policy,
    not bad input, and are not reported.
    """
    if not isinstance(xmedia, list):
        return [], []
    urls: list[str] = []
    dropped: list[tuple[Any, str]] = []
    for raw in xmedia:
        if not isinstance(raw, str):
            dropped.append((raw, f"photo URL is {type(raw).__name__}, not a string"))
            continue
        url = raw.strip().replace("{width}", PHOTO_WIDTH)
        if not url.isprintable() or not _URL.fullmatch(url):
            dropped.append((raw, "not an http(s) URL"))
        elif url not in urls:
            urls.append(url)
    return urls[:MAX_PHOTOS_PER_SKU], dropped


def photo_urls(xmedia: Any) -> list[str]:
    """The colour's photo URLs with `{width}` set to 1920, deduplicated, first five kept."""
    return split_photo_urls(xmedia)[0]


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


def _show(value: Any, limit: int = 120) -> str:
    """A bounded, storable repr of a hostile value for a rejection's detail."""
    return clean_text(repr(value))[:limit]


def parse_item(item: Any, brand: str, source: str) -> ParsedBatch:
    """All colour SKUs of one item, or the reasons they were rejected."""
    out = ParsedBatch()
    if not isinstance(item, Mapping):
        out.rejections.append(Rejection("not_an_object", None, f"item is {type(item).__name__}"))
        return out
    item_id = _id_part(item.get("id"))
    if item_id is None:
        detail = f"item id {_show(item.get('id'))} unusable"
        out.rejections.append(Rejection("bad_id", None, detail))
        return out
    cleaning = Cleaning()
    try:
        clean = clean_value(item, cleaning)
    except ItemTooDeep as exc:
        out.rejections.append(Rejection("too_deep", item_id, str(exc)))
        return out
    if cleaning.changed:
        out.cleaned.append(CleanedItem(item_id, cleaning))
    name = _text(clean.get("name"))
    if name is None:
        out.rejections.append(Rejection("missing_name", item_id, "item has no name"))
        return out
    try:
        price = parse_price(item.get("price"))
    except ValueError as exc:
        out.rejections.append(Rejection("bad_price", item_id, _show(str(exc), 200)))
        return out
    colours = clean.get("colorsSizesImagesJSON")
    if not isinstance(colours, list) or not colours:
        out.rejections.append(Rejection("no_colours", item_id, "item has no colours"))
        return out

    composition = clean.get("detailedComposition")
    composition_text = json.dumps(composition, ensure_ascii=False) if composition else None
    raw_colours = item["colorsSizesImagesJSON"]  # same list, uncleaned: ids and URLs as sent
    for colour, sent in zip(colours, raw_colours, strict=True):
        if not isinstance(colour, Mapping):
            out.rejections.append(Rejection("bad_colour", item_id, "colour is not an object"))
            continue
        colour_id = _id_part(sent.get("id"))
        if colour_id is None:
            detail = f"colour id {_show(sent.get('id'))} unusable"
            out.rejections.append(Rejection("bad_colour_id", item_id, detail))
            continue
        urls, dropped = split_photo_urls(sent.get("xmedia"))
        for value, why in dropped:
            url = clean_text(value)[:2000] if isinstance(value, str) else _show(value, 2000)
            out.dropped_photos.append(
                Rejection("bad_photo_url", item_id, why, colour_id=colour_id, photo_url=url)
            )
        if not urls:
            detail = f"colour {colour_id} has no usable photo URL"
            out.rejections.append(Rejection("no_photos", item_id, detail, colour_id=colour_id))
            continue
        raw = {k: v for k, v in clean.items() if k != "colorsSizesImagesJSON"}
        raw["colorsSizesImagesJSON"] = [dict(colour)]
        row = SkuRow(
            source=source,
            external_id=f"{item_id}-{colour_id}",
            item_id=item_id,
            colour_id=colour_id,
            brand=brand,
            name=name,
            description=_text(clean.get("description")),
            price=price,
            currency="AED",
            category=_text(clean.get("category")),
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
            out.extend(parsed)
            for row in parsed.rows:
                if row.external_id in self._seen:
                    detail = f"SKU {row.external_id} appears more than once in the dataset"
                    out.rejections.append(
                        Rejection("duplicate_sku", row.item_id, detail, colour_id=row.colour_id)
                    )
                    continue
                self._seen.add(row.external_id)
                out.rows.append(row)
        return out
