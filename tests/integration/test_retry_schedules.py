"""The hourly retry passes ask only for brands whose failed rows still have attempts left."""

from datetime import UTC, datetime
from typing import Any

import dagster as dg
import psycopg
import pytest

from unde_dagster.definitions import defs

REPO = defs.get_repository_def()
TICK = datetime(2026, 3, 1, 10, 30, tzinfo=UTC)


def tick(name: str, resources: dict[str, Any]) -> list[dg.RunRequest]:
    with dg.build_schedule_context(
        scheduled_execution_time=TICK, repository_def=REPO, resources=resources
    ) as ctx:
        data = REPO.get_schedule_def(name).evaluate_tick(ctx)
    return list(data.run_requests or [])


def add_failed(conn: psycopg.Connection, brand: str, ext: str, stage: str, attempts: int) -> None:
    column = "image_attempts" if stage == "download" else "collage_attempts"
    conn.execute(
        "INSERT INTO raw_products (source, external_id, brand, scraped_at, image_status, "
        f"image_error_stage, error_message, {column}, image_attempted_at) "
        "VALUES (%s, %s, %s, NOW(), 'error', %s, 'http_503: gave up', %s, "
        "NOW() - interval '2 hours')",
        (f"apify_{brand}", ext, brand, stage, attempts),
    )


@pytest.mark.parametrize(
    ("schedule", "stage", "other_stage", "job", "asset", "flag"),
    [
        ("downloader_retry_hourly", "download", "collage", "originals_job",
         "product_originals", "retry_errors"),
        ("collage_retry_hourly", "collage", "download", "collages_job",
         "product_collages", "retry_errors"),
    ],
)
def test_retry_pass_requests_only_brands_with_retryable_errors(
    staging: psycopg.Connection, resources: dict[str, Any],
    schedule: str, stage: str, other_stage: str, job: str, asset: str, flag: str,
) -> None:
    sched = REPO.get_schedule_def(schedule)
    assert (sched.cron_schedule, sched.execution_timezone, sched.job_name) == (
        "30 * * * *", "UTC", job)
    assert tick(schedule, resources) == []  # a quiet hour launches nothing

    add_failed(staging, "zara", "1-1", stage, attempts=1)
    add_failed(staging, "oysho", "2-1", stage, attempts=3)  # out of attempts
    add_failed(staging, "bershka", "3-1", other_stage, attempts=1)  # the other stage's error
    [request] = tick(schedule, resources)
    assert request.partition_key == "zara"
    assert request.run_config == {"ops": {asset: {"config": {flag: True}}}}
    assert request.run_key == f"{schedule}:zara:{TICK.isoformat()}"
