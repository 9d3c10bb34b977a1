"""A simulated archive toward archive size, and stage tasks of calibrated duration, for the
scale benchmark (tests/benchmarks/bench_scale.py) and its tests.

**Nights** (:func:`make_archive`): the raw files of the demo night (data-samples/night-sim: a
DARK, 4 FLATs and 6 P2VM scans of setup H-6CH, observations of SCI_DISK, SCI_BINARY and two
calibrators), headers only — no frames: no stage reads them, the real planning
(:func:`oiflow.work.reduce.reduce_units`) classifies them — dated one day apart, with
``n_obs`` observations per night (the demo's sequence repeated). Each night plans into
``n_obs`` reduce units, one calibrate unit and the configured fits and images (:func:`config`:
SCI_DISK and SCI_BINARY fitted, SCI_BINARY imaged): ``n_obs + 4`` units.

**Stage tasks** (:func:`sim_tasks`): for :func:`oiflow.flows.stages.replaced_stage_tasks`. Each unit
sleeps ``seconds`` — a worker that waits costs no core, so 2 cores host 32 workers — and then
writes small products with the granules the next stage's planning needs: reduce one L1 file per
observation (its target and category inside), calibrate one L2 file per science target of the
night, fit and image one L3 file each (verdict ok). Everything else — the planning, the
Scheduler, the catalogue, the registration, the Prefect task runs or Dask tasks — is the real
pipeline's.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

from astropy.io import fits

from oiflow.archive import UnitResult, WorkUnit
from oiflow.catalog import ProductRecord
from oiflow.config import RunConfig, load_config

REPO = Path(__file__).resolve().parents[1]
DEMO_NIGHT = REPO / "data-samples" / "night-sim"
CALIBRATION_TYPES = ("DARK", "FLAT", "P2VM")

#: fits and images configured per night (see the module docstring)
FIT_TARGETS = ("SCI_DISK", "SCI_BINARY")
IMAGE_TARGETS = ("SCI_BINARY",)


def units_per_night(n_obs: int) -> int:
    return n_obs + 1 + len(FIT_TARGETS) + len(IMAGE_TARGETS)


@functools.lru_cache(maxsize=1)
def _demo_headers() -> tuple[list[tuple[str, fits.Header]], list[fits.Header]]:
    """(calibration file name, header) and the observation headers of the demo night, in time order."""
    cals, obs = [], []
    for p in sorted(DEMO_NIGHT.glob("*.fits")):
        h = fits.getheader(p, 0)
        if str(h.get("HIERARCH ESO DPR TYPE", "")).strip() in CALIBRATION_TYPES:
            cals.append((p.name, h))
        else:
            obs.append(h)
    return cals, sorted(obs, key=lambda h: h["MJD-OBS"])


def make_archive(root: Path, n_nights: int, n_obs: int = 16, first_mjd_offset: int = 0) -> list[Path]:
    """``root/night_NNNN/*.fits``: ``n_nights`` header-only raw nights (module docstring).
    Returns the night directories."""
    cals, obs = _demo_headers()
    nights = []
    for k in range(n_nights):
        d = Path(root) / f"night_{k:04d}"
        d.mkdir(parents=True, exist_ok=True)
        shift = float(k + first_mjd_offset)
        for name, h in cals:
            _write_header(d / name, h, shift, 0.0)
        for i in range(n_obs):
            h = obs[i % len(obs)]
            step = (i // len(obs)) * 0.02  # a later pass of the sequence, 30 min on
            target = str(h["OBJECT"]).strip()
            _write_header(d / f"SIMABCD_OBS{i + 1:03d}_{target}.fits", h, shift, step)
        nights.append(d)
    return nights


def _write_header(path: Path, header: fits.Header, shift_days: float, step_days: float) -> None:
    h = header.copy()
    h["MJD-OBS"] = float(h["MJD-OBS"]) + shift_days + step_days
    h["ARCFILE"] = path.name
    fits.PrimaryHDU(header=h).writeto(path, overwrite=True)


def config(root: Path, *, n_workers: int, unit_runs: str = "dask", max_parallel: int = 0) -> RunConfig:
    """The run configuration of a simulated archive: the demo's stages and targets (module docstring)."""
    return load_config(None, {
        "output": {"root": str(root)},
        "cluster": {"n_workers": n_workers, "unit_runs": unit_runs, "max_parallel": max_parallel},
        "calibrate": {"diameters": str(REPO / "data-samples/calibrators.csv")},
        "fit": {"targets": {t: {"model": str(REPO / "configs/models/ud.yaml"), "observables": ["v2"]}
                            for t in FIT_TARGETS}},
        "image": {"targets": {t: {"npix": 32, "pixel_size_mas": 0.25, "maxiter": 10} for t in IMAGE_TARGETS}}})


# -- the simulated stage functions ------------------------------------------------------------------


def _product(path: Path, unit: WorkUnit, level: int, granule: dict, content: dict,
             verdict: dict | None = None) -> ProductRecord:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(content))
    tmp.replace(path)
    g = {"dataproduct_type": "visibility", "calib_level": level, "instrument_name": "SIMABCD",
         "instrument_mode": "SIMABCD_H-6CH", "facility_name": "VLTI", "nb_vis2": 6, "nb_t3": 4, **granule}
    return ProductRecord.for_file(path, calib_level=level, stage=unit.stage, granules=[g],
                                  settings_hash=unit.settings_hash,
                                  inputs=[{"name": i.name, "sha256": i.sha256} for i in unit.inputs],
                                  obs_id=path.stem, verdict=verdict)


def simulated_unit(unit: WorkUnit, seconds: float) -> UnitResult:
    """What a simulated stage does with ``unit`` (module docstring): sleep, then write products."""
    t0 = time.perf_counter()
    time.sleep(seconds)
    result = UnitResult(stage=unit.stage, unit=unit.unit)
    out = Path(unit.out_dir)
    if unit.stage == "reduce":
        night, obs_id = unit.params["night"], unit.params["obs_id"]
        target = obs_id.split("_", 2)[2]
        category = "SCI" if target.startswith("SCI_") else "CAL"
        result.products.append(_product(out / f"{obs_id}.json", unit, 1, {"target_name": target, "night": night},
                                        {"target": target, "category": category, "night": night}))
    elif unit.stage == "calibrate":
        science = sorted({json.loads(Path(p).read_text())["target"] for p in unit.params["l1"]
                          if json.loads(Path(p).read_text())["category"] == "SCI"})
        for target in science:
            result.products.append(_product(out / f"{target}_{unit.unit}.json", unit, 2,
                                            {"target_name": target, "night": unit.unit},
                                            {"target": target, "night": unit.unit}))
    elif unit.stage in ("fit", "image"):
        target, subset = unit.unit.split("/", 1)
        result.products.append(_product(out / f"{unit.stage}.json", unit, 3,
                                        {"target_name": target, "night": subset, "dataproduct_type": unit.stage},
                                        {"target": target, "subset": subset}, verdict={"status": "ok"}))
    else:
        raise ValueError(f"no simulated stage {unit.stage!r}")
    result.seconds = time.perf_counter() - t0
    return result


def sim_tasks(seconds: float) -> dict:
    """Stage → a Prefect task (the stage tasks' options: retries, cache key) running
    :func:`simulated_unit` with ``seconds``."""
    from prefect import task

    from oiflow.tasks.policy import task_options

    return {stage: task(**task_options(stage), task_run_name=f"{stage} {{unit.unit}}")(
        functools.partial(simulated_unit, seconds=seconds)) for stage in ("reduce", "calibrate", "fit", "image")}
