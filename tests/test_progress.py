"""Progress of a run (oiflow.flows.progress): the counts, the line, the estimate of the time left, and
the two ways a person sees it — a live line on a terminal, log lines and a heartbeat without one.
Fast: no Prefect server, no Dask (the flows tests check it in real runs)."""

from __future__ import annotations

import io
import logging
import time

from rich.console import Console

from oiflow.flows import progress as P


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _run(progress: P.Progress, clock: Clock) -> None:
    """4 reduce units (1 up to date), then a calibrate unit: 10 s per processed unit."""
    progress.unit(P.UP_TO_DATE, "reduce", "reduce n1/obs0")
    for k in (1, 2, 3):
        progress.unit(P.ADDED, "reduce", f"reduce n1/obs{k}")
    for k in (1, 2, 3):
        progress.unit(P.STARTED, "reduce")
    clock.t += 10
    progress.unit(P.DONE, "reduce", "reduce n1/obs1", 9.5)
    clock.t += 10
    progress.unit(P.FAILED, "reduce", "reduce n1/obs2", 1.0, "ReductionError: no frames")


def test_counts_line_and_estimate_of_the_time_left():
    clock = Clock()
    p = P.Progress("reprocess-archive", clock=clock)
    assert p.line() == "planning… · 0 s elapsed"  # no unit known yet
    _run(p, clock)
    c = p.snapshot()["reduce"]
    assert (c.total, c.up_to_date, c.done, c.failed, c.running, c.settled) == (4, 1, 1, 1, 1, 3)
    # 2 units processed in the 20 s since the first one started: 10 s each; 1 left
    assert p.eta() == 10.0
    assert p.line() == "reduce 3/4 (1 up to date, 1 failed, 1 running) · 20 s elapsed · ETA 10 s"
    # a later stage appears after the earlier one, its units known once added
    p.unit(P.ADDED, "calibrate", "calibrate n1")
    assert p.eta() == 20.0  # 2 units left
    assert p.line().startswith("reduce 3/4 (1 up to date, 1 failed, 1 running) · calibrate 0/1 · 20 s elapsed")
    assert p.fraction() == 3 / 5
    clock.t += 100
    p.unit(P.DONE, "reduce", "reduce n1/obs3", 1.0)
    p.unit(P.STARTED, "calibrate")
    p.unit(P.DONE, "calibrate", "calibrate n1", 1.0)
    assert p.line() == "reduce 4/4 (1 up to date, 1 failed) · calibrate 1/1 · 2:00 elapsed"  # no ETA when done
    assert p.fraction() == 1.0


def test_an_unknown_event_is_an_error():
    import pytest

    with pytest.raises(ValueError, match="unknown progress event"):
        P.Progress("x").unit("finished", "reduce")


def test_terminal_shows_a_live_line_and_the_failures_above_it():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=200, color_system=None)
    clock = Clock()
    for verbose in (False, True):
        out.seek(0)
        out.truncate()
        p = P.Progress("l0-to-l3", [P.TerminalReporter(console, verbose=verbose, refresh_per_second=50)], clock=clock)
        p.start()
        _run(p, clock)
        time.sleep(0.1)  # a refresh of the live display
        p.stop()
        text = out.getvalue()
        assert "\x1b[" in text  # cursor movements: a line redrawn in place
        lines = [ln for ln in text.replace("\r", "\n").split("\n") if ln.strip()]
        assert any("✗ reduce n1/obs2: failed in 1.0 s: ReductionError: no frames" in ln for ln in lines)
        assert any("✓ reduce n1/obs1: done in 9.5 s" in ln for ln in lines) == verbose  # -v: every unit
        final = "l0-to-l3: reduce 3/4 (1 up to date, 1 failed, 1 running)"
        assert final in text.rsplit("✗", 1)[-1]  # the live line is drawn again below the failure


def test_without_a_terminal_one_line_per_finished_unit_and_a_heartbeat(caplog):
    logger = logging.getLogger("oiflow.test-progress")
    clock = Clock()
    with caplog.at_level(logging.INFO, logger=logger.name):
        p = P.Progress("reprocess-archive", [P.LogReporter(logger, heartbeat_s=0.05)], clock=clock)
        p.start()
        _run(p, clock)
        time.sleep(0.3)  # several heartbeats while a unit runs
        p.stop()
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    units = [m for m in messages if ": done" in m[1] or ": failed" in m[1]]
    assert units == [(logging.INFO, "reduce n1/obs1: done in 9.5 s (reduce 2/4)"),
                     (logging.WARNING, "reduce n1/obs2: failed in 1.0 s: ReductionError: no frames (reduce 3/4)")]
    beats = [m for lvl, m in messages if m.startswith("reprocess-archive: reduce 3/4")]
    assert len(beats) >= 3  # heartbeats, then the final line at stop
    assert messages[-1][1] == "reprocess-archive: reduce 3/4 (1 up to date, 1 failed, 1 running) · 20 s elapsed · ETA 10 s"


def test_the_process_reporter_replaces_the_run_logger_outside_a_flow_run():
    r = P.LogReporter(logging.getLogger("x"))
    assert P.flow_reporters(in_flow_run=False) == []
    with P.reporting(r):
        assert P.flow_reporters(in_flow_run=False) == [r]
    assert P.flow_reporters(in_flow_run=False) == []


def test_log_lines_written_while_the_live_line_shows_go_above_it(monkeypatch):
    """-v on a terminal: the root logger's lines (Prefect's flow-run lines) do not break the line."""
    import sys

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    handler = logging.StreamHandler(sys.stderr)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        p = P.Progress("l0-to-l3", [P.TerminalReporter(console, refresh_per_second=50)])
        p.start()
        logging.getLogger("prefect.flow_runs").warning("Beginning flow run 'x'")
        p.stop()
        logging.getLogger("prefect.flow_runs").warning("after the run")
    finally:
        root.removeHandler(handler)
    assert "Beginning flow run 'x'" in out.getvalue()  # printed by the console, above the live line
    assert sys.stderr.getvalue() == "after the run\n"  # the handler's own stream again afterwards


def test_oiflow_warnings_reach_stderr_after_prefect_takes_the_root_logger():
    """A lost worker job's warning (oiflow.cluster) is shown by `oiflow run`/`reprocess` without
    -v: Prefect's logging set-up gives the root logger its console handler, which shows only what
    --debug asks for; oiflow's records have their own handler (INFO only with -v)."""
    import subprocess
    import sys

    code = ("import logging, sys\n"
            "from oiflow.cli import pipeline_cmds\n"
            "pipeline_cmds._reporter(int(sys.argv[1]))\n"
            "pipeline_cmds._flows('run')\n"
            "from prefect.logging.configuration import setup_logging\n"
            "setup_logging(incremental=False)\n"
            "log = logging.getLogger('oiflow.cluster')\n"
            "log.warning('worker job 4 (oiflow-worker-0) lost its workers: submitting a replacement')\n"
            "log.info('a detail')\n")
    for verbose, detail in ((0, False), (1, True)):
        out = subprocess.run([sys.executable, "-c", code, str(verbose)], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        lines = [ln for ln in out.stderr.splitlines() if "oiflow.cluster" in ln]
        assert len([ln for ln in lines if "WARNING oiflow.cluster: worker job 4 (oiflow-worker-0) lost its workers" in ln]) == 1
        assert any("INFO oiflow.cluster: a detail" in ln for ln in lines) is detail


def test_the_progress_artifact_is_created_without_holding_up_the_run(monkeypatch):
    """The artifact's creation (an API call the temporary server answers slowly at a run's start)
    runs in a thread: start() returns at once, units finishing meanwhile update nothing, and
    stop() waits for the artifact and writes the run's last state to it."""
    import threading

    import prefect.artifacts as PA

    created, updates = threading.Event(), []
    release = threading.Event()

    def slow_create(progress, key, description):
        release.wait(5)
        created.set()
        return "artifact-1"

    monkeypatch.setattr(PA, "create_progress_artifact", slow_create)
    monkeypatch.setattr(PA, "update_progress_artifact",
                        lambda artifact_id, progress, description: updates.append((artifact_id, progress, description)))
    clock = Clock()
    p = P.Progress("l0-to-l3", clock=clock)
    reporter = P.ArtifactReporter(every_s=5.0)
    t0 = time.perf_counter()
    reporter.start(p)
    assert time.perf_counter() - t0 < 0.5 and not created.is_set()
    _run(p, clock)
    reporter.unit_finished(p, "reduce", "reduce n1/obs1", P.DONE, 9.5, None)
    assert updates == []  # not created yet: nothing to update
    release.set()
    reporter.stop(p)
    assert created.is_set() and reporter.artifact_id == "artifact-1"
    assert updates == [("artifact-1", 75.0, f"l0-to-l3: {p.line()}")]


def test_a_failed_progress_artifact_never_fails_the_run(monkeypatch, caplog):
    import prefect.artifacts as PA

    def broken(**kw):
        raise RuntimeError("no API")

    monkeypatch.setattr(PA, "create_progress_artifact", broken)
    p = P.Progress("l0-to-l3", clock=Clock())
    reporter = P.ArtifactReporter()
    with caplog.at_level(logging.INFO, logger="oiflow.flows.progress"):
        reporter.start(p)
        reporter.stop(p)
    assert reporter.artifact_id is None
    assert "no progress artifact in the Prefect UI: no API" in caplog.text
