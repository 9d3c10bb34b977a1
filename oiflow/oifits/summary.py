"""A compact description of an OIFITS file: what ``oiflow inspect`` prints.

    from oiflow.oifits.summary import summarize
    info = summarize(read_oifits("file.fits"))
    info["counts"]["vis2"]   # {"tables": 2, "rows": 300, "points": 900, "ok": 900}

Counts are data points (rows × channels); "ok" points are not flagged and have a finite value
(for OI_VIS the amplitude VISAMP, for OI_T3 the closure phase T3PHI). Nights are those of
:mod:`oiflow.site` (the local date at the start of the night at the array's longitude), as in
the catalogue and the product tree.
"""

from __future__ import annotations

import numpy as np

from ..site import longitude_of, nights_of
from .model import OIFits
from .views import KINDS


def _nights(oi: OIFits) -> set[str]:
    """The nights of the data tables' plausible MJDs (years ~1585..4596)."""
    out: set[str] = set()
    for t in oi.data_tables:
        mjd = np.asarray(t.get("MJD", np.zeros(0)), float).ravel()
        mjd = mjd[np.isfinite(mjd) & (mjd > -100000) & (mjd < 1000000)]
        if mjd.size:
            out.update(nights_of(mjd, longitude_of(oi, t)))
    return out


def _finite_range(values) -> list[float] | None:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return [float(v.min()), float(v.max())] if v.size else None


def summarize(oi: OIFits) -> dict:
    """Targets, instruments/modes, nights, counts per observable, wavelength ranges, baselines."""
    names = oi.target_names()
    used_ids: set[int] = set()
    for t in oi.data_tables:
        tid = t.get("TARGET_ID")
        if tid is not None:
            used_ids.update(int(i) for i in np.unique(np.asarray(tid).ravel()) if np.isfinite(i))
    targets = []
    tt = oi.targets[0] if oi.targets else None
    if tt is not None:
        ra, dec = tt.get("RAEP0"), tt.get("DECEP0")
        for k, (tid, name) in enumerate(names.items()):
            targets.append({
                "id": tid, "name": name,
                "ra_deg": float(ra[k]) if ra is not None else None,
                "dec_deg": float(dec[k]) if dec is not None else None,
                "has_data": tid in used_ids,
            })

    instruments = []
    for w in oi.wavelengths:
        tables = [t for t in oi.data_tables if t.insname == w.insname]
        wave = w.eff_wave
        band = np.asarray(w.get("EFF_BAND", np.full(wave.shape, np.nan)), float)
        with np.errstate(divide="ignore", invalid="ignore"):
            res = np.nanmedian(wave / band) if np.any(np.isfinite(band) & (band > 0)) else None
        instruments.append({
            "insname": w.insname,
            "nwave": int(w.nwave),
            "wave_min_um": float(np.nanmin(wave) * 1e6) if wave.size else None,
            "wave_max_um": float(np.nanmax(wave) * 1e6) if wave.size else None,
            "resolution": None if res is None or not np.isfinite(res) else float(res),
            "tables": [t.EXTNAME for t in tables],
        })

    mjds = np.concatenate([np.asarray(t.get("MJD", np.zeros(0)), float).ravel() for t in oi.data_tables] or [np.zeros(0)])
    mjds = mjds[np.isfinite(mjds)]
    nights = sorted(_nights(oi))

    counts = {}
    for kind, extname in KINDS.items():
        tables = [t for t in oi.tables if t.EXTNAME == extname]
        if not tables:
            counts[kind] = {"tables": 0, "rows": 0, "points": 0, "ok": 0}
            continue
        v = oi.view(kind)
        counts[kind] = {"tables": len(tables), "rows": int(sum(t.nrows for t in tables)), "points": len(v),
                        "ok": int(v.usable.sum())}

    baselines = {}
    for kind in ("vis2", "vis"):
        if counts[kind]["points"] == 0:
            continue
        v = oi.view(kind)
        first = v.channel == 0  # one entry per row
        for st, b in zip(v.stations[first], v.baseline[first]):
            rec = baselines.setdefault(str(st), [np.inf, -np.inf])
            rec[0], rec[1] = min(rec[0], float(b)), max(rec[1], float(b))
    bl_all = [x for r in baselines.values() for x in r]
    h = oi.primary_header
    return {
        "file": oi.path,
        "version": oi.version,
        "instrument": str(h.get("INSTRUME", "") or "").strip() or None,
        "insmode": str(h.get("INSMODE", "") or "").strip() or None,
        "telescope": str(h.get("TELESCOP", "") or "").strip() or None,
        "arrays": [a.arrname for a in oi.arrays],
        "targets": targets,
        "instruments": instruments,
        "nights": nights,
        "mjd_range": _finite_range(mjds),
        "counts": counts,
        "wave_range_um": _finite_range([x for i in instruments for x in (i["wave_min_um"], i["wave_max_um"])
                                        if x is not None]),
        "baselines": {k: {"min_m": round(v[0], 3), "max_m": round(v[1], 3)} for k, v in sorted(baselines.items())},
        "baseline_range_m": [round(min(bl_all), 3), round(max(bl_all), 3)] if bl_all else None,
        "tables": [t.label for t in oi.tables],
    }
