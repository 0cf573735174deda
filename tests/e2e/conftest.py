"""The Dagster webserver and daemon running on the test stack, for the end-to-end tests.

One pair of processes serves the whole `tests/e2e` package: the local stack's
`dagster.yaml` (PostgreSQL storage, the role-tagging queued coordinator and its limits) in a
fresh DAGSTER_HOME, the project's `workspace.yaml`, and the stack's variables. The sensors
are live, as they would be on a host; the schedules, which no e2e test is about, are
stopped through the UI's GraphQL API before the daemon starts, so no tick (the hourly
availability run, say) lands in the middle of a test. Every test waits until the instance
has no queued or running run before the next one truncates the tables.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import requests

from unde_dagster.defs.work_sensors import IN_FLIGHT
from unde_local.dagster_services import PROJECT_DIR, DagsterServices
from unde_local.postgres import free_port
from unde_local.stack import LocalStack

ARTIFACTS = PROJECT_DIR / "test-artifacts" / "e2e"
SCHEDULES_QUERY = """
query { repositoriesOrError { ... on RepositoryConnection { nodes {
  schedules { name scheduleState { id status } } } } } }
"""
STOP_SCHEDULE = """
mutation Stop($id: String!) { stopRunningSchedule(id: $id) {
  __typename ... on ScheduleStateResult { scheduleState { status } }
  ... on PythonError { message } } }
"""


def graphql(url: str, query: str, **variables: object) -> dict:
    reply = requests.post(f"{url}/graphql", json={"query": query, "variables": variables},
                          timeout=60)
    reply.raise_for_status()
    body = reply.json()
    assert "errors" not in body, body
    return body["data"]


def schedule_states(url: str) -> dict[str, dict]:
    data = graphql(url, SCHEDULES_QUERY)
    return {s["name"]: s["scheduleState"]
            for repo in data["repositoriesOrError"]["nodes"] for s in repo["schedules"]}


def stop_all_schedules(url: str) -> list[str]:
    """Stops every schedule of the workspace; returns their names."""
    for name, state in schedule_states(url).items():
        result = graphql(url, STOP_SCHEDULE, id=state["id"])
        assert result["stopRunningSchedule"]["scheduleState"]["status"] == "STOPPED", name
    states = schedule_states(url)
    assert {s["status"] for s in states.values()} == {"STOPPED"}, states
    return sorted(states)


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

    def limit_violations(self) -> list[str]:
        """Tag limits of the run queue that some moment of the recorded runs exceeded."""
        records = [r for r in self.instance.get_run_records() if r.start_time]
        limits = self.instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
        violations = []
        for limit in limits:
            key, value = limit["key"], limit.get("value")
            per_value = isinstance(value, dict) and value.get("applyLimitPerUniqueValue")
            groups: dict[str, list[tuple[float, int]]] = {}
            for record in records:
                tag = record.dagster_run.tags.get(key)
                if tag is None or (not per_value and value is not None and tag != value):
                    continue
                end = record.end_time or time.time()
                groups.setdefault(tag, []).extend([(record.start_time, 1), (end, -1)])
            for tag, edges in groups.items():
                running = peak = 0
                for _, step in sorted(edges, key=lambda e: (e[0], e[1])):  # ends first
                    running += step
                    peak = max(peak, running)
                if peak > limit["limit"]:
                    violations.append(f"{key}={tag}: {peak} runs at once > {limit['limit']}")
        return violations

    def save_timeline(self, name: str) -> None:
        """Every run of the instance with its start, end and status, into the artifacts."""
        lines = []
        for record in reversed(self.instance.get_run_records()):
            run = record.dagster_run
            start, end = record.start_time or 0.0, record.end_time or 0.0
            lines.append(
                f"{run.job_name:24} {run.tags.get('dagster/partition', '-'):13} "
                f"{run.status.value:9} {time.strftime('%H:%M:%S', time.gmtime(start))} "
                f"{end - start:6.1f}s  {run.tags.get('dagster/sensor_name', '')}"
                f"{run.tags.get('dagster/backfill', '')}"
            )
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / name).write_text("\n".join(lines) + "\n")

    def log_tail(self, service: str, lines: int = 60) -> str:
        path = self.services.run_dir / f"{service}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="package")
def dagster_deployment(stack: LocalStack) -> Iterator[DagsterDeployment]:
    home = Path(stack.root) / "dagster_home"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    shutil.copy(PROJECT_DIR / "unde_local" / "dagster.yaml", home / "dagster.yaml")
    env = {**stack.env, "DAGSTER_HOME": str(home)}
    services = DagsterServices(Path(stack.root) / "services", env, port=free_port())
    services.start(("webserver",))
    stopped = stop_all_schedules(services.url)
    assert "availability_hourly" in stopped, stopped
    services.start(("daemon",))
    instance = dg.DagsterInstance.from_config(str(home))
    deployment = DagsterDeployment(services, instance)
    try:
        yield deployment
    finally:
        deployment.wait_idle(timeout_s=60)
        services.stop()
        instance.dispose()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for log in services.run_dir.glob("*.log"):  # kept for a failed CI run's post-mortem
            shutil.copy(log, ARTIFACTS / log.name)


@pytest.fixture()
def deployment(
    dagster_deployment: DagsterDeployment, staging_url: str
) -> Iterator[DagsterDeployment]:
    """The deployment with clean tables; nothing of this test is left running after it."""
    yield dagster_deployment
    dagster_deployment.wait_idle()


UI_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium under Playwright (imported here: only the UI tests pay)."""
    from playwright.sync_api import sync_playwright

    from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    from tests.e2e.browser import ARTIFACTS, DISMISS_COMMUNITY_PROMPT, VIEWPORT

    (ARTIFACTS / "failure.png").unlink(missing_ok=True)  # a passing run leaves none
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(UI_TIMEOUT_MS)
    context.add_init_script(DISMISS_COMMUNITY_PROMPT)
    yield context.new_page()
    context.close()
