"""The stage functions as a plain Dask task runs them (``cluster.unit_runs: dask``), without
Prefect: a worker that runs only these never imports Prefect (importing it cost a worker several
seconds of CPU at its first unit and at its exit, tests/benchmarks/bench_scale.py).

Each is what the stage's Prefect task (``tasks/<stage>.py``) does with a unit, less the
reporting to the task run (:func:`oiflow.tasks.artifacts.report_unit`), which a plain task has not.
"""

from __future__ import annotations

import contextlib

from oiflow.archive import UnitResult, WorkUnit
from oiflow.ingest import ingest_unit
from oiflow.work.calibrate import run_calibrate_unit
from oiflow.work.fit import run_fit_unit
from oiflow.work.image import run_image_unit
from oiflow.work.reduce import run_reduce_unit


def dask_client():
    """A context giving the Dask client of the worker running this task (it secedes from the
    worker's thread pool while the grid runs), or None outside a Dask worker."""
    try:
        from distributed import get_worker, worker_client

        get_worker()
    except (ImportError, ValueError):
        return contextlib.nullcontext(None)
    return worker_client()


def fit(unit: WorkUnit) -> UnitResult:
    """Model fit (and companion search, its grid spread over the worker's Dask cluster)."""
    if not unit.settings.get("companion_search"):
        return run_fit_unit(unit)
    with dask_client() as client:
        return run_fit_unit(unit, client=client)


#: stage → the function that processes one of its units
FUNCTIONS = {"reduce": run_reduce_unit, "calibrate": run_calibrate_unit, "fit": fit, "image": run_image_unit,
             "ingest": ingest_unit}
