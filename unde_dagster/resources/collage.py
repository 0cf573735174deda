"""Settings of the collage stage as a Dagster resource."""

from unde_dagster.resources.stage_queue import StageQueueSettings


class CollageMaker(StageQueueSettings):
    """Batch 100 and a 1 h retry cooldown as the seed; processes = cores of the collage host."""

    workers: int = 2
    quality: int = 95
