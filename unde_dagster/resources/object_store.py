"""The S3-protocol bucket holding originals and collages (Hetzner in production)."""

from __future__ import annotations

from dagster_aws.s3 import S3Resource
from pydantic import Field

from unde_dagster.storage import keys


class ObjectStore(S3Resource):
    """dagster-aws's S3Resource plus the bucket and the public URL base of its objects.

    Objects are written `public-read` (the catalog bucket is publicly readable, SPEC §3);
    their URL is `{public_base_url}/{key}`, `https://{bucket}.{endpoint host}` in production.
    """

    bucket: str = Field(default="unde-images")
    public_base_url: str = Field(description="e.g. https://unde-images.hel1.your-objectstorage.com")

    def public_url(self, key: str) -> str:
        return keys.public_url(self.public_base_url, key)

    def key_of(self, url: str) -> str:
        return keys.key_of(self.public_base_url, url)

    def put_public(self, client, key: str, body: bytes, content_type: str = "image/jpeg") -> str:
        client.put_object(
            Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, ACL="public-read"
        )
        return self.public_url(key)

    def get_bytes(self, client, key: str) -> bytes:
        return client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
