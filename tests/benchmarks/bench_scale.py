"""Scale simulation toward archive size: simulated raw nights (tests/scale_sim.py: 16
observations each, 20 units a night) through the real planning, Scheduler, catalogue and
registration, their stage functions replaced by units of calibrated duration
(:func:`oiflow.flows.stages.replaced_stage_tasks`: each unit sleeps, then writes small products).

1. **Full size** (``OIFLOW_SCALE_NIGHTS``, 1,000 nights: 20,000 units):
   a. the first run — ``reprocess_archive`` on 8 workers, units of 0 s as plain Dask tasks: the
      throughput ceiling of the flow at that size and its CPU per unit;
   b. the idempotent rescan of the unchanged archive: what ``oiflow reprocess`` does before
      starting anything (:class:`oiflow.flows.run.IdleCheck`: the plan walked, every unit checked in the
      catalogue; goal ≤ 30 s), and the same as a flow run on a running server (its cluster's
      start included);
   c. the catalogue's size and ``oiflow products`` at that size: :meth:`Catalog.products` with
      filters (goal ≤ 0.5 s for a filtered query), and the command itself (Python's start
      included).
2. **Worker sweep**: 1, 8, 16 and 32 workers, units as plain Dask tasks and as Prefect task
   runs, units of ``UNIT_S`` = 1 s on a subset of ``SWEEP_UNITS_PER_WORKER`` × workers units
   (2 × workers nights: every run's ideal is 40 s; ``OIFLOW_SCALE_FULL=1``: 160 units per
   worker, 8 × workers nights). Per run: throughput (units/s), efficiency = ideal / measured
   with ideal = units × UNIT_S ÷ workers — measured over the units phase (first submission to
   last result; goal ≥ 90 % at 32 workers as Dask tasks) and over the whole flow run (its
   cluster's start and planning included) — and the CPU per unit of the flow process (its main
   thread: planning, scheduling, catalogue; Dask's scheduler, nannies and client; Prefect's
   client threads), of the Prefect server and of the workers (goal with Prefect task runs:
   ≤ 30 ms per unit in the server and the flow process together).

The machine is shared: the load (``os.getloadavg``) is recorded before and after each part.
``OIFLOW_SCALE_NIGHTS`` (1000) and ``OIFLOW_SCALE_WORKERS`` (1,8,16,32) make a smaller run.

Run: .venv/bin/python -m pytest -m benchmark tests/benchmarks/bench_scale.py -s
Writes tests/artifacts/bench_scale.json.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from oiflow.flows import runtime  # noqa: E402

runtime.configure()

import scale_sim  # noqa: E402
from cpumeter import CpuMeter  # noqa: E402
from oiflow.catalog import Catalog  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
N_NIGHTS = int(os.environ.get("OIFLOW_SCALE_NIGHTS", "1000"))
N_OBS = 16
FULL = os.environ.get("OIFLOW_SCALE_FULL", "0") == "1"
UNIT_S = 1.0
WORKERS = tuple(int(w) for w in os.environ.get("OIFLOW_SCALE_WORKERS", "1,8,16,32").split(","))
SWEEP_UNITS_PER_WORKER = 160 if FULL else 40
FIRST_RUN_WORKERS = 8


def ideal_seconds(units: int, unit_s: float, workers: int) -> float:
    """The shortest time ``units`` units of ``unit_s`` take on ``workers`` workers."""
    return units * unit_s / workers


def efficiency(units: int, unit_s: float, workers: int, seconds: float) -> float:
    """ideal_seconds / measured seconds (1.0: no time lost to orchestration)."""
    return ideal_seconds(units, unit_s, workers) / seconds


def sweep_nights(workers: int, units_per_worker: int = SWEEP_UNITS_PER_WORKER) -> int:
    """Nights of the sweep's subset for ``workers`` (at least ``units_per_worker`` units each)."""
    return math.ceil(workers * units_per_worker / scale_sim.units_per_night(N_OBS))


#: progress reported as the command line does without a terminal (a line per unit), to no output
_DISCARDED = logging.getLogger("oiflow.bench-scale.progress")
_DISCARDED.addHandler(logging.NullHandler())
_DISCARDED.propagate = False


def run_archive(archive: Path, root: Path, *, workers: int, unit_runs: str, unit_s: float,
                meter: CpuMeter) -> dict:
    """``reprocess_archive`` of ``archive`` into ``root`` with simulated units of ``unit_s``;
    the figures of the run (see the module docstring). A Prefect API must be up."""
    from oiflow.flows.progress import LogReporter, reporting
    from oiflow.flows.reprocess import reprocess_archive
    from oiflow.flows.runners import profile_of, task_runner
    from oiflow.flows.stages import replaced_stage_tasks
    from oiflow.flows.summary import RunSummary

    config = scale_sim.config(root, n_workers=workers, unit_runs=unit_runs)
    load = os.getloadavg()[0]
    before = meter.sample()
    t0 = time.perf_counter()
    with replaced_stage_tasks(scale_sim.sim_tasks(unit_s)), reporting(LogReporter(_DISCARDED)):
        state = reprocess_archive.with_options(task_runner=task_runner(profile_of(config.cluster)))(
            root=archive, config=config, return_state=True)
    wall = time.perf_counter() - t0
    time.sleep(0.3)  # the last samples of the workers
    cpu = meter.since(before)
    summary = RunSummary.from_state_data(state.result(raise_on_failure=False))
    assert state.is_completed(), state.message
    units = len(summary.processed)
    out = {"workers": workers, "unit_runs": unit_runs, "unit_s": unit_s, "units": units,
           "skipped": len(summary.skipped), "products": len(summary.products), "flow_s": round(wall, 2),
           "units_phase_s": round(summary.units_seconds, 2), "planning_and_summary_s": round(summary.seconds, 2),
           "load_1min_before": load, "load_1min_after": os.getloadavg()[0], "cpu_s": cpu}
    if units:
        out["throughput_units_per_s"] = round(units / summary.units_seconds, 2)
        out["cpu_per_unit_ms"] = {k: round(1000 * v / units, 2) for k, v in cpu.items()}
        out["cpu_per_unit_ms"]["prefect_server_and_flow_process"] = round(
            1000 * (cpu.get("prefect_server", 0.0) + cpu.get("flow_process", 0.0)) / units, 2)
        if unit_s > 0:
            out["ideal_s"] = round(ideal_seconds(units, unit_s, workers), 2)
            out["efficiency_units_phase"] = round(efficiency(units, unit_s, workers, summary.units_seconds), 3)
            out["efficiency_whole_run"] = round(efficiency(units, unit_s, workers, wall), 3)
    return out


def rescan_without_prefect(archive: Path, root: Path) -> dict:
    """What ``oiflow reprocess`` does with an unchanged archive before starting anything."""
    from oiflow.flows.plans import archive_build
    from oiflow.flows.run import IdleCheck

    config = scale_sim.config(root, n_workers=FIRST_RUN_WORKERS)
    t0 = time.perf_counter()
    nights, build = archive_build(archive, config)
    summary = IdleCheck("reprocess-archive", config, build, {"report_unmatched": bool(nights)}).summary()
    seconds = time.perf_counter() - t0
    assert summary is not None, "the rescan found work in an unchanged archive"
    return {"seconds": round(seconds, 2), "units_up_to_date": len(summary.skipped), "products": len(summary.products),
            "load_1min_after": os.getloadavg()[0]}


def catalogue_size(root: Path) -> dict:
    import sqlite3

    db = root / "catalog.sqlite"
    with sqlite3.connect(db) as conn:
        rows = {t: conn.execute(f"select count(*) from {t}").fetchone()[0]  # noqa: S608 - table names of ours
                for t in ("granule", "stage_run", "input_file", "planned_directory")}
    return {"file_mb": round(db.stat().st_size / 1e6, 1), "rows": rows}


def _best(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = math.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def products_queries(root: Path) -> dict:
    """Catalog.products with filters (best of 3, the catalogue open) and the command."""
    night = "2023-03-15"  # the first simulated night (the demo's date)
    queries = {"target SCI_BINARY, level 3": dict(target="SCI_BINARY", level=3),
               "target SCI_DISK, level 2": dict(target="SCI_DISK", level=2),
               f"night {night}": dict(night=night), "verdict not-ok": dict(verdict="not-ok"),
               "everything": {}}
    out = {}
    with Catalog.for_root(root) as cat:
        for name, kw in queries.items():
            seconds, rows = _best(lambda: cat.products(**kw))
            out[name] = {"seconds": round(seconds, 4), "rows": len(rows)}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for name, args in (("command --target SCI_BINARY --level 3 --json", ["--target", "SCI_BINARY", "--level", "3",
                                                                          "--json"]),
                       (f"command --night {night}", ["--night", night]),
                       ("command python -c pass (Python's start alone)", None)):
        cmd = ([sys.executable, "-m", "oiflow.cli", "products", "--root", str(root), *args] if args is not None
               else [sys.executable, "-c", "pass"])
        seconds, _ = _best(lambda: subprocess.run(cmd, env=env, capture_output=True, check=True, cwd=REPO))
        out[name] = {"seconds": round(seconds, 3)}
    return out


@pytest.mark.benchmark
def test_scale_simulation(tmp_path_factory):
    from prefect.settings import PREFECT_HOME, temporary_settings

    base = tmp_path_factory.mktemp("scale")
    result: dict = {"machine_cpus": os.cpu_count(), "nights": N_NIGHTS, "observations_per_night": N_OBS,
                    "units_per_night": scale_sim.units_per_night(N_OBS), "full_sweep": FULL,
                    "load_1min_at_start": os.getloadavg()[0]}
    t0 = time.perf_counter()
    archive = base / "archive"
    scale_sim.make_archive(archive, N_NIGHTS, N_OBS)
    result["archive_made_s"] = round(time.perf_counter() - t0, 1)
    os.environ["PREFECT_HOME"] = str(base / "prefect-home")
    meter = CpuMeter()
    try:
        with temporary_settings(updates={PREFECT_HOME: str(base / "prefect-home")}):
            with runtime.prefect_api():
                root = base / "products"
                result["first_run"] = run_archive(archive, root, workers=FIRST_RUN_WORKERS, unit_runs="dask",
                                                  unit_s=0.0, meter=meter)
                assert result["first_run"]["units"] == N_NIGHTS * scale_sim.units_per_night(N_OBS)
                result["rescan_command_path"] = rescan_without_prefect(archive, root)
                result["rescan_flow_run"] = run_archive(archive, root, workers=FIRST_RUN_WORKERS, unit_runs="dask",
                                                        unit_s=0.0, meter=meter)
                assert result["rescan_flow_run"]["units"] == 0
                result["catalogue"] = catalogue_size(root)
                result["products_queries"] = products_queries(root)
                sweep = []
                for unit_runs in ("dask", "prefect"):
                    for workers in WORKERS:
                        n = sweep_nights(workers)
                        sub = base / f"sweep-{workers}"
                        if not sub.exists():
                            scale_sim.make_archive(sub, n, N_OBS)
                        sweep.append(run_archive(sub, base / f"sweep-{unit_runs}-{workers}", workers=workers,
                                                 unit_runs=unit_runs, unit_s=UNIT_S, meter=meter))
                        print(json.dumps(sweep[-1]), flush=True)
                result["sweep"] = sweep
    finally:
        meter.close()
    result["load_1min_at_end"] = os.getloadavg()[0]
    at32 = next(r for r in result["sweep"] if r["workers"] == max(WORKERS) and r["unit_runs"] == "dask")
    prefect_cpu = [r["cpu_per_unit_ms"]["prefect_server_and_flow_process"] for r in result["sweep"]
                   if r["unit_runs"] == "prefect"]
    result["goals"] = {
        f"efficiency_{max(WORKERS)}_workers_dask_tasks_units_phase": {"value": at32["efficiency_units_phase"],
                                                                     "goal": ">= 0.90 at 32 workers"},
        "prefect_mode_server_plus_flow_cpu_ms_per_unit_worst": {"value": max(prefect_cpu), "goal": "<= 30"},
        "rescan_s_command_path": {"value": result["rescan_command_path"]["seconds"], "goal": "<= 30"},
        "filtered_products_query_s": {"value": result["products_queries"]["target SCI_BINARY, level 3"]["seconds"],
                                      "goal": "<= 0.5"},
    }
    out = REPO / "tests" / "artifacts"
    out.mkdir(exist_ok=True)
    (out / "bench_scale.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
