"""The Dask worker plugins of every oiflow cluster (:func:`oiflow.flows.runners.start_cluster`).

* :class:`WarmUp` — a worker imports what running a unit needs (:data:`WARM_MODULES`) when it
  starts, while the cluster starts (alongside Prefect's server: :func:`oiflow.flows.runtime.prefect_api`),
  instead of at its first unit: 32 workers importing them at once on 2 cores delayed the first
  units of a run by tens of seconds (tests/benchmarks/bench_scale.py).
  A warm worker also ends without Python's slow teardown (:func:`oiflow.process_exit.freeze_at_exit`):
  the garbage collector's passes over a worker that had run units took ~0.6 s of every cluster's
  close.
* :class:`PrefectDrainPlugin` — when a worker closes, it sends the Prefect logs and events it
  still holds (:func:`oiflow.flows.runtime.flush_logs`), so that it exits at once instead of being
  killed by its nanny after a 4 s wait, without losing the last task logs.

Prefect-free at import: a worker that runs only plain Dask tasks never imports Prefect.
"""

from __future__ import annotations

import importlib

from distributed import WorkerPlugin

from oiflow.process_exit import freeze_at_exit

from oiflow.flows.runtime import flush_logs

#: what a worker imports when it starts: the unit runner of plain Dask tasks and the stage
#: functions (their heavy dependencies — scipy, matplotlib — stay with the first unit that needs them)
WARM_MODULES = ("oiflow.flows.units", "oiflow.tasks.plain")


class WarmUp(WorkerPlugin):
    name = "oiflow-warm-up"

    def __init__(self, modules=WARM_MODULES):
        self.modules = tuple(modules)

    def setup(self, worker) -> None:
        freeze_at_exit()
        for name in self.modules:
            importlib.import_module(name)


class PrefectDrainPlugin(WorkerPlugin):
    name = "oiflow-prefect-drain"

    def teardown(self, worker) -> None:
        flush_logs()
