"""What each asset check asks of a brand's rows and logs: plain verdicts, no Dagster.

Each function answers for one brand on one connection; the thresholds are arguments, so the
rules are testable against a real database without a Dagster instance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from unde_dagster.db import queues


@dataclass(frozen=True)
class Verdict:
    passed: bool
    detail: dict[str, Any]
    value: str = ""  # what was measured, readable ("35.0% of 20")
    limit: str = ""  # the threshold in force, readable ("at most 20.0%")


def last_batch_error_rate(
    conn: psycopg.Connection, brand: str, *, scraper_names: Sequence[str], max_rate: float,
    logs_per_brand: bool = True,
) -> Verdict:
    """The brand's latest `scraper_logs` row of these scrapers failed at most `max_rate`.

    `logs_per_brand=False`: the scraper name itself is per brand (the catalog's
    `apify_<brand>`), so the row is not filtered on `metadata.brand`.
    """
    batch = queues.last_batch(conn, list(scraper_names), brand if logs_per_brand else None)
    limit = f"at most {max_rate:.0%} of a batch"
    if batch is None:
        return Verdict(True, {"last_batch": None}, "no batch yet", limit)
    rate = round(batch.error_rate, 4)
    return Verdict(rate <= max_rate, {
        "error_rate": rate, "fetched": batch.fetched, "errors": batch.errors,
        "run_id": batch.run_id, "threshold": max_rate,
    }, f"{rate:.1%}: {batch.errors} of {batch.fetched}"
       + (f" (run {batch.run_id})" if batch.run_id else ""), limit)


def skus_stuck(conn: psycopg.Connection, brand: str, *, status: str, sla_hours: float) -> Verdict:
    """No SKU of the brand has waited in `status` longer than `sla_hours`."""
    count, sample = queues.stuck_skus(conn, status, int(sla_hours * 3600), brand)
    value = f"{count} SKUs" + (f" (e.g. {', '.join(sample[:3])})" if sample else "")
    return Verdict(count == 0, {"stuck": count, "sla_hours": sla_hours, "sample": sample},
                   value, f"none in {status} over {sla_hours:g} h")


def pilot_coverage(conn: psycopg.Connection, brand: str, *, min_share: float) -> Verdict:
    """At least `min_share` of the brand's ready pilot SKUs are synced to Ximilar."""
    ready, synced = queues.pilot_coverage(conn, brand)
    share = synced / ready if ready else 1.0
    return Verdict(share >= min_share, {
        "pilot_ready": ready, "synced": synced, "coverage": round(share, 4),
        "threshold": min_share,
    }, f"{share:.1%}: {synced} of {ready}", f"at least {min_share:.0%}")
