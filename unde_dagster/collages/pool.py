"""Run ``build_collage`` over many SKUs in worker processes, one SKU per process at a time.

Why processes: Pillow's codecs and resampler are CPU-bound C; one process per core gives the
throughput and isolates a crash (or an out-of-memory kill) to the SKUs it was handling.
Why bounded: a collage canvas is ~110 MB, and queued inputs/results are megabytes each, so
at most ``max_in_flight`` SKUs are submitted at once and the input iterable is consumed
lazily (it may download photos on demand). ``max_tasks_per_child`` recycles workers so
allocator fragmentation cannot grow without bound.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import select
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Generic, TypeVar

from PIL import Image

from unde_dagster.collages.canvas import CanvasMemory
from unde_dagster.collages.compose import CollageError, CollageResult, build_collage
from unde_dagster.collages.resampler import active as active_resampler

K = TypeVar("K", bound=Hashable)

DEFAULT_MAX_TASKS_PER_CHILD = 200


_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
_MMAP_THRESHOLD_BYTES = 1 << 20
_PILLOW_BLOCK_BYTES = 4 << 20
_PILLOW_BLOCKS_KEPT = 8


def exit_with(batch_pid: int) -> None:
    """End this worker as soon as the batch process that started the pool is gone.

    Why: a batch killed with `kill -9` would leave its workers (~265 MB each) as orphans.
    They are the forkserver's children, and each holds the forkserver's liveness pipe, so
    neither the forkserver's own exit nor a parent-death signal would reach them; a daemon
    thread waiting on a pidfd of the batch process does (Linux 5.3+; elsewhere it polls).
    """

    def watch() -> None:
        try:
            fd = os.pidfd_open(batch_pid)
        except (AttributeError, OSError):
            fd = -1
        if fd >= 0:
            select.select([fd], [], [])
        else:
            while _exists(batch_pid):
                time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-batch", daemon=True).start()


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def configure_worker(batch_pid: int | None = None) -> None:
    """Exit with the batch process; make big allocations mmap-backed (glibc only) and let Pillow
    reuse freed blocks.

    glibc's adaptive threshold would soon serve Pillow's big blocks from the brk heap, where
    fragmentation keeps pages resident: on the mixed bench set, peak RSS 217 MiB by default
    vs 188 MiB with a fixed 1 MiB threshold. Between SKUs a worker holds only its canvas
    memory and Pillow's kept blocks.
    """
    if batch_pid is not None:
        exit_with(batch_pid)
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):
        pass
    # ...but then every fresh buffer costs a page fault per 4 KiB. The canvas has memory of
    # its own (collages/canvas.py); Pillow's arena keeps freed blocks for the photos and
    # half-resized photos of the next SKU. Mixed set, per SKU: 27.5k faults and 98 ms of
    # system time with Pillow's defaults, 6.8k and 16 ms with 8 kept blocks of 4 MiB
    # (small blocks waste less on small photos; 12 blocks saved nothing more).
    Image.core.set_block_size(_PILLOW_BLOCK_BYTES)
    Image.core.set_blocks_max(_PILLOW_BLOCKS_KEPT)


# The canvas memory a worker process reuses from SKU to SKU (see collages/canvas.py).
_canvas_memory = CanvasMemory()


def _worker(photos: Sequence[bytes], quality: int) -> CollageResult:
    """Worker entry point: any non-CollageError is wrapped so it pickles back readably."""
    try:
        return build_collage(photos, quality=quality, canvas_memory=_canvas_memory)
    except CollageError:
        raise
    except MemoryError:
        raise CollageError("out of memory while building the collage") from None
    except Exception as exc:  # a bug or an exotic decoder error must not kill the batch
        raise CollageError(f"unexpected {type(exc).__name__}: {exc}") from None


class CollagePool(Generic[K]):
    """Map ``build_collage`` over ``(sku_key, photos)`` pairs, yielding results as they finish.

    Each yielded item is ``(sku_key, CollageResult | CollageError)``: a bad SKU, and even a
    dead worker process, becomes an error for the SKUs concerned while the rest go on.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        max_in_flight: int | None = None,
        max_tasks_per_child: int = DEFAULT_MAX_TASKS_PER_CHILD,
        quality: int = 95,
        worker: Callable[[Sequence[bytes], int], CollageResult] = _worker,
    ) -> None:
        # Workers inherit this environment: a bad UNDE_COLLAGE_RESAMPLER (or a forced
        # cykooz that is not installed) fails here, once, not as an error on every SKU.
        self.resampler = active_resampler().name
        self.workers = workers or min(2, os.cpu_count() or 1)
        self.max_in_flight = max(max_in_flight or self.workers + 1, 1)
        self.max_tasks_per_child = max_tasks_per_child
        self.quality = quality
        self._worker = worker
        self._executor: ProcessPoolExecutor | None = None

    def _start(self) -> ProcessPoolExecutor:
        if self._executor is None:
            # max_tasks_per_child is incompatible with fork; forkserver starts fast and
            # does not inherit the parent's threads or open connections.
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("forkserver"),
                max_tasks_per_child=self.max_tasks_per_child,
                initializer=configure_worker,
                initargs=(os.getpid(),),
            )
        return self._executor

    def close(self) -> None:
        """Stop the workers (waits for running SKUs)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> CollagePool[K]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def map(
        self, skus: Iterable[tuple[K, Sequence[bytes]]]
    ) -> Iterator[tuple[K, CollageResult | CollageError]]:
        """Yield ``(key, result_or_error)`` in completion order, never more than
        ``max_in_flight`` SKUs submitted at once."""
        pending: dict[Future[Any], K] = {}
        source = iter(skus)
        exhausted = False
        while True:
            while not exhausted and len(pending) < self.max_in_flight:
                try:
                    key, photos = next(source)
                except StopIteration:
                    exhausted = True
                    break
                try:
                    fut = self._start().submit(self._worker, list(photos), self.quality)
                except BrokenProcessPool:
                    self._reset()
                    fut = self._start().submit(self._worker, list(photos), self.quality)
                pending[fut] = key
            if not pending:
                return
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            if any(_is_broken(fut) for fut in done):
                # Every SKU on a broken pool fails with it: settle them all, then restart.
                done, _ = wait(pending)
                self._reset()
            for fut in done:
                yield pending.pop(fut), _outcome(fut)

    def _reset(self) -> None:
        """Replace a broken executor; SKUs still pending on it get their own errors."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def _is_broken(fut: Future[Any]) -> bool:
    return not fut.cancelled() and isinstance(fut.exception(), BrokenProcessPool)


def _outcome(fut: Future[Any]) -> CollageResult | CollageError:
    """A finished future as a value: the result, or a CollageError saying what went wrong."""
    if fut.cancelled():
        return CollageError("cancelled before it ran")
    exc = fut.exception()
    if exc is None:
        result: CollageResult = fut.result()
        return result
    if isinstance(exc, CollageError):
        return exc
    if isinstance(exc, BrokenProcessPool):
        return CollageError("collage worker process died (killed or out of memory)")
    return CollageError(f"unexpected {type(exc).__name__}: {exc}")
