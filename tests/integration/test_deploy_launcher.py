"""The production instance (deploy/dagster.yaml + deploy/workspace.yaml) routing real runs.

A real code server serves the project over gRPC, runs are made the way the UI makes them
(GraphQL launchRun), dequeued by the real queued-run daemon, and launched with docker-py
over mutual TLS onto fake role engines (certs from deploy/tls/make-docker-certs.sh).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef
from dagster._core.launcher import WorkerStatus
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
    QueuedRunCoordinatorDaemon,
)
from dagster_graphql.test.utils import execute_dagster_graphql

from tests.fake_docker_engine import FakeEngine
from unde_deploy.launcher import RoleRoutedDockerRunLauncher
from unde_deploy.roles import ENGINE_TAG, HOST_TAG, ROLE_TAG, uses_tag

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
HOSTS = {
    "apify": "UNDE_DOCKER_APIFY",
    "photo-downloader": "UNDE_DOCKER_PHOTO_DOWNLOADER",
    "collage": "UNDE_DOCKER_COLLAGE",
    "ximilar-sync": "UNDE_DOCKER_XIMILAR_SYNC",
    "scraper": "UNDE_DOCKER_SCRAPER",
    "model-generator": "UNDE_DOCKER_MODEL_GENERATOR",
    "control": "UNDE_DOCKER_CONTROL",
}
IMAGE = "registry.unde.internal/unde-dagster:test"
LAUNCH = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
    ... on InvalidSubsetError { message }
  }
}
"""


@dataclass
class Deployment:
    instance: dg.DagsterInstance
    process: WorkspaceProcessContext
    engines: dict[str, FakeEngine]

    @property
    def launcher(self) -> RoleRoutedDockerRunLauncher:
        launcher = self.instance.run_launcher
        assert isinstance(launcher, RoleRoutedDockerRunLauncher)
        return launcher

    def launch_from_ui(self, job: str, assets: list[str] | None, brand: str) -> str:
        selector: dict[str, object] = {
            "repositoryLocationName": "unde_dagster",
            "repositoryName": "__repository__",
            "pipelineName": job,
        }
        if assets is not None:
            selector["assetSelection"] = [{"path": [a]} for a in assets]
        params = {
            "selector": selector,
            "mode": "default",
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": brand}]},
        }
        result = execute_dagster_graphql(
            self.process.create_request_context(), LAUNCH, {"params": params}
        )
        assert result.errors is None, result.errors
        payload = result.data["launchRun"]
        assert payload["__typename"] == "LaunchRunSuccess", payload
        return payload["run"]["runId"]

    def dequeue(self) -> None:
        with QueuedRunCoordinatorDaemon(interval_seconds=1) as daemon:
            list(daemon.run_iteration(self.process))

    def run(self, run_id: str) -> dg.DagsterRun:
        run = self.instance.get_run_by_id(run_id)
        assert run is not None
        return run


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def deployment(stack: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("deploy")
    certs = tmp / "certs"
    subprocess.run(
        [str(DEPLOY / "tls" / "make-docker-certs.sh"), str(certs)]
        + [f"{name}=127.0.0.1" for name in HOSTS],
        check=True,
        capture_output=True,
    )
    engines = {
        name: FakeEngine(
            name,
            tls=(
                str(certs / "ca.pem"),
                str(certs / name / "server-cert.pem"),
                str(certs / name / "server-key.pem"),
            ),
        ).start()
        for name in HOSTS
    }
    port = _free_port()
    env = {
        **{var: engines[name].url for name, var in HOSTS.items()},
        "UNDE_RUN_IMAGE": IMAGE,
        "UNDE_DOCKER_TLS_CA": str(certs / "client" / "ca.pem"),
        "UNDE_DOCKER_TLS_CERT": str(certs / "client" / "cert.pem"),
        "UNDE_DOCKER_TLS_KEY": str(certs / "client" / "key.pem"),
        "UNDE_DOCKER_TLS_DIR_MOUNT": f"{certs / 'client'}:/etc/dagster/docker-tls:ro",
        "DAGSTER_CODE_SERVER_HOST": "127.0.0.1",
        "DAGSTER_CODE_SERVER_PORT": str(port),
    }
    home = tmp / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    server = subprocess.Popen(
        [sys.executable, "-m", "dagster", "code-server", "start", "-m",
         "unde_dagster.definitions", "--location-name", "unde_dagster",
         "-h", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "DAGSTER_CURRENT_IMAGE": IMAGE, "DAGSTER_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        try:
            _wait_for_port(port, server)
            with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
                target = WorkspaceFileTarget(paths=[str(DEPLOY / "workspace.yaml")])
                with WorkspaceProcessContext(instance, target) as process:
                    yield Deployment(instance, process, engines)
        finally:
            server.terminate()
            server.wait(timeout=30)
            for engine in engines.values():
                engine.stop()


def _wait_for_port(port: int, server: subprocess.Popen[bytes]) -> None:
    """Readiness of the code server: its gRPC port accepts (it binds after loading code)."""
    for _ in range(600):
        assert server.poll() is None, "code server exited"
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError("code server did not start")


@pytest.fixture()
def fresh(deployment: Deployment) -> Iterator[Deployment]:
    """Each test starts with an empty queue and blank engines; its runs are deleted after."""
    for engine in deployment.engines.values():
        engine.calls.clear()
        engine.containers.clear()
    before = {r.run_id for r in deployment.instance.get_runs()}
    yield deployment
    for run in deployment.instance.get_runs():
        if run.run_id not in before:
            deployment.instance.delete_run(run.run_id)


def _only_engine_touched(dep: Deployment, host: str) -> FakeEngine:
    touched = [name for name, engine in dep.engines.items() if engine.calls]
    assert touched == [host]
    return dep.engines[host]


@pytest.mark.parametrize(
    ("asset", "role", "host"),
    [("product_collages", "collage", "collage"), ("ximilar_index", "ximilar", "ximilar-sync")],
)
def test_ui_materialization_lands_on_its_role_host(
    fresh: Deployment, asset: str, role: str, host: str
) -> None:
    run_id = fresh.launch_from_ui("__ASSET_JOB", [asset], "zara")
    queued = fresh.run(run_id)
    assert queued.status == DagsterRunStatus.QUEUED
    assert queued.tags[ROLE_TAG] == role
    assert queued.tags[uses_tag(role)] == "true"
    assert queued.tags[f"unde/brand_{role}"] == "zara"

    fresh.dequeue()

    run = fresh.run(run_id)
    engine = _only_engine_touched(fresh, host)
    assert run.tags[HOST_TAG] == host
    assert run.tags[ENGINE_TAG] == engine.url
    [create] = engine.ops("create")
    assert len(engine.ops("start")) == 1
    body = create.body
    assert body["Image"] == IMAGE
    assert body["Cmd"][:3] == ["dagster", "api", "execute_run"]
    assert run_id in body["Cmd"][3]
    assert body["HostConfig"]["Binds"] == [
        "/etc/unde/proxy-ca:/run/unde/proxy-ca:ro", "/etc/unde/run.env:/run/unde/run.env:ro",
    ]
    assert body["Labels"]["dagster/run_id"] == run_id
    assert body["Labels"][ROLE_TAG] == role
    env = dict(item.split("=", 1) for item in body["Env"])
    assert env["UNDE_ENV_FILE"] == "/run/unde/run.env"
    assert set(env) == {"UNDE_ENV_FILE", "UNDE_REQUIRED_ENV", "DAGSTER_RUN_JOB_NAME"}
    for value in run.tags.values():
        assert "postgresql://" not in value


def test_health_check_and_terminate_reach_the_recorded_engine(fresh: Deployment) -> None:
    run_id = fresh.launch_from_ui("__ASSET_JOB", ["product_collages"], "bershka")
    fresh.dequeue()
    engine = fresh.engines["collage"]
    run = fresh.run(run_id)
    container_id = run.tags["docker/container_id"]

    assert fresh.launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
    engine.set_status(container_id, "exited")
    failed = fresh.launcher.check_run_worker_health(run)
    assert failed.status == WorkerStatus.FAILED

    engine.set_status(container_id, "running")
    assert fresh.launcher.terminate(run_id) is True
    [stop] = engine.ops("stop")
    assert container_id in stop.path
    assert stop.query["t"] == ["120"]
    _only_engine_touched(fresh, "collage")


def test_multi_role_pipeline_run_worker_goes_to_the_orchestrator_host(
    fresh: Deployment,
) -> None:
    run_id = fresh.launch_from_ui("brand_catalog_pipeline", None, "oysho")
    run = fresh.run(run_id)
    assert run.tags[ROLE_TAG] == "multi"
    roles = set(run.tags["unde/roles"].split(","))
    assert {"apify", "downloader", "collage", "ximilar"} <= roles
    for role in roles:
        assert run.tags[f"unde/brand_{role}"] == "oysho"
    fresh.dequeue()
    assert fresh.run(run_id).tags[HOST_TAG] == "control"
    _only_engine_touched(fresh, "control")


def test_one_run_per_brand_per_stage_and_role_limits(fresh: Deployment) -> None:
    first = fresh.launch_from_ui("__ASSET_JOB", ["ximilar_index"], "zara")
    same_brand = fresh.launch_from_ui("__ASSET_JOB", ["ximilar_index"], "zara")
    other_role = fresh.launch_from_ui("__ASSET_JOB", ["product_collages"], "zara")
    fresh.dequeue()
    assert fresh.run(first).status == DagsterRunStatus.STARTING
    assert fresh.run(same_brand).status == DagsterRunStatus.QUEUED
    assert fresh.run(other_role).status == DagsterRunStatus.STARTING
    other_brand = fresh.launch_from_ui("__ASSET_JOB", ["ximilar_index"], "oysho")
    fresh.dequeue()
    # ximilar allows one run at a time whatever the brand
    assert fresh.run(other_brand).status == DagsterRunStatus.QUEUED
