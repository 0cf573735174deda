"""How every asset check reports: evaluated per brand, one result, an alert when it turns red.

The checks are not partitioned (partitioned checks are not settled in Dagster 1.13); in a
brand run they look at that run's brand (`dagster/partition`), run alone they look at every
brand and fail if any brand does. Each stage's `checks.py` says what is checked; the
verdicts themselves are plain functions (`unde_dagster.db.health`).
"""

from collections.abc import Callable

import dagster as dg
import psycopg

from unde_dagster.alerts import send_alert
from unde_dagster.brands import load_brands
from unde_dagster.db.health import Verdict
from unde_dagster.resources.databases import StagingDatabase
from unde_deploy.roles import PARTITION_TAG

HISTORY_LOOKBACK = 50  # earlier evaluations read to find each brand's last verdict

BrandVerdict = Callable[[psycopg.Connection, str], Verdict]


def brands_in_scope(context: dg.AssetCheckExecutionContext) -> list[str]:
    brand = context.run.tags.get(PARTITION_TAG)
    return [brand] if brand in load_brands() else list(load_brands())


def check_brands(
    context: dg.AssetCheckExecutionContext, staging_db: StagingDatabase, verdict: BrandVerdict
) -> dg.AssetCheckResult:
    """The check's verdict for every brand in scope, as one result (and an alert if new)."""
    with staging_db.connect(autocommit=True) as conn:
        verdicts = {b: verdict(conn, b) for b in brands_in_scope(context)}
    [spec] = context.check_specs
    failed = sorted(b for b, v in verdicts.items() if not v.passed)
    alerted = failing_before(context.instance, spec.key, context.run.run_id)
    newly = [b for b in failed if b not in alerted]
    if newly:
        details = "; ".join(f"{b}: {verdicts[b].detail}" for b in newly)
        send_alert(f":warning: UNDE check `{spec.asset_key.to_user_string()}.{spec.name}` "
                   f"failed for {', '.join(newly)} (run `{context.run.run_id}`) — "
                   f"{details}"[:2000])
    return dg.AssetCheckResult(
        passed=not failed,
        metadata={
            "brands_checked": len(verdicts),
            "brands_failed": dg.MetadataValue.json(failed),
            "by_brand": dg.MetadataValue.json({b: v.detail for b, v in verdicts.items()}),
        },
    )


def failing_before(instance: dg.DagsterInstance, key: dg.AssetCheckKey, run_id: str) -> set[str]:
    """Brands whose previous evaluation of this check failed too: they were alerted then, so
    an SLA breach that lasts a day alerts once, not at every hourly run."""
    verdicts: dict[str, bool] = {}
    history = instance.event_log_storage.get_asset_check_execution_history(
        key, limit=HISTORY_LOOKBACK
    )
    for record in history:  # newest first: the first verdict seen per brand is its latest
        evaluation = record.event.dagster_event.event_specific_data if record.event else None
        if record.run_id == run_id or not isinstance(evaluation, dg.AssetCheckEvaluation):
            continue  # still running, or ended without a verdict
        by_brand = evaluation.metadata.get("by_brand")
        brands_failed = evaluation.metadata.get("brands_failed")
        if by_brand is None or brands_failed is None:
            continue
        for brand in by_brand.value:  # type: ignore[union-attr]
            verdicts.setdefault(brand, brand in brands_failed.value)  # type: ignore[operator]
    return {brand for brand, failed in verdicts.items() if failed}
