"""Apify API access through the real apify-client, with a configurable API URL."""

from __future__ import annotations

import dagster as dg
from apify_client import ApifyClient
from pydantic import Field


class ApifyResource(dg.ConfigurableResource):
    """Runs the brands' Apify Tasks. `api_url` points at api.apify.com or the local emulator."""

    api_url: str = Field(default="https://api.apify.com")
    token: str = Field(description="Apify personal API token (from an env var)")
    run_timeout_s: int = Field(default=3 * 3600, description="how long to wait for a task run")
    max_retries: int = 4

    def client(self) -> ApifyClient:
        return ApifyClient(
            self.token,
            api_url=self.api_url,
            api_public_url=self.api_url,
            max_retries=self.max_retries,
        )
