"""The deployment, end to end on real engines: the UI behind its login, and a two-brand
backfill whose every step runs in a container on its role's host."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest
from dagster_graphql.client.query import LAUNCH_PARTITION_BACKFILL_MUTATION

from tests.deploy.conftest import DEPLOY_TIMEOUT_S, FINISHED, Deployment
from tests.integration.image_stage_helpers import small_catalog, warm_photos
from unde_dagster.db.claims import status_counts
from unde_deploy.executor import STEP_KEY_LABEL

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(DEPLOY_TIMEOUT_S)]

ASSETS = ["raw_products", "product_originals", "product_collages", "ximilar_index"]
BRANDS = ["zara", "bershka"]
# The role host of each step (deploy/dagster.yaml role_hosts), checks with their assets.
STEP_HOSTS = {"raw_products": "apify", "product_originals": "photo-downloader",
              "product_collages": "collage", "ximilar_index": "ximilar-sync"}
DONE = {"COMPLETED_SUCCESS", "COMPLETED_FAILED", "COMPLETED", "FAILED", "CANCELED"}
BACKFILL = """
query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  __typename ... on PartitionBackfill { status runs { runId status tags { key value } } }
  ... on PythonError { message } } }
"""


def test_the_ui_answers_only_with_the_login(deployment: Deployment) -> None:
    cp = deployment.control
    assert cp.get("/", auth=False)[0] == 401
    assert cp.get("/graphql", auth=False, body=b'{"query": "{ version }"}')[0] == 401
    status, body = cp.get("/server_info")
    assert status == 200 and b"dagster_webserver_version" in body
    assert deployment.graphql("{ version }")["version"]


def _wait(deployment: Deployment, backfill_id: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        backfill = deployment.graphql(BACKFILL, id=backfill_id)["partitionBackfillOrError"]
        assert backfill["__typename"] == "PartitionBackfill", backfill
        if backfill["status"] in DONE:
            return backfill
        assert time.monotonic() < deadline, (backfill, deployment.control.logs("daemon", 80))
        time.sleep(3)


def test_two_brand_backfill_runs_every_step_on_its_role_host(deployment: Deployment) -> None:
    stack = deployment.stack
    started = time.monotonic()
    with small_catalog(stack, "zara", n_skus=3), small_catalog(stack, "bershka", n_skus=3):
        warm_photos(stack)
        launched = deployment.graphql(LAUNCH_PARTITION_BACKFILL_MUTATION, backfillParams={
            "partitionNames": BRANDS, "assetSelection": [{"path": [a]} for a in ASSETS],
            "title": "deploy test: catalog pipeline of two brands",
        })["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill = _wait(deployment, launched["backfillId"], timeout_s=900)
    elapsed = time.monotonic() - started
    deployment.timings["two-brand backfill"] = elapsed
    assert backfill["status"] in {"COMPLETED_SUCCESS", "COMPLETED"}, backfill
    runs = {r["runId"]: {t["key"]: t["value"] for t in r["tags"]} for r in backfill["runs"]}
    assert {tags["dagster/partition"] for tags in runs.values()} == set(BRANDS)

    # Each run's worker ran on the control plane's engine; each step in a container from
    # the user-code image on its role host's engine: asked of the engines themselves.
    seen: dict[str, dict[str, str]] = {}  # run id -> step -> engine it ran on
    engines = {engine.name: host for host, engine in deployment.engines.items()}
    for name, host in engines.items():
        for container in deployment.containers(host):
            run_id = container["labels"].get("dagster/run_id")
            if run_id not in runs:
                continue
            assert container["image"] == "unde-dagster:local", container
            step = container["labels"].get(STEP_KEY_LABEL, "<run worker>")
            seen.setdefault(run_id, {})[step] = name
    deployment.save("backfill_containers.json", json.dumps(seen, indent=2))
    engine_of = {host: engine.name for host, engine in deployment.engines.items()}
    assert len(set(engine_of[h] for h in ("control", *STEP_HOSTS.values()))) >= 3, engine_of
    for run_id in runs:
        placed = seen.get(run_id, {})
        assert placed.get("<run worker>") == engine_of["control"], placed
        for step, where in placed.items():
            if step == "<run worker>":
                continue
            asset = next(a for a in STEP_HOSTS if step.startswith(a))  # checks: their asset's
            assert where == engine_of[STEP_HOSTS[asset]], (step, placed)
        assert set(STEP_HOSTS) <= set(placed), placed

    with deployment.staging() as conn:
        for brand in BRANDS:
            assert status_counts(conn, brand) == {"collage_ready": 3}, brand
    env = deployment.stack.env
    s3 = boto3.client("s3", endpoint_url=env["S3_ENDPOINT"], aws_access_key_id=env["S3_ACCESS_KEY"],
                      aws_secret_access_key=env["S3_SECRET_KEY"], region_name="us-east-1")
    for brand in BRANDS:
        listed = s3.list_objects_v2(Bucket=env["S3_BUCKET"], Prefix=f"collages/{brand}/")
        assert listed.get("KeyCount") == 3, (brand, listed.get("KeyCount"))


def test_an_unreachable_role_engine_fails_its_runs_naming_the_host(
    deployment: Deployment,
) -> None:
    from unde_local import engines as eng

    collage_engine = deployment.engines["collage"]
    assert collage_engine.name != deployment.engines["apify"].name
    eng.cut(collage_engine)
    try:
        cut_run = deployment.launch("collages_job", "oysho")
        other_run = deployment.launch("catalog_job", "oysho")
        assert deployment.wait_run(cut_run, FINISHED, 300) == "FAILURE"
        assert deployment.wait_run(other_run, FINISHED, 300) == "SUCCESS"
    finally:
        eng.restore(collage_engine)
    messages = deployment.run_messages(cut_run)
    assert "collage" in messages and "unreachable" in messages, messages[-2000:]

