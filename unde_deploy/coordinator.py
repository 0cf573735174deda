"""QueuedRunCoordinator that tags each run with its roles before it is queued.

Why at submit: every run (UI, schedule, sensor, backfill, re-execution) passes through
`submit_run` with the workspace at hand, and the queue applies tag concurrency limits
before any launcher runs. Tagging here makes the per-role and per-brand limits work
without anyone adding tags by hand; the launcher then routes from the same tags.
"""

from __future__ import annotations

from dagster import DagsterRun, QueuedRunCoordinator, SubmitRunContext

from unde_deploy.roles import run_role_tags
from unde_deploy.runs import roles_of_run


class RoleTaggingRunCoordinator(QueuedRunCoordinator):
    """Adds `unde/role`, `unde/roles`, `unde/uses_<role>`, `unde/brand_<role>`, then queues."""

    def submit_run(self, context: SubmitRunContext) -> DagsterRun:
        run = context.dagster_run
        roles = roles_of_run(run, self._instance, context.workspace)
        launcher = self._instance.run_launcher
        routing = getattr(launcher, "routing", None)
        if routing is not None:
            # Fail at submit, where the UI shows the message, not later in the daemon.
            routing.engine_for_roles(roles, f"run {run.run_id} ({run.job_name})")
        self._instance.add_run_tags(run.run_id, run_role_tags(roles, run.tags))
        refreshed = self._instance.get_run_by_id(run.run_id)
        assert refreshed is not None
        return super().submit_run(context._replace(dagster_run=refreshed))
