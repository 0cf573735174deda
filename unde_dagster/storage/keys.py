"""Object keys and public URLs the downstream consumers rely on (SPEC §3).

Keys are `originals/{brand}/{external_id}/{N}.jpg` and `collages/{brand}/{external_id}.jpg`;
a public URL is `{public_base_url}/{key}`. The small JPEG preview of the object at key K
is at `thumbnails/K` (a prefix of its own, so the layout downstream reads is untouched).
Key parts come from brand data, so each part is checked: nothing can escape its prefix.
"""

from __future__ import annotations

import re

_SAFE_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


def _safe(part: str) -> str:
    if not _SAFE_PART.fullmatch(part) or ".." in part:
        raise ValueError(f"unsafe S3 key part {part!r}")
    return part


def original_key(brand: str, external_id: str, n: int) -> str:
    if n < 1:
        raise ValueError("photo numbers start at 1")
    return f"originals/{_safe(brand)}/{_safe(external_id)}/{n}.jpg"


def collage_key(brand: str, external_id: str) -> str:
    return f"collages/{_safe(brand)}/{_safe(external_id)}.jpg"


THUMBNAIL_PREFIX = "thumbnails/"
_THUMBNAILED = re.compile(
    r"originals/(?P<brand>[^/]+)/(?P<sku>[^/]+)/[1-9][0-9]*\.jpg"
    r"|collages/(?P<cbrand>[^/]+)/(?P<csku>[^/]+)\.jpg"
)


def thumbnail_key(key: str) -> str:
    """`thumbnails/{key}`: where the preview of an original or a collage is stored.

    Only keys `original_key` or `collage_key` could have built are accepted (parts checked
    again), so nothing else in the bucket gets a thumbnail and nothing escapes the prefix.
    """
    m = _THUMBNAILED.fullmatch(key)
    if m is None:
        raise ValueError(f"{key!r} is neither an original's nor a collage's key")
    for part in m.group("brand", "sku", "cbrand", "csku"):
        if part is not None:
            _safe(part)
    return THUMBNAIL_PREFIX + key


def public_url(public_base_url: str, key: str) -> str:
    return f"{public_base_url.rstrip('/')}/{key}"


def key_of(public_base_url: str, url: str) -> str:
    """The object key behind one of our public URLs."""
    base = public_base_url.rstrip("/") + "/"
    if not url.startswith(base):
        raise ValueError(f"{url!r} is not under the bucket's public base URL")
    return url[len(base) :]
