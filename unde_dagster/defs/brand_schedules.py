"""What every schedule and stage job shares: one run per brand per tick, transient retries.

A schedule tick asks for one run per brand partition, with a run key made of the schedule,
the brand and the tick time, so a restarted daemon never launches the same tick twice. The
hourly retry passes ask only for brands that hold failed rows with attempts left (one
indexed query), so a quiet hour launches nothing instead of a run per brand.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import dagster as dg

from unde_dagster.db.claims import StageQueue
from unde_dagster.db.queues import brands_with_retries
from unde_dagster.resources.databases import StagingDatabase
from unde_deploy.roles import SKUS_TAG, STAGE_TAG, stage_job_tags, stage_run_tags

# Transient faults (DB restart, S3 5xx, proxy down) fail the op; bad data never does (it ends
# as an error on the SKU), so retrying a failed op is safe and cannot loop on a bad row.
TRANSIENT_RETRY = dg.RetryPolicy(
    max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)

Compute = TypeVar("Compute", bound=Callable[..., Any])


def stops_when_terminated(compute: Compute) -> Compute:
    """A terminate from the UI ends the step, where Dagster would retry it.

    Dagster retries an interrupted step under its retry policy (a pre-empted pod comes
    back), so with TRANSIENT_RETRY a terminated run started its step again and ended
    SUCCESS. When the run is being canceled, the step fails without retry instead and the
    run ends CANCELED; any other interrupt keeps Dagster's behaviour.
    """

    def stopped(context: dg.AssetExecutionContext) -> None:
        record = context.instance.get_run_by_id(context.run.run_id)
        if record is not None and record.status == dg.DagsterRunStatus.CANCELING:
            raise dg.Failure(
                "terminated on request: the step stops here and is not retried",
                allow_retries=False,
            ) from None

    if inspect.isgeneratorfunction(compute):
        @functools.wraps(compute)
        def run_steps(context: dg.AssetExecutionContext, *args: Any, **kwargs: Any) -> Any:
            try:
                yield from compute(context, *args, **kwargs)
            except dg.DagsterExecutionInterruptedError:
                stopped(context)
                raise

        return run_steps  # type: ignore[return-value]

    @functools.wraps(compute)
    def run(context: dg.AssetExecutionContext, *args: Any, **kwargs: Any) -> Any:
        try:
            return compute(context, *args, **kwargs)
        except dg.DagsterExecutionInterruptedError:
            stopped(context)
            raise

    return run  # type: ignore[return-value]


def tag_sku_count(context: dg.AssetExecutionContext, skus: int) -> None:
    """`unde/skus` on the run, for the runs list: the most SKUs one of its stages handled."""
    before = context.run.tags.get(SKUS_TAG, "0")
    count = max(skus, int(before) if before.isdigit() else 0)
    context.instance.add_run_tags(context.run.run_id, {SKUS_TAG: str(count)})


def one_brand_job(name: str, asset: dg.AssetsDefinition, role: str, description: str,
                  config: Mapping[str, Any] | None = None):
    """A job of one stage's asset: each run is one brand's work on that stage's role host.
    `config`: the run config the launchpad opens with (a preset)."""
    stage = name.removesuffix("_job").removesuffix("_retry")
    return dg.define_asset_job(
        name,
        selection=dg.AssetSelection.assets(asset),
        description=description,
        tags={**stage_job_tags(role), STAGE_TAG: stage},
        op_retry_policy=TRANSIENT_RETRY,
        config=dict(config) if config else None,
    )


def brand_requests(
    context: dg.ScheduleEvaluationContext, schedule: str, brands: Iterable[str], role: str,
    run_config: Mapping[str, Any] | None = None,
) -> Iterator[dg.RunRequest]:
    """One run request per brand, keyed by schedule, brand and tick."""
    when = context.scheduled_execution_time
    tick = when.isoformat() if when else "manual"
    for brand in brands:
        yield dg.RunRequest(
            run_key=f"{schedule}:{brand}:{tick}",
            partition_key=brand,
            run_config=dict(run_config or {}),
            tags=stage_run_tags(role, brand),
        )


def brands_due_for_retry(
    staging_db: StagingDatabase, queue: StageQueue, max_attempts: int, brands: Iterable[str]
) -> list[str]:
    """Of `brands`, those holding rows this stage failed that still have attempts left."""
    with staging_db.connect(autocommit=True) as conn:
        waiting = set(brands_with_retries(conn, queue, max_attempts))
    return [b for b in brands if b in waiting]
