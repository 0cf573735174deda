"""Inditex store locator + in-store stock emulator (EXTERNAL_APIS.md §5), one host for all brands.

Why one host with a `/{brand}` prefix: the real endpoints live on each brand's own site
(`https://www.{brand}.com/ae/en/...`), so the pipeline's base URL is a template with a
`{brand}` placeholder; here it is `http://127.0.0.1:PORT/{brand}`.

- `GET /{brand}/{cc}/{lang}/stores-locator/search?lat=&lng=&isGlobalSearch=true&...&ajax=true`
  → JSON array of stores (`id`, `name`, `addressLines`, `city`, `latitude`, `longitude`, …):
  the brand's Dubai stores plus one in Sharjah and one in Abu Dhabi (the client must filter).
- `GET /{brand}/{cc}/{lang}/store-stock?physicalStoreIds=..&references=..&sectionName=WOMAN`
  → `{"productAvailability": [{"physicalStoreId", "availableProducts": [{"reference", "size",
  "stock"}]}]}`, one entry per store; references out of stock are absent. Stock is a pure
  function of (seed, generation, brand, store, reference); `POST /_emulator/availability/restock`
  bumps the generation so the next poll differs. At most 10 stores and 100 references per call.
Faults (403 Akamai page, 429, malformed JSON with 200) come from the shared injector.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from aiohttp import web

from unde_local.emulators.faults import FaultInjector
from unde_local.fixtures.catalog import BRAND_NAMES

BASE_PATH = "/{brand}"
MAX_STORES = 10
MAX_REFERENCES = 100
REFERENCE = re.compile(r"^(\d{8})(\d{3})(\d{2})-([VI]\d{4})$")
SECTIONS = frozenset({"WOMAN", "MAN", "KID", "HOME"})

# (mall, address line, latitude, longitude, city)
MALLS: tuple[tuple[str, str, float, float, str], ...] = (
    ("The Dubai Mall", "Financial Center Road, Downtown Dubai", 25.1972, 55.2796, "Dubai"),
    ("Mall of the Emirates", "Sheikh Zayed Road, Al Barsha 1", 25.1181, 55.2006, "Dubai"),
    ("Dubai Festival City Mall", "Crescent Drive, Dubai Festival City", 25.2225, 55.3527, "Dubai"),
    ("Ibn Battuta Mall", "Sheikh Zayed Road, Jebel Ali Village", 25.0443, 55.1193, "Dubai"),
    ("City Centre Deira", "Baniyas Road, Port Saeed", 25.2522, 55.3320, "Dubai"),
    ("City Centre Mirdif", "Sheikh Mohammed Bin Zayed Road, Mirdif", 25.2163, 55.4075, "Dubai"),
    ("Dubai Hills Mall", "Al Khail Road, Dubai Hills Estate", 25.1017, 55.2396, "Dubai"),
    ("City Centre Sharjah", "Al Wahda Street, Al Qasimia", 25.3255, 55.3921, "Sharjah"),
    ("Yas Mall", "Yas Island", 24.4886, 54.6091, "Abu Dhabi"),
)
STATE: web.AppKey[dict[str, int]] = web.AppKey("availability", dict)
STOCK_LEVELS = ("in_stock", "in_stock", "low_on_stock", "out_of_stock", "out_of_stock")


def brand_stores(brand: str) -> list[dict[str, Any]]:
    """The brand's stores in the locator's shape; ids are stable per brand."""
    brand_no = sorted(BRAND_NAMES).index(brand) if brand in BRAND_NAMES else len(BRAND_NAMES)
    digest = hashlib.sha256(brand.encode()).digest()
    dubai = [m for m in MALLS if m[4] == "Dubai"]
    keep = 4 + digest[0] % 3  # 4..6 Dubai stores
    start = digest[1] % len(dubai)
    chosen = [dubai[(start + i) % len(dubai)] for i in range(keep)]
    chosen += [m for m in MALLS if m[4] != "Dubai"]
    display = BRAND_NAMES.get(brand, brand.capitalize()).upper()
    return [
        {"id": 3000 + brand_no * 100 + MALLS.index(m), "name": f"{display} {m[0].upper()}",
         "addressLines": [m[0], m[1]], "city": m[4], "state": m[4], "countryCode": "AE",
         "zipCode": "", "latitude": m[2], "longitude": m[3], "storeType": "STORE",
         "phones": ["+971 4 000 0000"], "openingHours": []}
        for m in chosen
    ]


def stock_of(seed: int, generation: int, brand: str, store_id: int, reference: str) -> str:
    digest = hashlib.sha256(f"{seed}:{generation}:{brand}:{store_id}:{reference}".encode())
    return STOCK_LEVELS[digest.digest()[0] % len(STOCK_LEVELS)]


def create_app(faults: FaultInjector, *, seed: int = 0) -> web.Application:
    app = web.Application(middlewares=[faults.middleware])
    state: dict[str, int] = {"generation": 0}
    app[STATE] = state
    faults.add_routes(app)

    def known_brand(request: web.Request) -> str:
        brand = request.match_info["brand"]
        if brand not in BRAND_NAMES:
            raise web.HTTPNotFound(text="<html><body>Not found</body></html>",
                                   content_type="text/html")
        return brand

    async def locator(request: web.Request) -> web.Response:
        brand = known_brand(request)
        try:
            float(request.query["lat"])
            float(request.query["lng"])
        except (KeyError, ValueError):
            return web.json_response({"error": "lat and lng are required"}, status=400)
        return web.json_response(brand_stores(brand))

    async def store_stock(request: web.Request) -> web.Response:
        brand = known_brand(request)
        try:
            store_ids = [int(s) for s in request.query.getall("physicalStoreIds", [])]
        except ValueError:
            return web.json_response({"error": "physicalStoreIds must be integers"}, status=400)
        references = request.query.getall("references", [])
        section = request.query.get("sectionName", "")
        if not store_ids or not references or section not in SECTIONS:
            return web.json_response(
                {"error": "physicalStoreIds, references and sectionName are required"}, status=400)
        if len(store_ids) > MAX_STORES or len(references) > MAX_REFERENCES:
            return web.json_response({"error": "too many stores or references"}, status=400)
        known = {s["id"] for s in brand_stores(brand)}
        entries = []
        for store_id in store_ids:
            if store_id not in known:
                continue
            available = []
            for ref in references:
                match = REFERENCE.match(ref)
                if not match:
                    continue
                level = stock_of(seed, state["generation"], brand, store_id, ref)
                if level != "out_of_stock":
                    available.append({"reference": ref, "size": match.group(3), "stock": level})
            entries.append({"physicalStoreId": store_id, "availableProducts": available})
        return web.json_response({"productAvailability": entries})

    async def restock(request: web.Request) -> web.Response:
        state["generation"] += 1
        return web.json_response({"generation": state["generation"]})

    app.router.add_get("/{brand}/{cc}/{lang}/stores-locator/search", locator)
    app.router.add_get("/{brand}/{cc}/{lang}/store-stock", store_stock)
    app.router.add_post("/_emulator/availability/restock", restock)
    return app
