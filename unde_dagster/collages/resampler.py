"""Which Lanczos3 upscales collage photos: ``cykooz.resizer`` when installed, else Pillow's.

Both run the seed's kernel: Lanczos a=3, Pillow's pixel-centre convention, horizontal pass
then vertical, 8 bits between passes.

- ``cykooz``: ``cykooz.resizer`` (the Rust ``fast_image_resize`` crate, AVX2/SSE4.1, one
  thread per call; the ``fast-collage`` extra). Its convolution is ~10x faster than
  Pillow's scalar loops, and it writes the last pass straight into the photo's slot of the
  canvas. Its fixed-point rounding differs from Pillow's, so each resized photo is within
  2 levels of the seed's (mean ~0.01), not identical. It ships wheels for x86_64 Linux
  (glibc), macOS (x86_64, arm64) and Windows x64 only; elsewhere (aarch64 Linux, Alpine)
  it needs a Rust toolchain to build.
- ``pillow``: Pillow's own ``LANCZOS``, i.e. the seed's resampler, bit for bit (the
  collage is the seed's, byte for byte). Always available, and slower where photos are
  upscaled: ``bench/collage_bench.py``'s mixed set took ~1000 ms of CPU per SKU with it,
  ~460 ms with cykooz (the seed ~1230 ms); equal heights resample nothing (~350-380 ms).

``UNDE_COLLAGE_RESAMPLER`` picks one: ``auto`` (default: cykooz if importable, else
pillow), ``cykooz`` (an error if it is not installed, rather than a silent slowdown) or
``pillow``. It is read for every collage (cheap), so worker processes follow the
environment they were started with, and tests can switch it.
"""

from __future__ import annotations

import functools
import os
from typing import Protocol

from PIL import Image

ENV_VAR = "UNDE_COLLAGE_RESAMPLER"
AUTO, CYKOOZ, PILLOW = "auto", "cykooz", "pillow"
CHOICES = (AUTO, CYKOOZ, PILLOW)


class ResamplerUnavailable(RuntimeError):
    """The resampler asked for cannot run here (not installed, or a bad setting)."""


class Resampler(Protocol):
    """A Lanczos3 resampler for 8-bit images; ``modes`` are the modes it takes as they are."""

    name: str
    modes: frozenset[str]

    def resize(self, img: Image.Image, size: tuple[int, int]) -> Image.Image:
        """``img`` resampled to ``size``, same mode (one of ``modes``)."""
        ...

    def resize_into(self, img: Image.Image, out: Image.Image) -> None:
        """Write ``img`` resampled to ``out.size`` into ``out`` (same mode)."""
        ...


class PillowLanczos:
    """Pillow's ``Image.resize(size, LANCZOS)``: the seed's resampler."""

    name = PILLOW
    # Pillow resamples LA/RGBA premultiplied (via La/RGBa) inside Image.resize.
    modes = frozenset({"RGB", "L", "RGBa", "La"})

    def resize(self, img: Image.Image, size: tuple[int, int]) -> Image.Image:
        # One axis at a time gives the same pixels as one call: Pillow's two passes are
        # these, with the same coefficients and the same 8-bit intermediate.
        return img.resize(size, Image.Resampling.LANCZOS)

    def resize_into(self, img: Image.Image, out: Image.Image) -> None:
        out.paste(img.resize(out.size, Image.Resampling.LANCZOS), (0, 0))


class CykoozLanczos3:
    """``cykooz.resizer``'s Lanczos3 convolution, one axis per call (Pillow's pass order)."""

    name = CYKOOZ
    # No two-channel PIL mode: LA goes through Pillow's LANCZOS (rare).
    modes = frozenset({"RGB", "L", "RGBa"})

    def __init__(self) -> None:
        from cykooz_resizer import FilterType, ResizeAlg, ResizeOptions, Resizer

        self._resizer = Resizer()
        # No thread pool: one thread per call (CollagePool runs one process per core).
        self._options = ResizeOptions(resize_alg=ResizeAlg.convolution(FilterType.lanczos3))

    def resize(self, img: Image.Image, size: tuple[int, int]) -> Image.Image:
        out = Image.new(img.mode, size, None)
        self._resizer.resize_pil(img, out, self._options)
        return out

    def resize_into(self, img: Image.Image, out: Image.Image) -> None:
        self._resizer.resize_pil(img, out, self._options)


def select(choice: str = AUTO) -> Resampler:
    """The resampler for ``choice`` (one of ``CHOICES``), built now (not cached)."""
    choice = choice.strip().lower() or AUTO
    if choice not in CHOICES:
        raise ResamplerUnavailable(
            f"{ENV_VAR}={choice!r} is not a resampler: use one of {', '.join(CHOICES)}"
        )
    if choice == PILLOW:
        return PillowLanczos()
    try:
        return CykoozLanczos3()
    except ImportError as exc:
        if choice == CYKOOZ:
            raise ResamplerUnavailable(
                f"{ENV_VAR}=cykooz but cykooz.resizer cannot be imported ({exc}): install "
                "the fast-collage extra (wheels: x86_64 Linux, macOS, Windows x64), or set "
                f"{ENV_VAR}=auto or pillow to use Pillow's LANCZOS"
            ) from None
        return PillowLanczos()


@functools.cache
def _cached(choice: str) -> Resampler:
    return select(choice)


def active() -> Resampler:
    """The resampler ``UNDE_COLLAGE_RESAMPLER`` asks for (``auto`` when unset)."""
    return _cached(os.environ.get(ENV_VAR, AUTO).strip().lower() or AUTO)
