"""Which roles a run does: from the assets it will execute, read off the code location.

Why here and not in user code: the control plane image has no user code, but it has the
code location's snapshot over gRPC (the workspace) and the run's stored execution plan.
Those two cover every way a run is made (schedule, sensor, UI, backfill, re-execution).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import dagster as dg
from dagster import DagsterRun

if TYPE_CHECKING:  # types only: `dagster` exports no public asset graph or workspace type
    from dagster._core.definitions.assets.graph.base_asset_graph import BaseAssetGraph
    from dagster._core.remote_representation.external import RemoteRepository
    from dagster._core.workspace.context import BaseWorkspaceRequestContext

from unde_deploy.roles import RoutingError, role_of


def asset_roles(graph: BaseAssetGraph) -> dict[dg.AssetKey, str | None]:
    """Role of every asset node of a graph (definitions or remote) — the routing table."""
    return {
        node.key: role_of(node.key.to_user_string(), node.group_name, node.tags)
        for node in graph.asset_nodes
    }


def executed_asset_keys(run: DagsterRun, instance: dg.DagsterInstance) -> set[dg.AssetKey]:
    """Asset keys of the steps the run will execute (its stored plan), else its selection."""
    keys: set[dg.AssetKey] = set()
    if run.execution_plan_snapshot_id:
        plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
        to_run = set(plan.step_keys_to_execute)
        for step in plan.steps:
            if step.key not in to_run:
                continue
            for output in step.outputs:
                props = output.properties
                if props is None:
                    continue
                if props.asset_key is not None:
                    keys.add(props.asset_key)
                elif props.asset_check_key is not None:
                    keys.add(props.asset_check_key.asset_key)
    if not keys and run.asset_selection:
        keys = set(run.asset_selection)
    if not keys and run.asset_check_selection:
        keys = {check.asset_key for check in run.asset_check_selection}
    return keys


def _repository(run: DagsterRun, workspace: BaseWorkspaceRequestContext) -> RemoteRepository:
    origin = run.remote_job_origin
    if origin is None:
        raise RoutingError(f"run {run.run_id} has no code location origin to read roles from")
    location = origin.repository_origin.code_location_origin.location_name
    return workspace.get_code_location(location).get_repository(
        origin.repository_origin.repository_name
    )


def roles_of_keys(
    keys: Iterable[dg.AssetKey], table: Mapping[dg.AssetKey, str | None], what: str
) -> set[str]:
    """Roles of the given assets; an asset without a role cannot be routed."""
    roles: set[str] = set()
    for key in keys:
        role = table.get(key)
        if role is None:
            raise RoutingError(
                f"{what}: asset {key.to_user_string()} has no role (group_name or tag "
                "unde/role); every asset must name the host role that runs it"
            )
        roles.add(role)
    return roles


def roles_of_run(
    run: DagsterRun, instance: dg.DagsterInstance, workspace: BaseWorkspaceRequestContext
) -> set[str]:
    """Roles of the assets this run executes (job-wide when no asset subset is recorded)."""
    repo = _repository(run, workspace)
    keys = executed_asset_keys(run, instance)
    if not keys:
        keys = set(repo.get_asset_keys_in_job(run.job_name))
    table = asset_roles(repo.asset_graph)
    return roles_of_keys(keys, table, f"run {run.run_id} ({run.job_name})")
