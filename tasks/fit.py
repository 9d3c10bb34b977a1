"""Task: fit one target (L2 → L3 fit JSON and plots); the companion-search grid, when asked
for, is spread over the Dask cluster the task runs on (a client of its own worker)."""

from __future__ import annotations

import contextlib

from prefect import task

from oiflow.archive import UnitResult, WorkUnit
from oiflow.work.fit import run_fit_unit

from tasks.artifacts import report_unit
from tasks.policy import task_options


def dask_client():
    """A context giving the Dask client of the worker running this task (it secedes from the
    worker's thread pool while the grid runs), or None outside a Dask worker."""
    try:
        from distributed import get_worker, worker_client

        get_worker()
    except (ImportError, ValueError):
        return contextlib.nullcontext(None)
    return worker_client()


@task(**task_options("fit"), task_run_name="fit {unit.unit}")
def fit(unit: WorkUnit) -> UnitResult:
    """Model fit (and companion search) of one target; safe to rerun (atomic writes)."""
    if not unit.settings.get("companion_search"):
        return report_unit(run_fit_unit(unit))
    with dask_client() as client:
        return report_unit(run_fit_unit(unit, client=client))
