"""Re-deriving a stored collage's canvas from its stored originals (the dimension check)."""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO

import psycopg
from PIL import Image

from unde_dagster.collages.compose import collage_geometry
from unde_dagster.collages.photos import orientation, upright_size
from unde_dagster.collages.stage import original_keys
from unde_dagster.db import queues
from unde_dagster.db.health import Verdict


def collage_dimensions(
    conn: psycopg.Connection, brand: str, *, fetch: Callable[[str], bytes],
    key_of: Callable[[str], str], public_url: Callable[[str], str], sample: int = 3,
) -> Verdict:
    """The brand's latest `sample` collages have exactly the canvas their originals give
    (tallest height, widths scaled to it)."""
    bad: list[str] = []
    sampled = queues.recent_collages(conn, brand, sample)
    for row_brand, external_id, url, originals in sampled:
        # read where the collage stage read (an SKU adopted from the old servers keeps its
        # originals under their item-id keys)
        row = {"brand": row_brand, "external_id": external_id, "image_urls": originals}
        sizes = [_size(fetch(key)) for key in original_keys(row, public_url)]
        _, width, height = collage_geometry(sizes)
        actual = _size(fetch(key_of(url)))
        if actual != (width, height):
            bad.append(f"{external_id}: {actual[0]}x{actual[1]} != {width}x{height}")
    return Verdict(not bad, {"sampled": len(sampled), "mismatches": bad},
                   f"{len(bad)} of {len(sampled)} recent collages differ", "none differs")


def _size(body: bytes) -> tuple[int, int]:
    """Upright size: the collage turned rotated originals by their EXIF orientation."""
    with Image.open(BytesIO(body)) as img:
        return upright_size(img.size, orientation(img, body))
