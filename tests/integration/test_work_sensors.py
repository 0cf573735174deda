"""Work sensors against the real Staging DB and a real (temp-dir) Dagster instance."""

import uuid
from typing import Any

import dagster as dg
import psycopg
import pytest

from unde_dagster.definitions import defs

REPO = defs.get_repository_def()


def add_rows(conn: psycopg.Connection, brand: str, n: int, status: str = "pending") -> None:
    for _ in range(n):
        conn.execute(
            "INSERT INTO raw_products (source, external_id, brand, scraped_at, image_status) "
            "VALUES (%s, %s, %s, NOW(), %s)",
            (f"apify_{brand}", f"{uuid.uuid4().hex[:8]}-1", brand, status),
        )


def evaluate(
    name: str, instance: dg.DagsterInstance, resources: dict[str, Any], cursor: str | None
) -> tuple[list[dg.RunRequest], str | None]:
    sensor = REPO.get_sensor_def(name)
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=resources, repository_def=REPO,
        sensor_name=name,
    ) as ctx:
        data = sensor.evaluate_tick(ctx)
    return list(data.run_requests or []), data.cursor


def launch(instance: dg.DagsterInstance, sensor: str, req: dg.RunRequest,
           status: dg.DagsterRunStatus) -> dg.DagsterRun:
    """Record the run the daemon would create for this request (its tags and status)."""
    run = dg.DagsterRun(
        job_name=REPO.get_sensor_def(sensor).job_name,
        run_id=str(uuid.uuid4()),
        status=status,
        tags={**req.tags, "dagster/partition": req.partition_key or "",
              "dagster/run_key": req.run_key or "", "dagster/sensor_name": sensor},
    )
    return instance.add_run(run)


def finish(instance: dg.DagsterInstance, run: dg.DagsterRun, status: dg.DagsterRunStatus) -> None:
    event = (dg.DagsterEventType.RUN_SUCCESS if status == dg.DagsterRunStatus.SUCCESS
             else dg.DagsterEventType.RUN_FAILURE)
    instance.run_storage.handle_run_event(
        run.run_id, dg.DagsterEvent(event_type_value=event.value, job_name=run.job_name)
    )
    assert instance.get_run_by_id(run.run_id).status == status  # type: ignore[union-attr]


def test_new_pending_rows_give_one_request_per_brand(
    staging: psycopg.Connection, instance: dg.DagsterInstance, resources: dict
) -> None:
    add_rows(staging, "zara", 3)
    add_rows(staging, "oysho", 1)
    add_rows(staging, "bershka", 2, status="collage_ready")
    reqs, cursor = evaluate("originals_work_sensor", instance, resources, None)
    assert sorted(r.partition_key for r in reqs) == ["oysho", "zara"]
    assert {r.tags["unde/brand_downloader"] for r in reqs} == {"oysho", "zara"}
    assert all(r.tags["unde/uses_downloader"] == "true" for r in reqs)
    assert cursor is not None
    collage_reqs, _ = evaluate("collages_work_sensor", instance, resources, None)
    assert collage_reqs == []


def test_in_flight_runs_suppress_and_the_cursor_survives(
    staging: psycopg.Connection, instance: dg.DagsterInstance, resources: dict
) -> None:
    name = "originals_work_sensor"
    add_rows(staging, "zara", 3)
    [req], cursor = evaluate(name, instance, resources, None)
    # NOT_STARTED: created, not yet launched (a QUEUED run needs a code-server origin).
    run = launch(instance, name, req, dg.DagsterRunStatus.NOT_STARTED)

    # A new row arrives while the run is queued: no second run for zara.
    add_rows(staging, "zara", 1)
    again, cursor2 = evaluate(name, instance, resources, cursor)
    assert again == []
    assert cursor2 == cursor

    # A run started from the UI for another brand counts as in flight too.
    add_rows(staging, "oysho", 1)
    instance.add_run(dg.DagsterRun(job_name="brand_catalog_pipeline", run_id=str(uuid.uuid4()),
                                   status=dg.DagsterRunStatus.STARTED,
                                   tags={"dagster/partition": "oysho"}))
    assert evaluate(name, instance, resources, cursor)[0] == []

    # The run ends; the row that came meanwhile makes a new batch with a new key.
    finish(instance, run, dg.DagsterRunStatus.SUCCESS)
    [next_req], cursor3 = evaluate(name, instance, resources, cursor2)
    assert next_req.partition_key == "zara"
    assert next_req.run_key != req.run_key

    # A restarted daemon that lost the last cursor asks for the same batch under the same
    # key, which Dagster refuses to launch twice.
    [replayed], _ = evaluate(name, instance, resources, cursor2)
    assert replayed.run_key == next_req.run_key

    # Once that batch's run succeeded with nothing changed, nothing is asked again.
    done = launch(instance, name, next_req, dg.DagsterRunStatus.STARTED)
    finish(instance, done, dg.DagsterRunStatus.SUCCESS)
    assert evaluate(name, instance, resources, cursor3)[0] == []


def test_failed_run_of_an_unchanged_batch_is_retried_with_a_new_key(
    staging: psycopg.Connection, instance: dg.DagsterInstance, resources: dict
) -> None:
    name = "collages_work_sensor"
    add_rows(staging, "zara", 2, status="uploaded")
    [req], cursor = evaluate(name, instance, resources, None)
    run = launch(instance, name, req, dg.DagsterRunStatus.STARTED)
    finish(instance, run, dg.DagsterRunStatus.FAILURE)
    [retry], _ = evaluate(name, instance, resources, cursor)
    assert retry.partition_key == "zara"
    assert retry.run_key == f"{req.run_key}:2"


@pytest.mark.parametrize("scope", ["pilot", "off"])
def test_ximilar_sensor_sees_pilot_rows_with_collages_only(
    staging: psycopg.Connection, instance: dg.DagsterInstance, resources: dict, scope: str
) -> None:
    add_rows(staging, "zara", 2, status="collage_ready")
    staging.execute("UPDATE raw_products SET index_scope = %s", (scope,))
    reqs, _ = evaluate("ximilar_work_sensor", instance, resources, None)
    assert [r.partition_key for r in reqs] == (["zara"] if scope == "pilot" else [])
