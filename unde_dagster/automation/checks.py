"""Asset checks per stage, evaluated per brand: batch error rate, SLA, geometry, coverage.

The checks are not partitioned (partitioned checks are not settled in Dagster 1.13); in a
brand run they look at that run's brand (`dagster/partition`), run alone they look at every
brand and fail if any brand does. A failing check also posts to the alert webhook.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from io import BytesIO
from typing import Any

import dagster as dg
import psycopg
from dagster._core.storage.asset_check_execution_record import (
    COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES,
)
from PIL import Image

from unde_dagster.automation import queries
from unde_dagster.automation.alerts import send_alert
from unde_dagster.automation.jobs import Stage
from unde_dagster.brands import load_brands
from unde_dagster.collages.compose import collage_geometry
from unde_dagster.deploy.roles import PARTITION_TAG
from unde_dagster.resources.check_thresholds import CheckThresholds
from unde_dagster.resources.databases import StagingDatabase
from unde_dagster.resources.object_store import ObjectStore, original_key

DIMENSION_SAMPLE = 3
HISTORY_LOOKBACK = 50  # earlier evaluations read to find each brand's last verdict


@dataclass(frozen=True)
class Verdict:
    passed: bool
    detail: dict[str, Any]


BrandEval = Callable[[psycopg.Connection, str], Verdict]
MakeEval = Callable[[CheckThresholds], BrandEval]  # thresholds are resolved at run time


def brands_in_scope(context: dg.AssetCheckExecutionContext) -> list[str]:
    brand = context.run.tags.get(PARTITION_TAG)
    return [brand] if brand in load_brands() else list(load_brands())


def _result(
    context: dg.AssetCheckExecutionContext, asset: str, check: str, verdicts: dict[str, Verdict]
) -> dg.AssetCheckResult:
    failed = sorted(b for b, v in verdicts.items() if not v.passed)
    key = dg.AssetCheckKey(dg.AssetKey(asset), check)
    alerted = failing_before(context.instance, key, context.run.run_id)
    newly = [b for b in failed if b not in alerted]
    if newly:
        details = "; ".join(f"{b}: {verdicts[b].detail}" for b in newly)
        send_alert(f":warning: UNDE check `{asset}.{check}` failed for {', '.join(newly)} "
                   f"(run `{context.run.run_id}`) — {details}"[:2000])
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
        key, limit=HISTORY_LOOKBACK, status=COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES
    )
    for record in history:  # newest first: the first verdict seen per brand is its latest
        evaluation = record.event.dagster_event.event_specific_data if record.event else None
        if record.run_id == run_id or not isinstance(evaluation, dg.AssetCheckEvaluation):
            continue
        by_brand = evaluation.metadata.get("by_brand")
        brands_failed = evaluation.metadata.get("brands_failed")
        if by_brand is None or brands_failed is None:
            continue
        for brand in by_brand.value:  # type: ignore[union-attr]
            verdicts.setdefault(brand, brand in brands_failed.value)  # type: ignore[operator]
    return {brand for brand, failed in verdicts.items() if failed}


def error_rate_eval(
    limits: CheckThresholds, *, scraper_names: Sequence[str] = (), by_brand_name: bool = False
) -> BrandEval:
    def evaluate(conn: psycopg.Connection, brand: str) -> Verdict:
        if by_brand_name:  # the catalog logs under `apify_<brand>`
            batch = queries.last_batch(conn, [f"apify_{brand}"], None)
        else:
            batch = queries.last_batch(conn, list(scraper_names), brand)
        if batch is None:
            return Verdict(True, {"last_batch": None})
        rate = round(batch.error_rate, 4)
        return Verdict(rate <= limits.max_batch_error_rate, {
            "error_rate": rate, "fetched": batch.fetched, "errors": batch.errors,
            "run_id": batch.run_id, "threshold": limits.max_batch_error_rate,
        })
    return evaluate


def stuck_eval(status: str, sla_hours: float) -> BrandEval:
    def evaluate(conn: psycopg.Connection, brand: str) -> Verdict:
        count, sample = queries.stuck_skus(conn, status, int(sla_hours * 3600), brand)
        return Verdict(count == 0, {"stuck": count, "sla_hours": sla_hours, "sample": sample})
    return evaluate


def coverage_eval(limits: CheckThresholds) -> BrandEval:
    def evaluate(conn: psycopg.Connection, brand: str) -> Verdict:
        ready, synced = queries.pilot_coverage(conn, brand)
        share = synced / ready if ready else 1.0
        return Verdict(share >= limits.min_pilot_coverage, {
            "pilot_ready": ready, "synced": synced, "coverage": round(share, 4),
            "threshold": limits.min_pilot_coverage,
        })
    return evaluate


def dimension_eval(store: ObjectStore) -> BrandEval:
    """Re-derives the canvas size from the stored originals of a few recent collages."""
    def evaluate(conn: psycopg.Connection, brand: str) -> Verdict:
        client = store.get_client()
        bad: list[str] = []
        sampled = queries.recent_collages(conn, brand, DIMENSION_SAMPLE)
        for row_brand, external_id, url, photos in sampled:
            sizes = [_size(store, client, original_key(row_brand, external_id, n))
                     for n in range(1, photos + 1)]
            _, width, height = collage_geometry(sizes)
            actual = _size(store, client, store.key_of(url))
            if actual != (width, height):
                bad.append(f"{external_id}: {actual[0]}x{actual[1]} != {width}x{height}")
        return Verdict(not bad, {"sampled": len(sampled), "mismatches": bad})
    return evaluate


def _size(store: ObjectStore, client: Any, key: str) -> tuple[int, int]:
    with Image.open(BytesIO(store.get_bytes(client, key))) as img:
        return img.size


def _db_check(asset: str, name: str, description: str, make_eval: MakeEval) -> Any:
    @dg.asset_check(asset=asset, name=name, description=description)
    def check(
        context: dg.AssetCheckExecutionContext, staging_db: StagingDatabase,
        check_thresholds: CheckThresholds,
    ) -> dg.AssetCheckResult:
        return _evaluate(context, staging_db, asset, name, make_eval(check_thresholds))
    return check


def _dimension_check(asset: str) -> Any:
    name = "collage_dimensions_match_originals"

    @dg.asset_check(asset=asset, name=name, description="A few recent collages have exactly "
                    "the canvas the stored originals give (tallest height, scaled widths).")
    def check(
        context: dg.AssetCheckExecutionContext, staging_db: StagingDatabase,
        object_store: ObjectStore,
    ) -> dg.AssetCheckResult:
        return _evaluate(context, staging_db, asset, name, dimension_eval(object_store))
    return check


def _evaluate(
    context: dg.AssetCheckExecutionContext, staging_db: StagingDatabase, asset: str,
    check: str, evaluate: BrandEval,
) -> dg.AssetCheckResult:
    with staging_db.connect(autocommit=True) as conn:
        verdicts = {b: evaluate(conn, b) for b in brands_in_scope(context)}
    return _result(context, asset, check, verdicts)


def build_checks(stages: dict[str, Stage]) -> list[dg.AssetChecksDefinition]:
    checks: list[Any] = []
    rate_doc = ("The brand's last batch failed at most `max_batch_error_rate` of its rows "
                "(resource `check_thresholds`, default 20%).")
    if "catalog" in stages:
        checks.append(_db_check("raw_products", "last_batch_error_rate", rate_doc,
                                partial(error_rate_eval, by_brand_name=True)))
    if "originals" in stages:
        s = stages["originals"]
        checks += [
            _db_check(s.asset, "last_batch_error_rate", rate_doc,
                      partial(error_rate_eval, scraper_names=s.scraper_names)),
            _db_check(s.asset, "no_sku_pending_past_sla",
                      "No SKU waits in `pending` longer than `pending_sla_hours` (default 24).",
                      lambda t: stuck_eval("pending", t.pending_sla_hours)),
        ]
    if "collages" in stages:
        s = stages["collages"]
        checks += [
            _db_check(s.asset, "last_batch_error_rate", rate_doc,
                      partial(error_rate_eval, scraper_names=s.scraper_names)),
            _db_check(s.asset, "no_sku_uploaded_past_sla",
                      "No SKU waits in `uploaded` without a collage longer than "
                      "`uploaded_sla_hours` (default 2).",
                      lambda t: stuck_eval("uploaded", t.uploaded_sla_hours)),
            _dimension_check(s.asset),
        ]
    if "ximilar" in stages:
        checks.append(_db_check(
            stages["ximilar"].asset, "pilot_coverage",
            "At least `min_pilot_coverage` (default 90%) of the brand's pilot SKUs with images "
            "ready are synced to Ximilar.", coverage_eval))
    return checks
