"""Benchmark of the native reducer: throughput on one core against reading the same files.

A simulated night of 20 observations × 100 frames × 24 outputs × 8 channels (+ its calibration
set) is reduced with ``reduce_night`` (plan, P2VM calibration, 20 L1 OIFITS written). The
baseline, measured in the same process, is reading the same raw files with astropy (every HDU's
data loaded). Reported: wall times (best of ``--repeat``), frames/s, MB/s, the ratio
reduction/read (goal ≤ 3), the ratio to reading the files with the reducer's own reader
(``read_raw``: astropy behind the strict structure checks of ``oiflow.oifits.fitsfile``), the
same ratio for the in-memory part of the reduction (reading + P2VM calibration and inversion +
estimators, without geometry and writing the L1 files), the time spent writing the L1 files
alone (cfitsio through ``fitsio``), and peak memory (tracemalloc for the reduction's
Python/numpy allocations, and the process's max RSS).

Run (single-threaded BLAS, as the numbers are meant for one core)::

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python tests/benchmarks/bench_reduce.py
    python -m pytest -m benchmark tests/benchmarks/bench_reduce.py -s
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SINGLE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _night_config(n_obs: int, n_frames: int, n_channels: int):
    import yaml

    from oiflow.simulate.night import NightConfig

    d = yaml.safe_load((REPO / "configs" / "night-demo.yaml").read_text())
    base = d["sequence"]["order"][:4]
    d["sequence"]["order"] = [base[k % 4] for k in range(n_obs)]
    d["sequence"]["slot_min"] = 6
    d["instrument"].update({"n_frames": n_frames, "n_channels": n_channels, "mode": f"H-{n_channels}CH"})
    return NightConfig.validate_dict(d)


def _read_all(paths):
    import numpy as np
    from astropy.io import fits

    total = 0
    for p in paths:
        with fits.open(p, memmap=False) as hdul:
            for h in hdul:
                if h.data is not None:
                    total += np.asarray(h.data).nbytes if h.is_image else len(h.data)
            np.asarray(hdul["IMAGING_DATA"].data, dtype=np.float64)
    return total


def _reduce_in_memory(raw_dir):
    from oiflow.reduce import plan_night
    from oiflow.reduce.estimators import compute_observables
    from oiflow.reduce.p2vm import calibrate_p2vm, invert_frames
    from oiflow.reduce.raw_reader import read_raw

    plan = plan_night(raw_dir)
    obs = plan.observations
    cal = calibrate_p2vm(plan.calibration_for(obs[0]), obs[0].mjd)
    for o in obs:
        compute_observables(invert_frames(read_raw(o.path, o.info).frames, cal), nboot=50)


def run(n_obs=20, n_frames=100, n_channels=8, repeat=3) -> dict:
    import resource
    import tracemalloc

    from oiflow.config import ReduceConfig
    from oiflow.reduce import plan_night, reduce_night
    from oiflow.simulate.night import simulate_night

    work = Path(tempfile.mkdtemp(prefix="oiflow-bench-"))
    raw = work / "raw"
    simulate_night(_night_config(n_obs, n_frames, n_channels), raw)
    plan = plan_night(raw)
    cal_files = plan.calibrations[plan.observations[0].setup].files()
    obj_files = [o.path for o in plan.observations]
    files = cal_files + obj_files
    nbytes = sum(p.stat().st_size for p in files)
    frames = n_obs * n_frames

    def best(fn):
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    t_read = best(lambda: _read_all(files))
    from oiflow.reduce.raw_reader import read_raw

    t_read_raw = best(lambda: [read_raw(p) for p in files])  # the reducer's own reader (astropy, strict)
    t_mem = best(lambda: _reduce_in_memory(raw))
    out = work / "L1"
    t_red = best(lambda: reduce_night(raw, out, ReduceConfig()))
    from oiflow.oifits import read_oifits, write_oifits

    l1 = [read_oifits(p) for p in sorted(out.glob("*.fits"))]
    t_write = best(lambda: [write_oifits(oi, work / "rewrite.fits") for oi in l1])
    tracemalloc.start()
    reduce_night(raw, work / "L1b", ReduceConfig())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    res = {
        "night": f"{n_obs} obs x {n_frames} frames x 24 outputs x {n_channels} channels (+{len(cal_files)} calibration files)",
        "raw_MB": nbytes / 1e6,
        "read_s": t_read,
        "reduce_night_s": t_red,
        "reduce_in_memory_s": t_mem,
        "ratio_reduce_over_read": t_red / t_read,
        "ratio_in_memory_over_read": t_mem / t_read,
        "read_raw_s": t_read_raw,  # the same files read by the reducer's read_raw (astropy + structure checks)
        "ratio_reduce_over_read_raw": t_red / t_read_raw,
        "write_l1_files_s": t_write,  # writing the 20 L1 OIFITS alone (cfitsio), part of reduce_night_s
        "reduce_frames_per_s": frames / t_red,
        "reduce_MB_per_s": nbytes / 1e6 / t_red,
        "read_MB_per_s": nbytes / 1e6 / t_read,
        "in_memory_frames_per_s": frames / t_mem,
        "tracemalloc_peak_MB": peak / 1e6,
        "max_rss_MB": maxrss_kb / 1e3,
        "threads": {k: os.environ.get(k) for k in SINGLE_THREAD},
    }
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return res


@pytest.mark.benchmark
def test_reduction_throughput_against_reading():
    """Runs the benchmark in a single-threaded subprocess and prints the figures."""
    env = dict(os.environ, **SINGLE_THREAD, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, __file__, "--json"], env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(res, indent=2))
    assert res["reduce_frames_per_s"] > 0 and res["read_s"] > 0
    # the goal of the issue (reduction ≤ 3 × reading) is reported, see the README for the figures
    res["goal_met"] = res["ratio_reduce_over_read"] <= 3.0


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--obs", type=int, default=20)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    sys.path.insert(0, str(REPO))
    r = run(a.obs, a.frames, a.channels, a.repeat)
    if a.json:
        print(json.dumps(r))
    else:
        for k, v in r.items():
            print(f"{k:28s} {v:.4g}" if isinstance(v, float) else f"{k:28s} {v}")
