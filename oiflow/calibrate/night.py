"""L1 → L2 for a night: transfer function on calibrators, interpolated at the science times,
one calibrated OIFITS per science target and night.

    result = calibrate_night(sorted(Path("L1").glob("*.fits")), "L2", CalibrateConfig(diameters="cal.csv"))
    result.products   # [L2/SCI_DISK_2023-03-15.fits, …];  result.plots  # [L2/tf_SIMABCD_H-6CH.png]

Groups: a *setup* is (night, INSNAME); the TF is computed per setup × baseline (station names)
× channel, only from calibrators of the same setup. Calibrators without a known diameter are
excluded with a :class:`~oiflow.errors.CalibrationWarning`; a setup without any usable
calibrator fails (its science observations are listed in ``failures``); points of a baseline or
triangle that no calibrator observed are flagged. Every file is written atomically.

L2 content: OI_TARGET (CATEGORY='SCI'), OI_ARRAY, OI_WAVELENGTH, OI_VIS2 and OI_T3 (T3PHI and
T3AMP calibrated) of every science observation of the target (OI_FLUX is not calibrated and not
copied). VIS2ERR and T3PHIERR include the TF interpolation error and, inside it, the calibrator-diameter error
(systematic, correlated between points: see the OIFLOW SYSERR keywords). The header records the
TF mode, window and every calibrator used with its diameter and source.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import CalibrateConfig
from ..errors import CalibrationError, CalibrationWarning, OiflowError
from ..oifits import read_oifits, write_oifits
from ..oifits.model import OIFits, WavelengthTable
from ..product_tree import safe_name
from ..provenance import Provenance, stage_history
from ..site import longitude_of, night_of
from ..verdict import OK
from .diameters import DiameterCatalog, DiameterSource, band_of
from .transfer_function import (
    MIN_POINTS,
    calibrate_t3phi,
    calibrate_vis2,
    floor_errors,
    interpolate,
    tf_t3amp_points,
    tf_t3phi_points,
    tf_vis2_points,
)

log = logging.getLogger(__name__)


@dataclass
class CalibrateResult:
    products: list[Path] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (file, setup or target, reason)


@dataclass
class L1Obs:
    path: Path
    oi: OIFits
    target: str
    category: str
    insname: str
    night: str
    ra_deg: float
    dec_deg: float
    mjd: float

    @property
    def setup(self) -> tuple[str, str]:
        return (self.night, self.insname)


def load_l1(path: str | Path, calibrator_names: set[str]) -> L1Obs:
    """Read one L1 file and its classification (target, SCI/CAL, setup, night)."""
    from .diameters import normalise_name

    path = Path(path)
    oi = read_oifits(path, warn=False)
    names = oi.target_names()
    if len(names) != 1:
        raise CalibrationError(f"{path.name}: an L1 file must hold one target, found {len(names)}")
    tid, target = next(iter(names.items()))
    cat_col = oi.target.get("CATEGORY")
    category = str(cat_col[0]).strip().upper() if cat_col is not None else ""
    if not category:
        h = oi.primary_header
        category = str(h.get("HIERARCH OIFLOW CATEGORY", h.get("OIFLOW CATEGORY", ""))).strip().upper()
    if not category:
        category = "CAL" if normalise_name(target) in calibrator_names else "SCI"
    if category not in ("SCI", "CAL"):
        raise CalibrationError(f"{path.name}: unknown target category {category!r}")
    ins = {w.insname for w in oi.wavelengths}
    if len(ins) != 1:
        raise CalibrationError(f"{path.name}: an L1 file must hold one instrument setup, found {sorted(ins)}")
    v2 = oi.view("vis2")
    if len(v2) == 0:
        raise CalibrationError(f"{path.name}: no OI_VIS2 data")
    mjd = float(np.nanmean(v2.mjd))
    night = str(oi.primary_header.get("HIERARCH OIFLOW NIGHT", oi.primary_header.get("OIFLOW NIGHT", "")) or "").strip()
    if not night:
        night = night_of(mjd, longitude_of(oi, oi.vis2[0]))
    ra = float(oi.target["RAEP0"][0])
    dec = float(oi.target["DECEP0"][0])
    return L1Obs(path, oi, target, category, ins.pop(), night, ra, dec, mjd)


@dataclass
class _TFPoints:
    """Calibrator points of one setup, flat over (obs, row, channel)."""

    key: np.ndarray  # group keys "stations|channel"
    mjd: np.ndarray
    value: np.ndarray
    error: np.ndarray
    sys_error: np.ndarray
    calibrator: np.ndarray


def _tf_points(cals: list[tuple[L1Obs, object]], kind: str, min_amp_err: float, min_phi_err: float) -> _TFPoints:
    """TF points of one setup for ``kind`` = vis2 | t3 (closure phase) | t3amp."""
    keys, mjd, val, err, syserr, who = [], [], [], [], [], []
    for obs, diam in cals:
        view = obs.oi.view("t3" if kind == "t3amp" else kind)
        ok = view.usable & np.isfinite(view.error) & (view.error > 0)
        if kind == "vis2":
            ok &= (np.hypot(view.u, view.v) > 0)
            tf, e, es = tf_vis2_points(view.value, view.error, diam.diameter_mas, diam.error_mas, view.u, view.v,
                                       view.wavelength)
            e = floor_errors(tf, e, min_amp_err)
        elif kind == "t3":
            ok &= (np.hypot(view.u, view.v) > 0) & (np.hypot(view.u2, view.v2) > 0)
            tf = tf_t3phi_points(view.value, view.u, view.v, view.u2, view.v2, view.wavelength, diam.diameter_mas)
            e = np.maximum(view.error, min_phi_err)
            es = np.zeros_like(e)
        else:  # t3amp
            ok &= (np.hypot(view.u, view.v) > 0) & (np.hypot(view.u2, view.v2) > 0) & np.isfinite(view.amp)
            ok &= np.isfinite(view.amp_error) & (view.amp_error > 0)
            tf, e, es = tf_t3amp_points(view.amp, view.amp_error, diam.diameter_mas, diam.error_mas, view.u, view.v,
                                        view.u2, view.v2, view.wavelength)
            e = floor_errors(tf, e, min_amp_err)
        ok &= np.isfinite(tf) & np.isfinite(e)
        keys.append(np.array([f"{s}|{c}" for s, c in zip(view.stations[ok], view.channel[ok])], dtype=object))
        mjd.append(view.mjd[ok])
        val.append(tf[ok])
        err.append(e[ok])
        syserr.append(es[ok])
        who.append(np.full(int(ok.sum()), obs.target, dtype=object))
    cat = lambda xs, dt=float: np.concatenate(xs) if xs else np.zeros(0, dt)  # noqa: E731
    return _TFPoints(cat(keys, object), cat(mjd), cat(val), cat(err), cat(syserr), cat(who, object))


def _apply_tf(view, points: _TFPoints, mode: str, window_h: float, phase: bool):
    """TF value, error and systematic part at every point of ``view``; NaN where no TF exists."""
    n = len(view)
    tf = np.full(n, np.nan)
    tf_err = np.full(n, np.nan)
    tf_sys = np.zeros(n)
    keys = np.array([f"{s}|{c}" for s, c in zip(view.stations, view.channel)], dtype=object)
    for key in np.unique(keys):
        sel = keys == key
        pts = points.key == key
        if not np.any(pts):
            continue
        v, e = interpolate(points.mjd[pts], points.value[pts], points.error[pts], view.mjd[sel], mode, window_h, phase)
        tf[sel], tf_err[sel] = v, e
        if not phase:
            # diameter (systematic) part, relative: that of the calibrator point nearest in time
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = np.abs(points.sys_error[pts] / points.value[pts])
            rel_near, _ = interpolate(points.mjd[pts], np.nan_to_num(rel), np.ones(int(pts.sum())), view.mjd[sel],
                                      "nearest")
            tf_sys[sel] = rel_near * np.abs(v)
    return tf, tf_err, tf_sys


def _store(oi: OIFits, view, value_col: str, error_col: str, value, error, missing, *, flag_missing: bool) -> None:
    """Write calibrated ``value``/``error`` (one per point of ``view``, in the columns' units) into
    ``value_col``/``error_col`` of ``oi``'s tables. Points without a transfer function
    (``missing``) keep their raw value and are flagged (``flag_missing``), or become NaN (for a
    column calibrated only where possible: T3AMP)."""
    for ti in np.unique(view.table):
        sel = view.table == ti
        table = oi.tables[ti]
        shape = table[value_col].shape
        data = np.array(table[value_col], float).reshape(shape)
        err = np.array(table[error_col], float).reshape(shape)
        r, c, miss = view.row[sel], view.channel[sel], missing[sel]
        keep_data, keep_err = (data[r, c], err[r, c]) if flag_missing else (np.nan, np.nan)
        data[r, c] = np.where(miss, keep_data, value[sel])
        err[r, c] = np.where(miss, keep_err, error[sel])
        table.columns[value_col], table.columns[error_col] = data, err
        if flag_missing:
            flag = np.array(table["FLAG"], bool).reshape(shape)
            flag[r, c] |= miss
            table.columns["FLAG"] = flag


def _calibrate_observation(obs: L1Obs, tf_v2: _TFPoints, tf_t3: _TFPoints, tf_t3amp: _TFPoints,
                           config: CalibrateConfig) -> tuple[OIFits, dict]:
    """A copy of the observation's OIFits with calibrated OI_VIS2 and OI_T3 (OI_FLUX dropped)."""
    oi = obs.oi.copy()
    stats = {"uncalibrated_points": 0, "sys_vis2_rel": []}
    v2 = obs.oi.view("vis2")
    tf, tf_err, tf_sys = _apply_tf(v2, tf_v2, config.interpolation, config.window_h, phase=False)
    cal, cal_err = calibrate_vis2(v2.value, v2.error, tf, tf_err)
    missing = ~np.isfinite(tf)
    stats["uncalibrated_points"] += int(np.count_nonzero(missing & v2.usable))
    with np.errstate(divide="ignore", invalid="ignore"):
        stats["sys_vis2_rel"] = list(np.nan_to_num(tf_sys / np.abs(tf))[~missing])
    _store(oi, v2, "VIS2DATA", "VIS2ERR", cal, cal_err, missing, flag_missing=True)
    t3 = obs.oi.view("t3")
    if len(t3):
        phi, phi_err, _ = _apply_tf(t3, tf_t3, config.interpolation, config.window_h, phase=True)
        phi_err = np.maximum(phi_err, np.deg2rad(config.min_phi_err_deg))
        cphi, cphi_err = calibrate_t3phi(t3.value, t3.error, phi, phi_err)
        missing = ~np.isfinite(phi)
        stats["uncalibrated_points"] += int(np.count_nonzero(missing & t3.usable))
        _store(oi, t3, "T3PHI", "T3PHIERR", np.rad2deg(cphi), np.rad2deg(cphi_err), missing, flag_missing=True)
        if tf_t3amp.value.size and np.any(np.isfinite(t3.amp)):
            amp_tf, amp_tf_err, _ = _apply_tf(t3, tf_t3amp, config.interpolation, config.window_h, phase=False)
            camp, camp_err = calibrate_vis2(t3.amp, t3.amp_error, amp_tf, amp_tf_err)
            _store(oi, t3, "T3AMP", "T3AMPERR", camp, camp_err, ~np.isfinite(amp_tf), flag_missing=False)
    oi.tables = [t for t in oi.tables if t.EXTNAME != "OI_FLUX"]
    return oi, stats


def merge_target(ois: list[OIFits], target: str, ra: float, dec: float, category: str = "SCI") -> OIFits:
    """One OIFits for one target from several single-target files: stations united per ARRNAME
    (STA_INDEX renumbered), one OI_WAVELENGTH per INSNAME, data tables concatenated when their
    columns agree (else kept as separate tables)."""
    from ..oifits.build import array_table, target_table

    tgt = target_table([target], ra_deg=[ra], dec_deg=[dec], category=[category])
    arrays: dict[str, dict] = {}
    remaps: list[dict[str, dict[int, int]]] = []
    for oi in ois:
        remap = {}
        for a in oi.arrays:
            slot = arrays.setdefault(a.arrname, {"names": [], "xyz": [], "tel": [], "diam": [], "header": a.header})
            m = {}
            for k, idx in enumerate(a["STA_INDEX"]):
                name = str(a["STA_NAME"][k]).strip()
                if name not in slot["names"]:
                    slot["names"].append(name)
                    slot["xyz"].append(np.asarray(a["STAXYZ"][k], float))
                    slot["tel"].append(str(a["TEL_NAME"][k]).strip())
                    slot["diam"].append(float(a["DIAMETER"][k]))
                m[int(idx)] = slot["names"].index(name) + 1
            remap[a.arrname] = m
        remaps.append(remap)
    array_tables = []
    for name, slot in arrays.items():
        h = slot["header"]
        at = array_table(name, slot["names"], np.array(slot["xyz"]), tel_names=slot["tel"], diameter=slot["diam"],
                         frame=str(h.get("FRAME", "GEOCENTRIC")),
                         array_xyz=(float(h.get("ARRAYX", 0.0)), float(h.get("ARRAYY", 0.0)), float(h.get("ARRAYZ", 0.0))))
        array_tables.append(at)
    waves: dict[str, WavelengthTable] = {}
    groups: dict[tuple, list] = {}
    for oi, remap in zip(ois, remaps):
        for w in oi.wavelengths:
            waves.setdefault(w.insname, w.copy())
        for t in oi.data_tables:
            t = t.copy()
            t.columns["TARGET_ID"] = np.ones(t.nrows, np.int16)
            m = remap.get(t.arrname, {})
            if "STA_INDEX" in t and m:
                sta = np.asarray(t["STA_INDEX"])
                t.columns["STA_INDEX"] = np.vectorize(lambda s: m.get(int(s), int(s)))(sta).astype(np.int16)
            key = (t.EXTNAME, t.insname, t.arrname, tuple(sorted(t.columns)))
            groups.setdefault(key, []).append(t)
    data = []
    for tables in groups.values():
        first = tables[0]
        if len(tables) == 1:
            data.append(first)
            continue
        cols = {c: np.concatenate([np.asarray(t[c]) for t in tables], axis=0) for c in first.columns}
        merged = type(first)(first.header.copy(), cols, dict(first.units), dict(first.formats))
        data.append(merged)
    return OIFits(primary_header=ois[0].primary_header.copy(), tables=[tgt, *array_tables, *waves.values(), *data])


def calibrate_night(l1_files, out_dir: str | Path, config: CalibrateConfig | None = None) -> CalibrateResult:
    """Calibrate a night of L1 files into one L2 file per science target and night (+ TF plots)."""
    from .diameters import diameters_from_config

    config = config or CalibrateConfig()
    out_dir = Path(out_dir)
    result = CalibrateResult()
    catalog = DiameterCatalog.from_file(config.diameters) if config.diameters else None
    jsdc = None
    if config.jsdc_lookup:
        from .jsdc import JSDCLookup

        cache = config.jsdc_cache or (out_dir / "jsdc_cache.json")
        jsdc = JSDCLookup(cache)
    source = DiameterSource(catalog, config.calibrators, jsdc)
    explicit_cals = set(diameters_from_config(config.calibrators))

    observations: list[L1Obs] = []
    for f in sorted(Path(p) for p in l1_files):
        try:
            observations.append(load_l1(f, explicit_cals))
        except OiflowError as exc:
            result.failures.append((f.name, str(exc)))
    if not observations:
        raise CalibrationError("no readable L1 file to calibrate" + (f" ({result.failures[0][1]})" if result.failures else ""))

    setups = sorted({o.setup for o in observations})
    multi_night = len({n for n, _ in setups}) > 1
    calibrated: dict[tuple[str, str], list[tuple[L1Obs, OIFits, dict]]] = {}
    cal_used: dict[tuple[str, str], dict[str, object]] = {}
    for setup in setups:
        night, insname = setup
        members = [o for o in observations if o.setup == setup]
        scis = [o for o in members if o.category == "SCI"]
        try:
            band = band_of(members[0].oi.wavelengths[0].eff_wave)
            cals = []
            for o in (o for o in members if o.category == "CAL"):
                d = source.lookup(o.target, o.ra_deg, o.dec_deg, band)
                if d is None:
                    warnings.warn(f"calibrator {o.target} ({o.path.name}): no {band}-band diameter in the catalogue; "
                                  "excluded from the transfer function", CalibrationWarning, stacklevel=2)
                    continue
                cals.append((o, d))
            if not scis:
                log.info("setup %s %s: no science observation", night, insname)
            tf_v2 = _tf_points(cals, "vis2", config.min_amp_err, np.deg2rad(config.min_phi_err_deg))
            tf_t3 = _tf_points(cals, "t3", config.min_amp_err, np.deg2rad(config.min_phi_err_deg))
            tf_t3amp = _tf_points(cals, "t3amp", config.min_amp_err, np.deg2rad(config.min_phi_err_deg))
            if tf_v2.value.size == 0:
                why = "no calibrator observed" if not any(o.category == "CAL" for o in members) else \
                    "no calibrator with a known diameter and valid data"
                raise CalibrationError(f"setup {insname} of night {night}: no usable calibrator ({why})")
            npts = len({m for m in tf_v2.mjd})
            if npts < MIN_POINTS[config.interpolation]:
                log.warning("setup %s: %d calibrator observation(s), fewer than mode %s needs; using 'average'",
                            insname, npts, config.interpolation)
            cal_used[setup] = {o.target: d for o, d in cals}
            if scis:
                plot_name = f"tf_{safe_name(night) + '_' if multi_night else ''}{safe_name(insname)}.png"
                try:
                    from .plots import plot_transfer_function

                    result.plots.append(plot_transfer_function(tf_v2, tf_t3, scis, config, out_dir / plot_name,
                                                               title=f"{night} {insname}"))
                except ImportError as exc:  # matplotlib missing: the calibration itself still works
                    log.warning("no TF plot: %s", exc)
            for o in scis:
                oi, stats = _calibrate_observation(o, tf_v2, tf_t3, tf_t3amp, config)
                calibrated.setdefault((o.target, night), []).append((o, oi, stats))
        except OiflowError as exc:
            for o in scis:
                result.failures.append((o.path.name, str(exc)))
            if not scis:
                result.failures.append((f"{night} {insname}", str(exc)))

    for (target, night), items in sorted(calibrated.items()):
        try:
            result.products.append(_write_l2(target, night, items, cal_used, observations, config, out_dir))
        except OiflowError as exc:
            result.failures.append((f"{target} {night}", str(exc)))
    return result


def _write_l2(target, night, items, cal_used, observations, config: CalibrateConfig, out_dir: Path) -> Path:
    first = items[0][0]
    oi = merge_target([it[1] for it in items], target, first.ra_deg, first.dec_deg, "SCI")
    h = oi.primary_header
    for k in ("HIERARCH OIFLOW OBSID", "OIFLOW OBSID", "HIERARCH OIFLOW NFRAMES", "OIFLOW NFRAMES",
              "HIERARCH OIFLOW NFRAMES MINUSED", "OIFLOW NFRAMES MINUSED", "HIERARCH OIFLOW CHI2 MEDIAN",
              "OIFLOW CHI2 MEDIAN", "HIERARCH OIFLOW ALT", "OIFLOW ALT", "MJD-OBS", "DATE-OBS"):
        h.remove(k, ignore_missing=True)
    h["OBJECT"] = target
    h["HIERARCH OIFLOW CATEGORY"] = "SCI"
    h["HIERARCH OIFLOW NIGHT"] = night
    h["HIERARCH OIFLOW TFMODE"] = (config.interpolation, "TF interpolation")
    h["HIERARCH OIFLOW TFWINDOW"] = (config.window_h, "[h] smoothing length")
    h["HIERARCH OIFLOW NOBS"] = len(items)
    setups = sorted({(night, it[0].insname) for it in items})
    used = {}
    for s in setups:
        used.update(cal_used.get(s, {}))
    h["HIERARCH OIFLOW NCAL"] = len(used)
    for k, (name, d) in enumerate(sorted(used.items()), start=1):
        h[f"HIERARCH OIFLOW CAL{k} NAME"] = name
        h[f"HIERARCH OIFLOW CAL{k} DIAM"] = (d.diameter_mas, f"[mas] UD {d.band}")
        h[f"HIERARCH OIFLOW CAL{k} EDIAM"] = (d.error_mas, "[mas]")
        h[f"HIERARCH OIFLOW CAL{k} SRC"] = str(d.source)[:40]
    sys_rel = np.concatenate([np.asarray(it[2]["sys_vis2_rel"], float) for it in items]) if items else np.zeros(0)
    h["HIERARCH OIFLOW SYSERR VIS2"] = (round(float(np.median(sys_rel)), 5) if sys_rel.size else 0.0,
                                        "rel. V2 err from cal. diameters")
    n_uncal = sum(it[2]["uncalibrated_points"] for it in items)
    h["HIERARCH OIFLOW NUNCAL"] = (n_uncal, "flagged: no TF")
    h.add_history("oiflow calibrate: V2 = V2raw/TF2, T3PHI = T3PHIraw - TF_T3PHI; errors include the TF")
    h.add_history("interpolation error and the calibrator-diameter error (systematic, in quadrature).")
    h.add_history("T3AMP = T3AMPraw/TF_T3AMP (NaN where no TF); OI_FLUX (uncalibrated) not copied.")
    cal_files = [o.path for o in observations if o.category == "CAL" and o.setup in setups and o.target in used]
    inputs = [it[0].path for it in items] + cal_files
    if config.diameters:
        inputs.append(Path(config.diameters))
    l1 = [it[0].path for it in items] + cal_files
    detail = f"{len(used)} calibrator{'' if len(used) == 1 else 's'}" + (
        f", {n_uncal} points without a transfer function flagged" if n_uncal else "")
    prov = Provenance.for_inputs(2, "calibrate", inputs, settings=config,
                                 stages=stage_history(l1, "calibrate", OK, detail))
    out = out_dir / f"{safe_name(target)}_{safe_name(night)}.fits"
    write_oifits(oi, out, provenance=prov)
    return out
