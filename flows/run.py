"""Run a flow from the command line: Prefect API (embedded or configured), Dask task runner
from the cluster profile, and the run summary back.

Before anything starts, the run's plan is walked outside Prefect (:class:`IdleCheck`, a
:class:`~oiflow.flows.units.PlanProbe` on the flow's own plan): when every unit is up to date the
summary comes from it and neither Prefect's temporary server nor a Dask cluster starts (a rerun
with nothing to do then takes the time of the scan). Otherwise the temporary server is spawned at
once (:class:`oiflow.flows.runtime.TemporaryServer`) and starts while the flow is imported and the
Dask cluster starts (:func:`oiflow.flows.runtime.prefect_api`, :class:`oiflow.flows.runners.StartedCluster`);
then the flow runs. The summary says which (``RunSummary.orchestration``). With a configured
server (``PREFECT_API_URL``) every run is a flow run on it.

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

    def summary(self) -> RunSummary | None:
        """The run's summary when every unit is up to date; None when a unit needs work, or when
        planning fails (the flow run then reports it as usual)."""
        try:
            summary = plan_and_run(self.flow, self.config, self.build, scheduler=PlanProbe, **self.options)
        except WorkToDo:
            return None
        except Exception:  # noqa: BLE001 - the flow run reports planning errors
            return None
        summary.orchestration = (f"Prefect not started: every unit was up to date (plan checked in "
                                 f"{summary.seconds:.1f} s, before starting Prefect's server and the Dask cluster)")
        return summary


def run_flow(flow: Callable[[], object], cluster: ClusterConfig, *, idle: IdleCheck | None = None, verbose: int = 0,
             **params) -> tuple[RunSummary | None, object]:
    """Run the flow that ``flow()`` returns, with ``params``, on a Dask task runner for the
    ``cluster`` settings (see the module docstring; Prefect is imported only when the flow runs).
    Returns the summary (None when the flow failed before making one) and the final Prefect state
    (None when the idle check made the summary)."""
    configure(verbose)
    configured = os.environ.get("PREFECT_API_URL")
    if idle is not None and not configured and not params.get("force"):
        summary = idle.summary()
        if summary is not None:
            return summary, None
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        # the temporary server first: it starts while the flow's modules are imported and the cluster starts
        server = None if configured else stack.enter_context(TemporaryServer())
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
        summary.orchestration = (f"Prefect server at {url}" if configured else
                                 f"Prefect's temporary server and the Dask cluster started together in {started:.1f} s")
    return summary, state
