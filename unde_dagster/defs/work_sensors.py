"""The work sensors' rules: a brand's image stage runs as soon as the Staging DB holds work.

Why sensors on DB state and not declarative automation on materializations: the work queue
is rows in `raw_products` (written by other runs, retries, operators, the old servers), not
asset partitions going stale. A materialization of `product_originals` says nothing about
whether SKUs wait for a collage, and a SKU requeued by the catalog must be picked up even
when no upstream asset "changed". Reading the queue is level-triggered, so a lost tick or a
restarted daemon cannot skip work; the cursor only remembers which batch was asked for.
"""

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import dagster as dg

from unde_dagster.brands import load_brands
from unde_dagster.db.queues import BrandQueue, stage_queues
from unde_dagster.resources.databases import StagingDatabase
from unde_deploy.roles import PARTITION_TAG, brand_tag, stage_run_tags

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
FAILED = {dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
RUN_KEY_TAG = "dagster/run_key"
SENSOR_TAG = "dagster/sensor_name"
MAX_ATTEMPTS = 3  # runs of one unchanged batch that failed before the sensor gives up on it
PIPELINE_JOBS = {"brand_catalog_pipeline"}
WORK_SENSOR_INTERVAL_S = 30


@dataclass(frozen=True)
class WorkQueue:
    """One sensed stage: its queue in the Staging DB, the asset and job it launches, its role."""

    queue: str  # a key of unde_dagster.db.queues.QUEUE_PREDICATES
    asset: dg.AssetKey
    job_name: str
    role: str


@dataclass
class Requested:
    """What the cursor keeps per brand: the batch asked for and under which run key."""

    fingerprint: str
    attempt: int
    run_key: str


def load_cursor(raw: str | None) -> dict[str, Requested]:
    data: dict[str, Any] = json.loads(raw) if raw else {}
    return {brand: Requested(**entry) for brand, entry in data.items()}


def dump_cursor(cursor: Mapping[str, Requested]) -> str:
    return json.dumps({b: asdict(r) for b, r in sorted(cursor.items())}, sort_keys=True)


def busy_brands(instance: dg.DagsterInstance, work: WorkQueue) -> set[str]:
    """Brands with a queued or running run that does this stage's work."""
    busy: set[str] = set()
    for record in instance.get_run_records(dg.RunsFilter(statuses=IN_FLIGHT), limit=1000):
        run = record.dagster_run
        tagged = run.tags.get(brand_tag(work.role))
        if tagged:
            busy.add(tagged)
            continue
        partition = run.tags.get(PARTITION_TAG)
        if partition and (
            run.job_name in PIPELINE_JOBS | {work.job_name}
            or work.asset in (run.asset_selection or set())
        ):
            busy.add(partition)
    return busy


def _last_status(
    instance: dg.DagsterInstance, sensor_name: str, run_key: str
) -> dg.DagsterRunStatus | None:
    records = instance.get_run_records(
        dg.RunsFilter(tags={RUN_KEY_TAG: run_key, SENSOR_TAG: sensor_name}), limit=1
    )
    return records[0].dagster_run.status if records else None


def decide(
    queue: BrandQueue,
    previous: Requested | None,
    last_status: dg.DagsterRunStatus | None,
    stage: str,
) -> Requested | None:
    """The batch to ask for now, or None. Pure, so the rules are unit-testable:
    a changed queue is a new batch; an unchanged one is asked for again only while its run
    has not been created yet (same key: Dagster de-duplicates) or failed (new attempt)."""
    if previous is None or previous.fingerprint != queue.fingerprint:
        key = f"{stage}:{queue.brand}:{queue.fingerprint}"
        return Requested(queue.fingerprint, 1, key)
    if last_status is None:
        return previous
    if last_status in FAILED and previous.attempt < MAX_ATTEMPTS:
        attempt = previous.attempt + 1
        key = f"{stage}:{queue.brand}:{queue.fingerprint}:{attempt}"
        return Requested(queue.fingerprint, attempt, key)
    return None


def request_waiting_brands(
    context: dg.SensorEvaluationContext, staging_db: StagingDatabase, work: WorkQueue
) -> dg.SensorResult | dg.SkipReason:
    """One run request per brand with waiting rows, none for a brand already in flight."""
    with staging_db.connect(autocommit=True) as conn:
        queues = stage_queues(conn, work.queue)
    cursor = load_cursor(context.cursor)
    if not queues:
        return dg.SkipReason(f"no rows wait for {work.asset.to_user_string()}")
    busy = busy_brands(context.instance, work)
    known = set(load_brands())  # rows of a brand no longer configured have no partition
    requests: list[dg.RunRequest] = []
    for brand, queue in sorted(queues.items()):
        if brand in busy or brand not in known:
            continue
        previous = cursor.get(brand)
        status = None
        if previous is not None and previous.fingerprint == queue.fingerprint:
            status = _last_status(context.instance, context.sensor_name, previous.run_key)
        wanted = decide(queue, previous, status, work.queue)
        if wanted is None:
            context.log.info(f"{brand}: {queue.count} rows unchanged after a finished run")
            continue
        cursor[brand] = wanted
        requests.append(
            dg.RunRequest(
                run_key=wanted.run_key,
                partition_key=brand,
                tags={**stage_run_tags(work.role, brand), "unde/waiting_rows": str(queue.count)},
            )
        )
    return dg.SensorResult(run_requests=requests, cursor=dump_cursor(cursor))
