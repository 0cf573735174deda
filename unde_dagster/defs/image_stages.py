"""What the two image stages (originals, collages) share on the Dagster side: their run config,
the claim-and-process loop over a brand's queue, run liveness, previews and metadata."""

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Any, Protocol, TypeVar

import dagster as dg
import psycopg
from pydantic import Field

from unde_dagster.db.claims import ClaimRules, StageQueue, claim_batch, release_stale_claims
from unde_dagster.db.scraper_logs import BatchLog, write_scraper_log

OutcomeT = TypeVar("OutcomeT", bound="BatchOutcome")


class ImageStageConfig(dg.Config):
    """Run config of an image stage: new work, or the hourly retry pass."""

    retry_errors: bool = Field(
        default=False,
        description="take this stage's errors that are due for another try (the :30 retry "
        "pass) instead of new work",
    )
    max_batches: int = Field(default=25, description="batches per run before it stops")


def run_is_over(instance: dg.DagsterInstance, run_id: str) -> bool:
    """True when Dagster knows the run that holds a claim has ended (or never existed)."""
    run = instance.get_run_by_id(run_id)
    return run is None or run.is_finished


def preview(url: str | None, caption: str) -> dg.MetadataValue:
    if not url:
        return dg.MetadataValue.md("_nothing made in this run_")
    return dg.MetadataValue.md(f"![{caption}]({url})\n\n[{url}]({url})")


def counts_metadata(counts: Mapping[str, int]) -> dict[str, Any]:
    return {"errors_by_reason": dg.MetadataValue.json(dict(counts))}


def accumulate(total: OutcomeT, batch: OutcomeT) -> None:
    """Adds one batch's outcome into the run's: counts add, lists extend, the first preview
    stays."""
    for f in dataclasses.fields(total):  # type: ignore[arg-type]
        mine, theirs = getattr(total, f.name), getattr(batch, f.name)
        if isinstance(mine, Counter):
            mine.update(theirs)
        elif isinstance(mine, list):
            mine.extend(theirs)
        elif isinstance(mine, int):
            setattr(total, f.name, mine + theirs)
        elif mine is None:
            setattr(total, f.name, theirs)


class BatchOutcome(Protocol):
    claimed: int
    done: int
    errors_by_reason: Counter[str]
    error_samples: list[str]


def drain_queue(
    context: dg.AssetExecutionContext,
    conn: psycopg.Connection,
    queue: StageQueue,
    *,
    rules: ClaimRules,
    config: ImageStageConfig,
    scraper_name: str,
    process: Callable[[list[dict[str, Any]]], OutcomeT],
) -> Iterator[OutcomeT]:
    """Claim and process the brand's batches until the queue is empty or `max_batches`.

    Claims of runs that are over are released first, so a re-run after a kill resumes
    at once. Each batch gets its `scraper_logs` row and its errors in the run's log.
    """
    brand, token = context.partition_key, context.run.run_id
    released = release_stale_claims(conn, brand, partial(run_is_over, context.instance), token)
    if released:
        context.log.info(f"released {released} SKUs claimed by runs that are over")
    for number in range(1, config.max_batches + 1):
        rows = claim_batch(
            conn, queue, brand=brand, token=token, rules=rules, retry=config.retry_errors
        )
        if not rows:
            return
        log = BatchLog(scraper_name=scraper_name, run_id=token)
        outcome = process(rows)
        errors = sum(outcome.errors_by_reason.values())
        log.fetched, log.new, log.errors = outcome.claimed, outcome.done, errors
        log.metadata = {
            "brand": brand,
            "retry_pass": config.retry_errors,
            "errors_by_reason": dict(outcome.errors_by_reason),
        }
        write_scraper_log(conn, log)
        context.log.info(
            f"batch {number}: {outcome.done}/{outcome.claimed} done, "
            f"errors {dict(outcome.errors_by_reason)}"
        )
        for sample in outcome.error_samples:
            context.log.warning(sample)
        yield outcome
