"""Calibrate stage units: the L1 OIFITS of one night → one L2 OIFITS per science target.

Inputs: the night's L1 files and the calibrator-diameter catalogue file (so that a changed
catalogue redoes the night's L2 and what depends on it, not its L1). Products:
``<root>/<night>/L2/<target>_<night>.fits`` and the transfer-function quicklook
``tf_<setup>.png`` (a plot, not a catalogued product).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

from ..archive import UnitResult, WorkUnit, code_version, make_unit
from ..catalog import Catalog, ProductRecord, granules_of
from ..config import CalibrateConfig
from ..errors import ConfigError, OiflowError, OiflowWarning
from ..oifits import read_oifits
from ..product_tree import level_dir, remove_stale_temporaries

STAGE = "calibrate"
MODULES = ("oiflow.calibrate", "oiflow.oifits")


def calibrate_code_version() -> str:
    return code_version(*MODULES)


def calibrate_settings(config: CalibrateConfig) -> dict[str, Any]:
    """The effective settings; file paths are replaced by their names (the files themselves are
    inputs, with checksums), so that moving a product tree or a catalogue redoes nothing."""
    s = config.model_dump(mode="json")
    for key in ("diameters", "jsdc_cache"):
        if s.get(key):
            s[key] = Path(s[key]).name
    return s


def calibrate_unit(night: str, l1_files, root: str | Path, config: CalibrateConfig, catalog: Catalog) -> WorkUnit:
    """The calibrate unit of ``night`` over ``l1_files``."""
    l1 = sorted(str(Path(f).resolve()) for f in l1_files)
    inputs = list(l1)
    params: dict[str, Any] = {"l1": l1}
    if config.diameters:
        d = Path(config.diameters)
        if not d.is_file():
            raise ConfigError(f"calibrate.diameters: file not found: {d}")
        inputs.append(str(d.resolve()))
        params["diameters"] = str(d.resolve())
    if config.jsdc_cache:
        params["jsdc_cache"] = str(Path(config.jsdc_cache).resolve())
    return make_unit(STAGE, night, inputs, calibrate_settings(config), calibrate_code_version(),
                     level_dir(root, night, 2), catalog, params=params)


def run_calibrate_unit(unit: WorkUnit) -> UnitResult:
    """Calibrate the night of ``unit`` into ``unit.out_dir``; failures are returned, not raised."""
    from ..calibrate import calibrate_night

    t0 = time.perf_counter()
    result = UnitResult(stage=STAGE, unit=unit.unit)
    out_dir = Path(unit.out_dir)
    config = CalibrateConfig.model_validate({**unit.settings, "diameters": unit.params.get("diameters"),
                                             "jsdc_cache": unit.params.get("jsdc_cache")})
    remove_stale_temporaries(out_dir)
    inputs = [{"name": i.name, "sha256": i.sha256} for i in unit.inputs]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = calibrate_night(unit.params["l1"], out_dir, config)
        result.warnings += sorted({str(w.message) for w in caught if issubclass(w.category, OiflowWarning)})
        for p in res.products:
            try:
                oi = read_oifits(p, warn=False)
                result.products.append(ProductRecord.for_file(p, calib_level=2, stage=STAGE, granules=granules_of(oi, 2),
                                                              settings_hash=unit.settings_hash, inputs=inputs,
                                                              obs_id=Path(p).stem))
            except OiflowError as exc:
                result.fail(Path(p).name, exc)
        result.plots += [str(p) for p in res.plots]
        result.failures += [{"item": str(i), "error": str(r)} for i, r in res.failures]
    except OiflowError as exc:
        result.fail(f"night {unit.unit}", exc)
    result.seconds = time.perf_counter() - t0
    return result

