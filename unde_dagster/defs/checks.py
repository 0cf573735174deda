"""How every asset check reports: every brand evaluated, one row per brand, an alert when a
brand turns red.

Each evaluation looks at every brand, whatever run it rides in, so a later brand's run
never turns a failing brand green: the check fails while any brand fails, and its table
shows each brand's value beside the threshold in force. (Partitioned checks are a preview
in Dagster 1.13 and cannot be run on their own for a partition, so they are not used.)
Each stage's `checks.py` says what is checked; the verdicts themselves are plain functions
(`unde_dagster.db.health`).
"""

from collections.abc import Callable

import dagster as dg
import psycopg

from unde_dagster.alerts import send_alert
from unde_dagster.brands import load_brands
from unde_dagster.db.health import Verdict
from unde_dagster.resources.databases import StagingDatabase

HISTORY_LOOKBACK = 50  # earlier evaluations read to find each brand's last verdict

BrandVerdict = Callable[[psycopg.Connection, str], Verdict]

_TABLE = dg.TableSchema(columns=[
    dg.TableColumn("brand", "string"),
    dg.TableColumn("status", "string"),
    dg.TableColumn("value", "string"),
    dg.TableColumn("threshold", "string"),
])


def check_brands(
    context: dg.AssetCheckExecutionContext, staging_db: StagingDatabase, verdict: BrandVerdict,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.WARN,
) -> dg.AssetCheckResult:
    """The check's verdict for every brand, as one result (and an alert for newly red ones)."""
    with staging_db.connect(autocommit=True) as conn:
        verdicts = {b: verdict(conn, b) for b in sorted(load_brands())}
    [spec] = context.check_specs
    failed = sorted(b for b, v in verdicts.items() if not v.passed)
    alerted = failing_before(context.instance, spec.key, context.run.run_id)
    newly = [b for b in failed if b not in alerted]
    if newly:
        details = "; ".join(f"{b}: {verdicts[b].value or verdicts[b].detail}" for b in newly)
        send_alert(f":warning: UNDE check `{spec.asset_key.to_user_string()}.{spec.name}` "
                   f"failed for {', '.join(newly)} (run `{context.run.run_id}`) — "
                   f"{details}"[:2000])
    rows = [
        dg.TableRecord({"brand": b, "status": "ok" if v.passed else "FAILED",
                        "value": v.value, "threshold": v.limit})
        for b, v in sorted(verdicts.items(), key=lambda bv: (bv[1].passed, bv[0]))
    ]
    return dg.AssetCheckResult(
        passed=not failed,
        severity=severity,
        description=(f"failing: {', '.join(failed)}" if failed
                     else f"all {len(verdicts)} brands pass"),
        metadata={
            "brands": dg.MetadataValue.table(rows, schema=_TABLE),
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
