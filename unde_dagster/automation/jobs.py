"""One job per stage, so every automated run does one role's work for one brand.

Why per stage and not `brand_catalog_pipeline`: a single-role run lands on its role host and
counts against that role's queue limit; the stages chain through the Staging DB state
(sensors), not through one long multi-role run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition as AssetJob,  # not exported by `dagster`; the job type
)

from unde_dagster.deploy.roles import ROLE_TAG, brand_tag, uses_tag

# Transient faults (DB restart, S3 5xx, proxy down) fail the op; bad data never does (it ends
# as an error on the SKU), so retrying a failed op is safe and cannot loop on a bad row.
TRANSIENT_RETRY = dg.RetryPolicy(
    max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


@dataclass(frozen=True)
class Stage:
    """A brand-partitioned asset that automation runs, and how."""

    name: str
    asset: str
    role: str
    retry_config: Mapping[str, Any] | None = None  # op config of the retry pass
    scraper_names: Sequence[str] = field(default_factory=tuple)

    @property
    def job_name(self) -> str:
        return f"{self.name}_job"

    def run_tags(self, brand: str) -> dict[str, str]:
        return {ROLE_TAG: self.role, uses_tag(self.role): "true", brand_tag(self.role): brand}

    def run_config(self, retry: bool) -> dict[str, Any]:
        if not retry or self.retry_config is None:
            return {}
        return {"ops": {self.asset: {"config": dict(self.retry_config)}}}


STAGES: tuple[Stage, ...] = (
    Stage("catalog", "raw_products", "apify"),
    Stage("originals", "product_originals", "downloader", {"retry_errors": True},
          ("photo_downloader", "photo_downloader_retry")),
    Stage("collages", "product_collages", "collage", {"retry_errors": True},
          ("collage_worker",)),
    Stage("ximilar", "ximilar_index", "ximilar", {"retry": True}, ("ximilar_sync",)),
    Stage("availability", "store_availability", "scraper"),
    Stage("production", "production_catalog", "scraper"),
    Stage("model_library", "model_library", "generator"),
)


def present_stages(asset_keys: set[dg.AssetKey]) -> dict[str, Stage]:
    """The stages whose asset is in this code location (others are added as they land)."""
    return {s.name: s for s in STAGES if dg.AssetKey(s.asset) in asset_keys}


def stage_job(stage: Stage) -> AssetJob:
    return dg.define_asset_job(
        stage.job_name,
        selection=dg.AssetSelection.assets(stage.asset),
        description=f"`{stage.asset}` for one brand (role {stage.role}); launched by "
        "schedules and sensors.",
        tags={ROLE_TAG: stage.role, uses_tag(stage.role): "true"},
        op_retry_policy=TRANSIENT_RETRY,
    )
