"""Settings of the photo downloader (proxy, politeness, retries) as a Dagster resource."""

from __future__ import annotations

from pydantic import Field

from unde_dagster.originals.download import DownloadSettings
from unde_dagster.originals.fetch import FetchSettings
from unde_dagster.originals.url_safety import parse_allowlist
from unde_dagster.resources.stage_queue import StageQueueSettings


class PhotoDownloader(StageQueueSettings):
    """Production defaults are the seed's numbers; the local stack shortens the delays."""

    proxy_url: str | None = Field(default=None, description="residential proxy (has a password)")
    proxy_ca_bundle: str | None = Field(default=None, description="CA file of the proxy's TLS")
    max_in_flight: int = 10
    delay_min_s: float = 0.5
    delay_max_s: float = 2.0
    backoff_s: str = Field(default="5,15,45", description="waits after 429/503, comma-separated")
    photo_timeout_s: float = 30.0
    sku_timeout_s: float = 120.0
    max_photos_per_sku: int = 5
    batch_size: int = 200
    host_allowlist: str | None = Field(
        default=None,
        description="comma-separated photo hosts exempt from the public-address check; "
        "unset = UNDE_PHOTO_HOST_ALLOWLIST (the local stack names its CDN emulator there)",
    )

    def fetch_settings(self) -> FetchSettings:
        allow = {} if self.host_allowlist is None else {
            "host_allowlist": tuple(sorted(parse_allowlist(self.host_allowlist)))
        }
        return FetchSettings.from_env(
            **allow,
            proxy_url=self.proxy_url,
            proxy_ca_bundle=self.proxy_ca_bundle,
            max_in_flight=self.max_in_flight,
            delay_min_s=self.delay_min_s,
            delay_max_s=self.delay_max_s,
            photo_timeout_s=self.photo_timeout_s,
            rate_limit_backoff_s=tuple(float(x) for x in self.backoff_s.split(",") if x.strip()),
        )

    def download_settings(self) -> DownloadSettings:
        return DownloadSettings(
            max_photos_per_sku=self.max_photos_per_sku, sku_timeout_s=self.sku_timeout_s
        )
