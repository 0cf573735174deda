"""`model_library_job`: launched by hand (one template partition per run); no schedule."""

import dagster as dg

from unde_dagster.defs.brand_schedules import TRANSIENT_RETRY
from unde_dagster.defs.model_library.assets import model_library
from unde_deploy.roles import STAGE_ROLES, stage_job_tags

model_library_job = dg.define_asset_job(
    "model_library_job",
    selection=dg.AssetSelection.assets(model_library),
    description="The next version of one model template's fal.ai image. Launch by hand when "
    "a template changes or a new one is added.",
    tags=stage_job_tags(STAGE_ROLES["model_library"]),
    op_retry_policy=TRANSIENT_RETRY,
)
