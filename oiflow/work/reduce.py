"""Reduce stage units: raw (L0) night directory → L1 OIFITS, one per observation.

The backend and runner of each instrument (the raw files' ``INSTRUME``) come from
:func:`oiflow.reduce.backends.select`. The native reducer running in-process reduces each
observation in its own unit (inputs: the observation's raw file and the calibration files of
its setup nearest in time); any other backend or runner (amdlib, pndrs, docker, apptainer)
reduces the night's files of that instrument in one unit (``backend.reduce_night``). A raw
file whose header cannot be read becomes a unit of its own that fails, naming the file, so that
the failure is reported and retried once the file is fixed.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..archive import UnitResult, WorkUnit, code_version, make_unit
from ..catalog import Catalog, ProductRecord, granules_of
from ..config import ReduceConfig
from ..errors import ConfigError, OiflowError, ReductionError
from ..oifits import read_oifits
from ..product_tree import level_dir, remove_stale_temporaries, safe_name

STAGE = "reduce"
MODULES = ("oiflow.reduce", "oiflow.observables", "oiflow.oifits")


def reduce_code_version() -> str:
    return code_version(*MODULES)


def raw_files(night_dir: str | Path) -> list[Path]:
    """The raw FITS files of a night directory (``*.fits``, ``*.fits.gz``; hidden files skipped)."""
    d = Path(night_dir)
    if not d.is_dir():
        raise ConfigError(f"night directory not found: {d}")
    return sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith(".")
                  and (p.name.endswith(".fits") or p.name.endswith(".fits.gz")))


def instrument_of(path: Path) -> str:
    """The raw file's INSTRUME (upper case; "" when the header cannot be read)."""
    from ..reduce.raw_reader import primary_header

    try:
        return str(primary_header(path).get("INSTRUME", "") or "").strip().upper()
    except Exception:  # unreadable: its unit fails with the reader's message
        return ""


def night_from_headers(files) -> str | None:
    """The night (:mod:`oiflow.site`) of the earliest MJD-OBS among the raw files' headers, at
    the observatory longitude of that header (:func:`oiflow.site.header_longitude`)."""
    from ..reduce.raw_reader import primary_header
    from ..site import header_longitude, night_of

    best: tuple[float, float | None] | None = None
    for f in files:
        try:
            h = primary_header(f)
            mjd = float(h["MJD-OBS"])
        except Exception:  # unreadable or without a date: another file decides
            continue
        if best is None or mjd < best[0]:
            best = (mjd, header_longitude(h))
    return None if best is None else night_of(*best)


def _selection(config: ReduceConfig, instrument: str):
    from ..reduce.backends import select
    from ..reduce.runners import LocalRunner

    backend, runner, eff = select(config, instrument or None)
    in_process = backend.name == "native" and isinstance(runner, LocalRunner) and eff.image is None
    return backend, runner, eff, in_process


def reduce_settings(config: ReduceConfig, instrument: str) -> dict[str, Any]:
    """The effective settings for one instrument: backend, runner and the reduce config with the
    instrument's choice applied (the other instruments' entries left out, so that changing them
    does not redo this instrument's units)."""
    backend, runner, eff, _ = _selection(config, instrument)
    cfg = eff.model_dump(mode="json")
    cfg["instruments"] = {}
    cfg["calib_dirs"] = [str(Path(d).resolve()) for d in eff.calib_dirs]
    return {"instrument": instrument, "backend": backend.name, "runner": runner.name, "config": cfg}


def reduce_units(night_dir: str | Path, root: str | Path, config: ReduceConfig, catalog: Catalog) -> list[WorkUnit]:
    """The reduce units of a raw night directory (see the module docstring). Products go to
    ``<root>/<night>/L1`` with the night of the data (local date at the start of the night)."""
    from ..reduce import plan_night

    night_dir = Path(night_dir).resolve()
    files = raw_files(night_dir)
    if not files:
        raise ConfigError(f"{night_dir}: no raw FITS files (*.fits, *.fits.gz)")
    by_instrument: dict[str, list[Path]] = defaultdict(list)
    for f in files:
        by_instrument[instrument_of(f)].append(f)
    code = reduce_code_version()
    plans, night = {}, None
    for inst, inst_files in by_instrument.items():
        if _selection(config, inst)[3] or inst == "":
            plans[inst] = plan = plan_night(night_dir, files=inst_files)
            if night is None and plan.night != "unknown":
                night = plan.night
    night = night or night_from_headers(files) or safe_name(night_dir.name)
    out_dir = level_dir(root, night, 1)
    units: list[WorkUnit] = []
    for inst, inst_files in sorted(by_instrument.items()):
        settings = reduce_settings(config, inst)
        base = {"raw_dir": str(night_dir), "night": night}
        plan = plans.get(inst)
        if plan is None:  # another backend or runner: the whole night of this instrument
            units.append(make_unit(STAGE, f"{night}/{safe_name(inst.lower())}", inst_files, settings, code, out_dir,
                                   catalog, params={**base, "mode": "night"}))
            continue
        for obs in plan.observations:
            try:
                sel = plan.calibration_for(obs).select(obs.mjd)
                cals = [sel["dark"].path, *(i.path for i in sel["flats"].values()), *(i.path for i in sel["p2vm"].values())]
            except ReductionError:  # missing calibrations: the unit fails and says which
                cals = plan.calibrations[obs.setup].files() if obs.setup in plan.calibrations else []
            units.append(make_unit(STAGE, f"{night}/{obs.obs_id}", [obs.path, *cals], settings, code, out_dir, catalog,
                                   params={**base, "mode": "observation", "obs_id": obs.obs_id}))
        for name, _reason in plan.unreadable:
            stem = name[: -len(".fits.gz")] if name.endswith(".fits.gz") else Path(name).stem
            units.append(make_unit(STAGE, f"{night}/{safe_name(stem)}", [night_dir / name], settings, code, out_dir,
                                   catalog, params={**base, "mode": "observation", "obs_id": safe_name(stem)}))
    return units


def _record(path: Path, unit: WorkUnit, obs_id: str | None = None) -> ProductRecord:
    oi = read_oifits(path, warn=False)
    return ProductRecord.for_file(path, calib_level=1, stage=STAGE, granules=granules_of(oi, 1),
                                  settings_hash=unit.settings_hash,
                                  inputs=[{"name": i.name, "sha256": i.sha256} for i in unit.inputs],
                                  obs_id=obs_id or path.stem)


def run_reduce_unit(unit: WorkUnit) -> UnitResult:
    """Reduce one unit (an observation, or a night for non-native backends) into
    ``unit.out_dir``. Failures are returned, not raised."""
    from ..reduce import plan_night, reduce_observation
    from ..reduce.backends import select

    t0 = time.perf_counter()
    result = UnitResult(stage=STAGE, unit=unit.unit)
    config = ReduceConfig.model_validate(unit.settings["config"])
    backend, runner, eff = select(config, unit.settings["instrument"] or None)
    raw_dir, out_dir = Path(unit.params["raw_dir"]), Path(unit.out_dir)
    files = [Path(i.path) for i in unit.inputs]
    item = unit.params.get("obs_id") or raw_dir.name
    try:
        if unit.params["mode"] == "observation":
            obs_id = unit.params["obs_id"]
            remove_stale_temporaries(out_dir, product=f"{obs_id}.fits")
            plan = plan_night(raw_dir, files=files)
            if obs_id not in {o.obs_id for o in plan.observations}:
                reasons = "; ".join(r for _, r in plan.unreadable + plan.ignored)
                raise ReductionError(reasons or f"{obs_id}: not an observation")
            path = reduce_observation(plan, obs_id, out_dir, eff)
            result.products.append(_record(path, unit, obs_id))
        else:
            out_dir.mkdir(parents=True, exist_ok=True)
            res = backend.reduce_night(raw_dir, out_dir, eff, runner)
            for p in res.products:
                try:
                    result.products.append(_record(Path(p), unit))
                except OiflowError as exc:
                    result.fail(Path(p).name, exc)
            result.failures += [{"item": str(i), "error": str(r)} for i, r in res.failures]
    except OiflowError as exc:
        result.fail(item, exc)
    result.seconds = time.perf_counter() - t0
    return result
