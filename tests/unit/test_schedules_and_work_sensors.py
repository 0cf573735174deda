"""Schedules: the seed beat times (UTC) and the brand partitions each tick asks for."""

from datetime import UTC, datetime

import dagster as dg
import pytest

from unde_dagster.brands import load_brands
from unde_dagster.db.queues import BrandQueue
from unde_dagster.definitions import defs
from unde_dagster.defs.work_sensors import Requested, decide

REPO = defs.get_repository_def()
ALL = sorted(load_brands())


def schedule(name: str) -> dg.ScheduleDefinition:
    return REPO.get_schedule_def(name)


def tick(name: str, when: datetime) -> list[dg.RunRequest]:
    with dg.build_schedule_context(scheduled_execution_time=when, repository_def=REPO) as ctx:
        data = schedule(name).evaluate_tick(ctx)
    return list(data.run_requests or [])


def test_catalog_weekly_fires_at_each_brands_hour_on_sundays() -> None:
    sched = schedule("catalog_weekly")
    assert sched.execution_timezone == "UTC"
    assert sched.job_name == "catalog_job"
    assert sorted(sched.cron_schedule) == [f"0 {h} * * 0" for h in range(2, 8)]


@pytest.mark.parametrize(
    ("brand", "hour"),
    [("zara", 2), ("bershka", 3), ("pullandbear", 4), ("stradivarius", 5),
     ("massimodutti", 6), ("oysho", 7)],
)
def test_catalog_weekly_asks_for_the_brand_whose_hour_it_is(brand: str, hour: int) -> None:
    [req] = tick("catalog_weekly", datetime(2026, 3, 1, hour, tzinfo=UTC))
    assert req.partition_key == brand
    assert req.tags["unde/brand_apify"] == brand
    assert req.tags["unde/uses_apify"] == "true"


@pytest.mark.parametrize(
    ("name", "cron", "job", "config"),
    [
        ("ximilar_weekly", "0 10 * * 0", "ximilar_job", {}),
        ("availability_hourly", "0 * * * *", "availability_job", {}),
        ("production_sync_hourly", "10 * * * *", "production_job", {}),
    ],
)
def test_fixed_beats_request_every_brand(name: str, cron: str, job: str, config: dict) -> None:
    sched = schedule(name)
    assert (sched.cron_schedule, sched.execution_timezone, sched.job_name) == (cron, "UTC", job)
    reqs = tick(name, datetime(2026, 3, 1, 10, 30, tzinfo=UTC))
    assert sorted(r.partition_key for r in reqs) == ALL
    assert all(r.run_config == config for r in reqs)
    assert len({r.run_key for r in reqs}) == len(ALL)


def test_ximilar_retry_daily_covers_pilot_brands_only() -> None:
    sched = schedule("ximilar_retry_daily")
    assert sched.cron_schedule == "0 12 * * *"
    reqs = tick(sched.name, datetime(2026, 3, 2, 12, tzinfo=UTC))
    pilots = sorted(b.key for b in load_brands().values() if b.index_scope == "pilot")
    assert sorted(r.partition_key for r in reqs) == pilots
    assert all(r.run_config == {"ops": {"ximilar_index": {"config": {"retry": True}}}}
               for r in reqs)


def test_run_keys_differ_per_tick_and_repeat_within_one() -> None:
    first = tick("availability_hourly", datetime(2026, 3, 1, 1, tzinfo=UTC))
    again = tick("availability_hourly", datetime(2026, 3, 1, 1, tzinfo=UTC))
    later = tick("availability_hourly", datetime(2026, 3, 1, 2, tzinfo=UTC))
    assert [r.run_key for r in first] == [r.run_key for r in again]
    assert not {r.run_key for r in first} & {r.run_key for r in later}


def test_every_schedule_and_work_sensor_is_on_by_default() -> None:
    assert all(s.default_status == dg.DefaultScheduleStatus.RUNNING for s in REPO.schedule_defs)
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in REPO.sensor_defs)


def test_stage_jobs_retry_transient_failures_with_backoff() -> None:
    job = REPO.get_job("originals_job")
    policy = job.op_retry_policy
    assert policy is not None
    assert policy.max_retries == 3
    assert policy.backoff == dg.Backoff.EXPONENTIAL


QUEUE = BrandQueue("zara", 5, "fp1")


def test_decide_new_batch_then_no_repeat_after_success() -> None:
    first = decide(QUEUE, None, None, "originals")
    assert first == Requested("fp1", 1, "originals:zara:fp1")
    assert decide(QUEUE, first, None, "originals") == first  # run not created yet
    assert decide(QUEUE, first, dg.DagsterRunStatus.SUCCESS, "originals") is None
    moved = decide(BrandQueue("zara", 6, "fp2"), first, dg.DagsterRunStatus.SUCCESS,
                   "originals")
    assert moved == Requested("fp2", 1, "originals:zara:fp2")


def test_decide_retries_a_failed_unchanged_batch_a_bounded_number_of_times() -> None:
    state = decide(QUEUE, None, None, "collages")
    keys = []
    while state is not None:
        keys.append(state.run_key)
        state = decide(QUEUE, state, dg.DagsterRunStatus.FAILURE, "collages")
    assert keys == ["collages:zara:fp1", "collages:zara:fp1:2", "collages:zara:fp1:3"]
