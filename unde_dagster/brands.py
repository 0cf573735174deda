"""The brand table (`brands.yaml`): partition keys, Apify tasks, schedule hours."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import yaml

_BRAND_KEY = re.compile(r"^[a-z][a-z0-9]{1,30}$")


@dataclass(frozen=True)
class Brand:
    key: str
    display_name: str
    apify_task_id: str
    catalog_hour: int
    index_scope: str

    @property
    def source(self) -> str:
        """`raw_products.source` of the brand's rows, as the seed collector wrote it."""
        return f"apify_{self.key}"


def parse_brands(text: str) -> dict[str, Brand]:
    data = yaml.safe_load(text) or {}
    brands: dict[str, Brand] = {}
    for key, spec in (data.get("brands") or {}).items():
        if not _BRAND_KEY.match(key):
            raise ValueError(f"brand key {key!r} must be lowercase letters and digits")
        hour = int(spec["catalog_hour"])
        if not 0 <= hour <= 23:
            raise ValueError(f"brand {key}: catalog_hour {hour} is not an hour")
        scope = str(spec.get("index_scope", "off"))
        if scope not in {"pilot", "pgvector", "off"}:
            raise ValueError(f"brand {key}: index_scope {scope!r} is not pilot|pgvector|off")
        brands[key] = Brand(
            key=key,
            display_name=str(spec["display_name"]),
            apify_task_id=str(spec["apify_task_id"]),
            catalog_hour=hour,
            index_scope=scope,
        )
    if not brands:
        raise ValueError("the brand table is empty")
    return brands


@cache
def load_brands() -> dict[str, Brand]:
    """The packaged table, or the file named by `UNDE_BRANDS_FILE` (an operator's override)."""
    override = os.environ.get("UNDE_BRANDS_FILE")
    if override:
        return parse_brands(Path(override).read_text())
    return parse_brands((resources.files("unde_dagster") / "brands.yaml").read_text())


def brand(key: str) -> Brand:
    try:
        return load_brands()[key]
    except KeyError:
        raise KeyError(f"unknown brand {key!r}; known: {', '.join(load_brands())}") from None
