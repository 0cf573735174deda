"""Resources of every stage, configured from environment variables (see `.env.example`)."""

from __future__ import annotations

from typing import Any

import dagster as dg

from unde_dagster.resources.apify import ApifyResource
from unde_dagster.resources.databases import ProductionDatabase, StagingDatabase
from unde_dagster.resources.object_store import ObjectStore


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
    }
