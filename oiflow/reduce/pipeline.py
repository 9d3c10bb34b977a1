"""The native L0 → L1 reducer: plan a night, calibrate the P2VM per setup, reduce each
observation to one OIFITS2 file.

    from oiflow.reduce import plan_night, reduce_observation, reduce_night
    result = reduce_night("data-samples/night-sim", "products/2023-03-15/L1", ReduceConfig())
    result.products, result.failures

One bad observation (a corrupt raw file, a missing calibration) fails only itself: it is listed
in ``failures`` with the reason and nothing is written for it (products are written atomically).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from ..config import ReduceConfig
from ..errors import OiflowError, ReductionError
from ..oifits import OIFits, write_oifits
from ..provenance import InputRecord, Provenance, stage_history
from ..verdict import OK
from .estimators import compute_observables
from .l1 import l1_oifits
from .p2vm import P2VMCalibration, calibrate_p2vm, invert_frames
from .plan import NightPlan, plan_night
from .raw_reader import read_raw

log = logging.getLogger(__name__)


@dataclass
class ReduceResult:
    products: list[Path] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (observation id or file, reason)


#: ReduceConfig fields that say where and how the reducer runs, not what it computes: left out of
#: the products' settings (and their hash), so that the same reduction run in-process or in the
#: worker image gives the same product. How it ran is recorded by ``execution`` instead.
EXECUTION_FIELDS = frozenset({"runner", "image", "engine", "instruments"})

#: header cards that record how a product was made (see ``execution`` in :func:`reduce_observation`)
EXECUTION_CARDS = {"engine": "HIERARCH OIFLOW ENGINE", "image": "HIERARCH OIFLOW IMAGE",
                   "image_id": "HIERARCH OIFLOW IMAGEID"}


def _settings(config: ReduceConfig) -> dict:
    s = config.model_dump(mode="json", exclude=set(EXECUTION_FIELDS))
    s["reducer"] = "native-p2vm"
    return s


def execution_cards(execution: Mapping[str, str | None] | None) -> dict[str, str]:
    """Header cards for ``execution`` = {"engine": "docker", "image": …, "image_id": …};
    None (a direct call) is ``{"engine": "in-process"}``."""
    cards = {}
    for key, value in ({"engine": "in-process"} if execution is None else execution).items():
        if key not in EXECUTION_CARDS:
            raise ValueError(f"unknown execution field {key!r} (one of {', '.join(EXECUTION_CARDS)})")
        if value:
            cards[EXECUTION_CARDS[key]] = str(value)  # long values: CONTINUE cards
    return cards


def reduce_observation(plan: NightPlan, obs_id: str, out_dir: str | Path, config: ReduceConfig | None = None,
                       calibration: P2VMCalibration | None = None,
                       execution: Mapping[str, str | None] | None = None, *,
                       input_records: dict | None = None) -> Path:
    """Reduce one observation of ``plan`` to ``out_dir/<obs_id>.fits`` (L1 OIFITS2).

    ``calibration`` (the setup's P2VM) is computed from the plan's calibration files when not
    given. ``execution`` ({"engine", "image", "image_id"}, e.g. from the native backend's container
    job; default: engine ``in-process``) is written as ``HIERARCH OIFLOW ENGINE/IMAGE/IMAGEID``
    cards. ``input_records``: a dict (path → provenance record) shared by the observations of a
    night, so each calibration file is hashed once. Raises :class:`ReductionError` naming what is
    wrong (missing calibration files, a corrupt raw file, inconsistent shapes).
    """
    oi, prov = l1_product(plan, obs_id, config, calibration, execution=execution, input_records=input_records)
    out = Path(out_dir) / f"{obs_id}.fits"
    write_oifits(oi, out, provenance=prov)
    return out


def l1_product(plan: NightPlan, obs_id: str, config: ReduceConfig | None = None,
               calibration: P2VMCalibration | None = None, *,
               execution: Mapping[str, str | None] | None = None,
               input_records: dict | None = None) -> tuple[OIFits, Provenance]:
    """The L1 OIFITS of one observation and its provenance, in memory (what :func:`reduce_observation` writes)."""
    config = config or ReduceConfig()
    obs = plan.observation(obs_id)
    if calibration is None:
        calibration = calibrate_p2vm(plan.calibration_for(obs), obs.mjd)
    elif calibration.setup != obs.setup:
        raise ReductionError(f"observation {obs_id}: setup {obs.setup} but the P2VM given is for {calibration.setup}")
    exp = read_raw(obs.path, obs.info)
    if exp.frames.shape[1:] != calibration.dark.shape:
        raise ReductionError(f"observation {obs_id}: frames have (outputs, channels) = {exp.frames.shape[1:]}, "
                             f"the calibration of setup {obs.setup} has {calibration.dark.shape}")
    cf = invert_frames(exp.frames, calibration)
    fs = config.frame_selection
    res = compute_observables(cf, nboot=config.nboot, seed=config.seed, min_snr=fs.min_snr,
                              keep_fraction=fs.keep_fraction, debias=config.debias, min_frames=config.min_frames)
    extra = {"HIERARCH OIFLOW CHI2 MEDIAN": round(float(np.median(cf.chi2)), 4), **execution_cards(execution)}
    oi = l1_oifits(obs, exp, res, plan.night, extra)
    records = {} if input_records is None else input_records
    for path in (obs.path, *calibration.files):
        if path not in records:
            records[path] = InputRecord.from_path(path)
    prov = Provenance.for_inputs(1, "reduce", [records[p] for p in (obs.path, *calibration.files)],
                                 settings=_settings(config), stages=stage_history([], "reduce", OK, "native"))
    return oi, prov


def reduce_night(raw_dir: str | Path, out_dir: str | Path, config: ReduceConfig | None = None,
                 execution: Mapping[str, str | None] | None = None) -> ReduceResult:
    """Reduce every observation of a night directory; failures are collected, not raised.
    ``execution``: see :func:`reduce_observation`."""
    config = config or ReduceConfig()
    plan = plan_night(raw_dir)
    result = ReduceResult()
    result.failures.extend(plan.unreadable)
    calibrations: dict[str, P2VMCalibration | ReductionError] = {}
    records: dict = {}  # provenance records of the inputs: each calibration file hashed once a night
    for obs in plan.observations:
        try:
            cal = calibrations.get(obs.setup)
            if cal is None:
                try:
                    cal = calibrate_p2vm(plan.calibration_for(obs), obs.mjd)
                except OiflowError as exc:  # a setup-level failure: remembered for its other observations
                    cal = exc if str(exc).startswith(f"setup {obs.setup}") else ReductionError(f"setup {obs.setup}: {exc}")
                calibrations[obs.setup] = cal
            if isinstance(cal, Exception):
                raise cal
            result.products.append(reduce_observation(plan, obs.obs_id, out_dir, config, calibration=cal,
                                                       execution=execution, input_records=records))
        except OiflowError as exc:
            log.warning("%s", exc)
            result.failures.append((obs.obs_id, str(exc)))
    if not plan.observations and not plan.unreadable:
        raise ReductionError(f"{raw_dir}: no OBJECT exposures to reduce")
    return result
