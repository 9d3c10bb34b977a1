"""Running work units through stage tasks: bounded concurrency, registration, bookkeeping and
the hand-over from one stage to the next.

The flow process alone writes to the catalogue: tasks on workers return
:class:`~oiflow.archive.UnitResult` records; as each unit completes, its products are
registered and its stage run closed (COMPLETED, or FAILED with the failed items) in one
transaction (:meth:`~oiflow.catalog.Catalog.record_run`), so a run killed midway keeps what it
finished and the next run redoes only the rest.

Units run as Prefect task runs (the task's ``submit``) or, given a Dask client, as plain Dask
tasks calling the stage's function (:func:`oiflow.flows.stages.stage_functions`: the worker never
imports Prefect) under the stage tasks' retry policy (``cluster.unit_runs``,
:func:`unit_runs_client`): the Prefect server then sees the flow run only, which on a small
machine leaves the cores to the stages (tests/benchmarks/bench_flows.py, bench_scale.py).

A :class:`Scheduler` takes units and, optionally, a follow-up (``then``) called with the
unit's :class:`Settled` outcome — processed, up to date (skipped: its products are those of its
last run), or failed. The task of a unit is its stage's (:func:`oiflow.flows.stages.stage_tasks`).
Follow-ups add the next stage's units (:mod:`oiflow.flows.chain`, in the order of
:mod:`oiflow.flows.recipes`), so stages overlap: a night can be calibrated while another night is
still being reduced. The scheduler tells a
:class:`~oiflow.flows.progress.Progress` what happens to each unit.

A :class:`PlanProbe` is a scheduler that runs nothing: it plans a run outside Prefect and stops
(:class:`WorkToDo`) at the first unit that is not up to date, so that a rerun with nothing to do
needs neither Prefect's server nor a Dask cluster (:mod:`oiflow.flows.run`). This module imports
neither Prefect nor Dask until a unit is submitted.
"""

from __future__ import annotations

import queue
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from oiflow.archive import WorkUnit
from oiflow.catalog import COMPLETED, FAILED, Catalog
from oiflow.config import RunConfig
from oiflow.tasks.policy import RETRY

from oiflow.flows import progress as P
from oiflow.flows.summary import RunSummary

PROCESSED, SKIPPED, FAILED_UNIT = "processed", "skipped", "failed"


def _flow_run_id() -> str | None:
    """The id of the top-level flow run (a deployment's run, when this flow runs under it)."""
    from prefect.context import get_run_context

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


def unit_runs_client(config: RunConfig, default: str):
    """The Dask client to run units on as plain Dask tasks when ``config.cluster.unit_runs``
    (else ``default``) is "dask" and the flow runs on a Dask task runner; None: Prefect tasks."""
    if (config.cluster.unit_runs or default) != "dask":
        return None
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    runner = getattr(ctx, "task_runner", None)
    try:
        return runner.client if runner is not None else None
    except (AttributeError, RuntimeError):  # not a (started) Dask task runner
        return None


def _run_plain(fn, unit: WorkUnit):
    """On a Dask worker: the stage's function on ``unit`` (:func:`oiflow.flows.stages.stage_functions`),
    with the stage tasks' retry policy (:data:`oiflow.tasks.policy.RETRY`)."""
    return RETRY.call(fn, unit=unit)


def _outcome(fut) -> tuple[object | None, str | None]:
    """(result, None) for a unit that ran, (None, error text) for one that failed (after retries)."""
    from distributed import Future as DaskFuture

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
    then: Callable[[Settled], None] | None
    last: object = None  # the unit's last completed run (catalog.LastRun; None: never completed)


class WorkToDo(Exception):
    """Raised by a :class:`PlanProbe` at the first unit that is not up to date."""

    def __init__(self, unit: WorkUnit):
        super().__init__(f"{unit.stage} {unit.unit} is not up to date")
        self.unit = unit


class Scheduler:
    """Submit units to their stage's task (at most ``max_parallel`` in flight; 0: all), register
    the results as they complete, fill ``summary``, tell ``progress`` and call the follow-ups.

    ``tasks``: stage → task, or function for plain Dask tasks (default: :mod:`oiflow.flows.stages`)."""

    def __init__(self, catalog: Catalog, summary: RunSummary, *, max_parallel: int = 0, force: bool = False,
                 dask_client=None, tasks: dict | None = None, progress: P.Progress | None = None):
        self.catalog, self.summary, self.force = catalog, summary, force
        self.dask_client = dask_client  # units as plain Dask tasks (see the module docstring)
        self.max_parallel = max_parallel if max_parallel and max_parallel > 0 else 0
        self.tasks = tasks
        self._refreshing: dict = {}  # stage → its task with refresh_cache=True
        self.progress = progress or P.Progress(summary.flow)
        self.flow_run_id = self._flow_run_id()
        summary.flow_run_id = self.flow_run_id
        self._pending: deque[_Job] = deque()
        self._settled: deque[tuple[_Job, Settled]] = deque()
        self._done_q: queue.Queue = queue.Queue()
        self._in_flight: dict = {}
        self._first_submit: float | None = None

    def _flow_run_id(self) -> str | None:
        return _flow_run_id()

    # -- adding work ---------------------------------------------------------------------
    def add(self, unit: WorkUnit, then: Callable[[Settled], None] | None = None) -> None:
        """Queue ``unit`` for its stage's task unless it is up to date (then it settles as SKIPPED)."""
        last = self.catalog.last_completed(unit.stage, unit.unit)
        job = _Job(unit, then, last)
        if not self.force and last is not None and self.catalog.run_is_current(last, unit.cache_key):
            self.summary.skipped.append(self._label(unit))
            outputs = [o["path"] for o in last.outputs]
            self.summary.current += outputs
            self.progress.unit(P.UP_TO_DATE, unit.stage, self._label(unit))
            self._settled.append((job, Settled(unit, SKIPPED, outputs)))
        else:
            self.progress.unit(P.ADDED, unit.stage, self._label(unit))
            self._needs_work(job)

    def _needs_work(self, job: _Job) -> None:
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
    def _task(self, stage: str, refresh: bool = False):
        """The stage's task (Prefect task runs), or its function (plain Dask tasks); ``refresh``:
        the task that recomputes instead of reading its cache (made once per stage: the task runner
        pickles each task object once)."""
        if self.tasks is None:
            from oiflow.flows.stages import stage_functions, stage_tasks

            self.tasks = stage_functions() if self.dask_client is not None else stage_tasks()
        if not refresh or self.dask_client is not None:
            return self.tasks[stage]
        if stage not in self._refreshing:
            self._refreshing[stage] = self.tasks[stage].with_options(refresh_cache=True)
        return self._refreshing[stage]

    def _submit(self, job: _Job, again: bool = False) -> None:
        """Submit ``job`` (``again``: its cached result had lost its products: recompute)."""
        self._first_submit = self._first_submit or time.perf_counter()
        unit, catalog, last = job.unit, self.catalog, job.last
        refresh = again or self.force or (last is not None and last.cache_key == unit.cache_key)  # outputs gone
        run_id = catalog.begin_run(unit.stage, unit.unit, cache_key=unit.cache_key, input_digest=unit.input_digest,
                                   settings_hash=unit.settings_hash, code_version=unit.code_version,
                                   inputs=unit.input_records(), flow_run_id=self.flow_run_id)
        task = self._task(unit.stage, refresh)
        if self.dask_client is not None:
            from distributed import Client

            fut = Client.submit(self.dask_client, _run_plain, task, unit, key=f"{unit.stage}-{uuid.uuid4().hex}",
                                pure=False)
        else:
            fut = task.submit(unit=unit)
        if not again:  # a resubmitted unit is still running
            self.progress.unit(P.STARTED, unit.stage, self._label(unit))
        self._in_flight[fut] = (job, run_id, refresh, last)
        fut.add_done_callback(self._done_q.put)

    def _complete(self, job: _Job, run_id: int, result, last) -> Settled:
        unit, catalog, summary = job.unit, self.catalog, self.summary
        new_paths = {p.path for p in result.products}
        gone = [o["path"] for o in last.outputs if o["path"] not in new_paths] if last is not None else []
        catalog.record_run(run_id, status=COMPLETED if result.ok else FAILED, products=result.products,
                           failures=result.failures, unregister=gone, flow_run_id=self.flow_run_id)
        label = self._label(unit)
        summary.processed.append(label)
        summary.failures += [{"unit": label, **f} for f in result.failures]
        summary.warnings += [f"{label}: {w}" for w in getattr(result, "warnings", [])]
        summary.plots += list(result.plots)
        summary.outputs += [p.path for p in result.products]
        summary.current += [p.path for p in result.products]
        summary.stage_seconds += result.seconds
        errors = "; ".join(f"{f['item']}: {f['error']}" for f in result.failures)
        self.progress.unit(P.DONE if result.ok else P.FAILED, unit.stage, label, result.seconds, errors)
        return Settled(unit, PROCESSED, [p.path for p in result.products])

    def _settle_future(self, fut) -> None:
        job, run_id, refreshed, last = self._in_flight.pop(fut)
        unit = job.unit
        result, error = _outcome(fut)
        if error is None:
            if not _outputs_present(result) and not refreshed:  # a cached result whose files are gone
                self.catalog.record_run(run_id, status=FAILED, failures=[
                    {"item": unit.unit, "error": "cached result without its products; recomputed"}])
                self._submit(job, again=True)
                return
            self._settled.append((job, self._complete(job, run_id, result, last)))
            return
        self.catalog.record_run(run_id, status=FAILED, failures=[{"item": unit.unit, "error": error}])
        label = self._label(unit)
        self.summary.processed.append(label)
        self.summary.failures.append({"unit": label, "item": unit.unit, "error": error})
        self.progress.unit(P.FAILED, unit.stage, label, None, error)
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


class PlanProbe(Scheduler):
    """A scheduler that runs nothing: every unit up to date settles as in a run; the first one
    that is not raises :class:`WorkToDo` (see the module docstring)."""

    def _flow_run_id(self) -> str | None:
        return None

    def _needs_work(self, job: _Job) -> None:
        raise WorkToDo(job.unit)
