"""Task: calibrate one night (L1 → L2), with its transfer-function quicklook as an artifact."""

from __future__ import annotations

from prefect import task

from oiflow.archive import UnitResult, WorkUnit
from oiflow.work.calibrate import run_calibrate_unit

from oiflow.tasks.artifacts import report_unit
from oiflow.tasks.policy import task_options


@task(**task_options("calibrate"), task_run_name="calibrate {unit.unit}")
def calibrate(unit: WorkUnit) -> UnitResult:
    """One L2 file per science target of the night; safe to rerun (atomic writes)."""
    return report_unit(run_calibrate_unit(unit))
