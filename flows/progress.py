"""Progress of a run that a person can follow: units per stage — done, up to date, failed,
running, known so far — the elapsed time and an estimate of the time left; and the places it is
shown.

:class:`Progress` counts (the :class:`~oiflow.flows.units.Scheduler` tells it what happens to each
unit) and tells its reporters:

* :class:`TerminalReporter` — a live line on a terminal (rich), the failures printed above it as
  they happen (and, with ``-v``, every finished unit);
* :class:`LogReporter` — without a terminal: one log line per finished unit and a heartbeat line
  every ``heartbeat_s`` (30 s) while units run;
* :class:`ArtifactReporter` — in a Prefect flow run: the run's progress artifact (percentage of
  the units known so far, the line as its description), updated at most every ``every_s``.

A stage's total grows while the run goes on: the units of a stage are known once the units they
depend on have settled (a night's calibration once its observations are reduced). The estimate
of the time left is for the units known so far: (units left) × (wall time per processed unit
since the first one started), so it grows when a stage adds units.

The command line chooses the reporter of the flow process (:func:`reporting`); a flow run with
none (a deployment's run) logs to its Prefect run logger.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from dataclasses import dataclass
from typing import Iterator

#: the order stages are shown in
STAGE_ORDER = ("ingest", "reduce", "calibrate", "fit", "image")

#: what the scheduler reports about a unit
ADDED, UP_TO_DATE, STARTED, DONE, FAILED = "added", "up to date", "started", "done", "failed"


@dataclass
class StageCounts:
    total: int = 0  # units known so far
    up_to_date: int = 0  # skipped: nothing changed since their last run
    done: int = 0  # processed in this run
    failed: int = 0
    running: int = 0  # submitted, not settled

    @property
    def settled(self) -> int:
        return self.up_to_date + self.done + self.failed


def _duration(seconds: float) -> str:
    """``42 s``, ``3:05``, ``1:02:03``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    h, rem = divmod(s, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60}:{rem % 60:02d}"


class Progress:
    """The counts of one run (see the module docstring). Called from the flow's thread; the
    reporters may read it from theirs (:meth:`snapshot`)."""

    def __init__(self, flow: str, reporters=(), clock=time.monotonic):
        self.flow = flow
        self.clock = clock
        self.t0 = clock()
        self.first_start: float | None = None
        self._stages: dict[str, StageCounts] = {}
        self._lock = threading.Lock()
        self.reporters = list(reporters)

    # -- what the scheduler says ------------------------------------------------------------
    def unit(self, event: str, stage: str, label: str = "", seconds: float | None = None, error: str = "") -> None:
        """Count ``event`` (ADDED, UP_TO_DATE, STARTED, DONE, FAILED) of a unit of ``stage``;
        DONE and FAILED are told to the reporters."""
        with self._lock:
            c = self._stages.setdefault(stage, StageCounts())
            if event == ADDED:
                c.total += 1
            elif event == UP_TO_DATE:
                c.total += 1
                c.up_to_date += 1
            elif event == STARTED:
                c.running += 1
                if self.first_start is None:
                    self.first_start = self.clock()
            elif event in (DONE, FAILED):
                c.running = max(0, c.running - 1)
                if event == DONE:
                    c.done += 1
                else:
                    c.failed += 1
            else:
                raise ValueError(f"unknown progress event {event!r}")
        if event in (DONE, FAILED):
            for r in self.reporters:
                r.unit_finished(self, stage, label, event, seconds, error)

    def start(self) -> None:
        for r in self.reporters:
            r.start(self)

    def stop(self) -> None:
        for r in self.reporters:
            r.stop(self)

    # -- what the reporters read -------------------------------------------------------------
    def snapshot(self) -> dict[str, StageCounts]:
        """Per-stage counts, in STAGE_ORDER (other stages after)."""
        with self._lock:
            items = {k: StageCounts(**vars(v)) for k, v in self._stages.items()}
        order = {s: i for i, s in enumerate(STAGE_ORDER)}
        return dict(sorted(items.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))

    def totals(self) -> StageCounts:
        out = StageCounts()
        for c in self.snapshot().values():
            for k in vars(out):
                setattr(out, k, getattr(out, k) + getattr(c, k))
        return out

    def elapsed(self) -> float:
        return self.clock() - self.t0

    def eta(self) -> float | None:
        """Seconds left for the units known so far (None before the first unit is processed)."""
        t = self.totals()
        worked = t.done + t.failed
        if not worked or self.first_start is None:
            return None
        left = t.total - t.settled
        return left * (self.clock() - self.first_start) / worked

    def fraction(self) -> float:
        """Settled units / units known so far (1.0 when none is known)."""
        t = self.totals()
        return t.settled / t.total if t.total else 1.0

    def line(self) -> str:
        """``reduce 12/40 (3 up to date, 1 failed, 2 running) · calibrate 0/2 · 0:42 elapsed · ETA 1:10``."""
        parts = []
        for stage, c in self.snapshot().items():
            extra = [f"{n} {what}" for n, what in ((c.up_to_date, "up to date"), (c.failed, "failed"),
                                                   (c.running, "running")) if n]
            parts.append(f"{stage} {c.settled}/{c.total}" + (f" ({', '.join(extra)})" if extra else ""))
        if not parts:
            parts.append("planning…")
        eta = self.eta()
        parts.append(f"{_duration(self.elapsed())} elapsed")
        if self.totals().settled < self.totals().total:
            parts.append(f"ETA {_duration(eta)}" if eta is not None else "ETA –")
        return " · ".join(parts)


# -- reporters ---------------------------------------------------------------------------------


class Reporter:
    """What a reporter is told (all optional)."""

    def start(self, progress: Progress) -> None:
        pass

    def unit_finished(self, progress: Progress, stage: str, label: str, event: str, seconds: float | None,
                      error: str) -> None:
        pass

    def stop(self, progress: Progress) -> None:
        pass


def unit_line(label: str, event: str, seconds: float | None, error: str) -> str:
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    return f"{label}: failed{took}: {error}" if event == FAILED else f"{label}: done{took}"


class TerminalReporter(Reporter):
    """A live progress line on ``console`` (a rich Console on a terminal); failures above it as
    they happen, and every finished unit with ``verbose``. While it shows, what the root
    logger's stream handlers write to the terminal (``-v``) is printed above the line too."""

    def __init__(self, console, verbose: bool = False, refresh_per_second: float = 4):
        self.console, self.verbose, self.rate = console, verbose, refresh_per_second
        self._live = None
        self._streams: list = []  # (handler, its own stream) while the line shows

    def start(self, progress: Progress) -> None:
        import sys

        from rich.file_proxy import FileProxy
        from rich.live import Live
        from rich.text import Text

        self._live = Live(console=self.console, refresh_per_second=self.rate, transient=False,
                          redirect_stdout=False, redirect_stderr=False,
                          get_renderable=lambda: Text(f"{progress.flow}: {progress.line()}", style="bold"))
        self._live.start()
        for handler in [*logging.getLogger().handlers, *logging.getLogger("oiflow").handlers]:
            if type(handler) is logging.StreamHandler and handler.stream in (sys.stderr, sys.stdout):
                self._streams.append((handler, handler.setStream(FileProxy(self.console, handler.stream))))

    def unit_finished(self, progress, stage, label, event, seconds, error) -> None:
        if event == FAILED:
            self.console.print(f"[red]✗[/red] {unit_line(label, event, seconds, error)}", highlight=False, markup=True)
        elif self.verbose:
            self.console.print(f"[green]✓[/green] {unit_line(label, event, seconds, error)}", highlight=False)

    def stop(self, progress: Progress) -> None:
        for handler, stream in self._streams:
            handler.setStream(stream)
        self._streams = []
        if self._live is not None:
            self._live.stop()  # leaves the final line
            self._live = None


class LogReporter(Reporter):
    """One line per finished unit and a heartbeat every ``heartbeat_s`` to ``logger`` (INFO;
    failures at WARNING)."""

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter, heartbeat_s: float = 30.0):
        self.logger, self.heartbeat_s = logger, heartbeat_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, progress: Progress) -> None:
        self._stop.clear()
        context = contextvars.copy_context()  # the flow run's (its logger, Prefect's settings)
        self._thread = threading.Thread(target=context.run, args=(self._beat, progress), name="oiflow-heartbeat",
                                        daemon=True)
        self._thread.start()

    def _beat(self, progress: Progress) -> None:
        while not self._stop.wait(self.heartbeat_s):
            self.logger.info("%s: %s", progress.flow, progress.line())

    def unit_finished(self, progress, stage, label, event, seconds, error) -> None:
        c = progress.snapshot()[stage]
        msg = f"{unit_line(label, event, seconds, error)} ({stage} {c.settled}/{c.total})"
        (self.logger.warning if event == FAILED else self.logger.info)("%s", msg)

    def stop(self, progress: Progress) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.logger.info("%s: %s", progress.flow, progress.line())


class ArtifactReporter(Reporter):
    """The run's Prefect progress artifact (key ``oiflow-<flow>-progress``): percentage of the
    units known so far, the progress line as its description; updated at most every ``every_s``
    (each update is one API call) and at the end. Reporting never fails the run.

    The artifact is created in a thread (with the flow run's context), so that the units need
    not wait for it: at the start of a run it was the flow's first request after the flow run's,
    0.3–0.4 s of a small run's start on 2 cores (the temporary server answers its first requests
    slowly). Updates begin once it exists; :meth:`stop` waits for it and writes the last state."""

    def __init__(self, every_s: float = 5.0):
        self.every_s = every_s
        self.artifact_id = None
        self._last = 0.0
        self._creating: threading.Thread | None = None

    def start(self, progress: Progress) -> None:
        self._last = progress.clock()
        context = contextvars.copy_context()  # the flow run's (the artifact's flow run, Prefect's settings)
        self._creating = threading.Thread(target=context.run, args=(self._create, progress),
                                          name="oiflow-progress-artifact", daemon=True)
        self._creating.start()

    def _create(self, progress: Progress) -> None:
        from prefect.artifacts import create_progress_artifact

        from oiflow.tasks.artifacts import artifact_key

        try:
            self.artifact_id = create_progress_artifact(progress=0.0, key=artifact_key("oiflow", progress.flow, "progress"),
                                                        description=f"{progress.flow}: planning…")
        except Exception as exc:  # noqa: BLE001 - no API, no artifact: the run goes on
            logging.getLogger(__name__).info("no progress artifact in the Prefect UI: %s", exc)
            self.artifact_id = None

    def _update(self, progress: Progress) -> None:
        from prefect.artifacts import update_progress_artifact

        try:
            update_progress_artifact(self.artifact_id, progress=round(100.0 * progress.fraction(), 1),
                                     description=f"{progress.flow}: {progress.line()}")
        except Exception as exc:  # noqa: BLE001 - the UI's progress bar only: the run goes on
            logging.getLogger(__name__).info("progress artifact not updated: %s", exc)

    def unit_finished(self, progress, stage, label, event, seconds, error) -> None:
        if self.artifact_id is not None and progress.clock() - self._last >= self.every_s:
            self._last = progress.clock()
            self._update(progress)

    def stop(self, progress: Progress) -> None:
        if self._creating is not None:
            self._creating.join()
            self._creating = None
        if self.artifact_id is not None:
            self._update(progress)


# -- the reporter of this process (chosen by the command line) ------------------------------------

_PROCESS_REPORTERS: list[Reporter] = []


@contextlib.contextmanager
def reporting(*reporters: Reporter) -> Iterator[None]:
    """Within the block, the flows run by this process report to ``reporters`` (besides the
    progress artifact) instead of their Prefect run logger."""
    saved = list(_PROCESS_REPORTERS)
    _PROCESS_REPORTERS[:] = list(reporters)
    try:
        yield
    finally:
        _PROCESS_REPORTERS[:] = saved


def flow_reporters(in_flow_run: bool = True) -> list[Reporter]:
    """The reporters of a flow run: the progress artifact, and the process's reporters (else
    a LogReporter on the Prefect run logger)."""
    out: list[Reporter] = []
    if in_flow_run:
        out.append(ArtifactReporter())
    if _PROCESS_REPORTERS:
        out += _PROCESS_REPORTERS
    elif in_flow_run:
        from prefect import get_run_logger

        out.append(LogReporter(get_run_logger()))
    return out
