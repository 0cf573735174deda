"""What launches `ximilar_index`: `ximilar_job`, the work sensor, weekly and retry passes."""

import dagster as dg

from unde_dagster.brands import load_brands
from unde_dagster.defs.brand_schedules import brand_requests, one_brand_job
from unde_dagster.defs.work_sensors import (
    WORK_SENSOR_INTERVAL_S,
    WorkQueue,
    request_waiting_brands,
)
from unde_dagster.defs.ximilar.assets import ximilar_index
from unde_dagster.resources.databases import StagingDatabase
from unde_deploy.roles import STAGE_ROLES

ROLE = STAGE_ROLES["ximilar"]

ximilar_job = one_brand_job(
    "ximilar_job", ximilar_index, ROLE,
    "One brand's pilot SKUs synced to the Ximilar collection (and SKUs out of scope "
    "removed). Launch by hand with `retry: true` to retry failed SKUs now.",
)


@dg.sensor(
    name="ximilar_work_sensor",
    job=ximilar_job,
    minimum_interval_seconds=WORK_SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every 30 s: one `ximilar_job` run per pilot brand with collaged SKUs not "
    "yet synced, at most one run per brand at a time.",
)
def ximilar_work_sensor(context: dg.SensorEvaluationContext, staging_db: StagingDatabase):
    return request_waiting_brands(
        context, staging_db, WorkQueue("ximilar", ximilar_index.key, ximilar_job.name, ROLE)
    )


@dg.schedule(
    name="ximilar_weekly",
    cron_schedule="0 10 * * 0",
    execution_timezone="UTC",
    job=ximilar_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Sundays 10:00 (UTC), every brand: SKUs of a brand taken out of the pilot "
    "leave the index.",
)
def ximilar_weekly(context: dg.ScheduleEvaluationContext):
    yield from brand_requests(context, "ximilar_weekly", load_brands(), ROLE)


@dg.schedule(
    name="ximilar_retry_daily",
    cron_schedule="0 12 * * *",
    execution_timezone="UTC",
    job=ximilar_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily 12:00 (UTC), pilot brands: retries SKUs whose sync failed ≥ 6 h ago.",
)
def ximilar_retry_daily(context: dg.ScheduleEvaluationContext):
    pilots = [b.key for b in load_brands().values() if b.index_scope == "pilot"]
    yield from brand_requests(
        context, "ximilar_retry_daily", pilots, ROLE,
        {"ops": {"ximilar_index": {"config": {"retry": True}}}},
    )
