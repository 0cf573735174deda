"""Photo-downloader domain logic (``product_originals``): polite proxy fetching,
Pillow validation and per-SKU orchestration. No Dagster import, so it can be tested
and benchmarked alone; the asset wires DB claims and S3 uploads on top."""

from unde_dagster.originals.download import (
    BatchSummary,
    DownloadedPhoto,
    DownloadSettings,
    SkuPhotos,
    SkuResult,
    download_sku,
    download_skus,
    photo_urls,
)
from unde_dagster.originals.fetch import (
    Fetched,
    FetchSettings,
    PhotoFetcher,
    build_ssl_context,
)
from unde_dagster.originals.user_agents import USER_AGENTS
from unde_dagster.originals.validate import (
    PhotoError,
    PhotoInfo,
    ValidationSettings,
    validate_photo,
    validate_with_preview,
)

__all__ = [
    "USER_AGENTS",
    "BatchSummary",
    "DownloadSettings",
    "DownloadedPhoto",
    "FetchSettings",
    "Fetched",
    "PhotoError",
    "PhotoFetcher",
    "PhotoInfo",
    "SkuPhotos",
    "SkuResult",
    "ValidationSettings",
    "build_ssl_context",
    "download_sku",
    "download_skus",
    "photo_urls",
    "validate_photo",
    "validate_with_preview",
]
