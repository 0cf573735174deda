"""Dubai stores of a brand: store-locator reply → `raw_stores`, and the ids to poll.

Why a filter on our side: the locator's global search also returns nearby emirates'
stores. A store counts when its `city`/`state` names the configured city, or (when it
names none) when it lies within `radius_km` of the city centre.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg

_MALL_WORDS = ("mall", "centre", "center", "city walk", "souk", "festival city")


@dataclass(frozen=True)
class Store:
    store_id: int
    name: str | None
    address: str | None
    mall_name: str | None
    latitude: Decimal | None
    longitude: Decimal | None


class BadLocatorReply(ValueError):
    """The locator answered something that is not a JSON array of stores."""


def _km(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 6371.0 * 2 * math.asin(math.sqrt(a))


def _coord(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def parse_stores(
    payload: Any, *, city: str, latitude: float, longitude: float, radius_km: float
) -> list[Store]:
    if not isinstance(payload, list):
        raise BadLocatorReply(f"store locator returned {type(payload).__name__}, not a list")
    stores: dict[int, Store] = {}
    for entry in payload:
        if not isinstance(entry, dict):
            continue
        raw_id = entry.get("id")
        if isinstance(raw_id, bool) or not isinstance(raw_id, int | str):
            continue
        try:
            store_id = int(raw_id)
        except ValueError:
            continue
        if not 0 < store_id < 2**31:
            continue
        lat, lng = _coord(entry.get("latitude")), _coord(entry.get("longitude"))
        named = [str(entry[k]) for k in ("city", "state") if entry.get(k)]
        if named:
            if not any(n.strip().lower() == city.lower() for n in named):
                continue
        elif lat is None or lng is None or _km(lat, lng, latitude, longitude) > radius_km:
            continue
        lines = [str(x).strip() for x in entry.get("addressLines") or [] if str(x).strip()]
        mall = next((ln.split(",")[0] for ln in lines
                     if any(w in ln.lower() for w in _MALL_WORDS)), None)
        stores[store_id] = Store(
            store_id=store_id,
            name=str(entry["name"]).strip() if entry.get("name") else None,
            address=", ".join(lines) or None,
            mall_name=mall,
            latitude=Decimal(f"{lat:.7f}") if lat is not None else None,
            longitude=Decimal(f"{lng:.7f}") if lng is not None else None,
        )
    return list(stores.values())


def upsert_stores(conn: psycopg.Connection, brand: str, stores: Sequence[Store], city: str,
                  country: str) -> None:
    if not stores:
        return
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            """
            INSERT INTO raw_stores (brand, store_id, name, address, city, country, mall_name,
                                    latitude, longitude)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (brand, store_id) DO UPDATE SET
                name = EXCLUDED.name, address = EXCLUDED.address, city = EXCLUDED.city,
                country = EXCLUDED.country, mall_name = EXCLUDED.mall_name,
                latitude = EXCLUDED.latitude, longitude = EXCLUDED.longitude
            """,
            [(brand, s.store_id, s.name, s.address, city, country.upper(), s.mall_name,
              s.latitude, s.longitude) for s in stores],
        )


def store_ids(conn: psycopg.Connection, brand: str, city: str,
              only: Sequence[int] = ()) -> list[int]:
    """The brand's stores in the city from `raw_stores` (optionally a configured subset)."""
    rows = conn.execute(
        "SELECT store_id FROM raw_stores WHERE brand = %s AND lower(city) = lower(%s) "
        "ORDER BY store_id", (brand, city),
    ).fetchall()
    ids = [int(r[0]) for r in rows]
    return [i for i in ids if i in set(only)] if only else ids
