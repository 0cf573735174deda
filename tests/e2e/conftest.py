"""The Dagster webserver and daemon running on the test stack, for the end-to-end tests.

One pair of processes serves the whole `tests/e2e` package: the project's own
`dagster.yaml` (PostgreSQL storage, the role-tagging queued coordinator and its limits) in a
fresh DAGSTER_HOME, the project's `workspace.yaml`, and the stack's variables. The sensors
and schedules are live, as they would be on a host, so every test waits until the instance
has no queued or running run before the next one truncates the tables.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from unde_local.dagster_services import PROJECT_DIR, DagsterServices
from unde_local.postgres import free_port
from unde_local.stack import LocalStack

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


@dataclass
class DagsterDeployment:
    """The running webserver + daemon and an instance on the same storage."""

    services: DagsterServices
    instance: dg.DagsterInstance

    @property
    def url(self) -> str:
        return self.services.url

    def in_flight(self) -> list[dg.DagsterRun]:
        records = self.instance.get_run_records(dg.RunsFilter(statuses=IN_FLIGHT))
        return [r.dagster_run for r in records]

    def wait_idle(self, timeout_s: float = 240) -> None:
        """Wait for every queued/running run; cancel what is left after the timeout."""
        deadline = time.monotonic() + timeout_s
        while self.in_flight() and time.monotonic() < deadline:
            time.sleep(1)
        for run in self.in_flight():
            self.instance.report_run_canceled(run, message="end of an end-to-end test")

    def log_tail(self, service: str, lines: int = 60) -> str:
        path = self.services.run_dir / f"{service}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="package")
def dagster_deployment(stack: LocalStack) -> Iterator[DagsterDeployment]:
    home = Path(stack.root) / "dagster_home"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    shutil.copy(PROJECT_DIR / "dagster.yaml", home / "dagster.yaml")
    env = {**stack.env, "DAGSTER_HOME": str(home)}
    services = DagsterServices(Path(stack.root) / "services", env, port=free_port())
    services.start()
    instance = dg.DagsterInstance.from_config(str(home))
    deployment = DagsterDeployment(services, instance)
    try:
        yield deployment
    finally:
        deployment.wait_idle(timeout_s=60)
        services.stop()
        instance.dispose()


@pytest.fixture()
def deployment(
    dagster_deployment: DagsterDeployment, staging_url: str
) -> Iterator[DagsterDeployment]:
    """The deployment with clean tables; nothing of this test is left running after it."""
    yield dagster_deployment
    dagster_deployment.wait_idle()
