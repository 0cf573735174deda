"""The production deployment on this machine's real Docker engines, for `tests/deploy`.

Built as an operator would run it, with nothing faked: the two images from
`deploy/images/build.sh` (warm cache: seconds), role-host engines from `unde_local.engines`
(two more dockerds, each in its own network namespace, and this machine's engine as the
control plane's own, all over mutual TLS with `deploy/tls` certificates), the control plane
from `deploy/control-plane/compose.yaml` (PostgreSQL, PgBouncer, code server, webserver,
daemon, nginx) with `deploy/dagster.yaml`, and a local stack (Staging DB, S3 store,
emulators) listening on the engines' bridge so every container reaches it. Each engine's
`/etc/unde/run.env` holds what a role host's would. The schedules are stopped through the UI's
GraphQL before any test, and so are the sensors: only the tests launch runs.

Needs root and a Docker engine; without them these tests fail, they never skip.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from unde_deploy.executor import STEP_KEY_LABEL
from unde_local import engines as eng
from unde_local.control_plane import ControlPlane
from unde_local.dagster_services import PROJECT_DIR
from unde_local.stack import LocalStack, StackSettings

# pytest-timeout counts a test's setup too, and the first deploy test carries the session
# fixture's: images built from debootstrap, three engines and the control plane up. On a cold
# 2-core machine that is ~9 min (images 287 s, engines 34 s, control plane 216 s), past the
# suite's 600 s. Each test still waits on its own deadlines; this is the backstop.
DEPLOY_TIMEOUT_S = 1800
pytestmark = pytest.mark.deploy
ARTIFACTS = PROJECT_DIR / "test-artifacts" / "deploy"
IN_CONTAINER_TLS = "/etc/dagster/docker-tls"
SCHEDULES = """
query { repositoriesOrError { ... on RepositoryConnection { nodes {
  schedules { name scheduleState { id status } } } } } }
"""
STOP_SCHEDULE = """
mutation Stop($id: String!) { stopRunningSchedule(id: $id) {
  __typename ... on ScheduleStateResult { scheduleState { status } } } }
"""
SENSORS = """
query { repositoriesOrError { ... on RepositoryConnection { nodes {
  sensors { name sensorState { id status } } } } } }
"""
STOP_SENSOR = """
mutation Stop($id: String!) { stopSensor(id: $id) {
  __typename ... on StopSensorMutationResult { instigationState { status } } } }
"""
LAUNCH_RUN = """
mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }
"""
RUN = """
query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status tags { key value } } } }
"""
RUN_EVENTS = """
query($id: ID!) { logsForRun(runId: $id) { __typename ... on EventConnection {
  events { __typename ... on MessageEvent { message timestamp }
           ... on EngineEvent { error { message } } } } } }
"""
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


@dataclass
class Deployment:
    control: ControlPlane
    engines: dict[str, eng.Engine]  # dagster.yaml host name -> the engine it points at
    stack: LocalStack
    timings: dict[str, float]

    def graphql(self, query: str, timeout_s: float = 30, **variables: Any) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables}).encode()
        status, raw = self.control.get("/graphql", body=body, timeout=timeout_s)
        assert status == 200, (status, raw[:500])
        reply = json.loads(raw)
        assert "errors" not in reply, reply["errors"]
        return reply["data"]

    def launch(self, job: str, brand: str) -> str:
        """Launch `job` for one brand through the UI's GraphQL; returns the run id."""
        params = {
            "selector": {"repositoryLocationName": "unde_dagster",
                         "repositoryName": "__repository__", "jobName": job},
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": brand}]},
        }
        launched = self.graphql(LAUNCH_RUN, params=params)["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        return launched["run"]["runId"]

    def run_status(self, run_id: str) -> str:
        return self.graphql(RUN, id=run_id)["runOrError"]["status"]

    def wait_run(self, run_id: str, statuses: set[str], timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while (status := self.run_status(run_id)) not in statuses:
            assert time.monotonic() < deadline, (run_id, status, self.run_messages(run_id)[-3000:])
            time.sleep(2)
        return status

    def run_messages(self, run_id: str) -> str:
        events = self.graphql(RUN_EVENTS, id=run_id)["logsForRun"]["events"]
        return "\n".join(
            (e.get("message") or "") + " " + ((e.get("error") or {}).get("message") or "")
            for e in events
        )

    def container_to_step_start(self, run_id: str) -> float:
        """Seconds from the launcher's container launch to the run's first step start."""
        events = self.graphql(RUN_EVENTS, id=run_id)["logsForRun"]["events"]
        launched = next(float(e["timestamp"]) for e in events
                        if "Launching run in container" in (e.get("message") or ""))
        started = next(float(e["timestamp"]) for e in events
                       if e["__typename"] == "ExecutionStepStartEvent")
        return (started - launched) / 1000

    def containers(self, host: str) -> list[dict[str, Any]]:
        """Every run or step container the engine of `host` has, asked of its own API."""
        return eng.containers_ran(self.engines[host])

    def run_worker(self, run_id: str) -> tuple[eng.Engine, dict[str, Any]]:
        """The engine and container (Docker's inspect record) of a run's worker, found by
        asking every engine for the run's label: not from the run's own tags."""
        found = []
        for engine in {e.name: e for e in self.engines.values()}.values():
            client = eng.client(engine)
            try:
                for c in client.containers.list(
                    all=True, filters={"label": f"dagster/run_id={run_id}"}
                ):
                    if STEP_KEY_LABEL not in c.labels:
                        found.append((engine, c.attrs))
            finally:
                client.close()
        assert len(found) == 1, (run_id, [(e.name, a["Id"]) for e, a in found])
        return found[0]

    def staging(self) -> psycopg.Connection:
        return psycopg.connect(self.stack.env["STAGING_DB_URL"], autocommit=True)

    def save(self, name: str, text: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / name).write_text(text)


def _build_images() -> float:
    started = time.monotonic()
    done = os.system(f"bash {PROJECT_DIR / 'deploy/images/build.sh'} >{ARTIFACTS}/build.log 2>&1")
    assert done == 0, (ARTIFACTS / "build.log").read_text()[-3000:]
    return time.monotonic() - started


def _control_run_env(cp: ControlPlane, urls: dict[str, str]) -> dict[str, str]:
    """What the control plane's own run.env adds: the multi-role run workers there resolve
    the run launcher's config (engine URLs, client cert) to start steps on the role hosts."""
    tls_dir = cp.root / "docker-tls"
    return {
        **{f"UNDE_DOCKER_{h.upper().replace('-', '_')}": url for h, url in urls.items()},
        "UNDE_DOCKER_TLS_CA": f"{IN_CONTAINER_TLS}/ca.pem",
        "UNDE_DOCKER_TLS_CERT": f"{IN_CONTAINER_TLS}/cert.pem",
        "UNDE_DOCKER_TLS_KEY": f"{IN_CONTAINER_TLS}/key.pem",
        "UNDE_DOCKER_TLS_DIR_MOUNT": f"{tls_dir}:{IN_CONTAINER_TLS}:ro",
        "UNDE_RUN_IMAGE": "unde-dagster:local",
    }


def stop_automation(deployment: Deployment) -> list[str]:
    """Stop every schedule and sensor, so only the tests launch runs (each test states the
    runs it expects; the daemon's queue, run monitoring and run retries stay on)."""
    names = []
    for repo in deployment.graphql(SCHEDULES)["repositoriesOrError"]["nodes"]:
        for schedule in repo["schedules"]:
            result = deployment.graphql(STOP_SCHEDULE, id=schedule["scheduleState"]["id"])
            assert result["stopRunningSchedule"]["scheduleState"]["status"] == "STOPPED"
            names.append(schedule["name"])
    for repo in deployment.graphql(SENSORS)["repositoriesOrError"]["nodes"]:
        for sensor in repo["sensors"]:
            if sensor["sensorState"]["status"] != "RUNNING":
                continue
            result = deployment.graphql(STOP_SENSOR, id=sensor["sensorState"]["id"])
            assert result["stopSensor"]["instigationState"]["status"] == "STOPPED", result
            names.append(sensor["name"])
    return names


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    assert os.geteuid() == 0, "the deployment test runs dockerds in network namespaces: root"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    timings = {"images build": _build_images()}
    started = time.monotonic()
    engines = eng.up(eng.default_engines())
    timings["engines up"] = time.monotonic() - started
    stack = LocalStack(StackSettings(
        root=Path(tmp_path_factory.mktemp("deploy-stack")), host=eng.HOST_ADDRESS,
        items_per_brand=12,
    ))
    stack_env = {k: v for k, v in stack.start().items() if k != "DAGSTER_PG_URL"}
    control = ControlPlane(name="test", engines=engines, code_server_env=stack_env)
    by_url = {e.url: e for e in engines}
    urls = control.engine_urls()
    for engine in engines:
        extra = _control_run_env(control, urls) if engine.kind == "host" else {}
        eng.write_run_env(engine, {**stack_env, **control.run_env(), **extra})
    started = time.monotonic()
    try:
        timings.update(control.up(wait_daemon=True))
        timings["control plane up"] = time.monotonic() - started
        deployment = Deployment(control, {h: by_url[u] for h, u in urls.items()}, stack, timings)
        stop_automation(deployment)
        yield deployment
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "control-plane.log").write_text(control.logs(tail=400))
        (ARTIFACTS / "timings.json").write_text(json.dumps(timings, indent=2))
        control.down(volumes=True)
        eng.down(engines)
        stack.stop()
