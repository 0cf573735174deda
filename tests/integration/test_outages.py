"""An outage is not a bad SKU: `product_originals` when the object store or the Staging DB
goes away in the middle of a batch (local stack: real PostgreSQL, S3 server, CDN emulator).

The object store sits behind a TCP proxy of the test, switched from forwarding to refusing
connections once a few SKUs are stored; the Staging DB loses the stage's backend connection
(`pg_terminate_backend`) the same way.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import psycopg
import pytest

from tests.integration.image_stage_helpers import (
    cdn,
    fast_downloader,
    load_catalog,
    logs,
    object_store,
    skus,
    small_catalog,
    warm_photos,
)
from unde_dagster.definitions import defs
from unde_dagster.defs.collages.assets import product_collages
from unde_dagster.defs.originals.assets import product_originals
from unde_dagster.resources.collage import CollageMaker
from unde_dagster.resources.databases import StagingDatabase
from unde_dagster.resources.object_store import ObjectStore
from unde_local.stack import LocalStack

BRAND = "oysho"
N_SKUS = 12


class SwitchableProxy:
    """A TCP forwarder to `target` that can start refusing connections (and drop the open
    ones) and later forward again, on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._server: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def forward(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self.port = server.getsockname()[1]
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def refuse(self) -> None:
        with self._lock:
            server, self._server = self._server, None
            open_now, self._open = self._open, set()
        if server is not None:
            server.close()
        for sock in open_now:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._server is not server:
                    client.close()
                    upstream.close()
                    return
                self._open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)


def store_behind(stack: LocalStack, proxy: SwitchableProxy) -> ObjectStore:
    """The stage's object store reached through the proxy (public URLs unchanged)."""
    env = stack.env
    scheme = urlsplit(env["S3_ENDPOINT"]).scheme
    return ObjectStore(
        endpoint_url=f"{scheme}://127.0.0.1:{proxy.port}",
        max_attempts=2,
        aws_access_key_id=env["S3_ACCESS_KEY"],
        aws_secret_access_key=env["S3_SECRET_KEY"],
        region_name="us-east-1",
        bucket=env["S3_BUCKET"],
        public_base_url=env["S3_PUBLIC_BASE_URL"],
    )


@pytest.fixture()
def store_proxy(stack: LocalStack) -> Iterator[SwitchableProxy]:
    parts = urlsplit(object_store(stack).endpoint_url or "")
    proxy = SwitchableProxy((parts.hostname or "127.0.0.1", parts.port or 80))
    proxy.forward()
    yield proxy
    proxy.refuse()


@pytest.fixture()
def slow_resources(stack: LocalStack, resources: dict[str, Any]) -> dict[str, Any]:
    """Two photos at a time, each delayed by the CDN: the batch of 12 SKUs takes seconds."""
    warm_photos(stack)
    cdn(stack).latency_ms = 250.0
    return {**resources, "photo_downloader": fast_downloader(stack, max_in_flight=2)}


@pytest.fixture()
def clean_prefix(stack: LocalStack) -> None:
    """Earlier tests' objects of the brand would look like orphans here."""
    store = object_store(stack)
    for key in [*stored_keys(store), *stored_keys(store, "collages")]:
        store.get_client().delete_object(Bucket=store.bucket, Key=key)


def stored_keys(store: ObjectStore, stage: str = "originals") -> list[str]:
    pages = (
        store.get_client()
        .get_paginator("list_objects_v2")
        .paginate(Bucket=store.bucket, Prefix=f"{stage}/{BRAND}/")
    )
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def when_uploaded(
    staging_url: str, count: int, then: Callable[[], None], status: str = "uploaded"
) -> threading.Thread:
    """Call `then` once `count` of the brand's SKUs are recorded in `status` (in a thread)."""

    def watch() -> None:
        with psycopg.connect(staging_url, autocommit=True) as conn:
            for _ in range(600):
                (done,) = conn.execute(
                    "SELECT count(*) FROM raw_products WHERE brand = %s AND image_status = %s",
                    (BRAND, status),
                ).fetchone() or (0,)
                if done >= count:
                    then()
                    return
                time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def run_stage(resources: dict[str, Any], instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [product_originals],
        partition_key=BRAND,
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )


def step_failures(result: dg.ExecuteInProcessResult) -> list[str]:
    return [
        e.event_specific_data.error.to_string()  # type: ignore[union-attr]
        for e in result.all_events
        if e.is_step_failure
    ]


def assert_stopped_cleanly(staging: psycopg.Connection, before: dict[str, int]) -> int:
    """No SKU in error; every SKU not recorded kept its attempts; returns how many were."""
    rows = skus(staging, BRAND)
    assert [r["external_id"] for r in rows.values() if r["image_status"] == "error"] == []
    waiting = [r for r in rows.values() if r["image_status"] != "uploaded"]
    assert waiting, "the fault should land inside the batch"
    for row in waiting:
        assert row["image_status"] == "pending"
        assert row["image_attempts"] == before[row["external_id"]]
    return len(rows) - len(waiting)


def assert_all_uploaded_without_orphans(stack: LocalStack, staging: psycopg.Connection) -> None:
    store = object_store(stack)
    rows = skus(staging, BRAND).values()
    assert [r["image_status"] for r in rows] == ["uploaded"] * N_SKUS
    referenced = [store.key_of(url) for r in rows for url in r["image_urls"]]
    assert len(referenced) == len(set(referenced)) == N_SKUS * 2
    assert sorted(stored_keys(store)) == sorted(referenced)


def test_object_store_refusing_mid_batch_stops_the_batch_and_keeps_the_attempts(
    stack: LocalStack,
    staging: psycopg.Connection,
    staging_url: str,
    slow_resources: dict[str, Any],
    instance: dg.DagsterInstance,
    store_proxy: SwitchableProxy,
    clean_prefix: None,
) -> None:
    with small_catalog(stack, BRAND, N_SKUS, photos=2):
        load_catalog(BRAND, slow_resources, instance)
        before = {ext: r["image_attempts"] for ext, r in skus(staging, BRAND).items()}
        watcher = when_uploaded(staging_url, 3, store_proxy.refuse)
        result = run_stage(
            {**slow_resources, "object_store": store_behind(stack, store_proxy)}, instance
        )
        watcher.join(timeout=5)
        assert not result.success
        [failure] = step_failures(result)
        assert "object store unavailable" in failure
        recorded = assert_stopped_cleanly(staging, before)
        assert recorded >= 3  # the SKUs stored before the outage stay recorded
        [log] = logs(staging, "photo_downloader")
        assert log["status"] == "crashed" and log["records_fetched"] == N_SKUS
        assert log["records_new"] == recorded and log["records_errors"] == 0
        assert log["metadata"]["service"] == "object store"
        assert "object store" in log["metadata"]["error"]

        store_proxy.forward()  # the store is back: the next run finishes the work
        cdn(stack).latency_ms = 0.0
        again = run_stage(
            {**slow_resources, "object_store": store_behind(stack, store_proxy)}, instance
        )
        assert again.success, step_failures(again)
        assert_all_uploaded_without_orphans(stack, staging)


def test_staging_db_lost_mid_batch_stops_the_batch_and_says_so(
    stack: LocalStack,
    staging: psycopg.Connection,
    staging_url: str,
    slow_resources: dict[str, Any],
    instance: dg.DagsterInstance,
    clean_prefix: None,
) -> None:
    db: StagingDatabase = slow_resources["staging_db"]
    app = db.application_name

    def kill_stage_connection() -> None:
        with psycopg.connect(staging_url, autocommit=True) as conn:
            killed = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (app,),
            ).fetchall()
        assert killed

    with small_catalog(stack, BRAND, N_SKUS, photos=2):
        load_catalog(BRAND, slow_resources, instance)
        before = {ext: r["image_attempts"] for ext, r in skus(staging, BRAND).items()}
        watcher = when_uploaded(staging_url, 3, kill_stage_connection)
        result = run_stage(slow_resources, instance)
        watcher.join(timeout=5)
        assert not result.success
        [failure] = step_failures(result)
        assert "Staging DB unavailable" in failure
        messages = [r.user_message for r in instance.all_logs(result.run_id)]
        assert any("scraper_logs row could not be closed" in m for m in messages)
        assert [log["status"] for log in logs(staging, "photo_downloader")] == ["running"]
        rows = skus(staging, BRAND)
        assert [r for r in rows.values() if r["image_status"] == "error"] == []
        assert any(r["image_status"] != "uploaded" for r in rows.values())
        # Its claims could not be released (the DB was gone): a re-run releases them at
        # once, the failed run being over, with their attempts given back.
        cdn(stack).latency_ms = 0.0
        again = run_stage(slow_resources, instance)
        assert again.success, step_failures(again)
        assert_all_uploaded_without_orphans(stack, staging)
        final = skus(staging, BRAND)
        assert {ext: r["image_attempts"] for ext, r in final.items()} == {
            ext: n + 1 for ext, n in before.items()
        }
        # one row per started batch: the re-run closed the stopped batch's row as crashed
        assert [(log["run_id"], log["status"]) for log in logs(staging, "photo_downloader")] == [
            (result.run_id, "crashed"), (again.run_id, "success")]


def test_object_store_refusing_mid_collage_batch_stops_it_and_keeps_the_attempts(
    stack: LocalStack,
    staging: psycopg.Connection,
    staging_url: str,
    resources: dict[str, Any],
    instance: dg.DagsterInstance,
    store_proxy: SwitchableProxy,
    clean_prefix: None,
) -> None:
    warm_photos(stack)
    direct = {**resources, "photo_downloader": fast_downloader(stack)}
    behind = {**direct, "object_store": store_behind(stack, store_proxy),
              "collage_maker": CollageMaker(workers=1)}
    with small_catalog(stack, BRAND, N_SKUS, photos=2):
        load_catalog(BRAND, direct, instance)
        assert run_stage(direct, instance).success
        before = {ext: r["collage_attempts"] for ext, r in skus(staging, BRAND).items()}
        watcher = when_uploaded(staging_url, 3, store_proxy.refuse, status="collage_ready")
        result = dg.materialize([product_collages], partition_key=BRAND, resources=behind,
                                instance=instance, raise_on_error=False)
        watcher.join(timeout=5)
        assert not result.success
        [failure] = step_failures(result)
        assert "object store unavailable" in failure
        rows = skus(staging, BRAND).values()
        assert [r["external_id"] for r in rows if r["image_status"] == "error"] == []
        waiting = [r for r in rows if r["image_status"] == "uploaded"]
        assert waiting, "the fault should land inside the batch"
        assert all(r["collage_attempts"] == before[r["external_id"]] and r["claim_token"] is None
                   for r in waiting)
        [log] = logs(staging, "collage_worker")
        assert log["status"] == "crashed" and log["records_errors"] == 0
        assert log["records_new"] == N_SKUS - len(waiting)

        store_proxy.forward()
        again = dg.materialize([product_collages], partition_key=BRAND, resources=behind,
                               instance=instance, raise_on_error=False)
        assert again.success, step_failures(again)
    store = object_store(stack)
    rows = skus(staging, BRAND).values()
    assert [r["image_status"] for r in rows] == ["collage_ready"] * N_SKUS
    assert sorted(stored_keys(store, "collages")) == sorted(
        store.key_of(r["collage_url"]) for r in rows)


def test_postgresql_restarted_mid_batch_costs_a_step_retry_not_the_skus(
    stack: LocalStack,
    staging: psycopg.Connection,
    staging_url: str,
    slow_resources: dict[str, Any],
    instance: dg.DagsterInstance,
    clean_prefix: None,
) -> None:
    """The whole server stopped for 10 s and started again, under the stage job's own retry
    policy (as the daemon runs it): the step fails naming the Staging DB, is retried on a
    new connection once the server is back, and every SKU ends uploaded once."""
    postgres = stack.postgres
    assert postgres.pgdata.exists(), "this test stops the stack's own PostgreSQL server"

    def restart() -> None:
        postgres.stop()
        time.sleep(10)
        postgres.start()

    job = defs.resolve_job_def("originals_job")
    with small_catalog(stack, BRAND, N_SKUS, photos=2):
        load_catalog(BRAND, slow_resources, instance)
        before = {ext: r["image_attempts"] for ext, r in skus(staging, BRAND).items()}
        watcher = when_uploaded(staging_url, 3, restart)
        result = job.execute_in_process(partition_key=BRAND, instance=instance,
                                        resources=slow_resources, raise_on_error=False)
        watcher.join(timeout=60)
    events = [e for e in result.all_events if e.step_key == "product_originals"]
    retried = [e for e in events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert result.success, step_failures(result)
    assert retried, [e.event_type_value for e in events]
    assert "Staging DB unavailable" in retried[0].event_specific_data.error.to_string()
    with psycopg.connect(staging_url, autocommit=True) as conn:
        assert_all_uploaded_without_orphans(stack, conn)
        final = skus(conn, BRAND)
        assert {ext: r["image_attempts"] for ext, r in final.items()} == {
            ext: n + 1 for ext, n in before.items()}
        statuses = [log["status"] for log in logs(conn, "photo_downloader")]
    assert statuses[0] == "crashed" and set(statuses[1:]) == {"success"}, statuses


def test_staging_db_down_until_the_run_ends_then_a_rerun_finishes(
    stack: LocalStack,
    staging: psycopg.Connection,
    staging_url: str,
    slow_resources: dict[str, Any],
    instance: dg.DagsterInstance,
    clean_prefix: None,
) -> None:
    """The server stays down until the run is over (no step retry): the run fails naming the
    Staging DB; once the server is back, the next run takes over the dead run's claims at
    once, closes its batch's row as crashed and finishes every SKU with one attempt."""
    postgres = stack.postgres
    assert postgres.pgdata.exists(), "this test stops the stack's own PostgreSQL server"
    with small_catalog(stack, BRAND, N_SKUS, photos=2):
        load_catalog(BRAND, slow_resources, instance)
        before = {ext: r["image_attempts"] for ext, r in skus(staging, BRAND).items()}
        watcher = when_uploaded(staging_url, 3, postgres.stop)
        try:
            result = run_stage(slow_resources, instance)
            watcher.join(timeout=30)
        finally:
            postgres.start()
        assert not result.success
        [failure] = step_failures(result)
        assert "Staging DB unavailable" in failure
        cdn(stack).latency_ms = 0.0
        again = run_stage(slow_resources, instance)
        assert again.success, step_failures(again)
    with psycopg.connect(staging_url, autocommit=True) as conn:
        assert_all_uploaded_without_orphans(stack, conn)
        assert {ext: r["image_attempts"] for ext, r in skus(conn, BRAND).items()} == {
            ext: n + 1 for ext, n in before.items()}
        assert [(log["run_id"], log["status"]) for log in logs(conn, "photo_downloader")] == [
            (result.run_id, "crashed"), (again.run_id, "success")]
