"""Running work units through stage tasks: bounded concurrency, registration, bookkeeping and
the hand-over from one stage to the next.

The flow process alone writes to the catalogue: tasks on workers return
:class:`~oiflow.archive.UnitResult` records; as each unit completes, its products are
registered and its stage run closed (COMPLETED, or FAILED with the failed items), so a run
killed midway keeps what it finished and the next run redoes only the rest.

Units run as Prefect task runs (the task's ``submit``) or, given a Dask client, as plain Dask
tasks calling the same task function under the stage tasks' retry policy
(``cluster.unit_runs``, :func:`unit_runs_client`): the Prefect server then sees the flow run
only, which on a small machine leaves the cores to the stages (tests/benchmarks/bench_flows.py).

A :class:`Scheduler` takes units with the task that processes them and, optionally, a
follow-up (``then``) called with the unit's :class:`Settled` outcome — processed, up to date
(skipped: its products are those of its last run), or failed. Follow-ups add the next stage's
units (the flows build these chains), so stages overlap: a night can be calibrated while
another night is still being reduced.
"""

from __future__ import annotations

import queue
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from distributed import Client, Future as DaskFuture
from prefect.context import FlowRunContext, get_run_context

from oiflow.archive import WorkUnit
from oiflow.catalog import COMPLETED, FAILED, Catalog
from oiflow.config import RunConfig
from tasks.policy import RETRY

from flows.summary import RunSummary

PROCESSED, SKIPPED, FAILED_UNIT = "processed", "skipped", "failed"


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


def unit_runs_client(config: RunConfig, default: str) -> Client | None:
    """The Dask client to run units on as plain Dask tasks when ``config.cluster.unit_runs``
    (else ``default``) is "dask" and the flow runs on a Dask task runner; None: Prefect tasks."""
    if (config.cluster.unit_runs or default) != "dask":
        return None
    ctx = FlowRunContext.get()
    runner = getattr(ctx, "task_runner", None)
    try:
        return runner.client if runner is not None else None
    except (AttributeError, RuntimeError):  # not a (started) Dask task runner
        return None


def _run_plain(task, unit: WorkUnit):
    """On a Dask worker: the stage task's function on ``unit``, with its retry policy."""
    return RETRY.call(task.fn, unit=unit)


def _outcome(fut) -> tuple[object | None, str | None]:
    """(result, None) for a unit that ran, (None, error text) for one that failed (after retries)."""
    if isinstance(fut, DaskFuture):
        if fut.status == "finished":
            return fut.result(), None
        exc = fut.exception() if fut.status == "error" else None
        return None, (f"{type(exc).__name__}: {exc}" if exc is not None else f"Dask task {fut.status}")
    fut.wait()
    state = fut.state
    if state.is_completed():
        return fut.result(), None
    try:
        fut.result(raise_on_failure=True)
        return None, f"task ended {state.type.value}: {state.message}"
    except BaseException as exc:  # the task's exception, after its retries
        return None, f"{type(exc).__name__}: {exc}"


@dataclass
class Settled:
    """How a unit ended in this run, for the stage after it."""

    unit: WorkUnit
    status: str  # PROCESSED | SKIPPED | FAILED_UNIT
    products: list[str] = field(default_factory=list)  # product paths (for SKIPPED: those of its last run)


@dataclass
class _Job:
    unit: WorkUnit
    task: object
    then: Callable[[Settled], None] | None


class Scheduler:
    """Submit units to their tasks (at most ``max_parallel`` in flight; 0: all), register the
    results as they complete, fill ``summary`` and call the follow-ups."""

    def __init__(self, catalog: Catalog, summary: RunSummary, *, max_parallel: int = 0, force: bool = False,
                 dask_client: Client | None = None):
        self.catalog, self.summary, self.force = catalog, summary, force
        self.dask_client = dask_client  # units as plain Dask tasks (see the module docstring)
        self.max_parallel = max_parallel if max_parallel and max_parallel > 0 else 0
        self.flow_run_id = _flow_run_id()
        summary.flow_run_id = self.flow_run_id
        self._pending: deque[_Job] = deque()
        self._settled: deque[tuple[_Job, Settled]] = deque()
        self._done_q: queue.Queue = queue.Queue()
        self._in_flight: dict = {}
        self._first_submit: float | None = None

    # -- adding work ---------------------------------------------------------------------
    def add(self, unit: WorkUnit, task, then: Callable[[Settled], None] | None = None) -> None:
        """Queue ``unit`` for ``task`` unless it is up to date (then it settles as SKIPPED)."""
        job = _Job(unit, task, then)
        if not self.force and self.catalog.up_to_date(unit.stage, unit.unit, unit.cache_key):
            self.summary.skipped.append(self._label(unit))
            outputs = self.catalog.outputs_of(unit.stage, [unit.unit])
            self.summary.current += outputs
            self._settled.append((job, Settled(unit, SKIPPED, outputs)))
        else:
            self._pending.append(job)
            self._fill()  # at once: the workers start while the flow plans the next nights

    def _fill(self) -> None:
        while self._pending and (not self.max_parallel or len(self._in_flight) < self.max_parallel):
            self._submit(self._pending.popleft())

    def fail(self, stage: str, item: str, error: str) -> None:
        """Record a failure found by the flow itself (e.g. a configured target without data)."""
        self.summary.failures.append({"unit": stage, "item": item, "error": error})

    @staticmethod
    def _label(unit: WorkUnit) -> str:
        return f"{unit.stage} {unit.unit}"

    # -- running -------------------------------------------------------------------------
    def _submit(self, job: _Job, refresh: bool = False) -> None:
        self._first_submit = self._first_submit or time.perf_counter()
        unit, catalog = job.unit, self.catalog
        catalog.close_interrupted(unit.stage, unit.unit)
        last = catalog.last_run(unit.stage, unit.unit)
        refresh = refresh or self.force or (last is not None and last.cache_key == unit.cache_key)  # outputs gone
        run_id = catalog.begin_run(unit.stage, unit.unit, cache_key=unit.cache_key, input_digest=unit.input_digest,
                                   settings_hash=unit.settings_hash, code_version=unit.code_version,
                                   inputs=unit.input_records(), flow_run_id=self.flow_run_id)
        if self.dask_client is not None:
            fut = Client.submit(self.dask_client, _run_plain, job.task, unit, key=f"{unit.stage}-{uuid.uuid4().hex}",
                                pure=False)
        else:
            task = job.task.with_options(refresh_cache=True) if refresh else job.task
            fut = task.submit(unit=unit)
        self._in_flight[fut] = (job, run_id, refresh, last)
        fut.add_done_callback(self._done_q.put)

    def _complete(self, job: _Job, run_id: int, result, last) -> Settled:
        unit, catalog, summary = job.unit, self.catalog, self.summary
        new_paths = {p.path for p in result.products}
        if last is not None:  # products of the unit's previous run that this run did not write again
            catalog.unregister([o["path"] for o in last.outputs if o["path"] not in new_paths])
        catalog.register(result.products, run_id=run_id, flow_run_id=self.flow_run_id)
        catalog.finish_run(run_id, status=COMPLETED if result.ok else FAILED,
                           outputs=[p.to_output() for p in result.products], failures=result.failures)
        summary.processed.append(self._label(unit))
        summary.failures += [{"unit": self._label(unit), **f} for f in result.failures]
        summary.warnings += [f"{self._label(unit)}: {w}" for w in getattr(result, "warnings", [])]
        summary.plots += list(result.plots)
        summary.outputs += [p.path for p in result.products]
        summary.current += [p.path for p in result.products]
        summary.stage_seconds += result.seconds
        return Settled(unit, PROCESSED, [p.path for p in result.products])

    def _settle_future(self, fut) -> None:
        job, run_id, refreshed, last = self._in_flight.pop(fut)
        unit = job.unit
        result, error = _outcome(fut)
        if error is None:
            if not _outputs_present(result) and not refreshed:  # a cached result whose files are gone
                self.catalog.finish_run(run_id, status=FAILED, outputs=[], failures=[
                    {"item": unit.unit, "error": "cached result without its products; recomputed"}])
                self._submit(job, refresh=True)
                return
            self._settled.append((job, self._complete(job, run_id, result, last)))
            return
        self.catalog.finish_run(run_id, status=FAILED, outputs=[], failures=[{"item": unit.unit, "error": error}])
        self.summary.processed.append(self._label(unit))
        self.summary.failures.append({"unit": self._label(unit), "item": unit.unit, "error": error})
        self._settled.append((job, Settled(unit, FAILED_UNIT, [])))

    def run(self) -> RunSummary:
        """Process everything queued, and what the follow-ups queue, until nothing is left."""
        t0 = time.perf_counter()
        while self._pending or self._in_flight or self._settled:
            while self._settled:  # follow-ups first: they may queue more work
                job, settled = self._settled.popleft()
                if job.then is not None:
                    job.then(settled)
            self._fill()
            if not self._in_flight:
                continue
            self._settle_future(self._done_q.get())
        self.summary.units_seconds += time.perf_counter() - min(t0, self._first_submit or t0)
        return self.summary
