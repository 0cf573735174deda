"""Schedules, sensors, asset checks and alerts: what replaces the servers' Celery beat.

`build_automation(assets)` wires only the stages whose asset is present, so stages added
later get their schedules, sensors and checks by being listed in `definitions.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from unde_dagster.automation.alerts import run_failure_alert
from unde_dagster.automation.checks import build_checks
from unde_dagster.automation.jobs import AssetJob, present_stages, stage_job
from unde_dagster.automation.schedules import beats, build_schedule
from unde_dagster.automation.sensors import build_work_sensor

SENSED_STAGES = ("originals", "collages", "ximilar")  # stages fed by rows other runs write


@dataclass(frozen=True)
class Automation:
    jobs: list[AssetJob]
    schedules: list[dg.ScheduleDefinition]
    sensors: list[dg.SensorDefinition]
    checks: list[dg.AssetChecksDefinition]


def build_automation(assets: Sequence[dg.AssetsDefinition]) -> Automation:
    by_key = {key: a for a in assets for key in a.keys}
    stages = present_stages(set(by_key))
    jobs = {name: stage_job(stage) for name, stage in stages.items()}
    schedules = [
        build_schedule(
            beat, stages[beat.stage], jobs[beat.stage],
            partitioned=by_key[dg.AssetKey(stages[beat.stage].asset)].partitions_def is not None,
        )
        for beat in beats()
        if beat.stage in stages
    ]
    sensors: list[dg.SensorDefinition] = [
        build_work_sensor(stages[name], jobs[name]) for name in SENSED_STAGES if name in stages
    ]
    sensors.append(run_failure_alert)
    return Automation(list(jobs.values()), schedules, sensors, build_checks(stages))
