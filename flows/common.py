"""What every oiflow flow does around its stages: report progress, publish, end."""

from __future__ import annotations

from prefect.states import Completed, Failed

from oiflow.config import RunConfig
from oiflow.tasks.artifacts import publish_summary

from oiflow.flows.plans import Build, plan_and_run
from oiflow.flows.progress import Progress, flow_reporters
from oiflow.flows.summary import RunSummary
from oiflow.flows.units import unit_runs_client


def run_units(flow: str, config: RunConfig, build: Build, *, unit_runs: str, **kw) -> RunSummary:
    """:func:`oiflow.flows.plans.plan_and_run` in a flow run: units on the flow's Dask task runner
    (as Prefect task runs or plain Dask tasks: ``config.cluster.unit_runs``, else ``unit_runs``),
    progress to the run's progress artifact and to this process's reporter."""
    progress = Progress(flow, flow_reporters())
    progress.start()
    try:
        return plan_and_run(flow, config, build, progress=progress,
                            dask_client=unit_runs_client(config, default=unit_runs), **kw)
    finally:
        progress.stop()


def finish(summary: RunSummary):
    """Publish the run's artifacts and return the final state: Completed, or Failed ("partially
    failed: …") when any item failed; its data is the summary (:meth:`RunSummary.to_json`)."""
    publish_summary(summary)
    data = summary.to_json()
    if summary.ok:
        return Completed(message=summary.state_message, data=data)
    return Failed(message=summary.state_message, data=data)
