"""Every resource key of the project, bound to environment variables (see `.env.example`)."""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from unde_dagster.resources.apify import ApifyResource
from unde_dagster.resources.availability import AvailabilityApi
from unde_dagster.resources.check_thresholds import CheckThresholds
from unde_dagster.resources.collage import CollageMaker
from unde_dagster.resources.databases import ProductionDatabase, StagingDatabase
from unde_dagster.resources.downloader import PhotoDownloader
from unde_dagster.resources.fal import FalResource
from unde_dagster.resources.object_store import ObjectStore
from unde_dagster.resources.ximilar import XimilarResource


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=resources_from_env())


def resources_from_env() -> dict[str, Any]:
    """Resource instances bound to env vars; values resolve at run time, never stored."""
    return {
        "staging_db": StagingDatabase(url=dg.EnvVar("STAGING_DB_URL")),
        "production_db": ProductionDatabase(url=dg.EnvVar("PRODUCTION_DB_URL")),
        "object_store": ObjectStore(
            endpoint_url=dg.EnvVar("S3_ENDPOINT"),
            aws_access_key_id=dg.EnvVar("S3_ACCESS_KEY"),
            aws_secret_access_key=dg.EnvVar("S3_SECRET_KEY"),
            region_name="us-east-1",
            bucket=dg.EnvVar("S3_BUCKET"),
            public_base_url=dg.EnvVar("S3_PUBLIC_BASE_URL"),
        ),
        "apify": ApifyResource(api_url=dg.EnvVar("APIFY_API_URL"), token=dg.EnvVar("APIFY_TOKEN")),
        "photo_downloader": PhotoDownloader(
            proxy_url=dg.EnvVar("PROXY_URL"), **_optional_env(_DOWNLOADER_TUNING)
        ),
        "collage_maker": CollageMaker(),
        "ximilar": XimilarResource(
            api_url=dg.EnvVar("XIMILAR_API_URL"),
            token=dg.EnvVar("XIMILAR_TOKEN"),
            collection_id=dg.EnvVar("XIMILAR_COLLECTION_ID"),
            **_optional_env(_XIMILAR_TUNING),
        ),
        "availability_api": AvailabilityApi(**_optional_env(_AVAILABILITY_TUNING)),
        "fal": FalResource(key=dg.EnvVar("FAL_KEY"), **_optional_env(_FAL_TUNING)),
        "check_thresholds": CheckThresholds(**_optional_env(_CHECK_THRESHOLDS)),
    }


def env_var_names() -> set[str]:
    """Names of the variables the resources are bound to (their `dg.EnvVar` fields)."""
    return {
        value.env_var_name
        for resource in resources_from_env().values()
        for value in vars(resource).values()
        if isinstance(value, dg.EnvVar)
    }


# Non-secret tuning read when present (the local stack shortens the politeness delays).
_DOWNLOADER_TUNING = {
    "PROXY_CA_BUNDLE": ("proxy_ca_bundle", str),
    "DOWNLOAD_DELAY_MIN_S": ("delay_min_s", float),
    "DOWNLOAD_DELAY_MAX_S": ("delay_max_s", float),
    "DOWNLOAD_BACKOFF_S": ("backoff_s", str),
}


# Non-secret Ximilar tuning (XIMILAR_RATE_LIMIT is the seed's variable name).
_XIMILAR_TUNING = {
    "XIMILAR_PATH_PREFIX": ("path_prefix", str),
    "XIMILAR_RATE_LIMIT": ("rate_limit_per_s", float),
}


# Store-stock endpoints and fal queue: URLs default to the real services when unset.
_AVAILABILITY_TUNING = {
    "AVAILABILITY_API_URL": ("api_url", str),
    "AVAILABILITY_REQUEST_DELAY_S": ("request_delay_s", float),
}
_FAL_TUNING = {"FAL_QUEUE_URL": ("queue_url", str)}
_CHECK_THRESHOLDS = {
    "CHECK_MAX_BATCH_ERROR_RATE": ("max_batch_error_rate", float),
    "CHECK_PENDING_SLA_HOURS": ("pending_sla_hours", float),
    "CHECK_UPLOADED_SLA_HOURS": ("uploaded_sla_hours", float),
    "CHECK_MIN_PILOT_COVERAGE": ("min_pilot_coverage", float),
}


def _optional_env(spec: dict[str, tuple[str, type]]) -> dict[str, Any]:
    return {
        field: cast(os.environ[var])
        for var, (field, cast) in spec.items()
        if os.environ.get(var)
    }
