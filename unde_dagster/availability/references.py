"""Inditex 13-digit size references of a colour SKU, derived from its `raw_products` row.

The store-stock API asks for `MMMMMMMMCCCSS-SEASON` (EXTERNAL_APIS §5): 8-digit model,
3-digit colour, 2-digit size, season campaign. From our Apify items:
- model and season: the item's `reference` (`"02086797-V2026"`, kept in `raw_data`);
- colour: the SKU's `colour_id` (`"800"`);
- size: the size's position in that colour's size run, from `01` (XS=01, S=02, … as the
  Inditex apps number them; the API reply's `size` field is not relied on).
SKUs whose data do not fit this format get no references (counted, never guessed).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_MODEL_SEASON = re.compile(r"^(\d{8})-([VI]\d{4})$")
_COLOUR = re.compile(r"^\d{3}$")
MAX_SIZES = 99


@dataclass(frozen=True)
class SizeRef:
    external_id: str
    reference: str
    size: str


@dataclass(frozen=True)
class SkuRefs:
    """One colour SKU and the references of each of its sizes."""

    external_id: str
    section: str
    sizes: tuple[SizeRef, ...]


def section_of(category: str | None) -> str:
    """`sectionName` of the stock call: our categories start with `woman-` / `man-` / `kid-`."""
    head = (category or "").split("-", 1)[0].lower()
    return {"man": "MAN", "kid": "KID", "kids": "KID", "home": "HOME"}.get(head, "WOMAN")


def sku_references(
    external_id: str,
    colour_id: str | None,
    category: str | None,
    sizes: Any,
    raw_data: Mapping[str, Any] | None,
) -> SkuRefs | None:
    reference = (raw_data or {}).get("reference")
    match = _MODEL_SEASON.match(reference.strip()) if isinstance(reference, str) else None
    if match is None or not colour_id or not _COLOUR.match(colour_id):
        return None
    if not isinstance(sizes, list) or not sizes or len(sizes) > MAX_SIZES:
        return None
    model, season = match.groups()
    refs = []
    for n, size in enumerate(sizes, start=1):
        name = size.get("name") if isinstance(size, Mapping) else None
        label = str(name) if name not in (None, "") else f"{n:02d}"
        refs.append(SizeRef(external_id, f"{model}{colour_id}{n:02d}-{season}", label))
    return SkuRefs(external_id, section_of(category), tuple(refs))
