"""`ximilar_index` against the real stack: PostgreSQL, and the Ximilar emulator over HTTP."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import psycopg
import pytest
import requests

from unde_dagster.db.catalog_runs import CATALOG_WRITER
from unde_dagster.defs.ximilar.assets import ximilar_index
from unde_dagster.resources.ximilar import XimilarResource
from unde_dagster.ximilar import store
from unde_dagster.ximilar.sync import BatchReport, SyncSettings, batch_logger, run_brand
from unde_local.stack import LocalStack

SOURCE, CATALOG_RUN = "apify_zara", "catalog-run-1"
OUR_CATALOG_LOG = psycopg.types.json.Jsonb({"writer": CATALOG_WRITER})


@pytest.fixture(scope="module")
def instance() -> Any:
    """One Dagster instance for the module (runs are independent; creating one is slow)."""
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture()
def coll(stack: LocalStack, staging: psycopg.Connection) -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture()
def xres(stack: LocalStack, coll: str) -> XimilarResource:
    return XimilarResource(api_url=stack.env["XIMILAR_API_URL"], token=stack.env["XIMILAR_TOKEN"],
                           collection_id=coll, rate_limit_per_s=1000, backoff_base_s=0.01,
                           backoff_max_s=0.05, max_retries=3)


@pytest.fixture()
def faults(stack: LocalStack) -> Any:
    assert stack.emulators is not None
    injector = stack.emulators.faults["ximilar"]
    injector.clear(stats=True)
    yield injector
    requests.delete(f"{stack.emulators.base_url('ximilar')}/_emulator/ximilar/unfetchable")


def seed(conn: psycopg.Connection, n: int, photos: int = 3, start: int = 0,
         scope: str = "pilot") -> list[str]:
    ids = [f"{1000 + i}-{i % 7}" for i in range(start, start + n)]
    for ext in ids:
        urls = [f"http://s3.local/unde-images/originals/zara/{ext}/{k}.jpg"
                for k in range(1, photos + 1)]
        conn.execute(
            "INSERT INTO raw_products (source, external_id, brand, name, category, price, "
            "scraped_at, image_status, index_scope, image_urls, last_seen_run_id) VALUES "
            "(%s, %s, 'zara', 'Dress', 'dresses', 149.9, NOW() - interval '90 minutes', "
            "'uploaded', %s, %s, %s)",
            (SOURCE, ext, scope, psycopg.types.json.Jsonb(urls), CATALOG_RUN))
    conn.execute("INSERT INTO scraper_logs (scraper_name, run_id, status, started_at, metadata) "
                 "VALUES (%s, %s, 'success', NOW() - interval '2 hours', %s)",
                 (SOURCE, CATALOG_RUN, OUR_CATALOG_LOG))
    return ids


def collection(stack: LocalStack, coll: str) -> dict[str, dict[str, Any]]:
    assert stack.emulators is not None
    url = f"{stack.emulators.base_url('ximilar')}/_emulator/ximilar/collection/{coll}"
    return {r["_id"]: r for r in requests.get(url, timeout=10).json()["records"]}


def expected(ids: list[str], count: int = 2) -> set[str]:
    return {f"zara:{e}:{k}" for e in ids for k in range(1, count + 1)}


def materialize(resources: dict, instance: dg.DagsterInstance, xres: XimilarResource,
                ok: bool = True, **config: Any) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        [ximilar_index], partition_key="zara", resources={**resources, "ximilar": xres},
        instance=instance, raise_on_error=False,
        run_config={"ops": {"ximilar_index": {"config": {"batch_skus": 7, **config}}}},
    )
    assert result.success is ok
    return result


def direct(stack: LocalStack, xres: XimilarResource, retry: bool = False) -> dict[str, int]:
    """The same pass without Dagster around it (faster for the follow-up runs of a test)."""
    client = xres.client()
    with psycopg.connect(stack.env["STAGING_DB_URL"], autocommit=True) as conn:
        report = run_brand(conn, client, SOURCE, f"direct-{uuid.uuid4().hex[:6]}", retry=retry,
                           settings=SyncSettings(batch_skus=7))
    return {"records_sent": report.total("records_sent"), "removed": report.total("removed"),
            "skus_synced": report.total("synced"), "requests_made": client.requests_made}


def meta(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    mats = result.asset_materializations_for_node("ximilar_index")
    return {k: v.value for k, v in mats[-1].metadata.items()}


def states(conn: psycopg.Connection) -> dict[str, tuple]:
    rows = conn.execute("SELECT external_id, ximilar_status, jsonb_array_length("
                        "ximilar_synced_urls), ximilar_error FROM raw_products").fetchall()
    return {r[0]: r[1:] for r in rows}


def inserts(faults: Any) -> int:
    return sum(1 for r in faults.requests("/insert"))


def test_sync_then_rerun_sends_nothing(stack, staging, resources, instance, xres, coll, faults):
    ids = seed(staging, 20)
    seed(staging, 3, start=50, scope="off")  # not pilot: never sent
    first = meta(materialize(resources, instance, xres))
    assert first["skus"] == 20 and first["records_sent"] == 40
    assert first["requests_made"] == 6  # 7+7+6 SKUs → 14+14+12 records, 10 per request
    assert set(collection(stack, coll)) == expected(ids)
    rec = collection(stack, coll)[f"zara:{ids[0]}:1"]
    assert rec["sku_id"] == ids[0] and rec["price"] == "149.90" and rec["currency"] == "AED"
    assert {s[:2] for s in states(staging).values() if s[0] != "pending"} == {("synced", 2)}
    logs = staging.execute("SELECT count(*), sum(records_fetched) FROM scraper_logs "
                           "WHERE scraper_name = 'ximilar_sync'").fetchone()
    assert logs == (3, 20)
    faults.clear(stats=True)
    second = meta(materialize(resources, instance, xres))
    assert second["records_sent"] == 0 and second["requests_made"] == 0
    assert inserts(faults) == 0


def test_per_record_failure_partial_then_retry_synced(stack, staging, resources, instance,
                                                      xres, coll, faults):
    ids = seed(staging, 4)
    base = stack.emulators.base_url("ximilar")
    requests.post(f"{base}/_emulator/ximilar/unfetchable",
                  json={"match": f"/{ids[0]}/2\\.jpg|/{ids[1]}/"}, timeout=5)
    m = meta(materialize(resources, instance, xres))
    assert m["errors_by_reason"] == {"image_not_downloadable": 2}
    st = states(staging)
    assert st[ids[0]] == ("partial", 1, "image_not_downloadable")
    assert st[ids[1]] == ("error", 0, "image_not_downloadable")
    assert st[ids[2]][0] == "synced"
    requests.delete(f"{base}/_emulator/ximilar/unfetchable", timeout=5)
    # Errors wait ≥ 6 h: neither the sync pass nor the retry pass takes them yet.
    assert direct(stack, xres)["records_sent"] == 0
    assert direct(stack, xres, retry=True)["records_sent"] == 0
    staging.execute("UPDATE raw_products SET updated_at = NOW() - interval '7 hours'")
    retried = meta(materialize(resources, instance, xres, retry=True))
    assert retried["records_sent"] == 3 and retried["skus_synced"] == 2
    assert {s[0] for s in states(staging).values()} == {"synced"}
    assert set(collection(stack, coll)) == expected(ids)
    assert staging.execute("SELECT count(*) FROM scraper_logs WHERE scraper_name = "
                           "'ximilar_retry' AND metadata->>'phase' = 'retry'").fetchone()[0] == 1


def test_progressive_target(stack, staging, resources, instance, xres, coll, faults):
    ids = seed(staging, 5)
    materialize(resources, instance, xres)
    staging.execute("UPDATE raw_products SET ximilar_target_count = 3")
    m = direct(stack, xres)
    assert m["records_sent"] == 5 and m["skus_synced"] == 5
    assert set(collection(stack, coll)) == expected(ids, 3)


def test_429_storm_is_absorbed(stack, staging, resources, instance, xres, coll, faults):
    ids = seed(staging, 10)
    faults.add(match="/insert", status=429, times=3, retry_after=0,
               json={"status": {"code": 429, "text": "Too many requests"}})
    m = direct(stack, xres)
    assert m["requests_made"] == 3 + 3 and m["skus_synced"] == 10
    assert set(collection(stack, coll)) == expected(ids)


def test_outage_fails_run_and_rerun_finishes(stack, staging, resources, instance, xres, coll,
                                             faults):
    ids = seed(staging, 10)
    faults.add(match="/insert", status=503, times=5)  # outlasts the 3 retries
    materialize(resources, instance, xres, ok=False)
    assert "error" not in {s[0] for s in states(staging).values()}  # not the SKUs' fault
    materialize(resources, instance, xres)
    assert set(collection(stack, coll)) == expected(ids)


def test_removal_of_stale_and_non_pilot(stack, staging, resources, instance, xres, coll,
                                        faults):
    ids = seed(staging, 8)
    materialize(resources, instance, xres)
    # A new complete catalog run saw all but the first two; the third is no longer pilot.
    staging.execute("UPDATE raw_products SET last_seen_run_id = 'catalog-run-2', "
                    "scraped_at = NOW() WHERE external_id <> ALL(%s)", (ids[:2],))
    staging.execute("UPDATE raw_products SET index_scope = 'off' WHERE external_id = %s",
                    (ids[2],))
    staging.execute("INSERT INTO scraper_logs (scraper_name, run_id, status, started_at, "
                    "metadata) VALUES (%s, 'catalog-run-2', 'success', "
                    "NOW() - interval '1 minute', %s)", (SOURCE, OUR_CATALOG_LOG))
    m = meta(materialize(resources, instance, xres))
    assert m["removed"] == 3 and m["records_sent"] == 0
    assert set(collection(stack, coll)) == expected(ids[3:])
    st = states(staging)
    assert all(st[e] == ("pending", 0, None) for e in ids[:3])
    assert direct(stack, xres) == {"records_sent": 0, "removed": 0, "skus_synced": 0,
                                   "requests_made": 0}  # not re-sent either
    assert set(collection(stack, coll)) == expected(ids[3:])


def test_crash_between_http_and_db_update(stack, staging, resources, instance, xres, coll,
                                          faults, monkeypatch):
    ids = seed(staging, 20)
    real, calls = store.write_updates, []

    def crash_on_second(conn: psycopg.Connection, updates: list) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise ConnectionError("killed after the HTTP call")
        real(conn, updates)

    monkeypatch.setattr(store, "write_updates", crash_on_second)
    materialize(resources, instance, xres, ok=False)
    monkeypatch.setattr(store, "write_updates", real)
    synced = [e for e, s in states(staging).items() if s[0] == "synced"]
    assert len(synced) == 7  # batch 1 committed; batch 2 rolled back after its inserts
    assert len(collection(stack, coll)) == 28
    m = meta(materialize(resources, instance, xres))
    assert m["skus"] == 13 and m["records_sent"] == 26
    assert set(collection(stack, coll)) == expected(ids)
    assert {s[0] for s in states(staging).values()} == {"synced"}


def test_photo_change_replaces_records(stack, staging, resources, instance, xres, coll,
                                       faults):
    ids = seed(staging, 3)
    direct(stack, xres)
    staging.execute("UPDATE raw_products SET ximilar_status = 'pending' WHERE external_id = %s",
                    (ids[0],))  # what the catalog does when a SKU's photos change
    faults.clear(stats=True)
    m = direct(stack, xres)
    assert m["records_sent"] == 2 and len(faults.requests("/delete")) == 1
    assert set(collection(stack, coll)) == expected(ids)


def test_two_runs_at_once_never_send_one_sku_twice(stack, staging, xres, coll, faults):
    seed(staging, 40)
    faults.set_latency(20)
    reports: list = []

    def one_run(name: str) -> None:
        client = xres.client()
        with psycopg.connect(stack.env["STAGING_DB_URL"], autocommit=True) as conn:
            reports.append(run_brand(conn, client, SOURCE, name,
                                     settings=SyncSettings(batch_skus=5)))

    threads = [threading.Thread(target=one_run, args=(f"run-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.total("records_sent") for r in reports) == 80
    assert all(r.total("records_sent") > 0 for r in reports)
    assert len(collection(stack, coll)) == 80


def test_emulator_wire_contract(stack, coll, faults):
    base = stack.env["XIMILAR_API_URL"].rstrip("/") + "/similarity/fashion-new/v2/"
    h = {"Authorization": f"Token {stack.env['XIMILAR_TOKEN']}", "collection-id": coll}
    assert requests.post(base + "insert", json={"records": []}, timeout=5).status_code == 401
    assert requests.post(base + "insert", json={"records": []}, timeout=5,
                         headers={"Authorization": "Token x"}).status_code == 400
    eleven = [{"_id": str(i), "_url": "http://a.test/i.jpg"} for i in range(11)]
    too_many = requests.post(base + "insert", json={"records": eleven}, headers=h, timeout=5)
    assert too_many.status_code == 400 and too_many.json()["status"]["code"] == 400
    recs = [{"_id": "a", "_url": "http://a.test/1.jpg", "brand": "zara"},
            {"_id": "b", "_url": "ftp://nope"}, {"_id": "a", "_url": "http://a.test/1.jpg"}]
    body = requests.post(base + "insert", json={"records": recs}, headers=h, timeout=5).json()
    assert body["status"]["code"] == 211
    assert [(s["_id"], s["_reason"]["status"]["code"]) for s in body["skipped_records"]] == [
        ("b", 400), ("a", 411)]
    knn = requests.post(base + "visualTagsKNN", headers=h, timeout=5, json={
        "query_record": {"_id": "a"}, "k": 3, "filter": {"brand": "zara"}}).json()
    assert knn["answer_records"] == [{"_id": "a"}] and knn["answer_distances"] == [0.0]
    page = requests.get(base + "allRecords?size=10&page=1", headers=h, timeout=5).json()
    assert page["count"] == 1
    gone = requests.post(base + "delete", json={"records": [{"_id": "a"}, {"_id": "z"}]},
                         headers=h, timeout=5).json()
    assert gone["status"]["code"] == 206
    assert requests.post(base + "ping", timeout=5).json()["status"]["code"] == 200
    assert faults.stats(include_requests=False)["by_key"]["POST /similarity/{kind}/v2/insert"] == 4


def test_credentials_refused_mid_batch_leave_a_crashed_row(stack, staging, resources, instance,
                                                            xres, coll, faults):
    """A 401 in the middle of a batch fails the run (not the SKUs) and the batch still has its
    `scraper_logs` row, saying what was sent before it stopped; a re-run finishes."""
    ids = seed(staging, 20)
    faults.set_latency(100)

    def refuse_after_first_inserts() -> None:
        for _ in range(600):
            if inserts(faults) >= 2:
                faults.add(match="/insert", status=401)
                return
            threading.Event().wait(0.02)

    watcher = threading.Thread(target=refuse_after_first_inserts, daemon=True)
    watcher.start()
    materialize(resources, instance, xres, ok=False)
    watcher.join(timeout=5)
    rows = staging.execute(
        "SELECT status, records_fetched, metadata FROM scraper_logs "
        "WHERE scraper_name = 'ximilar_sync' ORDER BY id").fetchall()
    assert rows and rows[-1][0] == "crashed", rows
    assert rows[-1][1] > 0 and rows[-1][2]["records_sent"] > 0, rows[-1]
    assert "error" not in {s[0] for s in states(staging).values()}
    faults.clear()
    materialize(resources, instance, xres)
    assert set(collection(stack, coll)) == expected(ids)


def test_a_batch_row_spans_the_batch_not_its_write(staging: psycopg.Connection) -> None:
    began = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
    batch = BatchReport(phase="sync", skus=3, synced=3, started_at=began,
                        started=time.monotonic() - 30)
    batch_logger(staging, "run-1", retry=False)(batch)
    row = staging.execute("SELECT scraper_name, started_at, duration_seconds, records_new "
                          "FROM scraper_logs").fetchone()
    assert row == ("ximilar_sync", began, 30, 3)
