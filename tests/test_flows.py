"""Flows on Prefect + Dask: partial failure, idempotent reprocessing, artifacts, kill -9 resume,
a lost Dask worker. Slow (a Prefect server and Dask clusters): run with ``-m slow``; `.ci/run` does.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from oiflow.flows import runtime

runtime.configure()

from astropy.io import fits  # noqa: E402

from flowdata import make_archive  # noqa: E402
from oiflow.catalog import COMPLETED, FAILED, RUNNING, Catalog  # noqa: E402
from oiflow.config import load_config  # noqa: E402
from oiflow.provenance import sha256_file  # noqa: E402

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def _reprocess(archive: Path, root: Path, workers: int = 2):
    from oiflow.flows.reprocess import reprocess_archive
    from oiflow.flows.runners import profile_of, task_runner
    from oiflow.flows.summary import RunSummary

    config = load_config(None, {"input": {"level": 2}, "output": {"root": str(root)},
                                "cluster": {"n_workers": workers}})
    runner = task_runner(profile_of(config.cluster))
    state = reprocess_archive.with_options(task_runner=runner)(root=archive, config=config, return_state=True)
    return state, RunSummary.from_state_data(state.result(raise_on_failure=False))


def _tree_state(root: Path) -> dict[str, tuple[int, str]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, sha256_file(p)) for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_partial_failure_then_idempotent_reprocessing(prefect_api, tmp_path):
    archive, root = tmp_path / "archive", tmp_path / "products"
    nights = make_archive(archive, n_nights=3, files_per_night=2, bad={1: 1})

    state, summary = _reprocess(archive, root)
    assert state.is_failed() and state.message.startswith("partially failed: 1 item(s)")
    assert [Path(f["item"]).name for f in summary.failures] == ["broken_0.fits"]
    assert sorted(summary.processed) == sorted(f"ingest {n.name}" for n in nights)
    assert len(summary.products) == 6  # every good file of every night, the bad night included
    assert sorted({r["night"] for r in summary.products}) == sorted(n.name for n in nights)
    with Catalog.for_root(root) as cat:
        status = {r.unit: r.status for r in cat.runs("ingest")}
    assert status == {nights[0].name: COMPLETED, nights[1].name: FAILED, nights[2].name: COMPLETED}

    # artifacts: a Markdown summary and a products table, in the Prefect API
    from prefect import get_client

    with get_client(sync_client=True) as client:
        artifacts = {a.key: a for a in client.read_artifacts()}
    assert {"oiflow-reprocess-archive-summary", "oiflow-reprocess-archive-products"} <= set(artifacts)
    # the run's progress, as the UI shows it: every unit settled, the last line as its description
    progress = artifacts["oiflow-reprocess-archive-progress"]
    assert progress.type == "progress" and float(progress.data) == 100.0
    assert progress.description.startswith("reprocess-archive: ingest 3/3 (1 failed)")

    # the bad file is fixed (removed): only its night is redone
    (nights[1] / "broken_0.fits").unlink()
    state, summary = _reprocess(archive, root)
    assert state.is_completed(), state.message
    assert summary.processed == [f"ingest {nights[1].name}"]
    assert sorted(summary.skipped) == sorted([f"ingest {nights[0].name}", f"ingest {nights[2].name}"])
    assert len(summary.products) == 6 and summary.failures == []

    # nothing changed: no work and no writes (products, catalogue)
    before = _tree_state(root)
    state, summary = _reprocess(archive, root)
    assert state.is_completed() and summary.processed == [] and len(summary.skipped) == 3
    assert _tree_state(root) == before
    with Catalog.for_root(root) as cat:
        assert len(cat.products()) == 6  # no duplicate granules after three runs


# -- kill -9 and a lost worker: the real command in a subprocess -----------------------------


def _oiflow(args: list[str], home: Path, **kw) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PYTHONPATH=str(REPO), PREFECT_HOME=str(home))
    return subprocess.Popen([sys.executable, "-m", "oiflow.cli", *args], cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _units(root: Path, status: str = COMPLETED) -> set[str]:
    db = root / "catalog.sqlite"
    if not db.exists():
        return set()
    try:
        with Catalog.for_root(root) as cat:
            return {r.unit for r in cat.runs("ingest") if r.status == status}
    except Exception:  # the database is being created
        return set()


def _completed_units(root: Path) -> set[str]:
    return _units(root, COMPLETED)


def _wait_for(cond, proc: subprocess.Popen, timeout: float = 400.0) -> None:
    t0 = time.time()
    while not cond():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the run ended (rc {proc.returncode}) before the condition:\n{out}\n{err}")
        if time.time() - t0 > timeout:
            raise AssertionError("timed out")
        time.sleep(0.1)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the run and what it started (server, workers), by group
    except ProcessLookupError:
        pass
    proc.wait()


def _check_tree(root: Path, n_files: int) -> None:
    assert list(root.rglob("*.tmp")) == []  # no temporary left behind
    products = sorted(root.rglob("*.fits"))
    assert len(products) == n_files
    for p in products:
        with fits.open(p, checksum=True) as hdul:  # raises on a corrupt product
            hdul.verify("exception")
    with Catalog.for_root(root) as cat:
        rows = cat.products()
    assert sorted(r["access_url"] for r in rows) == sorted(str(p.resolve()) for p in products)  # one each


@pytest.fixture(scope="module")
def big_archive(tmp_path_factory):
    """8 nights x 6 files: long enough to be interrupted."""
    archive = tmp_path_factory.mktemp("big") / "archive"
    make_archive(archive, n_nights=8, files_per_night=6, nwave=64)
    return archive


def test_kill_minus_9_then_resume(big_archive, tmp_path):
    root, home = tmp_path / "products", tmp_path / "home"
    args = ["reprocess", str(big_archive), "--level", "2", "--root", str(root), "--workers", "1", "--max-parallel", "1"]
    proc = _oiflow(args, home)
    try:  # killed while a unit runs (not in the few ms between one unit's end and the next one's start)
        _wait_for(lambda: len(_completed_units(root)) >= 2 and _units(root, RUNNING), proc)
    finally:
        _kill_group(proc)
    done_before = _completed_units(root)
    assert 2 <= len(done_before) < 8, "the run was not interrupted midway"
    assert len(_units(root, RUNNING)) == 1, "the kill did not land while a unit ran"
    proc = _oiflow(args, home)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, out + err
    assert "Traceback" not in out + err  # quiet: a normal run shows no tracebacks
    assert f"{8 - len(done_before)} unit(s) processed, {len(done_before)} up to date" in out
    assert len(_completed_units(root)) == 8
    _check_tree(root, 48)
    with Catalog.for_root(root) as cat:
        interrupted = [r for r in cat.runs("ingest") if r.status == FAILED]
    assert len(interrupted) == 1 and "interrupted" in interrupted[0].failures[0]["error"]


def test_lost_dask_worker_is_replaced_and_the_run_completes(big_archive, tmp_path):
    import psutil

    archive = tmp_path / "archive"
    shutil.copytree(big_archive, archive)
    root, home = tmp_path / "products", tmp_path / "home"
    proc = _oiflow(["reprocess", str(archive), "--level", "2", "--root", str(root), "--workers", "2"], home)
    try:
        _wait_for(lambda: len(_completed_units(root)) >= 1, proc)
        workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                   if "spawn_main" in " ".join(p.cmdline())]
        assert len(workers) >= 2, [p.cmdline() for p in psutil.Process(proc.pid).children(recursive=True)]
        workers[0].kill()  # SIGKILL one Dask worker mid-run
        killed_during = len(_completed_units(root))
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    assert killed_during < 8, "the worker was killed after the run had finished"
    assert proc.returncode == 0, out + err
    assert len(_completed_units(root)) == 8
    _check_tree(root, 48)


# -- what a person sees: progress, the idle rerun, the scale benchmark's arithmetic ---------------


def _cli(args: list[str], home: Path, tty: bool = False) -> tuple[int, str, str, float, float]:
    """Run ``oiflow ARGS``; (exit code, stdout, stderr, wall s, CPU s of the command and its
    children). ``tty``: stdout and stderr on a pseudo-terminal (returned as stderr)."""
    import pty
    import resource

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PYTHONPATH=str(REPO), PREFECT_HOME=str(home), COLUMNS="160")
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    if not tty:
        out = subprocess.run([sys.executable, "-m", "oiflow.cli", *args], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=900)
        code, stdout, stderr = out.returncode, out.stdout, out.stderr
    else:
        master, slave = pty.openpty()
        proc = subprocess.Popen([sys.executable, "-m", "oiflow.cli", *args], cwd=REPO, env=env, stdin=slave,
                                stdout=slave, stderr=slave)
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # the other end closed
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=900)
        os.close(master)
        stdout, stderr = "", b"".join(chunks).decode("utf-8", "replace")
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return code, stdout, stderr, wall, cpu


def test_progress_on_a_terminal_and_in_logs_then_an_idle_rerun_without_prefect(tmp_path):
    archive, home = tmp_path / "archive", tmp_path / "home"
    make_archive(archive, n_nights=3, files_per_night=2, bad={1: 1})
    args = ["reprocess", str(archive), "--level", "2", "--workers", "2"]

    # without a terminal: one log line per finished unit on stderr, the summary on stdout
    code, out, err, _, _ = _cli([*args, "--root", str(tmp_path / "p1")], home)
    assert code == 1, out + err  # the broken file
    unit_lines = [ln for ln in err.splitlines() if ": done in " in ln or ": failed in " in ln]
    assert len(unit_lines) == 3, err
    assert any("ingest 2023-12-30: failed in" in ln and "broken_0.fits" in ln for ln in unit_lines)
    progress = [ln for ln in err.splitlines() if "reprocess-archive: " in ln]
    assert "reprocess-archive: ingest 3/3 (1 failed)" in progress[-1]  # the final line, before the summary's
    assert "HTTP Request" not in err and "distributed." not in err and "Traceback" not in out + err
    assert "partially failed: 1 item(s) of 3 unit(s) failed" in out

    # on a terminal: a live line redrawn in place, the failure above it
    code, _, screen, _, _ = _cli([*args, "--root", str(tmp_path / "p2")], home, tty=True)
    assert code == 1, screen
    assert "\x1b[" in screen  # the cursor moved: the line was redrawn
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert "reprocess-archive: ingest 3/3 (1 failed)" in text
    assert "✗ ingest 2023-12-30: failed in" in text

    # -v adds oiflow's details, not the libraries' request-by-request logs
    code, out, err, _, _ = _cli(["-v", *args, "--root", str(tmp_path / "p3")], home)
    assert code == 1
    chatter = [ln for ln in err.splitlines() if "HTTP Request" in ln or re.search(r"distributed\S* - INFO|INFO distributed", ln)]
    assert chatter == []
    assert len([ln for ln in err.splitlines() if ": done in " in ln or ": failed in " in ln]) == 3
    assert "Beginning flow run" in err  # Prefect's own run lines are details -v shows

    # the broken file removed, one rerun does its night; then a rerun with nothing to do starts
    # neither Prefect nor Dask and says what it skipped
    (archive / "2023-12-30" / "broken_0.fits").unlink()
    code, out, err, _, _ = _cli([*args, "--root", str(tmp_path / "p1")], home)
    assert code == 0 and "1 unit(s) processed, 2 up to date" in out, out + err
    code, out, err, wall, cpu = _cli([*args, "--root", str(tmp_path / "p1")], home)
    assert code == 0, out + err
    assert "0 unit(s) processed, 3 up to date, 6 granule(s)" in out
    assert "Prefect not started: every unit was up to date" in out
    assert err.strip() == ""  # no progress: nothing ran
    # the command's whole CPU (its own start included): a temporary server and a Dask cluster cost
    # ~10 s of it; the wall time depends on what else this shared machine runs
    assert cpu < 4.0, (cpu, wall)
    assert wall < 15.0, (cpu, wall)


def _servers_of(home: Path) -> list[int]:
    """Pids of the processes whose PREFECT_HOME is ``home`` (a temporary server left behind)."""
    import psutil

    pids = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.pid != os.getpid() and proc.environ().get("PREFECT_HOME") == str(home):
                pids.append(proc.pid)
        except (psutil.Error, OSError):
            pass
    return pids


def test_oiflow_run_spawns_its_server_alongside_the_plan_check_and_stops_it_unused_when_idle(tmp_path):
    """`oiflow run` spawns Prefect's temporary server before checking its plan (it starts while the
    plan is checked); when every unit is up to date the server is stopped unused, no Dask cluster
    starts, the summary says so, and no process of that server is left."""
    home = tmp_path / "home"
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"input: {{files: [{REPO / 'data-samples/oifits/alfCenA_20160523_1.fits'}], files_level: 2}}\n"
                   f"output: {{root: {tmp_path / 'products'}}}\ncluster: {{n_workers: 1}}\n")
    code, out, err, _, _ = _cli(["run", str(cfg)], home)
    assert code == 0, out + err
    assert "1 unit(s) processed, 0 up to date" in out
    assert "Prefect's temporary server, spawned alongside the plan check, and the Dask cluster ready" in out
    assert _servers_of(home) == []
    code, out, err, wall, cpu = _cli(["run", str(cfg)], home)
    assert code == 0, out + err
    assert "0 unit(s) processed, 1 up to date" in out
    assert ("Prefect's temporary server, spawned alongside the plan check, stopped unused: every unit was up to "
            "date") in out and "no Dask cluster started" in out
    assert err.strip() == ""
    assert _servers_of(home) == []  # stopped, not left running
    assert cpu < 4.0, (cpu, wall)  # the command and the server's first moments (a started server: ~4 s more)


def test_scale_benchmark_arithmetic_on_a_tiny_archive(prefect_api, tmp_path):
    """tests/benchmarks/bench_scale.py on 2 simulated nights of 4 observations (16 units of 0.3 s,
    2 workers): the units it counts are the plan's, the ideal and the efficiency follow from
    them, and the rescan finds the archive unchanged."""
    sys.path.insert(0, str(REPO / "tests" / "benchmarks"))
    import bench_scale
    import scale_sim
    from cpumeter import CpuMeter

    assert bench_scale.ideal_seconds(40, 1.0, 8) == 5.0 and bench_scale.efficiency(40, 1.0, 8, 10.0) == 0.5
    archive, root = tmp_path / "archive", tmp_path / "products"
    scale_sim.make_archive(archive, 2, n_obs=4)
    meter = CpuMeter()
    try:
        r = bench_scale.run_archive(archive, root, workers=2, unit_runs="dask", unit_s=0.3, meter=meter)
    finally:
        meter.close()
    per_night = scale_sim.units_per_night(4)
    assert per_night == 8 and r["units"] == 2 * per_night and r["skipped"] == 0
    assert r["ideal_s"] == round(16 * 0.3 / 2, 2) == 2.4
    # the report rounds the units phase to 0.01 s and the efficiency to 0.001: the efficiency lies
    # within what the units phase's rounding interval gives, give or take its own rounding
    u = r["units_phase_s"]
    assert 2.4 / (u + 0.005) - 5e-4 <= r["efficiency_units_phase"] <= 2.4 / (u - 0.005) + 5e-4, r
    assert 0 < r["efficiency_whole_run"] < r["efficiency_units_phase"] <= 1.0  # the units take their 0.3 s
    assert r["units_phase_s"] >= 2.4 and r["flow_s"] > r["units_phase_s"]
    assert r["cpu_s"]["workers"] > 0 and r["cpu_s"]["flow_process"] > 0
    # every product registered: 4 L1 + 2 L2 + 3 L3 per night; granules as the catalogue holds them
    assert r["products"] == 2 * (4 + 2 + 3)
    size = bench_scale.catalogue_size(root)
    assert size["rows"]["granule"] == 18 and size["rows"]["planned_directory"] == 2
    assert size["rows"]["stage_run"] == 16
    rescan = bench_scale.rescan_without_prefect(archive, root)
    assert rescan["units_up_to_date"] == 16 and rescan["products"] == 18
