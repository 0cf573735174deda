"""`run_failure_alert`: every failed run of any code location, posted to the alert webhook."""

import dagster as dg

from unde_dagster.alerts import failure_text, send_alert


@dg.run_failure_sensor(
    name="run_failure_alert",
    monitor_all_code_locations=True,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts every failed run (job, brand, role, first error line) to the webhook.",
)
def run_failure_alert(context: dg.RunFailureSensorContext) -> None:
    message = context.failure_event.message if context.failure_event else None
    run = context.dagster_run
    send_alert(failure_text(run.job_name, run.run_id, run.tags, message))
