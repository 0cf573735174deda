"""The seed collage worker's Pillow algorithm, verbatim, on bytes in / bytes out.

Kept only as the baseline for ``bench/collage_bench.py`` and the geometry/pixel tests:
the body of ``seed_collage`` is the seed's ``process_sku`` (catalog-infrastructure.md,
"Процесс обработки") with the S3/DB calls replaced by bytes in and bytes out.
"""

from __future__ import annotations

from collections.abc import Sequence
from io import BytesIO

from PIL import Image


def seed_collage(photos: Sequence[bytes], quality: int = 95) -> bytes:
    """Glue the photos exactly like the seed did (all images alive at once)."""
    # Скачать ВСЕ оригиналы этого SKU из S3
    images = [Image.open(BytesIO(data)) for data in photos]

    # Привести к одной высоте (max), сохраняя пропорции
    target_height = max(img.height for img in images)
    resized = []
    for img in images:
        ratio = target_height / img.height
        resized.append(img.resize((int(img.width * ratio), target_height), Image.LANCZOS))

    # Склеить по горизонтали
    total_width = sum(r.width for r in resized)
    collage = Image.new("RGB", (total_width, target_height), (255, 255, 255))
    x = 0
    for r in resized:
        collage.paste(r, (x, 0))
        x += r.width

    # JPEG q=95, subsampling=0 (4:4:4) — максимальное качество
    buf = BytesIO()
    collage.save(buf, format="JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def seed_geometry(sizes: Sequence[tuple[int, int]]) -> tuple[list[tuple[int, int]], int, int]:
    """The seed's size arithmetic alone: (per-photo sizes, canvas width, canvas height)."""
    target_height = max(h for _, h in sizes)
    out = []
    for w, h in sizes:
        ratio = target_height / h
        out.append((int(w * ratio), target_height))
    return out, sum(w for w, _ in out), target_height
