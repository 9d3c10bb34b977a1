"""Run a flow from the command line: Prefect API (embedded or configured), Dask task runner
from the cluster profile, and the run summary back.

Call :func:`flows.runtime.configure` before importing this module.
"""

from __future__ import annotations

from oiflow.cluster import ClusterProfile

from flows.runners import task_runner
from flows.runtime import prefect_api
from flows.summary import RunSummary


def run_flow(flow_obj, profile: ClusterProfile, *, verbose: bool = False, **params) -> tuple[RunSummary | None, object]:
    """Run ``flow_obj(**params)`` on a Dask task runner for ``profile``. Returns the summary (None
    when the flow failed before making one) and the final Prefect state."""
    with prefect_api(verbose):
        runner = task_runner(profile)
        state = flow_obj.with_options(task_runner=runner)(**params, return_state=True)
    data = None
    try:
        data = state.result(raise_on_failure=False)
    except Exception:
        data = None
    summary = RunSummary.from_dict(data) if isinstance(data, dict) and "flow" in data else None
    return summary, state
