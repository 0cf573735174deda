"""Small Dagster-side helpers the image stages share (run liveness, previews, metadata)."""

from collections.abc import Mapping
from typing import Any

import dagster as dg


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
