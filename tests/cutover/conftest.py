"""An old Staging DB and Production DB as the old servers leave them, reached through
PgBouncer in transaction mode as production reaches them, plus helpers that act as the
old servers (their own SQL, as their own roles, their photos really fetched and stored)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from tests.cutover import old_servers as old
from tests.integration.image_stage_helpers import fast_downloader, object_store, put_catalog
from unde_dagster.catalog.items import photo_urls
from unde_dagster.db.migrate import migrate
from unde_dagster.defs.resources import resources_from_env
from unde_dagster.resources.databases import ProductionDatabase, StagingDatabase
from unde_dagster.resources.ximilar import XimilarResource
from unde_dagster.storage import collage_key, original_key
from unde_local.pgbouncer import PgBouncer
from unde_local.stack import LocalStack

OWNER = "staging_owner"
BRAND = "zara"


@dataclass
class OldWorld:
    stack: LocalStack
    bouncer: PgBouncer
    staging_db: str
    production_db: str
    collection: str

    def url(self, role: str = OWNER, database: str | None = None) -> str:
        return self.bouncer.url(role, database or self.staging_db)

    def connect(self, role: str = OWNER, database: str | None = None) -> psycopg.Connection:
        return psycopg.connect(self.url(role, database), autocommit=True,
                               prepare_threshold=None)

    def migrate(self) -> None:
        migrate(self.url(), "staging")
        migrate(self.url(database=self.production_db), "production")

    def ximilar(self) -> XimilarResource:
        env = self.stack.env
        return XimilarResource(api_url=env["XIMILAR_API_URL"], token=env["XIMILAR_TOKEN"],
                               collection_id=self.collection, rate_limit_per_s=1000,
                               backoff_base_s=0.01, backoff_max_s=0.05, max_retries=3)

    def resources(self) -> dict[str, Any]:
        """The production resource set, pointed at the old databases through PgBouncer."""
        return {
            **resources_from_env(),
            "staging_db": StagingDatabase(url=self.url()),
            "production_db": ProductionDatabase(url=self.url(database=self.production_db)),
            "photo_downloader": fast_downloader(self.stack),
            "ximilar": self.ximilar(),
        }

    def collection_records(self) -> dict[str, dict[str, Any]]:
        assert self.stack.emulators is not None
        base = self.stack.emulators.base_url("ximilar")
        url = f"{base}/_emulator/ximilar/collection/{self.collection}"
        return {r["_id"]: r for r in requests.get(url, timeout=10).json()["records"]}


@pytest.fixture()
def old_world(stack: LocalStack, tmp_path: Path) -> Iterator[OldWorld]:
    admin = stack.env["STAGING_DB_URL"]
    password = secrets.token_urlsafe(12)
    tag = uuid.uuid4().hex[:8]
    staging, production = f"old_staging_{tag}", f"old_production_{tag}"
    old.create_old_database(admin, staging, owner=OWNER, password=password)
    old.create_old_database(admin, production, owner=OWNER, password=password,
                            ddl=old.SEED_PRODUCTION_DDL)
    users = {OWNER: password, **{role: password for role in old.OLD_ROLES}}
    try:
        with PgBouncer(admin, users, tmp_path / "pgbouncer") as bouncer:
            yield OldWorld(stack, bouncer, staging, production, f"old-{tag}")
    finally:
        old.drop_old_database(admin, staging)
        old.drop_old_database(admin, production)


@pytest.fixture()
def catalog(stack: LocalStack) -> Iterator[Callable[[list[dict[str, Any]]], None]]:
    """Serve these items as the brand's Apify catalog (the emulator's own restored after)."""
    assert stack.emulators is not None
    url = f"{stack.emulators.base_url('apify')}/_emulator/apify/catalog/{BRAND}"
    original = requests.get(url, timeout=10).json()
    yield lambda items: put_catalog(stack, BRAND, items)
    requests.put(url, json=original, timeout=10).raise_for_status()


def item(item_id: int, *colours: tuple[str, int]) -> dict[str, Any]:
    """A zara item in the seed's format: (colour id, photo count) per colour."""
    return old.zara_item(item_id, [(c, f"Colour {c}", n) for c, n in colours])


class OldServers:
    """The old downloader, collage worker and Ximilar sync doing their work for real."""

    def __init__(self, world: OldWorld) -> None:
        self.world = world
        self.store = object_store(world.stack)
        self.s3 = self.store.get_client()
        self.on_notice: Callable[[str], None] | None = None  # the server's warnings to it

    def download(self, row_id: int) -> list[str]:
        """The seed downloader on one row: each URL through the proxy, stored, row updated."""
        with self.world.connect("downloader") as conn:
            if self.on_notice is not None:
                notice = self.on_notice
                conn.add_notice_handler(lambda d: notice(str(d.message_primary)))
            row = conn.execute("SELECT brand, external_id, original_image_urls FROM "
                               "raw_products WHERE id = %s", (row_id,)).fetchone()
            assert row is not None
            brand, ext, urls = row
            stored = []
            for i, url in enumerate(urls[:5]):
                body = requests.get(url.replace("{width}", "1920"), timeout=30,
                                    proxies={"http": self.world.stack.env["PROXY_URL"]})
                body.raise_for_status()
                stored.append(self.store.put_public(self.s3, original_key(brand, ext, i + 1),
                                                    body.content))
            old.old_downloader_success(conn, row_id, stored)
            return stored

    def collage(self, row_id: int) -> str:
        """The seed collage worker's result (the bytes are one of its originals: only the
        object's presence matters to the cut-over)."""
        with self.world.connect("collage") as conn:
            brand, ext, urls = conn.execute(
                "SELECT brand, external_id, image_urls FROM raw_products WHERE id = %s",
                (row_id,)).fetchone() or (None, None, None)
            body = self.store.get_bytes(self.s3, self.store.key_of(urls[0]))
            url = self.store.put_public(self.s3, collage_key(brand, ext), body)
            old.old_collage_success(conn, row_id, url)
            return url

    def index(self, row_id: int, status: str, photos: int, brand: str = BRAND,
              record_only: bool = False) -> list[str]:
        """The old Ximilar sync: records under ids of its own, `sku_id` = the item id
        (`record_only`: a record in the collection only, not written back to the row)."""
        with self.world.connect("ximilar") as conn:
            ext, name, urls = conn.execute(
                "SELECT external_id, name, image_urls FROM raw_products WHERE id = %s",
                (row_id,)).fetchone() or (None, None, None)
            records = [{"_id": uuid.uuid4().hex, "_url": u, "sku_id": ext, "brand": brand,
                        "name": name, "category": "x", "price": "1.00", "currency": "AED"}
                       for u in urls[:photos]]
            client = self.world.ximilar().client()
            try:
                client.insert(records)
            finally:
                client.close()
            if not record_only:
                old.old_ximilar_success(conn, row_id, status, urls[:photos])
            return [r["_id"] for r in records]


def row_ids(world: OldWorld) -> dict[str, int]:
    with world.connect() as conn:
        return {str(e): int(i) for e, i in conn.execute(
            "SELECT external_id, id FROM raw_products").fetchall()}


def colour_photos(item: dict[str, Any], colour: int = 0) -> list[str]:
    return photo_urls(item["colorsSizesImagesJSON"][colour]["xmedia"])
