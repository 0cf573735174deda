"""Collection records of a SKU: deterministic `_id`s and the metadata Ximilar stores.

Why deterministic: the `_id` is derived from brand, SKU and photo number only, so sending
the same photo twice (a re-run after a crash between the HTTP call and the DB update) hits
the same record instead of adding a duplicate to the collection.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any


def record_id(brand: str, external_id: str, photo_number: int) -> str:
    """`brand:external_id:N` (N from 1). `:` never occurs in a brand key or an external_id."""
    if photo_number < 1:
        raise ValueError("photo numbers start at 1")
    return f"{brand}:{external_id}:{photo_number}"


def format_price(price: Decimal | float | int | None) -> str | None:
    """The seed sends prices as strings with two decimals ("599.00")."""
    if price is None:
        return None
    return f"{Decimal(str(price)).quantize(Decimal('0.01'))}"


@dataclass(frozen=True)
class SkuForIndex:
    """What the index needs of one `raw_products` row."""

    id: int
    brand: str
    external_id: str
    name: str | None
    category: str | None
    price: Decimal | None
    currency: str | None
    image_urls: tuple[str, ...]
    synced_urls: tuple[str, ...]
    target_count: int
    status: str

    @property
    def effective_target(self) -> int:
        """The first `target_count` photos, or all of them when the SKU has fewer."""
        return max(0, min(self.target_count, len(self.image_urls)))

    @property
    def photos_replaced(self) -> bool:
        """The catalog sends a SKU back to `pending` only when its photos changed; S3 keys are
        positional, so the URLs stay equal and records already indexed show the old photos."""
        return self.status == "pending" and bool(self.synced_urls)

    def metadata(self) -> dict[str, Any]:
        return {
            "sku_id": self.external_id,
            "brand": self.brand,
            "name": self.name,
            "category": self.category,
            "price": format_price(self.price),
            "currency": self.currency or "AED",
        }

    def wanted(self) -> list[tuple[int, str]]:
        """(photo number, URL) of the first `effective_target` photos."""
        return [(n, url) for n, url in enumerate(self.image_urls[: self.effective_target], 1)]

    def missing_records(self) -> list[dict[str, Any]]:
        """Records of wanted photos not yet in `ximilar_synced_urls` (all of them after a
        photo change). Progressive: raising the target adds only the extra photos."""
        done = set() if self.photos_replaced else set(self.synced_urls)
        meta = self.metadata()
        return [
            {"_id": record_id(self.brand, self.external_id, n), "_url": url, **meta}
            for n, url in self.wanted()
            if url not in done
        ]

    def indexed_ids(self) -> list[str]:
        """Every `_id` this SKU may hold in the collection (for removal or photo change)."""
        upper = max(self.target_count, len(self.synced_urls), self.effective_target)
        return [record_id(self.brand, self.external_id, n) for n in range(1, upper + 1)]
