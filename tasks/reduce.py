"""Task: reduce one unit (an observation; a night for non-native backends) from L0 to L1."""

from __future__ import annotations

from prefect import task

from oiflow.archive import UnitResult, WorkUnit
from oiflow.work.reduce import run_reduce_unit

from oiflow.tasks.artifacts import report_unit
from oiflow.tasks.policy import task_options


@task(**task_options("reduce"), task_run_name="reduce {unit.unit}")
def reduce(unit: WorkUnit) -> UnitResult:
    """Backend and runner chosen per instrument (``oiflow.reduce.backends.select``); safe to
    rerun (atomic writes)."""
    return report_unit(run_reduce_unit(unit))
