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
from xdist.scheduler import LoadFileScheduling

from unde_dagster.defs.resources import resources_from_env
from unde_local.stack import LocalStack, StackSettings, database_url_from_env

STAGING_TABLES = (
    "raw_products", "scraper_logs", "raw_availability", "raw_stores", "catalog_rejections",
    "ximilar_legacy_skus",
)
PRODUCTION_TABLES = ("catalog_products", "model_library")


# `scripts/test.sh` runs two pytest-xdist workers with `--dist loadfile`: each file runs
# whole on one worker, in order. The folders whose tests share a costly session or package
# fixture (one Docker deployment; one Dagster webserver and daemon) are one unit each, and
# the deployment (~13 min cold) is collected first, so the rest runs beside it. (xdist's
# own `loadgroup` does not group on pytest 9.2: it renames `item._nodeid`, which 9.2 no
# longer reads.)
DEPLOY_TESTS = "tests/deploy/"
SHARED_FIXTURE_FOLDERS = (DEPLOY_TESTS, "tests/e2e/")


class SharedFixtureFileScheduling(LoadFileScheduling):
    def _split_scope(self, nodeid: str) -> str:
        path = nodeid.split("::", 1)[0]
        return next((f for f in SHARED_FIXTURE_FOLDERS if path.startswith(f)), path)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> LoadFileScheduling | None:
    if config.getvalue("dist") != "loadfile":
        return None
    return SharedFixtureFileScheduling(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: not item.nodeid.startswith(DEPLOY_TESTS))


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
