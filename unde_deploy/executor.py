"""The executor of every run: one role's run in process, a multi-role run step by step on
each step's role host.

Why: a run that does one role's work (every scheduled and sensor run) is one container on
that role's host, its steps in one process, as before. A run spanning roles (the brand
pipeline job, "Materialize all", a `+product_collages` backfill) must still do each piece of
work on its role's host (SPEC §2): its run worker, which only orchestrates, runs on the
control plane's engine (`orchestrator_host`) and starts each step in a container from the
user-code image on the engine of that step's role, with that host's env file, exactly as a
run container there. Outside the Docker deployment (the local stack, tests) every run is in
process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dagster as dg
import docker.errors
import requests
from dagster import Field, IntSource

# Private Dagster imports (tests/unit/test_layout.py lists why and fails if they move): an
# executor that delegates steps is built from these classes, as dagster-docker's own is.
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._core.execution.retries import RetryMode
from dagster._core.executor.base import Executor
from dagster._core.executor.in_process import InProcessExecutor
from dagster._core.executor.init import InitExecutorContext
from dagster._core.executor.step_delegating import StepDelegatingExecutor
from dagster._core.executor.step_delegating.step_handler.base import (
    CheckStepHealthResult,
    StepHandlerContext,
)
from dagster_docker.container_context import DockerContainerContext
from dagster_docker.docker_executor import DockerStepHandler

from unde_deploy.launcher import RoleRoutedDockerRunLauncher, container_labels
from unde_deploy.roles import ROLE_TAG, SPANS_ROLES_ENV, RoutingError

STEP_KEY_LABEL = "dagster/step_key"


def roles_of_job(job_def: dg.JobDefinition) -> set[str]:
    """The roles of the assets this job, as subset for the run, materializes (a checks-only
    run executes in process where the launcher put it)."""
    layer = job_def.asset_layer
    return {role for key in layer.selected_asset_keys if (role := _role_of_asset(layer, key))}


def _role_of_asset(layer: Any, key: dg.AssetKey) -> str | None:
    return layer.asset_graph.get(key).tags.get(ROLE_TAG)


def role_of_step(step_handler_context: StepHandlerContext, step_key: str) -> str:
    """The role of one step: of the asset it materializes or the asset it checks."""
    step_context = step_handler_context.get_step_context(step_key)
    layer = step_context.job.get_definition().asset_layer
    entities = layer.get_selected_entity_keys_for_node(step_context.node_handle)
    roles = {
        _role_of_asset(layer, e.asset_key if isinstance(e, dg.AssetCheckKey) else e)
        for e in entities
    }
    roles.discard(None)
    if len(roles) != 1:
        raise RoutingError(f"step {step_key}: roles {sorted(map(str, roles))}, not exactly one")
    return str(roles.pop())


class RoleRoutedStepHandler(DockerStepHandler):
    """dagster-docker's step handler with one engine per step: the engine of its role."""

    def __init__(self, launcher: RoleRoutedDockerRunLauncher) -> None:
        super().__init__(image=None, container_context=DockerContainerContext())
        self._launcher = launcher

    @property
    def name(self) -> str:
        return "RoleRoutedStepHandler"

    def _engine_client(self, ctx: StepHandlerContext) -> tuple[str, str, Any]:
        """The step's role, its host and a client of that host's engine."""
        role = role_of_step(ctx, self._get_step_key(ctx))
        engine = self._launcher.routing.engine_for_role(role)
        return role, engine.name, self._launcher.client_for(engine.url, engine.name)

    def _get_docker_container_context(self, step_handler_context: StepHandlerContext) -> Any:
        # The run launcher's context (names-only env, the host's env file, labels, kwargs)
        return self._launcher.get_container_context(step_handler_context.dagster_run)

    def launch_step(self, step_handler_context: StepHandlerContext) -> Iterator[DagsterEvent]:
        ctx = step_handler_context
        step_key = self._get_step_key(ctx)
        role, host, client = self._engine_client(ctx)
        container_context = self._get_docker_container_context(ctx)
        labels = container_labels(
            container_context.container_kwargs.get("labels") or {},
            {"dagster/run_id": ctx.dagster_run.run_id, STEP_KEY_LABEL: step_key, ROLE_TAG: role},
        )
        container_context = container_context._replace(
            container_kwargs={**container_context.container_kwargs, "labels": labels},
            env_vars=[*container_context.env_vars, f"{SPANS_ROLES_ENV}=1"],
        )
        image = self._get_image(ctx)
        try:
            container = self._create_step_container(client, container_context, image, ctx)
        except docker.errors.ImageNotFound as exc:
            raise RoutingError(f"image {image} is not on host {host}: load it there") from exc
        for network in container_context.networks[1:]:
            client.networks.get(network).connect(container)
        yield DagsterEvent.step_worker_starting(
            ctx.get_step_context(step_key),
            message=f"Launching step in container {container.short_id} on host {host}.",
            metadata={"Docker container id": container.id, "host": host},
        )
        container.start()

    def check_step_health(self, step_handler_context: StepHandlerContext) -> CheckStepHealthResult:
        ctx = step_handler_context
        name = self._get_container_name(ctx)
        try:
            _, host, client = self._engine_client(ctx)
            container = client.containers.get(name)
        except RoutingError as exc:
            return CheckStepHealthResult.unhealthy(str(exc))
        except docker.errors.NotFound:
            return CheckStepHealthResult.unhealthy(f"container {name} is gone from host {host}")
        except (docker.errors.DockerException, requests.RequestException) as exc:
            return CheckStepHealthResult.unhealthy(f"host {host} unreachable: {exc}")
        if container.status == "running":
            return CheckStepHealthResult.healthy()
        code = container.wait(timeout=5).get("StatusCode")
        if code == 0:
            return CheckStepHealthResult.healthy()
        return CheckStepHealthResult.unhealthy(f"container {name} on {host} exited with {code}")

    def terminate_step(self, step_handler_context: StepHandlerContext) -> Iterator[DagsterEvent]:
        ctx = step_handler_context
        step_key = self._get_step_key(ctx)
        _, host, client = self._engine_client(ctx)
        name = self._get_container_name(ctx)
        yield DagsterEvent.engine_event(
            ctx.get_step_context(step_key),
            message=f"Stopping container {name} of step {step_key} on host {host}.",
            event_specific_data=EngineEventData(),
        )
        stop_timeout = self._launcher.container_kwargs.get("stop_timeout")
        client.containers.get(name).stop(timeout=stop_timeout)


@dg.executor(
    name="role_routed",
    config_schema={
        "max_concurrent": Field(IntSource, is_required=False, default_value=4,
                                description="step containers at once in a multi-role run"),
    },
)
def role_routed_executor(init_context: InitExecutorContext) -> Executor:
    roles = roles_of_job(init_context.job.get_definition())
    if len(roles) < 2:  # the instance's launcher is not even loaded: a role host's run env
        return InProcessExecutor(retries=RetryMode.ENABLED)  # has no engine settings
    launcher = init_context.instance.run_launcher
    if isinstance(launcher, RoleRoutedDockerRunLauncher):
        return StepDelegatingExecutor(
            RoleRoutedStepHandler(launcher),
            retries=RetryMode.ENABLED,
            max_concurrent=init_context.executor_config["max_concurrent"],
        )
    return InProcessExecutor(retries=RetryMode.ENABLED)
