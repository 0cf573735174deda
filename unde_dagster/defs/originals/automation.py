"""What launches `product_originals`: `originals_job`, the work sensor, the retry pass."""

import dagster as dg

from unde_dagster.brands import load_brands
from unde_dagster.db.claims import DOWNLOAD_QUEUE
from unde_dagster.defs.brand_schedules import brand_requests, brands_due_for_retry, one_brand_job
from unde_dagster.defs.image_stages import retry_preset
from unde_dagster.defs.originals.assets import product_originals
from unde_dagster.defs.work_sensors import (
    WORK_SENSOR_INTERVAL_S,
    WorkQueue,
    request_waiting_brands,
)
from unde_dagster.resources.databases import StagingDatabase
from unde_dagster.resources.downloader import PhotoDownloader
from unde_deploy.roles import STAGE_ROLES

ROLE = STAGE_ROLES["originals"]

originals_job = one_brand_job(
    "originals_job", product_originals, ROLE,
    "Downloads the photos of one brand's `pending` SKUs through the proxy into S3. The work "
    "sensor launches it within 30 s of new work; launch it by hand only to push a brand "
    "through now. To retry failed downloads, launch `originals_retry_job`.",
)

originals_retry_job = one_brand_job(
    "originals_retry_job", product_originals, ROLE,
    "Retries one brand's failed downloads now. Launch it after fixing what made them fail "
    "(proxy, CDN block, bucket), for one brand or as a backfill of several from the "
    "partitions dialog. The preset ignores the 1 h cool-down; SKUs that already had 3 "
    "attempts stay failed. The hourly :30 pass (`downloader_retry_hourly`) does the same "
    "with the cool-down.",
    config=retry_preset("product_originals"),
)


@dg.sensor(
    name="originals_work_sensor",
    job=originals_job,
    minimum_interval_seconds=WORK_SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every 30 s: one `originals_job` run per brand with SKUs in `pending`, at "
    "most one run per brand at a time.",
)
def originals_work_sensor(context: dg.SensorEvaluationContext, staging_db: StagingDatabase):
    return request_waiting_brands(
        context, staging_db,
        WorkQueue("originals", product_originals.key, originals_job.name, ROLE),
    )


@dg.schedule(
    name="downloader_retry_hourly",
    cron_schedule="30 * * * *",
    execution_timezone="UTC",
    job=originals_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly at :30 (UTC): retries failed downloads (≥ 1 h old, < max attempts) "
    "for the brands that have any.",
)
def downloader_retry_hourly(
    context: dg.ScheduleEvaluationContext, staging_db: StagingDatabase,
    photo_downloader: PhotoDownloader,
):
    brands = brands_due_for_retry(
        staging_db, DOWNLOAD_QUEUE, photo_downloader.max_attempts, load_brands()
    )
    yield from brand_requests(
        context, "downloader_retry_hourly", brands, ROLE,
        {"ops": {"product_originals": {"config": {"retry_errors": True}}}},
    )
