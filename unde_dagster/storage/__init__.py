"""The bucket's layout (SPEC §3): object keys and public URLs, plain functions (no Dagster)."""

from unde_dagster.storage.keys import collage_key, key_of, original_key, public_url

__all__ = ["collage_key", "key_of", "original_key", "public_url"]
