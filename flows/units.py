"""Running work units through a stage task: bounded concurrency, registration, bookkeeping.

The flow process alone writes to the catalogue: tasks on workers return
:class:`~oiflow.ingest.UnitResult` records; as each unit completes, its products are registered
and its stage run closed (COMPLETED, or FAILED with the failed items), so a run killed midway
keeps what it finished and the next run redoes only the rest.
"""

from __future__ import annotations

import queue
import time
from collections import deque
from pathlib import Path
from typing import Callable

from prefect.context import get_run_context

from oiflow.archive import Plan, WorkUnit
from oiflow.catalog import COMPLETED, FAILED, Catalog

from flows.summary import RunSummary


def _flow_run_id() -> str | None:
    """The id of the top-level flow run (a deployment's run, when this flow runs under it)."""
    try:
        get_run_context()
    except Exception:  # outside a flow run
        return None
    from prefect.runtime import flow_run

    return str(flow_run.root_flow_run_id or flow_run.id)


def _outputs_present(result) -> bool:
    for p in result.products:
        try:
            if Path(p.path).stat().st_size != p.size:
                return False
        except FileNotFoundError:
            return False
    return True


def run_units(plan: Plan, stage_task, catalog: Catalog, summary: RunSummary, *, max_parallel: int = 0,
              on_result: Callable | None = None) -> RunSummary:
    """Submit ``plan.todo`` to ``stage_task`` (at most ``max_parallel`` in flight; 0: all),
    register results as they complete, and fill ``summary``."""
    t0 = time.perf_counter()
    flow_run_id = _flow_run_id()
    summary.flow_run_id = flow_run_id
    summary.skipped += [u.unit for u in plan.skipped]
    pending: deque[WorkUnit] = deque(plan.todo)
    done_q: queue.Queue = queue.Queue()
    in_flight: dict = {}
    limit = max_parallel if max_parallel and max_parallel > 0 else max(1, len(pending))

    def submit(unit: WorkUnit, refresh: bool = False):
        catalog.close_interrupted(unit.stage, unit.unit)
        last = catalog.last_run(unit.stage, unit.unit)
        refresh = refresh or (last is not None and last.cache_key == unit.cache_key)  # repair: outputs gone
        run_id = catalog.begin_run(unit.stage, unit.unit, cache_key=unit.cache_key, input_digest=unit.input_digest,
                                   settings_hash=unit.settings_hash, code_version=unit.code_version,
                                   inputs=unit.input_records(), flow_run_id=flow_run_id)
        task = stage_task.with_options(refresh_cache=True) if refresh else stage_task
        fut = task.submit(unit=unit)
        in_flight[fut] = (unit, run_id, refresh)
        fut.add_done_callback(done_q.put)

    while pending or in_flight:
        while pending and len(in_flight) < limit:
            submit(pending.popleft())
        fut = done_q.get()
        unit, run_id, refreshed = in_flight.pop(fut)
        fut.wait()
        state = fut.state
        if state.is_completed():
            result = fut.result()
            if not _outputs_present(result) and not refreshed:  # a cached result whose files are gone
                catalog.finish_run(run_id, status=FAILED, outputs=[], failures=[
                    {"item": unit.unit, "error": "cached result without its products; recomputed"}])
                submit(unit, refresh=True)
                continue
            catalog.register(result.products, run_id=run_id, flow_run_id=flow_run_id)
            status = COMPLETED if result.ok else FAILED
            catalog.finish_run(run_id, status=status, outputs=[p.to_output() for p in result.products],
                               failures=result.failures)
            summary.processed.append(unit.unit)
            summary.failures += [{"unit": unit.unit, **f} for f in result.failures]
            summary.plots += list(result.plots)
            summary.outputs += [p.path for p in result.products]
            summary.stage_seconds += result.seconds
            if on_result is not None:
                on_result(unit, result)
        else:
            try:
                fut.result(raise_on_failure=True)
                error = f"task ended {state.type.value}: {state.message}"
            except BaseException as exc:  # the task's exception, after its retries
                error = f"{type(exc).__name__}: {exc}"
            catalog.finish_run(run_id, status=FAILED, outputs=[], failures=[{"item": unit.unit, "error": error}])
            summary.processed.append(unit.unit)
            summary.failures.append({"unit": unit.unit, "item": unit.unit, "error": error})
    summary.units_seconds = time.perf_counter() - t0
    return summary
