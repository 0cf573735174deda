"""Per-brand backfills through Dagster's GraphQL API, as a script or another service would.

A backfill of two brands over the catalog → originals → collages → index assets launches
runs tagged for the run queue's role and brand limits; one brand fails at its last step
(Ximilar refuses the token), and re-executing the backfill from failure runs only what
failed — the catalog, originals and collages of that brand are not done again.

`DagsterGraphQLClient` has no backfill methods, so the mutations go through its transport
(`_execute`) with the mutation text dagster-graphql ships for backfills.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from dagster_graphql import DagsterGraphQLClient
from dagster_graphql.client.query import LAUNCH_PARTITION_BACKFILL_MUTATION

from tests.e2e.conftest import DagsterDeployment
from tests.integration.image_stage_helpers import small_catalog, warm_photos
from unde_dagster.db.claims import status_counts
from unde_deploy.roles import uses_tag
from unde_local.stack import LocalStack

pytestmark = pytest.mark.e2e

ASSETS = ["raw_products", "product_originals", "product_collages", "ximilar_index"]
BRANDS = ["zara", "bershka"]  # zara's SKUs are pilot (indexed in Ximilar), bershka's are not
DONE = {"COMPLETED_SUCCESS", "COMPLETED_FAILED", "COMPLETED", "FAILED", "CANCELED"}

BACKFILL = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      status
      partitionNames
      assetSelection { path }
      runs { runId status tags { key value } stepKeysToExecute }
    }
    ... on PythonError { message }
  }
}
"""
REEXECUTE = """
mutation($params: ReexecutionParams!) {
  reexecutePartitionBackfill(reexecutionParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}
"""
MATERIALIZATIONS = """
query($path: [String!]!, $partitions: [String!]) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset {
      assetMaterializations(partitions: $partitions) {
        partition runId
        metadataEntries { label ... on IntMetadataEntry { intValue } }
      }
    }
  }
}
"""


class BackfillApi:
    def __init__(self, deployment: DagsterDeployment) -> None:
        host, port = deployment.url.removeprefix("http://").split(":")
        self.client = DagsterGraphQLClient(host, port_number=int(port))
        self.deployment = deployment

    def launch(self, brands: list[str], assets: list[str]) -> str:
        params = {
            "partitionNames": brands,
            "assetSelection": [{"path": [a]} for a in assets],
            "title": "e2e: catalog pipeline for " + ", ".join(brands),
        }
        variables = {"backfillParams": params}
        payload = self.client._execute(LAUNCH_PARTITION_BACKFILL_MUTATION, variables)[
            "launchPartitionBackfill"
        ]
        assert payload["__typename"] == "LaunchBackfillSuccess", payload
        return payload["backfillId"]

    def reexecute_from_failure(self, backfill_id: str) -> str:
        params = {"parentRunId": backfill_id, "strategy": "FROM_FAILURE"}
        payload = self.client._execute(REEXECUTE, {"params": params})["reexecutePartitionBackfill"]
        assert payload["__typename"] == "LaunchBackfillSuccess", payload
        return payload["backfillId"]

    def get(self, backfill_id: str) -> dict[str, Any]:
        payload = self.client._execute(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
        assert payload["__typename"] == "PartitionBackfill", payload
        return payload

    def wait(self, backfill_id: str, timeout_s: float = 480) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while (backfill := self.get(backfill_id))["status"] not in DONE:
            assert time.monotonic() < deadline, (
                f"backfill {backfill_id} still {backfill['status']}\n"
                + self.deployment.log_tail("daemon")
            )
            time.sleep(2)
        return backfill

    def materializations(self, asset: str, brands: list[str]) -> list[dict[str, Any]]:
        data = self.client._execute(MATERIALIZATIONS, {"path": [asset], "partitions": brands})
        return data["assetOrError"]["assetMaterializations"]


def _tags(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["tags"]}


def test_backfill_of_two_brands_and_rerun_of_the_failed_one(
    deployment: DagsterDeployment, stack: LocalStack, staging: psycopg.Connection
) -> None:
    assert stack.emulators is not None
    ximilar_faults = stack.emulators.faults["ximilar"]
    api = BackfillApi(deployment)
    with small_catalog(stack, "zara", n_skus=3), small_catalog(stack, "bershka", n_skus=3):
        warm_photos(stack)
        ximilar_faults.add(match="^/similarity/", status=401, json={"detail": "bad token"})
        first_id = api.launch(BRANDS, ASSETS)
        first = api.wait(first_id)

        assert first["status"] in {"COMPLETED_FAILED", "FAILED"}, first
        assert sorted(first["partitionNames"]) == sorted(BRANDS)
        runs = first["runs"]
        assert {_tags(r)["dagster/partition"] for r in runs} == set(BRANDS)
        for run in runs:
            tags = _tags(run)
            brand = tags["dagster/partition"]
            for role in tags["unde/roles"].split(","):  # what the run queue limits count
                assert tags[uses_tag(role)] == "true", tags
                assert tags[f"unde/brand_{role}"] == brand, tags
        failed = {_tags(r)["dagster/partition"] for r in runs if r["status"] == "FAILURE"}
        assert failed == {"zara"}, [(r["runId"], r["status"]) for r in runs]
        for brand in BRANDS:
            assert status_counts(staging, brand) == {"collage_ready": 3}, brand

        ximilar_faults.clear()
        rerun_id = api.reexecute_from_failure(first_id)
        rerun = api.wait(rerun_id)

    assert rerun["status"] in {"COMPLETED_SUCCESS", "COMPLETED"}, rerun
    assert [a["path"] for a in rerun["assetSelection"]] == [["ximilar_index"]], rerun
    assert [_tags(r)["dagster/partition"] for r in rerun["runs"]] == ["zara"], rerun["runs"]
    assert rerun["runs"][0]["status"] == "SUCCESS", rerun["runs"]
    synced = staging.execute(
        "SELECT count(*) FROM raw_products WHERE brand = 'zara' AND ximilar_status = 'synced'"
    ).fetchone()
    assert synced == (3,)

    collages = api.materializations("product_collages", BRANDS)
    assert sorted(m["partition"] for m in collages) == sorted(BRANDS)  # made once per brand
    for mat in collages:
        made = {e["label"]: e.get("intValue") for e in mat["metadataEntries"]}
        assert made["collages_made"] == 3, made
    # The index of zara is materialized by the re-execution (and perhaps first by the
    # ximilar sensor, which also retries the failed batch once Ximilar answers again).
    indexed = api.materializations("ximilar_index", ["zara"])
    assert rerun["runs"][0]["runId"] in {m["runId"] for m in indexed}
    deployment.save_timeline("graphql_backfill_runs.txt")
    assert deployment.limit_violations() == []
