"""The S3-protocol bucket holding originals and collages (Hetzner in production)."""

from __future__ import annotations

import re

from dagster_aws.s3 import S3Resource
from pydantic import Field

_SAFE_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


def _safe(part: str) -> str:
    """Key parts come from brand data; refuse anything that could escape the prefix."""
    if not _SAFE_PART.fullmatch(part) or ".." in part:
        raise ValueError(f"unsafe S3 key part {part!r}")
    return part


def original_key(brand: str, external_id: str, n: int) -> str:
    if n < 1:
        raise ValueError("photo numbers start at 1")
    return f"originals/{_safe(brand)}/{_safe(external_id)}/{n}.jpg"


def collage_key(brand: str, external_id: str) -> str:
    return f"collages/{_safe(brand)}/{_safe(external_id)}.jpg"


class ObjectStore(S3Resource):
    """dagster-aws's S3Resource plus the bucket and the public URL base of its objects.

    Objects are written `public-read` (the catalog bucket is publicly readable, SPEC §3);
    their URL is `{public_base_url}/{key}`, `https://{bucket}.{endpoint host}` in production.
    """

    bucket: str = Field(default="unde-images")
    public_base_url: str = Field(description="e.g. https://unde-images.hel1.your-objectstorage.com")

    def public_url(self, key: str) -> str:
        return f"{self.public_base_url.rstrip('/')}/{key}"

    def key_of(self, url: str) -> str:
        """The object key behind one of our public URLs."""
        base = self.public_base_url.rstrip("/") + "/"
        if not url.startswith(base):
            raise ValueError(f"{url!r} is not under the bucket's public base URL")
        return url[len(base) :]

    def put_public(self, client, key: str, body: bytes, content_type: str = "image/jpeg") -> str:
        client.put_object(
            Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, ACL="public-read"
        )
        return self.public_url(key)

    def get_bytes(self, client, key: str) -> bytes:
        return client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
