"""The demo: launch the brand pipeline job for one brand through the run queue, as the UI
would, wait for it and summarise.

The run goes through the webserver's GraphQL API to the queue, so it gets the same role,
brand and stage tags and limits as every other run, and the daemon starts it. Its summary
is read from the instance: each asset's materialization and the batches' `scraper_logs`.
"""

from __future__ import annotations

import os
import time

import dagster as dg
import psycopg
import requests

from unde_dagster.defs.pipeline import brand_catalog_pipeline
from unde_deploy.roles import TRIGGER_TAG

LOCATION = "unde_dagster"  # workspace.yaml
RUN_DEADLINE_S = 1800  # a hang guard; the demo catalog takes a few minutes on 2 cores
LAUNCH = """
mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
  ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }
"""


def launch(url: str, brand: str) -> str:
    """Queue one `brand_catalog_pipeline` run of `brand`; its run id."""
    params = {
        "selector": {"repositoryLocationName": LOCATION, "repositoryName": "__repository__",
                     "jobName": brand_catalog_pipeline.name},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": brand},
                                       {"key": TRIGGER_TAG, "value": "demo"}]},
    }
    reply = requests.post(f"{url}/graphql", json={"query": LAUNCH, "variables": {"p": params}},
                          timeout=120)
    reply.raise_for_status()
    result = reply.json()["data"]["launchRun"]
    if result["__typename"] != "LaunchRunSuccess":
        raise SystemExit(f"the demo run was not launched: {result}")
    return str(result["run"]["runId"])


def wait(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRun:
    deadline = time.monotonic() + RUN_DEADLINE_S
    while True:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.is_finished:
            return run
        if time.monotonic() > deadline:
            raise SystemExit(f"run {run_id} still {run.status.value if run else '?'} after "
                             f"{RUN_DEADLINE_S} s")
        time.sleep(2)


def run_demo(brand: str, url: str) -> None:
    instance = dg.DagsterInstance.get()
    started = time.monotonic()
    run_id = launch(url, brand)
    print(f"queued {brand_catalog_pipeline.name} for {brand}: run {run_id} ({url}/runs/{run_id})")
    run = wait(instance, run_id)
    elapsed = time.monotonic() - started
    print(f"\n== {brand_catalog_pipeline.name} for {brand}: "
          f"{'SUCCESS' if run.is_success else run.status.value} in {elapsed:.1f}s "
          f"(run {run_id})")
    tags = {k: v for k, v in run.tags.items() if k.startswith("unde/") and "_" not in k[5:]}
    print(f"  tags: {tags}")
    for record in instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records:
        mat = record.event_log_entry.asset_materialization
        if mat is None:
            continue
        shown = {
            k: v.value for k, v in mat.metadata.items()
            if isinstance(v.value, int | float | str) and "](" not in str(v.value)
        }
        print(f"  {mat.asset_key.to_user_string()}: {shown}")
    with psycopg.connect(os.environ["STAGING_DB_URL"]) as conn:
        rows = conn.execute(
            "SELECT image_status, count(*) FROM raw_products WHERE brand = %s "
            "GROUP BY 1 ORDER BY 1", (brand,)
        ).fetchall()
        print(f"  raw_products of {brand} by image_status: {dict(rows)}")
        logs = conn.execute(
            "SELECT scraper_name, status, records_fetched, records_new, records_errors "
            "FROM scraper_logs WHERE run_id = %s ORDER BY id", (run_id,)
        ).fetchall()
        for log in logs:
            print(f"  scraper_logs: {log}")
    if not run.is_success:
        raise SystemExit(1)
