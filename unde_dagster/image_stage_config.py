"""Run config shared by the two image stages (new work vs. the hourly retry pass)."""

import dagster as dg
from pydantic import Field


class ImageStageConfig(dg.Config):
    retry_errors: bool = Field(
        default=False,
        description="take this stage's errors that are due for another try (the :30 retry "
        "pass) instead of new work",
    )
    max_batches: int = Field(default=25, description="batches per run before it stops")
