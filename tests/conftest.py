"""Shared fixtures: one real local stack (PostgreSQL, S3, emulators) per test session.

The stack lives in its own folder with its own free ports, so it runs beside the demo's.
Tests get clean tables and cleared emulator faults; they talk to everything over the wire.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest

from unde_dagster.defs.resources import resources_from_env
from unde_local.stack import LocalStack, StackSettings, database_url_from_env

STAGING_TABLES = (
    "raw_products", "scraper_logs", "raw_availability", "raw_stores", "catalog_rejections",
    "ximilar_legacy_skus",
)
PRODUCTION_TABLES = ("catalog_products", "model_library")


# Tests that share a costly session or package fixture run on one pytest-xdist worker
# (`scripts/test.sh` runs two, `--dist loadgroup`): one Docker deployment, one Dagster
# webserver and daemon. The deployment (~13 min cold) goes first, so the rest of the suite
# runs beside it on the other worker.
SHARED_FIXTURE_GROUPS = ("deploy", "e2e")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the group marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for group in SHARED_FIXTURE_GROUPS:
            if item.get_closest_marker(group):
                item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=lambda item: item.get_closest_marker("deploy") is None)


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    root = Path(tempfile.mkdtemp(prefix="unde-test-"))
    local = LocalStack(
        StackSettings(root=root, items_per_brand=40, database_url=database_url_from_env())
    )
    saved = dict(os.environ)
    try:
        os.environ.update(local.start())
        yield local
    finally:
        local.stop()
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture()
def staging_url(stack: LocalStack) -> Iterator[str]:
    url = stack.env["STAGING_DB_URL"]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(STAGING_TABLES)} RESTART IDENTITY")
    with psycopg.connect(stack.env["PRODUCTION_DB_URL"], autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(PRODUCTION_TABLES)} RESTART IDENTITY")
    yield url
    assert stack.emulators is not None
    for injector in stack.emulators.faults.values():
        injector.clear(stats=True)


@pytest.fixture()
def staging(staging_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(staging_url, autocommit=True) as conn:
        yield conn


@pytest.fixture()
def resources(stack: LocalStack) -> dict[str, Any]:
    """The production resource set, its env vars pointing at the test stack."""
    return resources_from_env()


@pytest.fixture()
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst
