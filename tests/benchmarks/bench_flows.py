"""Benchmark of the orchestration: Prefect + Dask overhead over the stage functions called
directly, and the speed-up from 1 to 2 Dask workers on a multi-night reprocessing.

Run: PYTHONPATH=. python -m pytest -m benchmark tests/benchmarks/bench_flows.py -s
Writes tests/artifacts/bench_flows.json. The stage used is ingest (the reduce/calibrate/fit/image
stages plug into the same flows later); each night is one coarse task.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows import runtime  # noqa: E402

runtime.configure()

from flowdata import make_file  # noqa: E402
from oiflow.catalog import Catalog  # noqa: E402
from oiflow.config import load_config  # noqa: E402
from oiflow.ingest import archive_units, ingest_unit  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
N_NIGHTS, FILES_PER_NIGHT = 12, 24


def _archive(root: Path) -> Path:
    """N_NIGHTS nights of FILES_PER_NIGHT GRAVITY-sized files (4 telescopes, 1000 channels)."""
    templates = [make_file(root / f"t{i}.fits", target=f"HD_{i}", mjd=60310.1 + 0.01 * i, nwave=1000, seed=i)
                 for i in range(4)]
    archive = root / "archive"
    for k in range(N_NIGHTS):
        d = archive / f"2024-01-{k + 1:02d}"
        d.mkdir(parents=True)
        for i in range(FILES_PER_NIGHT):
            shutil.copyfile(templates[i % 4], d / f"obs_{i:02d}.fits")
    return archive


def _flow(archive: Path, root: Path, workers: int):
    from flows.reprocess import reprocess_archive
    from flows.runners import profile_of, task_runner
    from flows.summary import RunSummary

    config = load_config(None, {"input": {"level": 2}, "output": {"root": str(root)}, "cluster": {"n_workers": workers}})
    t0 = time.perf_counter()
    state = reprocess_archive.with_options(task_runner=task_runner(profile_of(config.cluster)))(
        root=archive, config=config, return_state=True)
    wall = time.perf_counter() - t0
    summary = RunSummary.from_dict(state.result(raise_on_failure=False))
    assert state.is_completed() and len(summary.processed) == N_NIGHTS
    return wall, summary


@pytest.mark.benchmark
def test_orchestration_overhead_and_worker_speedup(tmp_path):
    from prefect.settings import PREFECT_HOME, temporary_settings

    archive = _archive(tmp_path)
    # the stage functions called directly, in this process (plan + ingest of every night)
    t0 = time.perf_counter()
    with Catalog.for_root(tmp_path / "direct") as cat:
        units = archive_units(archive, tmp_path / "direct", 2, cat)
        for u in units:
            ingest_unit(u)
    direct = time.perf_counter() - t0

    os.environ["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    with temporary_settings(updates={PREFECT_HOME: str(tmp_path / "prefect-home")}):
        t0 = time.perf_counter()
        with runtime.prefect_api():
            server_start = time.perf_counter() - t0
            wall1, s1 = _flow(archive, tmp_path / "w1", 1)
            wall2, s2 = _flow(archive, tmp_path / "w2", 2)
    result = {
        "machine_cpus": os.cpu_count(), "nights": N_NIGHTS, "files_per_night": FILES_PER_NIGHT,
        "direct_s": direct, "server_start_s": server_start,
        "flow_1_worker_s": wall1, "flow_2_workers_s": wall2,
        "units_phase_1_worker_s": s1.units_seconds, "units_phase_2_workers_s": s2.units_seconds,
        "stage_time_in_tasks_1_worker_s": s1.stage_seconds,
        "overhead_1_worker_s": wall1 - direct, "overhead_ratio_1_worker": wall1 / direct,
        "speedup_flow_1_to_2": wall1 / wall2, "speedup_units_phase_1_to_2": s1.units_seconds / s2.units_seconds,
    }
    out = REPO / "tests" / "artifacts"
    out.mkdir(exist_ok=True)
    (out / "bench_flows.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    assert s1.products and len(s1.products) == len(s2.products) == N_NIGHTS * FILES_PER_NIGHT
