"""The bucket's layout (SPEC §3): object keys and public URLs, plain functions (no Dagster)."""

from unde_dagster.storage.keys import (
    THUMBNAIL_PREFIX,
    collage_key,
    key_of,
    original_key,
    public_url,
    thumbnail_key,
)

__all__ = [
    "THUMBNAIL_PREFIX",
    "collage_key",
    "key_of",
    "original_key",
    "public_url",
    "thumbnail_key",
]
