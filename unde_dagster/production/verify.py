"""What a staging SKU must have before the app may show it (else `sync_status='skipped'`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

_HTTP_URL = re.compile(r"^https?://[^\s/]+/\S+$")


@dataclass(frozen=True)
class StagingSku:
    id: int
    source: str
    external_id: str
    brand: str
    name: str | None
    description: str | None
    price: Decimal | None
    currency: str | None
    category: str | None
    colour: str | None
    sizes: Any
    composition: str | None
    image_urls: Any
    collage_url: str | None
    updated_at: Any
    last_seen_run_id: str | None
    legacy_external_id: str | None = None  # the item id an adopted old row had (cut-over)


def skip_reason(sku: StagingSku) -> str | None:
    """None when the SKU may go to production, else a short reason for `sync_error`."""
    if not sku.name or not sku.name.strip():
        return "missing_name"
    if sku.price is None:
        return "missing_price"
    if sku.price <= 0:
        return "non_positive_price"
    if not sku.currency:
        return "missing_currency"
    if not sku.collage_url or not _HTTP_URL.match(sku.collage_url):
        return "missing_collage_url"
    urls = sku.image_urls
    if not isinstance(urls, list) or not urls:
        return "no_images"
    if not all(isinstance(u, str) and _HTTP_URL.match(u) for u in urls):
        return "bad_image_url"
    if sku.sizes is not None and production_sizes(sku.sizes) is None:
        return "bad_sizes"
    return None


def production_sizes(sizes: Any) -> list[Any] | None:
    """Sizes as the app reads them: the project's list of `{name, sku, availability, price}`
    as it is; the old collector's string (`"XS, S, M, L"`, stored as a JSON string) as a list
    of `{name}`. None for anything else."""
    if isinstance(sizes, list):
        return sizes
    if isinstance(sizes, str):
        return [{"name": name.strip()} for name in sizes.split(",") if name.strip()]
    return None
