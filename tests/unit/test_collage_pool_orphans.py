"""The collage pool's workers die with the process that runs the batch, even on `kill -9`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

BATCH = textwrap.dedent("""
    import sys
    from unde_dagster.collages.pool import CollagePool

    pool = CollagePool(workers=2)
    # an empty SKU fails at once, but the workers are up
    outcomes = list(pool.map([("a", []), ("b", [])]))
    workers = [str(p) for p in pool._executor._processes]
    print(" ".join(workers), flush=True)
    sys.stdin.read()  # hold the pool until killed
""")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_are_gone_soon_after_the_batch_process_is_killed() -> None:
    batch = subprocess.Popen([sys.executable, "-c", BATCH], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert batch.stdout is not None
    workers = [int(p) for p in batch.stdout.readline().split()]
    assert len(workers) == 2 and all(_alive(p) for p in workers), workers
    os.kill(batch.pid, signal.SIGKILL)
    batch.wait()
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [p for p in workers if _alive(p)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"orphaned collage workers: {left}"
