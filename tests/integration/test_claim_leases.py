"""Short renewed leases and crash-safe attempts (issue 14), on the local stack's PostgreSQL.

A batch's claims outlive their lease while a heartbeat renews them; a run killed with
`kill -9` outside the daemon (a child process, as the CLI runs it) stops renewing, so its
SKUs come back one short lease later; the claim that died gives its attempt back; and the
run that takes the SKUs over says whose claims it found.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
from dagster import DagsterRun, DagsterRunStatus

from tests.integration.image_stage_helpers import (
    cdn,
    fast_downloader,
    fault_on,
    load_catalog,
    materialize,
    metadata,
    skus,
    small_catalog,
    warm_photos,
)
from unde_dagster.db.claims import (
    COLLAGE_QUEUE,
    DOWNLOAD_QUEUE,
    ClaimRules,
    HeldClaim,
    StageQueue,
    claim_batch,
    mark_error,
    release_stale_claims,
)
from unde_dagster.db.leases import LeaseHeartbeat
from unde_dagster.defs.collages.assets import product_collages
from unde_dagster.defs.originals.assets import product_originals
from unde_dagster.resources.collage import CollageMaker
from unde_local.stack import LocalStack

BRAND = "pullandbear"
LEASE_S = 12  # the kill tests' lease: long enough for a loaded machine, short to wait out

# A stage run the way `dagster asset materialize` makes one: its own process, a persistent
# DAGSTER_HOME, no daemon to notice its death. argv: stage, brand, lease, S3 endpoint or -.
STAGE_RUN = textwrap.dedent("""
    import os, sys
    import dagster as dg
    from unde_dagster.defs.collages.assets import product_collages
    from unde_dagster.defs.originals.assets import product_originals
    from unde_dagster.defs.resources import resources_from_env
    from unde_dagster.resources.collage import CollageMaker
    from unde_dagster.resources.downloader import PhotoDownloader
    from unde_dagster.resources.object_store import ObjectStore

    stage, brand, lease, s3_endpoint = sys.argv[1:5]
    leases = {"claim_lease_s": int(lease), "claim_renew_every_s": 1.0}
    env = os.environ
    res = resources_from_env()
    res["photo_downloader"] = PhotoDownloader(
        proxy_url=env["PROXY_URL"], delay_min_s=0.0, delay_max_s=0.01,
        photo_timeout_s=300.0, sku_timeout_s=600.0, **leases)
    res["collage_maker"] = CollageMaker(workers=1, **leases)
    if s3_endpoint != "-":
        res["object_store"] = ObjectStore(
            endpoint_url=s3_endpoint, aws_access_key_id=env["S3_ACCESS_KEY"],
            aws_secret_access_key=env["S3_SECRET_KEY"], region_name="us-east-1",
            bucket=env["S3_BUCKET"], public_base_url=env["S3_PUBLIC_BASE_URL"])
    asset = {"originals": product_originals, "collages": product_collages}[stage]
    with dg.DagsterInstance.get() as instance:
        dg.materialize([asset], partition_key=brand, resources=res, instance=instance)
""")


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)
    return value


def add_rows(conn: psycopg.Connection, n: int, status: str = "pending",
             stage: str | None = None, attempts: int = 0) -> None:
    """`n` SKUs of BRAND; an error row last failed (and was tried) two hours ago."""
    for i in range(n):
        conn.execute(
            "INSERT INTO raw_products (source, external_id, brand, scraped_at, image_status, "
            "image_error_stage, image_attempts, collage_attempts, image_attempted_at, "
            "updated_at) VALUES (%s, %s, %s, NOW(), %s, %s, %s, %s, "
            "NOW() - interval '2 hours', NOW() - interval '2 hours')",
            (f"apify_{BRAND}", f"{i}-1", BRAND, status, stage, attempts, attempts),
        )


def held_by(conn: psycopg.Connection, token: str) -> list[tuple[int, int, int]]:
    return conn.execute(
        "SELECT id, image_attempts, collage_attempts FROM raw_products "
        "WHERE claim_token = %s ORDER BY id", (token,),
    ).fetchall()


def test_heartbeat_keeps_a_slow_batch_claimed_past_its_lease(
    staging: psycopg.Connection, staging_url: str,
) -> None:
    lease = 4
    rules = ClaimRules(batch_size=3, lease_s=lease, max_attempts=3, retry_after_s=3600)
    add_rows(staging, 3)
    assert len(claim_batch(staging, DOWNLOAD_QUEUE, brand=BRAND, token="slow-run",
                           rules=rules, retry=False)) == 3

    def rival_gets_nothing_for(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            assert claim_batch(staging, DOWNLOAD_QUEUE, brand=BRAND, token="rival",
                               rules=rules, retry=False) == []
            time.sleep(0.5)

    def connect() -> psycopg.Connection:
        return psycopg.connect(staging_url, autocommit=True, application_name="lease-test")

    with LeaseHeartbeat(connect, "slow-run", lease_s=lease, every_s=0.5) as beat:
        rival_gets_nothing_for(2 * lease)  # the batch is slow: twice its lease already
        # The heartbeat's connection dies: that renewal fails, the next one reconnects.
        wait_for(lambda: staging.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'lease-test'").fetchone()[0], "the heartbeat's session")
        wait_for(lambda: beat.failures, "a failed renewal")
        rival_gets_nothing_for(lease)
    assert beat.renewals >= 2 and "lease renewal failed" in beat.failures[0]
    assert [a for _, a, _ in held_by(staging, "slow-run")] == [1, 1, 1]

    # Stopped: no more renewals, so the lease runs out and the rival takes the SKUs, the
    # dead claim's attempt given back (still one attempt each, the rival's).
    wait_for(lambda: claim_batch(staging, DOWNLOAD_QUEUE, brand=BRAND, token="rival",
                                 rules=rules, retry=False), "the lease to run out", 3 * lease)
    assert [a for _, a, _ in held_by(staging, "rival")] == [1, 1, 1]


@pytest.mark.parametrize("queue", [DOWNLOAD_QUEUE, COLLAGE_QUEUE], ids=lambda q: q.stage)
@pytest.mark.parametrize("death", ["run over", "lease expired"])
def test_a_dead_claim_gives_its_attempt_back_so_the_retry_pass_takes_the_sku(
    staging: psycopg.Connection, queue: StageQueue, death: str,
) -> None:
    # Two real failures; the third try's run dies mid-batch. The SKU has had 2 tries, so
    # the retry pass must take it again, at once (the cooldown counts from the last failure).
    rules = ClaimRules(batch_size=5, lease_s=120, max_attempts=3, retry_after_s=3600)
    add_rows(staging, 1, status="error", stage=queue.stage, attempts=2)
    column = 1 if queue is DOWNLOAD_QUEUE else 2

    [dead] = claim_batch(staging, queue, brand=BRAND, token="dead-run", rules=rules, retry=True)
    assert dead["attempts"] == 3
    if death == "run over":
        report = release_stale_claims(staging, queue, BRAND, lambda t: t == "dead-run", "next")
        assert report == [HeldClaim("dead-run", 1, "released: run over", None)]
    else:
        staging.execute("UPDATE raw_products SET claimed_until = NOW() - interval '1 second'")
    [again] = claim_batch(staging, queue, brand=BRAND, token="next", rules=rules, retry=True)
    assert again["attempts"] == 3
    [row] = held_by(staging, "next")
    assert row[column] == 3 and row[3 - column] == 2  # the other stage's count is untouched


def test_a_rerun_says_whose_claims_it_found_and_what_it_did(
    stack: LocalStack, staging: psycopg.Connection, resources: dict[str, Any],
    instance: dg.DagsterInstance,
) -> None:
    warm_photos(stack)
    res = {**resources, "photo_downloader": fast_downloader(stack)}
    with small_catalog(stack, BRAND, 4, photos=2):
        load_catalog(BRAND, res, instance)
        alive, stalled = (DagsterRun(job_name="__ephemeral_asset_job__",
                                     status=DagsterRunStatus.STARTED) for _ in range(2))
        instance.add_run(alive)
        instance.add_run(stalled)
        for token, n in ((alive.run_id, 2), ("dead-run-0001", 1), (stalled.run_id, 1)):
            claim_batch(staging, DOWNLOAD_QUEUE, brand=BRAND, token=token, retry=False,
                        rules=ClaimRules(n, 600, 3, 3600))
        staging.execute("UPDATE raw_products SET claimed_until = NOW() - interval '1 second' "
                        "WHERE claim_token = %s", (stalled.run_id,))
        result = materialize([product_originals], BRAND, res, instance)

    meta = metadata(result, "product_originals")
    assert (meta["claimed"], meta["uploaded"]) == (2, 2)
    assert (meta["skus_released_from_dead_claims"], meta["skus_held_by_live_claims"]) == (2, 2)
    found = {(c["run_id"], c["skus"], c["fate"]) for c in meta["claims_of_other_runs"]}
    assert found == {("dead-run-0001", 1, "released: run over"),
                     (stalled.run_id, 1, "released: lease expired"),
                     (alive.run_id, 2, "left alone: lease live")}
    rows = list(skus(staging, BRAND).values())
    assert [(r["image_status"], r["image_attempts"]) for r in rows] == (
        [("pending", 1)] * 2 + [("uploaded", 1)] * 2)
    said = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any(f"held by run {alive.run_id}" in m and "left alone" in m for m in said), said
    assert any("held by a dead claim of run dead-run-0001 (run over)" in m for m in said)


@contextmanager
def black_hole() -> Iterator[tuple[str, list[socket.socket]]]:
    """An endpoint that takes connections and never answers (an S3 that hangs)."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", accepted
    finally:
        server.shutdown(socket.SHUT_RDWR)
        server.close()
        for conn in accepted:
            conn.close()


def start_stage_run(stage: str, home: Path, s3_endpoint: str = "-") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", STAGE_RUN, stage, BRAND, str(LEASE_S), s3_endpoint],
        env={**os.environ, "DAGSTER_HOME": str(home)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def kill_mid_batch(worker: subprocess.Popen[str], staging: psycopg.Connection,
                   in_flight: Callable[[], bool], n_held: int) -> str:
    """Wait until the child holds `n_held` SKUs with work in flight and has renewed their
    lease once, then `kill -9` it; returns its run id."""
    def claims() -> list[tuple[str, Any]]:
        assert worker.poll() is None, worker.communicate()[1][-3000:]
        return staging.execute(
            "SELECT claim_token, claimed_until FROM raw_products WHERE brand = %s "
            "AND claim_token IS NOT NULL", (BRAND,)).fetchall()

    def held_mid_batch() -> list[tuple[str, Any]]:
        held = claims()
        return held if len(held) == n_held and in_flight() else []

    first = wait_for(held_mid_batch, "the run to be mid-batch")
    token, until = first[0][0], max(u for _, u in first)
    wait_for(lambda: max(u for _, u in claims()) > until, "a lease renewal")
    worker.kill()  # SIGKILL: no handler, no cleanup, Dagster hears nothing
    worker.wait(timeout=30)
    return str(token)


def check_orphans_come_back(staging: psycopg.Connection, home: Path, token: str) -> None:
    """The killed run's SKUs are held under the short lease only, then free again."""
    with dg.DagsterInstance.from_config(str(home)) as shared:
        run = shared.get_run_by_id(token)
        assert run is not None and run.status == DagsterRunStatus.STARTED  # never learned
    assert staging.execute(
        "SELECT bool_and(claimed_until <= NOW() + make_interval(secs => %s)) FROM raw_products "
        "WHERE claim_token = %s", (LEASE_S, token)).fetchone()[0]
    wait_for(lambda: staging.execute(
        "SELECT bool_and(claimed_until < NOW()) FROM raw_products WHERE claim_token = %s",
        (token,)).fetchone()[0], "the killed run's lease to end", LEASE_S + 30)


def check_rerun_report(meta: dict[str, Any], home: Path, run_id: str, token: str,
                       n: int) -> None:
    assert meta["claimed"] == n and meta["skus_released_from_dead_claims"] == n
    assert meta["claims_of_other_runs"] == [
        {"run_id": token, "skus": n, "fate": "released: lease expired", "lease_until": None}]
    with dg.DagsterInstance.from_config(str(home)) as shared:
        said = [e.user_message for e in shared.all_logs(run_id)]
    assert any(f"held by a dead claim of run {token} (lease expired)" in m for m in said), said


def test_a_killed_downloader_run_s_skus_come_back_after_the_lease_with_no_attempt_spent(
    stack: LocalStack, staging: psycopg.Connection, resources: dict[str, Any],
    instance: dg.DagsterInstance, tmp_path: Path,
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    warm_photos(stack)
    with small_catalog(stack, BRAND, 4, photos=2):
        load_catalog(BRAND, resources, instance)
        rows = list(skus(staging, BRAND).values())
        for row in rows[2:]:  # two SKUs hang at the CDN; the other two finish
            for url in row["original_image_urls"]:
                cdn(stack).add(match=fault_on(url), hang=True, hang_max_s=600)
        worker = start_stage_run("originals", home)
        try:
            token = kill_mid_batch(worker, staging, lambda: [
                r["image_status"] for r in skus(staging, BRAND).values()
            ] == ["uploaded", "uploaded", "pending", "pending"], n_held=2)
        finally:
            worker.kill()
        cdn(stack).clear()
        check_orphans_come_back(staging, home, token)

        downloader = fast_downloader(stack, claim_lease_s=LEASE_S)
        with dg.DagsterInstance.from_config(str(home)) as shared:
            result = materialize([product_originals], BRAND,
                                 {**resources, "photo_downloader": downloader}, shared)
    check_rerun_report(metadata(result, "product_originals"), home, result.run_id, token, 2)
    after = list(skus(staging, BRAND).values())
    assert [(r["image_status"], r["image_attempts"]) for r in after] == [("uploaded", 1)] * 4
    assert all(len(r["image_urls"]) == 2 and r["claim_token"] is None for r in after)


def test_a_killed_collage_run_s_skus_come_back_after_the_lease_with_no_attempt_spent(
    stack: LocalStack, staging: psycopg.Connection, resources: dict[str, Any],
    instance: dg.DagsterInstance, tmp_path: Path,
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    warm_photos(stack)
    with small_catalog(stack, BRAND, 3, photos=2):
        res = {**resources, "photo_downloader": fast_downloader(stack)}
        load_catalog(BRAND, res, instance)
        materialize([product_originals], BRAND, res, instance)
        with black_hole() as (hanging_s3, connections):
            worker = start_stage_run("collages", home, hanging_s3)
            try:
                token = kill_mid_batch(worker, staging, lambda: bool(connections), n_held=3)
            finally:
                worker.kill()
        check_orphans_come_back(staging, home, token)

        maker = CollageMaker(claim_lease_s=LEASE_S)
        with dg.DagsterInstance.from_config(str(home)) as shared:
            result = materialize([product_collages], BRAND,
                                 {**resources, "collage_maker": maker}, shared)
    check_rerun_report(metadata(result, "product_collages"), home, result.run_id, token, 3)
    after = list(skus(staging, BRAND).values())
    assert [(r["image_status"], r["collage_attempts"], r["image_attempts"])
            for r in after] == [("collage_ready", 1, 1)] * 3
    assert all(r["collage_url"] and r["claim_token"] is None for r in after)


def descendants(pid: int) -> dict[int, str]:
    """Live processes below `pid` (pid -> command line), read off /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rsplit(") ", 1)[1].split()[:2]
        if state != "Z":
            parents[int(entry.name)] = int(ppid)
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    cmdlines = {}
    for p in found:
        try:
            cmdlines[p] = (Path("/proc") / str(p) / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
    return {p: c.decode(errors="replace") for p, c in cmdlines.items()}


def still_alive(pids: set[int]) -> set[int]:
    alive = set()
    for p in pids:
        try:
            stat = (Path("/proc") / str(p) / "stat").read_text()
        except OSError:
            continue
        if stat.rsplit(") ", 1)[1][0] != "Z":
            alive.add(p)
    return alive


def test_a_collage_run_killed_while_its_pool_works_leaves_no_process_behind(
    stack: LocalStack, staging: psycopg.Connection, resources: dict[str, Any],
    instance: dg.DagsterInstance, tmp_path: Path,
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    warm_photos(stack)
    with small_catalog(stack, BRAND, 30, photos=2):
        res = {**resources, "photo_downloader": fast_downloader(stack)}
        load_catalog(BRAND, res, instance)
        materialize([product_originals], BRAND, res, instance)
        worker = start_stage_run("collages", home)
        try:
            def pool_at_work() -> dict[int, str]:
                assert worker.poll() is None, worker.communicate()[1][-3000:]
                below = descendants(worker.pid)
                forked = [c for c in below.values() if "multiprocessing.forkserver" in c]
                return below if len(forked) >= 2 else {}  # the forkserver and a worker

            tree = wait_for(pool_at_work, "the collage pool at work")
        finally:
            worker.kill()
            worker.wait(timeout=30)
    deadline = time.monotonic() + 30
    while (alive := still_alive(set(tree))) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, {pid: tree[pid] for pid in alive}
    assert staging.execute(
        "SELECT count(*) FROM raw_products WHERE brand = %s AND image_status = 'uploaded'",
        (BRAND,)).fetchone()[0] > 0, "the kill came after the batch: nothing was in flight"


def test_error_messages_with_nul_bytes_and_lone_surrogates_are_recorded(
    staging: psycopg.Connection,
) -> None:
    """A SKU's error text quotes what a server or a feed sent: it must never fail the write."""
    add_rows(staging, 1)
    [row] = claim_batch(staging, DOWNLOAD_QUEUE, brand=BRAND, token="t",
                        rules=ClaimRules(1, 120, 3, 3600), retry=False)
    assert mark_error(staging, DOWNLOAD_QUEUE, row["id"], "t", "http_404: a\x00b \ud800 end")
    [(stored,)] = staging.execute("SELECT error_message FROM raw_products").fetchall()
    assert stored.startswith("http_404: ab") and "\x00" not in stored and stored.endswith(" end")
