"""Flows on Prefect + Dask: partial failure, idempotent reprocessing, artifacts, kill -9 resume,
a lost Dask worker. Slow (a Prefect server and Dask clusters): run with ``-m slow``; `.ci/run` does.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows import runtime

runtime.configure()

from astropy.io import fits  # noqa: E402

from flowdata import make_archive  # noqa: E402
from oiflow.catalog import COMPLETED, FAILED, RUNNING, Catalog  # noqa: E402
from oiflow.config import load_config  # noqa: E402
from oiflow.provenance import sha256_file  # noqa: E402

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def _reprocess(archive: Path, root: Path, workers: int = 2):
    from flows.reprocess import reprocess_archive
    from flows.runners import profile_of, task_runner
    from flows.summary import RunSummary

    config = load_config(None, {"input": {"level": 2}, "output": {"root": str(root)},
                                "cluster": {"n_workers": workers}})
    runner = task_runner(profile_of(config.cluster))
    state = reprocess_archive.with_options(task_runner=runner)(root=archive, config=config, return_state=True)
    return state, RunSummary.from_dict(state.result(raise_on_failure=False))


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
        keys = {a.key for a in client.read_artifacts()}
    assert {"oiflow-reprocess-archive-summary", "oiflow-reprocess-archive-products"} <= keys

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
