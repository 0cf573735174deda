"""A DockerRunLauncher that starts each run on the Docker engine of its role host.

Why a subclass: DockerRunLauncher already knows how to build the run command, pull the
image and health-check a container; what it lacks is a per-run engine. The engine is picked
from the run's roles (tagged at submit by RoleTaggingRunCoordinator, or recomputed here from
the workspace), recorded on the run, and reused by terminate and the health check.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Self, TypeVar

import docker
import docker.errors
import docker.tls
import requests
from dagster import DagsterRun, Field, Map, Noneable, Shape, StringSource

# Private Dagster imports, each because `dagster` exports no public equivalent: a run
# launcher is handed these context types and must build the same run-worker command as
# DockerRunLauncher does (ExecuteRunArgs/ResumeRunArgs), record the image tag it records,
# and take the ConfigurableClassData of its `dagster.yaml` block.
# tests/unit/test_layout.py fails when an upgrade moves any of them.
from dagster._core.launcher.base import LaunchRunContext, ResumeRunContext
from dagster._core.storage.tags import DOCKER_IMAGE_TAG
from dagster._core.workspace.context import BaseWorkspaceRequestContext
from dagster._grpc.types import ExecuteRunArgs, ResumeRunArgs
from dagster._serdes.config_class import ConfigurableClassData
from dagster_docker import DockerRunLauncher
from dagster_docker.container_context import DockerContainerContext
from dagster_docker.docker_run_launcher import DOCKER_CONTAINER_ID_TAG
from dagster_docker.utils import DOCKER_CONFIG_SCHEMA

from unde_deploy.roles import (
    ENGINE_TAG,
    HOST_TAG,
    MULTI_ROLE,
    ROLE_TAG,
    ROLES_TAG,
    SPANS_ROLES_ENV,
    HostEngine,
    Routing,
    RoutingError,
    run_role_tags,
)
from unde_deploy.runs import roles_of_run

T = TypeVar("T")
ENV_FILE_IN_CONTAINER = "/run/unde/run.env"
# First request: the unversioned /version, whose ApiVersion the client then speaks (Docker
# 20.10 speaks at most 1.41, Docker 29 at least 1.44).
PROBE_API_VERSION = "1.24"

TLS_SCHEMA = Shape(
    {
        "ca_cert": Field(StringSource, description="CA that signed the role hosts' dockerd."),
        "client_cert": Field(StringSource, description="Control plane's client certificate."),
        "client_key": Field(StringSource, description="Key of the client certificate."),
    }
)

ROUTED_SCHEMA = {
    **DOCKER_CONFIG_SCHEMA,
    "role_hosts": Field(Map(str, str), description="Role → host name (keys of `hosts`)."),
    "hosts": Field(
        Map(str, Shape({"url": StringSource, "tls": Field(TLS_SCHEMA, is_required=False)})),
        description="Host name → Docker engine URL (tcp://IP:2376) and optional own TLS.",
    ),
    "tls": Field(Noneable(TLS_SCHEMA), is_required=False, default_value=None),
    "orchestrator_host": Field(
        Noneable(str),
        is_required=False,
        default_value=None,
        description="Host (the control plane's engine) of the run worker of a run spanning "
        "several roles; each of its steps runs on its role's host. null rejects such runs.",
    ),
    "orchestrator_volumes": Field(
        [StringSource],
        is_required=False,
        default_value=[],
        description="Extra mounts of a multi-role run's run worker on the orchestrator host "
        "(HOST_PATH:CONTAINER_PATH:ro), e.g. the client certificate it reaches the role "
        "engines with.",
    ),
    "env_file": Field(
        Noneable(str),
        is_required=False,
        default_value=None,
        description="Path ON THE ROLE HOST of the env file mounted into run containers.",
    ),
}


class RoleRoutedDockerRunLauncher(DockerRunLauncher):
    """Runs each run on its role host's Docker engine over TLS; see module docstring."""

    def __init__(
        self,
        inst_data: ConfigurableClassData | None = None,
        *,
        role_hosts: Mapping[str, str],
        hosts: Mapping[str, Mapping[str, Any]],
        tls: Mapping[str, str] | None = None,
        orchestrator_host: str | None = None,
        orchestrator_volumes: Iterable[str] = (),
        env_file: str | None = None,
        **docker_config: Any,
    ) -> None:
        env_names = list(docker_config.pop("env_vars", None) or [])
        _check_names_only(env_names, "run_launcher.config.env_vars")
        super().__init__(inst_data=inst_data, env_vars=env_names, **docker_config)
        self.routing = Routing(
            role_hosts=dict(role_hosts),
            engines={name: HostEngine(name, spec["url"]) for name, spec in hosts.items()},
            orchestrator_host=orchestrator_host,
        )
        self._tls = {name: spec.get("tls") or tls for name, spec in hosts.items()}
        self._default_tls = tls
        self.env_file = env_file
        self.orchestrator_volumes = list(orchestrator_volumes)
        for name, engine in self.routing.engines.items():
            if engine.url.startswith("tcp://") and not self._tls[name]:
                raise RoutingError(f"host {name!r}: a tcp Docker engine needs TLS client certs")
        self._clients: dict[tuple[str, str | None], docker.DockerClient] = {}

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return ROUTED_SCHEMA

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> Self:
        return cls(inst_data=inst_data, **config_value)

    # --- engines -------------------------------------------------------------------------

    def client_for(self, url: str, host: str | None) -> docker.DockerClient:
        """A docker-py client for one engine, authenticated by the control plane's cert;
        made once per engine and kept (health checks and terminates reuse it)."""
        key = (url, host)
        if key not in self._clients:
            self._clients[key] = self._new_client(url, host)
        return self._clients[key]

    def _new_client(self, url: str, host: str | None) -> docker.DockerClient:
        tls_conf = self._tls.get(host or "", None) or self._default_tls
        tls: docker.tls.TLSConfig | bool = False
        if tls_conf and not url.startswith("unix://"):
            tls = docker.tls.TLSConfig(
                client_cert=(tls_conf["client_cert"], tls_conf["client_key"]),
                ca_cert=tls_conf["ca_cert"],
                verify=True,
            )
        client = docker.DockerClient(base_url=url, tls=tls, timeout=60, version=PROBE_API_VERSION)
        # requests lets REQUESTS_CA_BUNDLE/HTTPS_PROXY override our private CA and route;
        # the role engines are reached directly and verified against the UNDE CA only.
        client.api.trust_env = False
        try:
            server = client.api.version(api_version=False)
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise RoutingError(f"Docker engine of host {host} ({url}) unreachable: {exc}") from exc
        client.api._version = server["ApiVersion"]  # docker-py has no setter for it
        if self.registry:
            client.login(
                registry=self.registry["url"],
                username=self.registry["username"],
                password=self.registry["password"],
            )
        return client

    def engine_of_run(self, run: DagsterRun) -> HostEngine | None:
        """The engine recorded on the run at launch (the one its container lives on)."""
        url = run.tags.get(ENGINE_TAG)
        return HostEngine(run.tags.get(HOST_TAG, ""), url) if url else None

    def _route(
        self, run: DagsterRun, workspace: BaseWorkspaceRequestContext | None
    ) -> DagsterRun:
        """Pick the engine from the run's roles and record it on the run (tags)."""
        roles_tag = run.tags.get(ROLES_TAG)
        if roles_tag is not None:
            roles = {r for r in roles_tag.split(",") if r}
            new_tags: dict[str, str] = {}
        else:
            if workspace is None:
                raise RoutingError(f"run {run.run_id}: no role tags and no workspace to read")
            roles = roles_of_run(run, self._instance, workspace)
            new_tags = run_role_tags(roles, run.tags)
        engine = self.routing.engine_for_roles(roles, f"run {run.run_id} ({run.job_name})")
        new_tags.update({HOST_TAG: engine.name, ENGINE_TAG: engine.url})
        self._instance.add_run_tags(run.run_id, new_tags)
        self._instance.report_engine_event(
            message=f"Routing run (roles {sorted(roles)}) to host {engine.name} ({engine.url})",
            dagster_run=run,
            cls=self.__class__,
        )
        return _not_none(self._instance.get_run_by_id(run.run_id), "run vanished")

    # --- launch --------------------------------------------------------------------------

    def get_container_context(self, dagster_run: DagsterRun) -> DockerContainerContext:
        """Env var NAMES only; values come from the role host's env file, mounted read-only."""
        base = super().get_container_context(dagster_run)
        _check_names_only(base.env_vars, "container context env_vars")
        env = [f"UNDE_REQUIRED_ENV={','.join(sorted(set(base.env_vars)))}"]
        kwargs = dict(base.container_kwargs)
        if self.env_file:
            env.append(f"UNDE_ENV_FILE={ENV_FILE_IN_CONTAINER}")
            volumes = list(kwargs.get("volumes") or [])
            volumes.append(f"{self.env_file}:{ENV_FILE_IN_CONTAINER}:ro")
            kwargs["volumes"] = volumes
        return DockerContainerContext(
            registry=base.registry, env_vars=env, networks=base.networks, container_kwargs=kwargs
        )

    def launch_run(self, context: LaunchRunContext) -> None:
        run = self._route(context.dagster_run, context.workspace)
        origin = _not_none(context.job_code_origin, "run has no code origin")
        command = ExecuteRunArgs(
            job_origin=origin, run_id=run.run_id, instance_ref=self._instance.get_ref()
        ).get_command_args()
        self._launch_container_with_command(run, self._get_docker_image(origin), command)

    def resume_run(self, context: ResumeRunContext) -> None:
        run = context.dagster_run
        if self.engine_of_run(run) is None:
            run = self._route(run, context.workspace)
        origin = _not_none(context.job_code_origin, "run has no code origin")
        command = ResumeRunArgs(
            job_origin=origin, run_id=run.run_id, instance_ref=self._instance.get_ref()
        ).get_command_args()
        self._launch_container_with_command(run, self._get_docker_image(origin), command)

    def _launch_container_with_command(
        self, run: DagsterRun, docker_image: str, command: list[str]
    ) -> None:
        engine = _not_none(self.engine_of_run(run), "run was not routed")
        container_context = self.get_container_context(run)
        env = dict(item.split("=", 1) for item in container_context.env_vars)
        env["DAGSTER_RUN_JOB_NAME"] = run.job_name
        kwargs: dict[str, Any] = dict(container_context.container_kwargs)
        kwargs.pop("stop_timeout", None)
        if run.tags.get(ROLE_TAG) == MULTI_ROLE:  # its steps go to their roles' hosts
            env[SPANS_ROLES_ENV] = "1"
            if engine.name == self.routing.orchestrator_host:
                kwargs["volumes"] = [*kwargs.get("volumes", []), *self.orchestrator_volumes]
        labels = container_labels(
            kwargs.pop("labels", {}),
            {"dagster/run_id": run.run_id, "dagster/job_name": run.job_name,
             ROLE_TAG: run.tags.get(ROLE_TAG, "")},
        )
        networks = container_context.networks
        create_args: dict[str, Any] = {
            "image": docker_image,
            "command": command,
            "detach": True,
            "environment": env,
            "network": networks[0] if networks else None,
            "labels": labels,
            **kwargs,
        }
        client = self.client_for(engine.url, engine.name)
        try:
            container = client.containers.create(**create_args)
        except docker.errors.ImageNotFound:
            self._instance.report_engine_event(
                message=f"Image {docker_image} is not on {engine.name}: pulling it",
                dagster_run=run, cls=self.__class__,
            )
            client.images.pull(docker_image)
            container = client.containers.create(**create_args)
        for network_name in networks[1:]:
            client.networks.get(network_name).connect(container)
        self._instance.report_engine_event(
            message=f"Launching run in container {container.id} on {engine.name} "
            f"with image {docker_image}",
            dagster_run=run,
            cls=self.__class__,
        )
        self._instance.add_run_tags(
            run.run_id, {DOCKER_CONTAINER_ID_TAG: container.id, DOCKER_IMAGE_TAG: docker_image}
        )
        container.start()

    # --- terminate / health: same engine as the launch ----------------------------------

    def _get_container(self, run: DagsterRun | None) -> Any:
        if not run:
            return None
        container_id = run.tags.get(DOCKER_CONTAINER_ID_TAG)
        engine = self.engine_of_run(run)
        if not container_id or engine is None:
            return None
        try:
            return self.client_for(engine.url, engine.name).containers.get(container_id)
        except docker.errors.NotFound:
            return None


def container_labels(configured: Any, ours: Mapping[str, str]) -> dict[str, str]:
    """The `labels` of container_kwargs (a list of names or a mapping) plus ours."""
    labels = dict.fromkeys(configured, "") if isinstance(configured, list) else dict(configured)
    return {**labels, **ours}


def _check_names_only(env_vars: Iterable[str] | None, where: str) -> None:
    """Reject NAME=VALUE: values would travel through the control plane (and run records)."""
    for item in env_vars or []:
        if "=" in item:
            raise RoutingError(
                f"{where}: {item.split('=', 1)[0]!r} carries a value; list names only and "
                "put the value in the role host's env file"
            )


def _not_none(value: T | None, what: str) -> T:
    if value is None:
        raise RoutingError(what)
    return value
