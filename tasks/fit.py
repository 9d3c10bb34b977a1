"""Task: fit one target (L2 → L3 fit JSON and plots); the companion-search grid, when asked
for, is spread over the Dask cluster the task runs on (a client of its own worker)."""

from __future__ import annotations

from prefect import task

from oiflow.archive import UnitResult, WorkUnit

from oiflow.tasks import plain
from oiflow.tasks.artifacts import report_unit
from oiflow.tasks.policy import task_options


@task(**task_options("fit"), task_run_name="fit {unit.unit}")
def fit(unit: WorkUnit) -> UnitResult:
    """Model fit (and companion search) of one target; safe to rerun (atomic writes)."""
    return report_unit(plain.fit(unit))
