"""What launches `store_availability`: `availability_job` and `availability_hourly`."""

import dagster as dg

from unde_dagster.brands import load_brands
from unde_dagster.defs.availability.assets import store_availability
from unde_dagster.defs.brand_schedules import brand_requests, one_brand_job
from unde_deploy.roles import STAGE_ROLES

ROLE = STAGE_ROLES["availability"]

availability_job = one_brand_job(
    "availability_job", store_availability, ROLE,
    "One brand's in-store stock in its Dubai stores. Launch by hand to refresh a brand now.",
)


@dg.schedule(
    name="availability_hourly",
    cron_schedule="0 * * * *",
    execution_timezone="UTC",
    job=availability_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly at :00 (UTC), every brand: in-store stock per store and SKU.",
)
def availability_hourly(context: dg.ScheduleEvaluationContext):
    yield from brand_requests(context, "availability_hourly", load_brands(), ROLE)
