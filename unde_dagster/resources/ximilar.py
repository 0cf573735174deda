"""Ximilar collection API access: base URL, token, collection, path prefix, rate limit."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from unde_dagster.ximilar.client import DEFAULT_PATH_PREFIX, ClientSettings, XimilarClient


class XimilarResource(dg.ConfigurableResource):
    """One visual-search collection. `api_url` is api.ximilar.com or the local emulator; the
    path prefix selects the collection type (fashion by default)."""

    api_url: str = Field(default="https://api.ximilar.com")
    token: str = Field(description="Ximilar API token (from an env var; never logged)")
    collection_id: str = Field(description="id of the collection (the `collection-id` header)")
    path_prefix: str = Field(default=DEFAULT_PATH_PREFIX)
    rate_limit_per_s: float = Field(default=10.0, description="requests per second, whole run")
    timeout_s: float = 30.0
    max_retries: int = Field(default=5, description="retries of a 429/5xx/connection error")
    backoff_base_s: float = Field(default=1.0, description="first backoff; doubles each retry")
    backoff_max_s: float = 60.0

    def client(self) -> XimilarClient:
        return XimilarClient(ClientSettings(
            api_url=self.api_url, token=self.token, collection_id=self.collection_id,
            path_prefix=self.path_prefix, rate_limit_per_s=self.rate_limit_per_s,
            timeout_s=self.timeout_s, max_retries=self.max_retries,
            backoff_base_s=self.backoff_base_s, backoff_max_s=self.backoff_max_s,
        ))
