"""What runs each stage's units: the Prefect task (a unit as a Prefect task run) and the plain
function (a unit as a plain Dask task, ``cluster.unit_runs: dask``) — one table, used by every
flow.

:func:`stage_tasks` maps a stage name (:attr:`oiflow.archive.WorkUnit.stage`) to its task
(``tasks/``), :func:`stage_functions` to its function (:data:`oiflow.tasks.plain.FUNCTIONS`, importable
without Prefect). Tests and benchmarks may run the flows of this process with other tasks for
some stages (:func:`replaced_stage_tasks`), e.g. units of a calibrated duration
(tests/scale_sim.py, tests/benchmarks/bench_scale.py): the planning of the units, the
:class:`~oiflow.flows.units.Scheduler`, the catalogue and the registration of the products stay the
real ones; only what a worker does with a unit changes. A replacement is a Prefect task whose
function (``task.fn``, what a plain Dask task runs) is importable by the workers without Prefect
and returns a :class:`~oiflow.archive.UnitResult`.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Mapping

STAGES = ("reduce", "calibrate", "fit", "image", "ingest")

#: stage → task replacing the real one (see :func:`replaced_stage_tasks`)
_REPLACED: dict[str, object] = {}


def stage_tasks() -> dict[str, object]:
    """Stage name → the Prefect task that processes its units."""
    from oiflow.tasks.calibrate import calibrate
    from oiflow.tasks.fit import fit
    from oiflow.tasks.image import image
    from oiflow.tasks.ingest import ingest
    from oiflow.tasks.reduce import reduce

    return {"reduce": reduce, "calibrate": calibrate, "fit": fit, "image": image, "ingest": ingest, **_REPLACED}


def stage_functions() -> dict[str, Callable]:
    """Stage name → the function a plain Dask task runs on a unit (no Prefect)."""
    from oiflow.tasks.plain import FUNCTIONS

    return {**FUNCTIONS, **{stage: task.fn for stage, task in _REPLACED.items()}}


@contextlib.contextmanager
def replaced_stage_tasks(tasks: Mapping[str, object]) -> Iterator[None]:
    """Within the block, the flows of this process run the units of the stages in ``tasks`` with
    the tasks given (see the module docstring)."""
    unknown = set(tasks) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stage(s): {', '.join(sorted(unknown))}")
    saved = dict(_REPLACED)
    _REPLACED.update(tasks)
    try:
        yield
    finally:
        _REPLACED.clear()
        _REPLACED.update(saved)
