"""Run a flow from the command line: Prefect API (embedded or configured), Dask task runner
from the cluster profile, and the run summary back.

Before anything starts, the run's plan is walked outside Prefect (:class:`IdleCheck`, a
:class:`~oiflow.flows.units.PlanProbe` on the flow's own plan): when every unit is up to date the
summary comes from it and no Dask cluster starts (a rerun with nothing to do then takes the time
of the scan). Prefect's temporary server (:class:`oiflow.flows.runtime.TemporaryServer`) is
spawned either

* alongside that check (``server_with_plan``, ``oiflow run``: a plan of a few nights is checked in
  a fraction of the 3-s start of the server, which it then no longer delays) and stopped unused
  when the check finds nothing to do — it was then still importing, on the other core;
* or after it (``oiflow reprocess``: an archive's check takes seconds, and a rescan of an
  unchanged archive should cost that scan and nothing else): not at all when nothing is to do.

Either way the server starts while the flow is imported and the Dask cluster starts
(:func:`oiflow.flows.runtime.prefect_api`, :class:`oiflow.flows.runners.StartedCluster`); then the
flow runs. The summary says which (``RunSummary.orchestration``). With a configured server
(``PREFECT_API_URL``) every run is a flow run on it.

Call :func:`oiflow.flows.runtime.configure` before importing this module.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Callable

from oiflow.config import ClusterConfig, RunConfig

from oiflow.flows.plans import Build, plan_and_run
from oiflow.flows.runtime import TemporaryServer, configure, prefect_api
from oiflow.flows.summary import RunSummary
from oiflow.flows.units import PlanProbe, WorkToDo


@dataclass
class IdleCheck:
    """The plan of a flow run (its name, configuration, build and :func:`~oiflow.flows.plans.plan_and_run`
    keywords), to find out without Prefect whether it has anything to do."""

    flow: str
    config: RunConfig
    build: Build
    options: dict = field(default_factory=dict)

    def summary(self, server_spawned: bool = False) -> RunSummary | None:
        """The run's summary when every unit is up to date; None when a unit needs work, or when
        planning fails (the flow run then reports it as usual). ``server_spawned``: Prefect's
        temporary server was spawned alongside this check (its caller stops it; the summary says so)."""
        try:
            summary = plan_and_run(self.flow, self.config, self.build, scheduler=PlanProbe, **self.options)
        except WorkToDo:
            return None
        except Exception:  # noqa: BLE001 - the flow run reports planning errors
            return None
        checked = f"plan checked in {summary.seconds:.1f} s"
        summary.orchestration = (
            f"Prefect's temporary server, spawned alongside the plan check, stopped unused: every unit was up to "
            f"date ({checked}; no Dask cluster started)" if server_spawned else
            f"Prefect not started: every unit was up to date ({checked}, before starting Prefect's server and the "
            f"Dask cluster)")
        return summary


def run_flow(flow: Callable[[], object], cluster: ClusterConfig, *, idle: IdleCheck | None = None, verbose: int = 0,
             server_with_plan: bool = False, **params) -> tuple[RunSummary | None, object]:
    """Run the flow that ``flow()`` returns, with ``params``, on a Dask task runner for the
    ``cluster`` settings (see the module docstring; Prefect is imported only when the flow runs).
    ``server_with_plan``: spawn the temporary server before the idle check, not after it.
    Returns the summary (None when the flow failed before making one) and the final Prefect state
    (None when the idle check made the summary)."""
    configure(verbose)
    configured = os.environ.get("PREFECT_API_URL")
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        early = stack.enter_context(TemporaryServer()) if server_with_plan and not configured else None
        if idle is not None and not configured and not params.get("force"):
            summary = idle.summary(server_spawned=early is not None)
            if summary is not None:
                return summary, None  # leaving the stack stops the early server
            t0 = time.perf_counter()
        # the temporary server first: it starts while the flow's modules are imported and the cluster starts
        server = early or (None if configured else stack.enter_context(TemporaryServer()))
        from oiflow.flows.runners import StartedCluster, profile_of

        flow_obj = flow()
        cluster = StartedCluster(profile_of(cluster))
        with prefect_api(verbose, alongside=cluster, server=server) as url:
            started = time.perf_counter() - t0
            state = flow_obj.with_options(task_runner=cluster.task_runner())(**params, return_state=True)
    data = None
    try:
        data = state.result(raise_on_failure=False)
    except Exception:
        data = None
    summary = RunSummary.from_state_data(data)
    if summary is not None:
        summary.orchestration = (
            f"Prefect server at {url}" if configured else
            f"Prefect's temporary server and the Dask cluster started together in {started:.1f} s" if early is None else
            f"Prefect's temporary server, spawned alongside the plan check, and the Dask cluster ready "
            f"{started:.1f} s after the check")
    return summary, state
