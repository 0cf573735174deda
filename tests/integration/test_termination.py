"""A terminate stops a stage's step for good: no retry under the job's retry policy.

The run executes in a child process the way Dagster's run worker does (`dagster api
execute_run` wraps execution in `capture_interrupts`, and `docker stop` sends it SIGTERM),
on a persistent instance the test shares, so the test can request the termination
(CANCELING) as the launcher's `terminate` does before it stops the container.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg

from tests.integration.image_stage_helpers import cdn, load_catalog, photo_requests, small_catalog

BRAND = "massimodutti"
RUN_WORKER = textwrap.dedent("""
    import json, sys
    import dagster as dg
    from dagster._utils.interrupts import capture_interrupts
    from unde_dagster.definitions import defs

    with dg.DagsterInstance.get() as instance, capture_interrupts():
        result = defs.resolve_job_def("originals_job").execute_in_process(
            partition_key=sys.argv[1], instance=instance, raise_on_error=False)
        run = instance.get_run_by_id(result.run_id)
        print(json.dumps({
            "status": run.status.value,
            "events": [e.event_type_value for e in result.all_events],
            "failures": [e.event_specific_data.error.message
                         for e in result.all_events if e.is_step_failure],
        }))
""")


def test_a_terminated_originals_run_ends_canceled_without_a_step_retry(
    stack, staging, resources, instance, tmp_path: Path
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    with small_catalog(stack, BRAND, n_skus=3):
        load_catalog(BRAND, resources, instance)
        cdn(stack).add(match=f"/{BRAND}/photos/", hang=True, hang_max_s=600)
        worker = subprocess.Popen(
            [sys.executable, "-c", RUN_WORKER, BRAND],
            env={**os.environ, "DAGSTER_HOME": str(home)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            deadline = time.monotonic() + 120
            while not photo_requests(stack, BRAND):
                assert worker.poll() is None, worker.communicate()
                assert time.monotonic() < deadline, "the run never asked for a photo"
                time.sleep(0.5)
            with dg.DagsterInstance.from_config(str(home)) as shared:
                [run] = shared.get_runs()
                shared.report_run_canceling(run)
            worker.send_signal(signal.SIGTERM)
            out, err = worker.communicate(timeout=90)
        finally:
            worker.kill()
    assert worker.returncode == 0, err[-3000:]
    outcome = json.loads(out.strip().splitlines()[-1])
    assert outcome["status"] == "CANCELED", (outcome, err[-3000:])
    assert "STEP_UP_FOR_RETRY" not in outcome["events"], outcome["events"]
    [failure] = outcome["failures"]
    assert "terminated on request" in failure, failure
