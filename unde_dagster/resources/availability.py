"""The brands' store-locator and store-stock endpoints (Inditex web API, EXTERNAL_APIS §5)."""

from __future__ import annotations

import dagster as dg
import requests
from pydantic import Field

DEFAULT_API_URL = "https://www.{brand}.com"
DEFAULT_USER_AGENT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


class AvailabilityApi(dg.ConfigurableResource):
    """Base URL per brand: `api_url` with `{brand}` replaced (www.zara.com, www.oysho.com, …).

    Without a `{brand}` placeholder the brand key is appended as a path segment (a relay).
    """

    api_url: str = Field(default=DEFAULT_API_URL)
    country: str = "ae"
    language: str = "en"
    city: str = "Dubai"
    latitude: float = 25.2048
    longitude: float = 55.2708
    radius_km: float = Field(default=40.0, description="used when a store has no city field")
    user_agent: str = DEFAULT_USER_AGENT
    stores_per_request: int = Field(default=5, ge=1, le=10)
    references_per_request: int = Field(default=40, ge=1, le=100)
    request_delay_s: float = Field(default=0.2, description="pause between stock requests")
    max_attempts: int = Field(default=3, ge=1, description="per request, on 403/429/5xx/network")
    backoff_s: float = Field(default=2.0, description="first retry wait; doubles each retry")
    max_backoff_s: float = 60.0
    timeout_s: float = 30.0

    def base_url(self, brand: str) -> str:
        if "{brand}" in self.api_url:
            return self.api_url.replace("{brand}", brand).rstrip("/")
        return f"{self.api_url.rstrip('/')}/{brand}"

    def session(self) -> requests.Session:
        session = requests.Session()
        session.headers.update({"User-Agent": self.user_agent, "Accept": "application/json"})
        return session
