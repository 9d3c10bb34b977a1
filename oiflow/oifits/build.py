"""Building OIFITS tables from arrays (for the simulator, the reducer, the calibrator and tests).

Every builder takes internal units where the standard allows a choice: u, v in metres,
wavelengths in metres, MJD in days; phases are given in **radians** and stored in degrees.

    oi = new_oifits(
        target_table(["HD_1"], ra_deg=[10.0], dec_deg=[-20.0]),
        [array_table("VLTI", ["A0", "B2"], staxyz=[[0, 0, 0], [10, 5, 0]])],
        [wavelength_table("SIM", wave, band)],
        [vis2_table("SIM", "VLTI", target_id=1, mjd=mjd, u=u, v=v, sta_index=sta, vis2=v2, vis2err=e)],
    )
"""

from __future__ import annotations

import numpy as np
from .astropy_fits import fits
from astropy.time import Time

from ..site import SITES
from .model import ArrayTable, FluxTable, OIFits, T3Table, TargetTable, Vis2Table, VisTable, WavelengthTable


def _n(x, n, dtype=float):
    a = np.asarray(x, dtype=dtype)
    return np.broadcast_to(a, (n,) + a.shape[1:] if a.ndim else (n,)).copy() if a.ndim <= 1 and a.size in (1, n) else a


def _header(**kw) -> fits.Header:
    h = fits.Header()
    for k, v in kw.items():
        if v is not None:
            h[k.replace("_", "-") if k == "DATE_OBS" else k] = v
    return h


def _date_obs(mjd) -> str:
    mjd = np.asarray(mjd, float)
    return Time(float(np.nanmin(mjd)), format="mjd").to_value("iso", subfmt="date") if mjd.size else "2000-01-01"


def target_table(names, ra_deg=0.0, dec_deg=0.0, category=None, equinox=2000.0, spectyp="UNKNOWN") -> TargetTable:
    names = [str(n) for n in np.atleast_1d(names)]
    n = len(names)
    cols = {
        "TARGET_ID": np.arange(1, n + 1, dtype=np.int16),
        "TARGET": np.array(names),
        "RAEP0": _n(ra_deg, n),
        "DECEP0": _n(dec_deg, n),
        "EQUINOX": _n(equinox, n, np.float32),
        "RA_ERR": np.zeros(n),
        "DEC_ERR": np.zeros(n),
        "SYSVEL": np.zeros(n),
        "VELTYP": np.full(n, "UNKNOWN"),
        "VELDEF": np.full(n, "OPTICAL"),
        "PMRA": np.zeros(n),
        "PMDEC": np.zeros(n),
        "PMRA_ERR": np.zeros(n),
        "PMDEC_ERR": np.zeros(n),
        "PARALLAX": np.zeros(n, np.float32),
        "PARA_ERR": np.zeros(n, np.float32),
        "SPECTYP": np.array([str(s) for s in np.broadcast_to(np.asarray(spectyp, dtype=object), (n,))]),
    }
    if category is not None:
        cols["CATEGORY"] = np.array([str(c) for c in np.broadcast_to(np.asarray(category, dtype=object), (n,))])
    return TargetTable(_header(OI_REVN=2), cols)


def array_table(arrname, sta_names, staxyz, tel_names=None, diameter=1.8, sta_index=None, frame="GEOCENTRIC",
                array_xyz=None, fov_arcsec=None) -> ArrayTable:
    """``array_xyz``: ITRF position of the array (m; ARRAYX/Y/Z), by default the VLTI's (:mod:`oiflow.site`)."""
    if array_xyz is None:
        array_xyz = SITES["VLTI"].geocentric_position()
    sta_names = [str(s) for s in sta_names]
    n = len(sta_names)
    staxyz = np.asarray(staxyz, float).reshape(n, 3)
    tel = sta_names if tel_names is None else [str(t) for t in tel_names]
    diam = _n(diameter, n, np.float32)
    if fov_arcsec is None:
        fov_arcsec = np.degrees(2.2e-6 / diam.astype(float)) * 3600.0
    cols = {
        "TEL_NAME": np.array(tel),
        "STA_NAME": np.array(sta_names),
        "STA_INDEX": np.asarray(np.arange(1, n + 1) if sta_index is None else sta_index, dtype=np.int16),
        "DIAMETER": diam,
        "STAXYZ": staxyz,
        "FOV": _n(fov_arcsec, n),
        "FOVTYPE": np.full(n, "FWHM"),
    }
    h = _header(OI_REVN=2, ARRNAME=arrname, FRAME=frame, ARRAYX=float(array_xyz[0]), ARRAYY=float(array_xyz[1]),
                ARRAYZ=float(array_xyz[2]))
    return ArrayTable(h, cols)


def wavelength_table(insname, eff_wave, eff_band=None) -> WavelengthTable:
    wave = np.atleast_1d(np.asarray(eff_wave, float))
    band = np.full_like(wave, np.nan) if eff_band is None else _n(eff_band, wave.size)
    if eff_band is None:
        band = np.abs(np.gradient(wave)) if wave.size > 1 else wave * 0.05
    return WavelengthTable(_header(OI_REVN=2, INSNAME=insname),
                           {"EFF_WAVE": wave.astype(np.float32), "EFF_BAND": band.astype(np.float32)})


def _time_cols(n, target_id, mjd, int_time, time=None):
    mjd = _n(mjd, n)
    return {
        "TARGET_ID": _n(target_id, n, np.int16),
        "TIME": _n(time, n) if time is not None else np.zeros(n),  # deprecated in OIFITS2: MJD is the time
        "MJD": mjd,
        "INT_TIME": _n(int_time, n),
    }


def _flag(flag, shape):
    return np.zeros(shape, bool) if flag is None else np.broadcast_to(np.asarray(flag, bool), shape).copy()


def vis2_table(insname, arrname, *, target_id, mjd, u, v, sta_index, vis2, vis2err, flag=None, int_time=1.0,
               corrname=None, date_obs=None) -> Vis2Table:
    vis2 = np.atleast_2d(np.asarray(vis2, float))
    n = vis2.shape[0]
    cols = _time_cols(n, target_id, mjd, int_time)
    cols.update({
        "VIS2DATA": vis2,
        "VIS2ERR": np.broadcast_to(np.asarray(vis2err, float), vis2.shape).copy(),
        "UCOORD": _n(u, n), "VCOORD": _n(v, n),
        "STA_INDEX": np.asarray(sta_index, np.int16).reshape(n, 2),
        "FLAG": _flag(flag, vis2.shape),
    })
    h = _header(OI_REVN=2, DATE_OBS=date_obs or _date_obs(cols["MJD"]), ARRNAME=arrname, INSNAME=insname, CORRNAME=corrname)
    return Vis2Table(h, cols)


def t3_table(insname, arrname, *, target_id, mjd, u1, v1, u2, v2, sta_index, t3phi, t3phierr, t3amp=None,
             t3amperr=None, flag=None, int_time=1.0, corrname=None, date_obs=None) -> T3Table:
    """``t3phi``/``t3phierr`` in radians (stored in degrees)."""
    phi = np.atleast_2d(np.asarray(t3phi, float))
    n = phi.shape[0]
    cols = _time_cols(n, target_id, mjd, int_time)
    amp = np.full(phi.shape, np.nan) if t3amp is None else np.broadcast_to(np.asarray(t3amp, float), phi.shape).copy()
    amperr = np.full(phi.shape, np.nan) if t3amperr is None else np.broadcast_to(np.asarray(t3amperr, float), phi.shape).copy()
    cols.update({
        "T3AMP": amp, "T3AMPERR": amperr,
        "T3PHI": np.rad2deg(phi),
        "T3PHIERR": np.rad2deg(np.broadcast_to(np.asarray(t3phierr, float), phi.shape)),
        "U1COORD": _n(u1, n), "V1COORD": _n(v1, n), "U2COORD": _n(u2, n), "V2COORD": _n(v2, n),
        "STA_INDEX": np.asarray(sta_index, np.int16).reshape(n, 3),
        "FLAG": _flag(flag, phi.shape),
    })
    h = _header(OI_REVN=2, DATE_OBS=date_obs or _date_obs(cols["MJD"]), ARRNAME=arrname, INSNAME=insname, CORRNAME=corrname)
    return T3Table(h, cols)


def vis_table(insname, arrname, *, target_id, mjd, u, v, sta_index, visamp, visamperr, visphi, visphierr,
              flag=None, int_time=1.0, amptyp="absolute", phityp="differential", corrname=None, date_obs=None) -> VisTable:
    """``visphi``/``visphierr`` in radians (stored in degrees)."""
    amp = np.atleast_2d(np.asarray(visamp, float))
    n = amp.shape[0]
    cols = _time_cols(n, target_id, mjd, int_time)
    cols.update({
        "VISAMP": amp,
        "VISAMPERR": np.broadcast_to(np.asarray(visamperr, float), amp.shape).copy(),
        "VISPHI": np.rad2deg(np.broadcast_to(np.asarray(visphi, float), amp.shape)),
        "VISPHIERR": np.rad2deg(np.broadcast_to(np.asarray(visphierr, float), amp.shape)),
        "UCOORD": _n(u, n), "VCOORD": _n(v, n),
        "STA_INDEX": np.asarray(sta_index, np.int16).reshape(n, 2),
        "FLAG": _flag(flag, amp.shape),
    })
    h = _header(OI_REVN=2, DATE_OBS=date_obs or _date_obs(cols["MJD"]), ARRNAME=arrname, INSNAME=insname,
                AMPTYP=amptyp, PHITYP=phityp, CORRNAME=corrname)
    return VisTable(h, cols)


def flux_table(insname, arrname, *, target_id, mjd, fluxdata, fluxerr, sta_index=None, flag=None, int_time=1.0,
               calstat="U", date_obs=None) -> FluxTable:
    flux = np.atleast_2d(np.asarray(fluxdata, float))
    n = flux.shape[0]
    cols = {
        "TARGET_ID": _n(target_id, n, np.int16),
        "MJD": _n(mjd, n),
        "INT_TIME": _n(int_time, n),
        "FLUXDATA": flux,
        "FLUXERR": np.broadcast_to(np.asarray(fluxerr, float), flux.shape).copy(),
        "FLAG": _flag(flag, flux.shape),
    }
    if sta_index is not None:
        cols["STA_INDEX"] = _n(sta_index, n, np.int16)
    h = _header(OI_REVN=1, DATE_OBS=date_obs or _date_obs(cols["MJD"]), ARRNAME=arrname, INSNAME=insname, CALSTAT=calstat)
    return FluxTable(h, cols)


def new_oifits(target: TargetTable, arrays, wavelengths, data_tables, primary: dict | None = None) -> OIFits:
    """Assemble an :class:`OIFits` (main-header keywords from ``primary``)."""
    h = fits.Header()
    for k, v in (primary or {}).items():
        h[k] = v
    return OIFits(primary_header=h, tables=[target, *arrays, *wavelengths, *data_tables])
