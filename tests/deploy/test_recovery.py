"""Recovery on the real deployment, as an operator meets it: a terminate from the UI, a run
container killed mid-batch, the daemon restarted with runs queued, the webserver recreated
behind nginx, and the schema migration through PgBouncer's transaction pool."""

from __future__ import annotations

import ast
import json
import subprocess
import threading
import time
from typing import Any

import boto3
import pytest

from tests.deploy.conftest import DEPLOY_TIMEOUT_S, FINISHED, Deployment
from tests.integration.image_stage_helpers import cdn, photo_requests, small_catalog, warm_photos
from unde_dagster.db.claims import status_counts
from unde_dagster.db.migrate import load_migrations
from unde_local import engines as eng

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(DEPLOY_TIMEOUT_S)]

TERMINATE = """
mutation($id: String!) { terminateRun(runId: $id) { __typename
  ... on TerminateRunSuccess { run { runId } } ... on TerminateRunFailure { message }
  ... on PythonError { message } } }
"""
RETRIES_OF = """
query($id: String!) { runsOrError(filter: {tags: [{key: "dagster/parent_run_id", value: $id}]}) {
  __typename ... on Runs { results { runId status } } } }
"""
STOP_TIMEOUT_S = 120  # deploy/dagster.yaml container_kwargs.stop_timeout


def _catalog(deployment: Deployment, brand: str) -> None:
    run = deployment.launch("catalog_job", brand)
    assert deployment.wait_run(run, FINISHED, 300) == "SUCCESS", deployment.run_messages(run)


def _wait_for(what: str, predicate: Any, timeout_s: float, every_s: float = 1) -> float:
    """Seconds until `predicate()` holds."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout_s, f"not within {timeout_s} s: {what}"
        time.sleep(every_s)
    return time.monotonic() - started


def _objects(deployment: Deployment, prefix: str) -> list[str]:
    env = deployment.stack.env
    s3 = boto3.client("s3", endpoint_url=env["S3_ENDPOINT"], aws_access_key_id=env["S3_ACCESS_KEY"],
                      aws_secret_access_key=env["S3_SECRET_KEY"], region_name="us-east-1")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=env["S3_BUCKET"], Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_terminate_from_the_ui_stops_the_run_container_within_its_stop_timeout(
    deployment: Deployment,
) -> None:
    brand = "pullandbear"
    with small_catalog(deployment.stack, brand, n_skus=4):
        _catalog(deployment, brand)
        hang = cdn(deployment.stack).add(match=f"/{brand}/photos/", hang=True, hang_max_s=900)
        try:
            run_id = deployment.launch("originals_job", brand)
            _wait_for("the batch asks the CDN", lambda: photo_requests(deployment.stack, brand),
                      timeout_s=240)
            started = time.monotonic()
            result = deployment.graphql(TERMINATE, timeout_s=STOP_TIMEOUT_S + 30, id=run_id)
            answered = time.monotonic() - started
            assert result["terminateRun"]["__typename"] == "TerminateRunSuccess", result
            status = deployment.wait_run(run_id, FINISHED, 120)
            stopped = time.monotonic() - started
        finally:
            cdn(deployment.stack).remove(hang.id)
    engine, container = deployment.run_worker(run_id)
    assert engine.name == deployment.engines["photo-downloader"].name
    state = container["State"]
    deployment.timings["container launch -> step start"] = (
        deployment.container_to_step_start(run_id))
    deployment.timings["terminate: mutation answered"] = answered
    deployment.timings["terminate: run CANCELED"] = stopped
    deployment.save("terminated_container_state.json", json.dumps(state, indent=2))
    assert status == "CANCELED", deployment.run_messages(run_id)[-3000:]
    assert state["Status"] == "exited", state
    # The run worker stopped on SIGTERM, well before Docker's SIGKILL at the stop timeout.
    assert state["ExitCode"] != 137 and not state["OOMKilled"], state
    assert answered < STOP_TIMEOUT_S / 2, answered


def test_a_killed_run_container_is_retried_and_every_sku_ends_once(
    deployment: Deployment,
) -> None:
    brand, n_skus, photos = "stradivarius", 12, 2
    stack = deployment.stack
    with small_catalog(stack, brand, n_skus=n_skus, photos=photos):
        warm_photos(stack)
        _catalog(deployment, brand)
        slow = cdn(stack).add(match=f"/{brand}/photos/", latency_ms=4000)
        try:
            run_id = deployment.launch("originals_job", brand)
            with deployment.staging() as conn:
                _wait_for("a first SKU uploaded",
                          lambda: status_counts(conn, brand).get("uploaded", 0) >= 1, 300, 0.5)
            engine, container = deployment.run_worker(run_id)
            client = eng.client(engine)
            try:
                client.containers.get(container["Id"]).kill()
            finally:
                client.close()
            killed = time.monotonic()
        finally:
            cdn(stack).remove(slow.id)
        assert deployment.wait_run(run_id, FINISHED, 240) == "FAILURE"
        failed = time.monotonic() - killed

        def retry() -> list[dict[str, str]]:
            return deployment.graphql(RETRIES_OF, id=run_id)["runsOrError"]["results"]

        _wait_for("the run retry launched", retry, timeout_s=180, every_s=2)
        [relaunched] = retry()
        assert deployment.wait_run(relaunched["runId"], FINISHED, 300) == "SUCCESS", (
            deployment.run_messages(relaunched["runId"])[-3000:]
        )
        deployment.timings["docker kill -> run FAILURE"] = failed
        deployment.timings["docker kill -> relaunched run SUCCESS"] = time.monotonic() - killed
        collages = deployment.launch("collages_job", brand)
        assert deployment.wait_run(collages, FINISHED, 300) == "SUCCESS"

    with deployment.staging() as conn:
        assert status_counts(conn, brand) == {"collage_ready": n_skus}
    originals = _objects(deployment, f"originals/{brand}/")
    assert len(originals) == n_skus * photos == len(set(originals)), originals
    assert len(_objects(deployment, f"collages/{brand}/")) == n_skus


def test_runs_queued_across_a_daemon_restart_all_run(deployment: Deployment) -> None:
    brand = "massimodutti"
    with small_catalog(deployment.stack, brand, n_skus=2):
        # one catalog run per brand at a time (unde/brand_apify limit 1): two wait in the queue
        runs = [deployment.launch("catalog_job", brand) for _ in range(3)]
        assert "QUEUED" in {deployment.run_status(r) for r in runs}
        restarted = deployment.control.compose("restart", "daemon")
        assert restarted.returncode == 0, restarted.stderr
        for run_id in runs:
            assert deployment.wait_run(run_id, FINISHED, 420) == "SUCCESS", run_id


def _nginx_started_at(deployment: Deployment) -> str:
    nginx = deployment.control.compose("ps", "-q", "nginx").stdout.strip()
    out = subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", nginx],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def test_a_recreated_webserver_answers_through_the_same_nginx(deployment: Deployment) -> None:
    before = _nginx_started_at(deployment)
    recreated = deployment.control.compose("up", "-d", "--no-deps", "--force-recreate",
                                           "--no-build", "webserver")
    assert recreated.returncode == 0, recreated.stderr
    deployment.timings["webserver recreated -> UI answers"] = _wait_for(
        "the UI answers through nginx", lambda: deployment.control.get("/server_info")[0] == 200,
        timeout_s=180)
    assert deployment.graphql("{ version }")["version"]
    assert _nginx_started_at(deployment) == before, "nginx was restarted"


def _applied(printed: str) -> list[str]:
    """Versions from migrate's `staging: applied [...]` line (none when up to date)."""
    [line] = [x for x in printed.splitlines() if x.startswith("staging: applied ")]
    said = line.removeprefix("staging: applied ")
    return [] if said.startswith("nothing") else ast.literal_eval(said)


def test_the_migration_runs_through_pgbouncer_transaction_pooling(
    deployment: Deployment,
) -> None:
    """Two migrations at once through the transaction pool (the code server's image, on the
    control plane's network): each file applies once, the other process waits for it."""
    url = deployment.control.pg_url("pgbouncer", "dagster")
    outputs: list[subprocess.CompletedProcess[str]] = []

    def migrate() -> None:
        outputs.append(deployment.control.compose(
            "exec", "-T", "code-server", "python", "-m", "unde_dagster.db.migrate",
            "--staging-url", url, "--production-url=", check=False))

    threads = [threading.Thread(target=migrate) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert [o.returncode for o in outputs] == [0, 0], [o.stderr[-2000:] for o in outputs]
    applied = [v for o in outputs for v in _applied(o.stdout)]
    assert sorted(applied) == [m.version for m in load_migrations("staging")], applied
    again = deployment.control.compose("exec", "-T", "code-server", "python", "-m",
                                       "unde_dagster.db.migrate", "--staging-url", url,
                                       "--production-url=")
    assert "nothing (up to date)" in again.stdout
