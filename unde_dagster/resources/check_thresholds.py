"""Where the asset checks draw the line; each deployment tunes it without a code change."""

import dagster as dg
from pydantic import Field


class CheckThresholds(dg.ConfigurableResource):
    max_batch_error_rate: float = Field(
        default=0.2, ge=0, le=1,
        description="share of a batch's rows that may fail (seed alert level: a fifth)",
    )
    pending_sla_hours: float = Field(default=24, gt=0, description="max wait in `pending`")
    uploaded_sla_hours: float = Field(
        default=2, gt=0, description="max wait in `uploaded` without a collage"
    )
    min_pilot_coverage: float = Field(
        default=0.9, ge=0, le=1, description="share of ready pilot SKUs synced to Ximilar"
    )
