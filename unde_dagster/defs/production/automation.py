"""What launches `production_catalog`: `production_job` and `production_sync_hourly`."""

import dagster as dg

from unde_dagster.brands import load_brands
from unde_dagster.defs.brand_schedules import brand_requests, one_brand_job
from unde_dagster.defs.production.assets import production_catalog
from unde_deploy.roles import STAGE_ROLES

ROLE = STAGE_ROLES["production"]

production_job = one_brand_job(
    "production_job", production_catalog, ROLE,
    "One brand's verified SKUs copied into the Production DB. Launch by hand to publish a "
    "brand now.",
)


@dg.schedule(
    name="production_sync_hourly",
    cron_schedule="10 * * * *",
    execution_timezone="UTC",
    job=production_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly at :10 (UTC), every brand: verified SKUs into the Production DB.",
)
def production_sync_hourly(context: dg.ScheduleEvaluationContext):
    yield from brand_requests(context, "production_sync_hourly", load_brands(), ROLE)
