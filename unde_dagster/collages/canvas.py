"""Canvas memory a collage worker keeps from one SKU to the next, and views into it.

Why: a collage canvas is ~110 MB. Allocated fresh for every SKU it costs ~28k page faults
(~3 us each on our VMs: a fifth of a SKU's CPU time) before a pixel is written, and every
resized photo was then copied into it by a paste. Here the canvas is a Pillow image mapped
over one anonymous ``mmap`` the process reuses, and each photo's slot is a second image
mapped over the same memory with the canvas's row stride, so the resampler writes the
resized photo straight into its place.

The memory is never cleared between SKUs: the collage geometry covers every column of the
canvas with exactly one photo of the full height, so every pixel is overwritten (slots of
photos with transparency are painted white first). Canvases above ``keep_bytes`` get memory
of their own, released with the collage, so one huge SKU does not pin its size for good.
"""

from __future__ import annotations

import mmap

from PIL import Image

RGB_PIXEL_BYTES = 4  # Pillow stores RGB as RGBX
DEFAULT_KEEP_BYTES = 256 << 20  # 64 Mpx: five 1920x2880 photos take 27.6 Mpx


class CanvasMemory:
    """Reusable backing memory for one collage canvas at a time (one per worker process)."""

    def __init__(self, keep_bytes: int = DEFAULT_KEEP_BYTES) -> None:
        self.keep_bytes = keep_bytes
        self._kept: mmap.mmap | None = None

    @property
    def kept_bytes(self) -> int:
        """Size of the memory kept for the next canvas (0 before the first)."""
        return 0 if self._kept is None else len(self._kept)

    def canvas(self, width: int, height: int) -> Canvas:
        """An RGB canvas of ``width`` x ``height`` with undefined pixels."""
        # One spare row: a slot view starts mid-row, and Pillow checks that a view's
        # ``height * stride`` bytes fit in the buffer after its offset.
        needed = (height + 1) * width * RGB_PIXEL_BYTES
        if needed > self.keep_bytes:
            return Canvas(_anonymous(needed), width, height)
        if self._kept is None or len(self._kept) < needed:
            self._kept = _anonymous(needed)  # the old map goes with its last view
        return Canvas(self._kept, width, height)


class Canvas:
    """A canvas image plus views of its column ranges, all over one buffer."""

    def __init__(self, memory: mmap.mmap, width: int, height: int) -> None:
        self._memory = memory
        self.height = height
        self.stride = width * RGB_PIXEL_BYTES
        self.image = self._map(width, 0)

    def slot(self, x: int, width: int) -> Image.Image:
        """The canvas's columns ``x .. x + width`` as an RGB image sharing its pixels."""
        return self._map(width, x * RGB_PIXEL_BYTES)

    def _map(self, width: int, offset: int) -> Image.Image:
        # ``Image.frombuffer`` maps only RGBX/RGBA/L...; the core mapper takes RGB, which
        # Pillow lays out as 4 bytes per pixel as well, so the canvas stays a plain RGB image.
        core = Image.core.map_buffer(
            self._memory, (width, self.height), "raw", offset, ("RGB", self.stride, 1)
        )
        image = Image.new("RGB", (0, 0))._new(core)
        image.readonly = 0  # written by decoders, the resampler and paste
        return image


def _anonymous(size: int) -> mmap.mmap:
    memory = mmap.mmap(-1, size)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        memory.madvise(mmap.MADV_HUGEPAGE)  # 2 MiB pages: 512x fewer faults on first touch
    return memory
