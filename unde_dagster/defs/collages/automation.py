"""What launches `product_collages`: `collages_job`, the work sensor, the retry pass."""

import dagster as dg

from unde_dagster.brands import load_brands
from unde_dagster.db.claims import COLLAGE_QUEUE
from unde_dagster.defs.brand_schedules import brand_requests, brands_due_for_retry, one_brand_job
from unde_dagster.defs.collages.assets import product_collages
from unde_dagster.defs.image_stages import retry_preset
from unde_dagster.defs.work_sensors import (
    WORK_SENSOR_INTERVAL_S,
    WorkQueue,
    request_waiting_brands,
)
from unde_dagster.resources.collage import CollageMaker
from unde_dagster.resources.databases import StagingDatabase
from unde_deploy.roles import STAGE_ROLES

ROLE = STAGE_ROLES["collages"]

collages_job = one_brand_job(
    "collages_job", product_collages, ROLE,
    "Builds one collage for each of one brand's `uploaded` SKUs. The work sensor launches "
    "it within 30 s of new work; launch it by hand only to push a brand through now. To "
    "retry failed collages, launch `collages_retry_job`.",
)

collages_retry_job = one_brand_job(
    "collages_retry_job", product_collages, ROLE,
    "Retries one brand's failed collages now. Launch it after fixing what made them fail "
    "(an unreadable original, the bucket), for one brand or as a backfill of several from "
    "the partitions dialog. The preset ignores the 1 h cool-down; SKUs that already had 3 "
    "attempts stay failed. The hourly :30 pass (`collage_retry_hourly`) does the same with "
    "the cool-down.",
    config=retry_preset("product_collages"),
)


@dg.sensor(
    name="collages_work_sensor",
    job=collages_job,
    minimum_interval_seconds=WORK_SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every 30 s: one `collages_job` run per brand with SKUs in `uploaded`, at "
    "most one run per brand at a time.",
)
def collages_work_sensor(context: dg.SensorEvaluationContext, staging_db: StagingDatabase):
    return request_waiting_brands(
        context, staging_db,
        WorkQueue("collages", product_collages.key, collages_job.name, ROLE),
    )


@dg.schedule(
    name="collage_retry_hourly",
    cron_schedule="30 * * * *",
    execution_timezone="UTC",
    job=collages_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly at :30 (UTC): retries failed collages (≥ 1 h old, < max attempts) "
    "for the brands that have any.",
)
def collage_retry_hourly(
    context: dg.ScheduleEvaluationContext, staging_db: StagingDatabase,
    collage_maker: CollageMaker,
):
    brands = brands_due_for_retry(
        staging_db, COLLAGE_QUEUE, collage_maker.max_attempts, load_brands()
    )
    yield from brand_requests(
        context, "collage_retry_hourly", brands, ROLE,
        {"ops": {"product_collages": {"config": {"retry_errors": True}}}},
    )
