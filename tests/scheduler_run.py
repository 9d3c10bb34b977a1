"""Helpers of the live-scheduler tests (tests/test_scheduler_*.py) and the wheel test: a small
raw archive and its run configuration, `oiflow reprocess` in a subprocess, waiting on it, the
checks of its products, and a virtualenv holding the built wheel.

The scheduler itself is started by ``.ci/slurm.sh`` / ``.ci/oar.sh``. In CI (``CI`` set) a
missing scheduler fails the test; elsewhere it skips with the scheduler's name.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
#: 20 small raw nights (140 units): a run long enough (tens of seconds on 2 one-core workers)
#: for a worker job to be cancelled, replaced and joined while work remains
NIGHTS = tuple(f"2023-03-{day:02d}" for day in range(1, 21))
UNITS_PER_NIGHT = 7  # 5 observations reduced, the night's calibration, the SCI_DISK fit
GRANULES_PER_NIGHT = {1: 5, 2: 1, 3: 1}  # L1 observations, the SCI_DISK L2, its L3 fit
#: the worker-loss grace of the flow's Dask cluster in these runs (15 s by default): a job
#: cancelled mid-run is replaced within a few seconds, while the run still has work for it
LOST_WORKER_TIMEOUT = "3s"


def require_scheduler(name: str, problem: str | None) -> None:
    """Fail (in CI) or skip (elsewhere) when ``problem`` says the scheduler is not usable."""
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{name} scheduler not usable in CI: {problem}")
    pytest.skip(f"no usable {name} scheduler here ({problem}); start one with .ci/{name.lower()}.sh")


def raw_archive(path: Path) -> Path:
    """One small raw night per date of :data:`NIGHTS` under ``path/n<k>``."""
    from night_factory import small_raw_night

    for k, date in enumerate(NIGHTS):
        small_raw_night(path / f"n{k + 1}", date, k + 1)
    return path


def run_config(work: Path) -> Path:
    """The run configuration (calibrator diameters, the uniform-disk fit of SCI_DISK), with its
    inputs copied into ``work`` (a job user may not be able to read the repository)."""
    shutil.copy(REPO / "data-samples" / "calibrators.csv", work / "calibrators.csv")
    shutil.copy(REPO / "configs" / "models" / "ud.yaml", work / "ud.yaml")
    cfg = work / "run.yaml"
    cfg.write_text(yaml.safe_dump({
        "calibrate": {"diameters": str(work / "calibrators.csv")},
        "fit": {"targets": {"SCI_DISK": {"model": str(work / "ud.yaml"), "observables": ["v2"]}}}}))
    return cfg


def flow_env(work: Path) -> dict[str, str]:
    """The environment of the `oiflow reprocess` subprocess: no inherited Prefect settings, its
    own Prefect home and temporary directory under ``work``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DASK_"))}
    env.update(PREFECT_HOME=str(work / "prefect"), TMPDIR=str(work / "tmp"),
               DASK_DISTRIBUTED__DEPLOY__LOST_WORKER_TIMEOUT=LOST_WORKER_TIMEOUT)
    (work / "tmp").mkdir(exist_ok=True)
    return env


def start(cmd: list[str], work: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=work, env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(cond, proc: subprocess.Popen, what: str, timeout: float = 300.0):
    """Poll ``cond()`` until it returns something true (returned); the run ending first fails."""
    t0 = time.time()
    while True:
        value = cond()
        if value:
            return value
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the run ended (rc {proc.returncode}) before {what}:\n{out[-3000:]}\n{err[-5000:]}")
        if time.time() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def eventually(cond, timeout: float = 60.0) -> bool:
    """Whether ``cond()`` becomes true within ``timeout`` seconds (a batch system's state lags)."""
    t0 = time.time()
    while not cond():
        if time.time() - t0 > timeout:
            return False
        time.sleep(0.5)
    return True


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def l1_products(root: Path) -> list[Path]:
    return sorted(root.glob("*/L1/*.fits"))


def registered(worker_log: Path) -> bool:
    """Whether the Dask worker writing ``worker_log`` (its job's stderr) joined the scheduler."""
    return worker_log.is_file() and "Registered to:" in worker_log.read_text(errors="replace")


def check_products(root: Path) -> None:
    """The catalogue lists exactly the products of the archive's nights (one row per file, each
    file present and intact), and each night's fit recovers the simulated 2.0 mas disk."""
    from astropy.io import fits

    from oiflow.catalog import Catalog

    with Catalog.for_root(root) as cat:
        rows = cat.products()
    assert len(rows) == len(NIGHTS) * sum(GRANULES_PER_NIGHT.values())
    for night in NIGHTS:
        levels = [r["calib_level"] for r in rows if r["night"] == night]
        assert {lv: levels.count(lv) for lv in set(levels)} == GRANULES_PER_NIGHT, night
        fit = json.loads((root / "L3" / "SCI_DISK" / night / "fit_ud.json").read_text())
        d = fit["parameters"]["star.diameter"]
        assert fit["success"] is True and abs(d["value"] - 2.0) < 4 * d["error"] + 0.02, (night, d)
    # no verdict other than ok (fits record none in the catalogue yet: None)
    assert {r["verdict"] for r in rows} <= {None, "ok"}
    for r in rows:
        path = Path(r["access_url"])
        assert path.is_file(), path
        if path.suffix == ".fits":
            with fits.open(path, checksum=True) as hdul:
                hdul.verify("exception")
    assert list(root.rglob("*.tmp")) == []


# -- a virtualenv holding the built wheel ------------------------------------------------------

_VENV: Path | None = None


def base_python() -> str:
    """An interpreter every user can execute (the system's), for venvs that a job user runs."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(candidate, os.X_OK):
            out = subprocess.run([candidate, "-c", "import sys; print(sys.version_info >= (3, 11))"],
                                 capture_output=True, text=True)
            if out.stdout.strip() == "True":
                return candidate
    return sys.executable


def wheel_venv() -> Path:
    """A fresh virtualenv (made from :func:`base_python`, readable by every user, outside the
    repository) with oiflow installed from the wheel built from this checkout, with its
    ``hpc`` extra; built once per test session and removed at its end (not in CI)."""
    global _VENV
    if _VENV is not None:
        return _VENV
    base = Path(tempfile.mkdtemp(prefix="oiflow-wheel-"))
    if not os.environ.get("CI"):  # CI's machine goes after the run; removing the ~700 MB took 80 s there
        atexit.register(shutil.rmtree, base, True)
    base.chmod(0o755)
    dist = base / "dist"
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    _check_call([*pip, "wheel", "--no-deps", "-w", str(dist), str(REPO)])
    (wheel,) = dist.glob("oiflow-*.whl")
    venv = base / "venv"
    _check_call([base_python(), "-m", "venv", "--without-pip", str(venv)])
    _check_call([*pip, "--python", str(venv / "bin" / "python"), "install", f"{wheel}[hpc]"])
    _VENV = venv
    return venv


def _check_call(cmd: list[str]) -> None:
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, f"{' '.join(cmd)}: rc {out.returncode}\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
