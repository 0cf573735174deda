"""What the two image stages (originals, collages) share on the Dagster side: their run config,
the claim-and-process loop over a brand's queue, run liveness, previews and metadata."""

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any, Protocol, TypeVar

import dagster as dg
import psycopg
from pydantic import Field

from unde_dagster.db.claims import (
    ClaimRules,
    HeldClaim,
    StageQueue,
    claim_batch,
    release_stale_claims,
)
from unde_dagster.db.leases import Connect, LeaseHeartbeat, sibling_connect
from unde_dagster.db.scraper_logs import (
    BatchLog,
    close_abandoned_logs,
    close_scraper_log,
    open_scraper_log,
)
from unde_dagster.defs.brand_schedules import tag_sku_count
from unde_dagster.outages import outage_of
from unde_dagster.storage import thumbnail_key

OutcomeT = TypeVar("OutcomeT", bound="BatchOutcome")


class ImageStageConfig(dg.Config):
    """Run config of an image stage: new work, or the hourly retry pass."""

    retry_errors: bool = Field(
        default=False,
        description="take this stage's errors that are due for another try (the :30 retry "
        "pass) instead of new work",
    )
    ignore_cooldown: bool = Field(
        default=False,
        description="with retry_errors: retry failed SKUs now, not only those that failed at "
        "least the cool-down (1 h) ago; attempts still count",
    )
    max_batches: int = Field(default=25, description="batches per run before it stops")


def retry_preset(asset: str) -> dict[str, Any]:
    """Run config of a by-hand retry: the retry pass, cool-down ignored."""
    return {"ops": {asset: {"config": {"retry_errors": True, "ignore_cooldown": True}}}}


def run_is_over(instance: dg.DagsterInstance, run_id: str) -> bool:
    """True when Dagster knows the run that holds a claim has ended (or never existed)."""
    run = instance.get_run_by_id(run_id)
    return run is None or run.is_finished


PREVIEW_SKUS = 6  # recent SKUs of the brand in a stage's preview grid
_SAMPLES = dg.TableSchema(columns=[
    dg.TableColumn("external_id", "string"),
    dg.TableColumn("reason", "string"),
    dg.TableColumn("url", "string"),
    dg.TableColumn("message", "string"),
])


def preview_grid(items: Sequence[tuple[str, str, str]]) -> dg.MetadataValue:
    """Markdown of (external_id, thumbnail URL, full image URL): each thumbnail links to its
    full image and is captioned with the SKU (Dagster's markdown has no tables)."""
    if not items:
        return dg.MetadataValue.md("_no SKU of this brand has one yet_")
    blocks = [f"[![{ext}]({thumb})]({full})\n\n[`{ext}`]({full})" for ext, thumb, full in items]
    return dg.MetadataValue.md("\n\n".join(blocks))


def thumbnails(
    key_of: Callable[[str], str], public_url: Callable[[str], str],
    rows: Sequence[tuple[str, str]],
) -> list[tuple[str, str, str]]:
    """(external_id, thumbnail URL, full URL) of (external_id, full URL) rows whose URL is
    one of our objects."""
    items = []
    for ext, url in rows:
        try:
            items.append((ext, public_url(thumbnail_key(key_of(url))), url))
        except ValueError:
            continue
    return items


def error_samples_table(samples: Sequence[Mapping[str, str]]) -> dg.MetadataValue:
    """The run's sample errors: which SKU, why, which source URL."""
    return dg.MetadataValue.table(
        [dg.TableRecord({k: str(sample.get(k) or "")[:300] for k in
                         ("external_id", "reason", "url", "message")}) for sample in samples],
        schema=_SAMPLES,
    )


def megabytes(n_bytes: int) -> dg.MetadataValue:
    return dg.MetadataValue.float(round(n_bytes / 1e6, 2))


def stage_result(
    context: dg.AssetExecutionContext, outcome: "BatchOutcome", metadata: dict[str, Any], *,
    max_error_rate: float,
) -> Iterator[dg.MaterializeResult]:
    """What a stage run leaves on its partition: a materialization when it did something; an
    observation when it claimed nothing (the brand's last real counts and previews stay);
    a failed step, not retried, when more than `max_error_rate` of its SKUs failed (the
    brand's partition turns red with the error rate and sample errors)."""
    tag_sku_count(context, outcome.claimed)
    if outcome.claimed == 0:
        context.log.info("nothing to do for this brand: no materialization recorded")
        context.log_event(dg.AssetObservation(
            asset_key=context.asset_key, partition=context.partition_key,
            metadata={"claimed": 0, "skus_by_image_status": metadata["skus_by_image_status"]},
        ))
        return
    errors = sum(outcome.errors_by_reason.values())
    rate = errors / outcome.claimed
    metadata = {
        **metadata,
        "error_rate_pct": dg.MetadataValue.float(round(100 * rate, 1)),
        "error_samples": error_samples_table(outcome.error_samples),
    }
    if rate > max_error_rate:
        raise dg.Failure(
            description=f"{context.partition_key}: {errors} of {outcome.claimed} SKUs failed "
            f"({rate:.0%}, threshold {max_error_rate:.0%}); see error_samples. Fix the cause, "
            "then launch the stage's retry job for this brand.",
            metadata=metadata, allow_retries=False,
        )
    yield dg.MaterializeResult(metadata=metadata)


def counts_metadata(counts: Mapping[str, int]) -> dict[str, Any]:
    return {"errors_by_reason": dg.MetadataValue.json(dict(counts))}


def accumulate(total: OutcomeT, batch: OutcomeT) -> None:
    """Adds one batch's outcome into the run's: counts add, lists extend."""
    for f in dataclasses.fields(total):  # type: ignore[arg-type]
        mine, theirs = getattr(total, f.name), getattr(batch, f.name)
        if isinstance(mine, Counter):
            mine.update(theirs)
        elif isinstance(mine, list):
            mine.extend(theirs)
        elif isinstance(mine, int):
            setattr(total, f.name, mine + theirs)


class BatchOutcome(Protocol):
    claimed: int
    done: int
    errors_by_reason: Counter[str]
    error_samples: list[dict[str, str]]  # external_id, reason, url, message


def drain_queue(
    context: dg.AssetExecutionContext,
    conn: psycopg.Connection,
    queue: StageQueue,
    *,
    rules: ClaimRules,
    config: ImageStageConfig,
    scraper_name: str,
    process: Callable[[list[dict[str, Any]]], OutcomeT],
    connect: Connect | None = None,
) -> Iterator[OutcomeT]:
    """Claim and process the brand's batches until the queue is empty or `max_batches`.

    Claims other runs hold are settled first and reported (log + metadata): those of runs
    that are over or whose lease expired are released, so a re-run after a kill resumes at
    once; live ones are left alone. A heartbeat on its own connection (`connect`, default:
    one like `conn`) renews the batch's lease while it is processed. Each batch that started
    gets its `scraper_logs` row and its errors in the run's log, `crashed` if it did not end.
    An outage fails the step with a retryable `dg.Failure` naming the service (the op retry
    policy tries again soon: a short outage costs a retry, not the SKUs' attempts).
    """
    brand, token = context.partition_key, context.run.run_id
    held = release_stale_claims(conn, queue, brand, partial(run_is_over, context.instance), token)
    report_held_claims(context, held)
    abandoned = close_abandoned_logs(
        conn, [scraper_name], brand,
        lambda run_id: run_id == token or run_is_over(context.instance, run_id),
    )
    if abandoned:
        context.log.warning(
            f"{abandoned} {scraper_name} batches of runs that are over never closed their "
            "scraper_logs row (process or database gone): closed as crashed"
        )
    connect = connect or sibling_connect(conn)
    if config.retry_errors and config.ignore_cooldown:
        rules = dataclasses.replace(rules, retry_after_s=0)
    for number in range(1, config.max_batches + 1):
        rows = claim_batch(
            conn, queue, brand=brand, token=token, rules=rules, retry=config.retry_errors
        )
        if not rows:
            return
        log = BatchLog(scraper_name=scraper_name, run_id=token)
        log.metadata = {"brand": brand, "retry_pass": config.retry_errors}
        log_id = open_scraper_log(conn, log)
        try:
            with LeaseHeartbeat(
                connect, token, lease_s=rules.lease_s, every_s=rules.renew_s
            ) as beat:
                outcome = process(rows)
        except BaseException as exc:  # interrupts too: re-raised untouched below
            log_crash(context, conn, log_id, log, number, len(rows), exc)
            outage = outage_of(exc) if isinstance(exc, Exception) else None
            if outage is None:
                raise
            notes = "; ".join(getattr(outage, "__notes__", []))
            raise dg.Failure(
                description=f"batch {number} stopped: {outage}" + (f" ({notes})" if notes else ""),
                metadata={"service": outage.service, "batch": number},
                allow_retries=True,
            ) from exc
        if beat.failures:
            context.log.warning(
                f"batch {number}: {len(beat.failures)} lease renewals failed "
                f"({beat.renewals} ok), last: {beat.failures[-1]}"
            )
        errors = sum(outcome.errors_by_reason.values())
        log.fetched, log.new, log.errors = outcome.claimed, outcome.done, errors
        log.metadata["errors_by_reason"] = dict(outcome.errors_by_reason)
        close_scraper_log(conn, log_id, log)
        context.log.info(
            f"batch {number}: {outcome.done}/{outcome.claimed} done, "
            f"errors {dict(outcome.errors_by_reason)}"
        )
        for sample in outcome.error_samples:
            context.log.warning(f"{sample['external_id']}: {sample['message']}")
        yield outcome


def log_crash(
    context: dg.AssetExecutionContext,
    conn: psycopg.Connection,
    log_id: int,
    log: BatchLog,
    number: int,
    claimed: int,
    exc: BaseException,
) -> None:
    """Write the `crashed` row of a batch that did not end, with what it did when known (an
    outage carries the batch's outcome). If the DB is down this fails too: say so and go on."""
    outage = outage_of(exc) if isinstance(exc, Exception) else None
    done: BatchOutcome | None = getattr(outage, "outcome", None)
    log.crashed = True
    log.fetched = claimed
    if done is not None:
        log.new, log.errors = done.done, sum(done.errors_by_reason.values())
        log.metadata["errors_by_reason"] = dict(done.errors_by_reason)
        for sample in done.error_samples:
            context.log.warning(f"{sample['external_id']}: {sample['message']}")
    log.error_message = f"{type(exc).__name__}: {exc}"[:2000]
    log.metadata.update(
        error=log.error_message,
        error_type=type(exc).__name__,
        service=outage.service if outage else None,
        counts_known=done is not None,
    )
    try:
        close_scraper_log(conn, log_id, log)
    except Exception as failed:
        context.log.error(
            f"batch {number} crashed ({log.error_message}) and its scraper_logs row could "
            f"not be closed: {type(failed).__name__}: {failed} (it stays running until the "
            "stage's next run closes it as crashed)"
        )


def report_held_claims(context: dg.AssetExecutionContext, held: list[HeldClaim]) -> None:
    """Say which SKUs other runs' claims held, so a run that claims nothing is not silent."""
    for claim in held:
        if claim.released:
            context.log.warning(
                f"{claim.skus} SKUs were held by a dead claim of run {claim.run_id} "
                f"({claim.fate.removeprefix('released: ')}): released, attempts given back"
            )
        else:
            until = claim.lease_until.isoformat(timespec="seconds") if claim.lease_until else "?"
            context.log.warning(
                f"{claim.skus} SKUs are held by run {claim.run_id}, whose lease runs until "
                f"{until}: left alone (the run may be alive; they return when the lease ends)"
            )
    context.add_asset_metadata(
        {
            "skus_released_from_dead_claims": sum(c.skus for c in held if c.released),
            "skus_held_by_live_claims": sum(c.skus for c in held if not c.released),
            "claims_of_other_runs": dg.MetadataValue.json(
                [
                    {
                        "run_id": c.run_id,
                        "skus": c.skus,
                        "fate": c.fate,
                        "lease_until": c.lease_until.isoformat() if c.lease_until else None,
                    }
                    for c in held
                ]
            ),
        }
    )
