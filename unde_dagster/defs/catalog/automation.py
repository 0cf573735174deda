"""What launches `raw_products`: `catalog_job`, and `catalog_weekly` at each brand's hour."""

import dagster as dg

from unde_dagster.brands import load_brands
from unde_dagster.defs.brand_schedules import brand_requests, one_brand_job
from unde_dagster.defs.catalog.assets import raw_products
from unde_deploy.roles import STAGE_ROLES

ROLE = STAGE_ROLES["catalog"]

catalog_job = one_brand_job(
    "catalog_job", raw_products, ROLE,
    "One brand's catalog from its Apify Task into `raw_products`. Launch by hand for a brand "
    "whose weekly run failed or whose feed changed mid-week.",
)


@dg.schedule(
    name="catalog_weekly",
    cron_schedule=sorted({f"0 {b.catalog_hour} * * 0" for b in load_brands().values()}),
    execution_timezone="UTC",
    job=catalog_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Sundays (UTC), each brand's catalog at its own hour (`catalog_hour` in "
    "brands.yaml: zara 02:00, bershka 03:00, …).",
)
def catalog_weekly(context: dg.ScheduleEvaluationContext):
    when = context.scheduled_execution_time
    due = [b.key for b in load_brands().values() if when is None or b.catalog_hour == when.hour]
    yield from brand_requests(context, "catalog_weekly", due, ROLE)
