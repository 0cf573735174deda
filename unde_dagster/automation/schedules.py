"""The Celery beat entries as Dagster schedules, at the seed times (UTC) by default.

Each tick asks for one run per brand partition, with a run key made of the brand and the
tick time, so a restarted daemon never launches the same tick twice. The hourly retry passes
ask only for brands that hold failed rows with attempts left (one indexed query), so a quiet
hour launches nothing instead of a run per brand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import dagster as dg

from unde_dagster.automation.jobs import AssetJob, Stage
from unde_dagster.automation.queries import brands_with_retries
from unde_dagster.brands import Brand, load_brands
from unde_dagster.db.claims import COLLAGE_QUEUE, DOWNLOAD_QUEUE, StageQueue
from unde_dagster.resources.databases import StagingDatabase
from unde_dagster.resources.stage_queue import StageQueueSettings

# The resource holding each retried queue's claim rules (its `max_attempts`).
QUEUE_SETTINGS = {DOWNLOAD_QUEUE: "photo_downloader", COLLAGE_QUEUE: "collage_maker"}


@dataclass(frozen=True)
class Beat:
    """One beat entry: which stage, when, which brands, new work or the retry pass."""

    name: str
    stage: str
    cron: str
    retry: bool = False
    brands: Callable[[], Sequence[str]] | None = None  # None: every brand
    retries_of: StageQueue | None = None  # the queue whose failed rows the pass retries


def _all_brands() -> list[str]:
    return list(load_brands())


def _pilot_brands() -> list[str]:
    return [b.key for b in load_brands().values() if b.index_scope == "pilot"]


def catalog_cron(brand: Brand) -> str:
    return f"0 {brand.catalog_hour} * * 0"


def beats() -> list[Beat]:
    """The schedule table (SPEC §1): catalog per brand at its hour, then the fixed entries."""
    table = [
        Beat(f"catalog_weekly_{b.key}", "catalog", catalog_cron(b), brands=lambda k=b.key: [k])
        for b in load_brands().values()
    ]
    table += [
        Beat("downloader_retry_hourly", "originals", "30 * * * *", retry=True,
             retries_of=DOWNLOAD_QUEUE),
        Beat("collage_retry_hourly", "collages", "30 * * * *", retry=True,
             retries_of=COLLAGE_QUEUE),
        # Weekly over every brand so SKUs of a brand taken out of the pilot leave the index.
        Beat("ximilar_weekly", "ximilar", "0 10 * * 0"),
        Beat("ximilar_retry_daily", "ximilar", "0 12 * * *", retry=True, brands=_pilot_brands),
        Beat("availability_hourly", "availability", "0 * * * *"),
        Beat("production_sync_hourly", "production", "10 * * * *"),
    ]
    return table


def build_schedule(
    beat: Beat, stage: Stage, job: AssetJob, partitioned: bool
) -> dg.ScheduleDefinition:
    brands_of = beat.brands or _all_brands

    def requests(context: dg.ScheduleEvaluationContext) -> Iterator[dg.RunRequest]:
        tick = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time \
            else "manual"
        config = stage.run_config(beat.retry)
        if not partitioned:
            yield dg.RunRequest(run_key=f"{beat.name}:{tick}", run_config=config,
                                tags={"unde/role": stage.role})
            return
        brands = list(brands_of())
        if beat.retries_of is not None:
            waiting = set(_brands_with_retries(context, beat.retries_of))
            brands = [b for b in brands if b in waiting]
        for brand in brands:
            yield dg.RunRequest(
                run_key=f"{beat.name}:{brand}:{tick}",
                partition_key=brand,
                run_config=config,
                tags=stage.run_tags(brand),
            )

    kind = "retry pass" if beat.retry else "run"
    return dg.ScheduleDefinition(
        name=beat.name,
        cron_schedule=beat.cron,
        execution_timezone="UTC",
        job=job,
        execution_fn=requests,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Replaces the beat entry `{beat.cron}` UTC: {stage.asset} {kind}.",
        required_resource_keys=(
            {"staging_db", QUEUE_SETTINGS[beat.retries_of]} if beat.retries_of else None
        ),
    )


def _brands_with_retries(context: dg.ScheduleEvaluationContext, queue: StageQueue) -> list[str]:
    staging_db: StagingDatabase = context.resources.staging_db
    settings: StageQueueSettings = getattr(context.resources, QUEUE_SETTINGS[queue])
    with staging_db.connect(autocommit=True) as conn:
        return brands_with_retries(conn, queue, settings.max_attempts)
