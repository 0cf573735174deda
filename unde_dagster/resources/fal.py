"""fal.ai queue access through the real fal-client, pointed at a configurable queue URL."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import dagster as dg
import fal_client
import httpx
from fal_client import client as fal_client_module
from pydantic import Field

DEFAULT_QUEUE_URL = "https://queue.fal.run"


@dataclass(frozen=True)
class RoutedSyncClient(fal_client.SyncClient):
    """A SyncClient whose submit URL goes to `queue_url` instead of queue.fal.run.

    fal-client 1.0.3 builds the submit URL from the module global `QUEUE_URL_FORMAT` and
    then follows the URLs of the submit reply. Rather than patching that global (it would
    leak into every client of the process), this client's own httpx client rewrites the
    one default prefix in a request hook; status/result/cancel URLs pass through as given.
    """

    queue_url: str = DEFAULT_QUEUE_URL

    @cached_property
    def _client(self) -> httpx.Client:
        client = fal_client.SyncClient._client.func(self)  # type: ignore[attr-defined]
        client.event_hooks["request"] = [*client.event_hooks["request"], self._route]
        return client

    def _route(self, request: httpx.Request) -> None:
        default = fal_client_module.QUEUE_URL_FORMAT
        url = str(request.url)
        if url.startswith(default):
            target = httpx.URL(self.queue_url.rstrip("/") + "/" + url[len(default):])
            request.url = target
            request.headers["Host"] = target.netloc.decode("ascii")


class FalResource(dg.ConfigurableResource):
    """The fal.ai queue (`fal-ai/flux/dev`). `queue_url` is queue.fal.run or the emulator."""

    queue_url: str = Field(default=DEFAULT_QUEUE_URL)
    key: str = Field(description="fal.ai API key (FAL_KEY; sent as `Authorization: Key …`)")
    application: str = "fal-ai/flux/dev"
    timeout_s: float = Field(default=300.0, gt=1, description="limit per image (seed: 300 s)")
    poll_interval_s: float = 0.25
    download_timeout_s: float = 60.0

    def client(self) -> fal_client.SyncClient:
        if self.queue_url.rstrip("/") == DEFAULT_QUEUE_URL:
            return fal_client.SyncClient(key=self.key)
        return RoutedSyncClient(key=self.key, queue_url=self.queue_url)
