"""Synthetic OIFITS with known truth, from a visibility function of the sky.

``visfunc(u, v, wavelength)`` returns complex visibilities for spatial frequencies u, v in
cycles/radian (flat numpy arrays) — e.g. a lambda around :mod:`oiflow.fit.analytic`
functions or a fitted model. Two ways to get a uv coverage:

* :func:`from_template` — take a real file's coverage (tables, rows, channels, flags), replace
  the values by the model plus Gaussian noise of the file's own error bars (or a given one);
* :func:`synthetic_oifits` — explicit baselines (u, v in metres per row) and wavelengths.

Noise is Gaussian on V², on closure phase (radians, then wrapped), on T3AMP and VISAMP/VISPHI.
Deterministic under ``seed``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..observables import closure_phase, t3_uv, vis2, wrap_phase
from ..oifits.build import array_table, new_oifits, t3_table, target_table, vis2_table, wavelength_table
from ..oifits.model import OIFits, T3Table, Vis2Table, VisTable

VisFunc = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _model_vis2(visfunc: VisFunc, u_m, v_m, wave):
    return vis2(visfunc(u_m / wave, v_m / wave, wave))


def _model_t3(visfunc: VisFunc, u1, v1, u2, v2, wave):
    (a, b), (c, d), (e, f) = t3_uv(u1, v1, u2, v2)
    v_ab = visfunc(a / wave, b / wave, wave)
    v_bc = visfunc(c / wave, d / wave, wave)
    v_ca = visfunc(e / wave, f / wave, wave)
    bis = v_ab * v_bc * v_ca
    return np.abs(bis), np.angle(bis)


def from_template(template: OIFits, visfunc: VisFunc, *, seed: int = 0, vis2_err: float | None = None,
                  t3phi_err: float | None = None, noise: bool = True) -> OIFits:
    """Copy ``template`` and replace its V², T3 and VIS values by ``visfunc`` + noise.

    Errors stay those of the template unless ``vis2_err`` (absolute) / ``t3phi_err`` (radians)
    are given. With ``noise=False`` the values are exact (errors unchanged).
    """
    rng = np.random.default_rng(seed)
    oi = template.copy()
    for table in oi.tables:
        if isinstance(table, (Vis2Table, T3Table, VisTable)):
            wave = oi.wavelength_of(table).eff_wave[None, :]
        if isinstance(table, Vis2Table):
            u = np.asarray(table["UCOORD"], float)[:, None]
            v = np.asarray(table["VCOORD"], float)[:, None]
            model = _model_vis2(visfunc, u + 0 * wave, v + 0 * wave, wave + 0 * u)
            err = np.full(model.shape, vis2_err) if vis2_err is not None else np.abs(np.asarray(table["VIS2ERR"], float))
            err = np.where(np.isfinite(err) & (err > 0), err, np.nanmedian(err[err > 0]) if np.any(err > 0) else 0.01)
            table.columns["VIS2ERR"] = err
            table.columns["VIS2DATA"] = model + (rng.normal(size=model.shape) * err if noise else 0.0)
        elif isinstance(table, T3Table):
            cols = [np.asarray(table[c], float)[:, None] for c in ("U1COORD", "V1COORD", "U2COORD", "V2COORD")]
            shape = (table.nrows, wave.shape[1])
            u1, v1, u2, v2 = (np.broadcast_to(c, shape) for c in cols)
            amp, phi = _model_t3(visfunc, u1, v1, u2, v2, np.broadcast_to(wave, shape))
            perr = (np.full(shape, t3phi_err) if t3phi_err is not None
                    else np.deg2rad(np.abs(np.asarray(table["T3PHIERR"], float))))
            perr = np.where(np.isfinite(perr) & (perr > 0), perr, np.deg2rad(1.0))
            aerr = np.asarray(table.get("T3AMPERR", np.full(shape, np.nan)), float)
            aerr = np.where(np.isfinite(aerr) & (aerr > 0), aerr, 0.01)
            table.columns["T3PHIERR"] = np.rad2deg(perr)
            table.columns["T3PHI"] = np.rad2deg(wrap_phase(phi + (rng.normal(size=shape) * perr if noise else 0.0), np))
            table.columns["T3AMPERR"] = aerr
            table.columns["T3AMP"] = amp + (rng.normal(size=shape) * aerr if noise else 0.0)
        elif isinstance(table, VisTable):
            u = np.asarray(table["UCOORD"], float)[:, None]
            v = np.asarray(table["VCOORD"], float)[:, None]
            shape = (table.nrows, wave.shape[1])
            vis = visfunc(np.broadcast_to(u / wave, shape), np.broadcast_to(v / wave, shape), np.broadcast_to(wave, shape))
            aerr = np.asarray(table.get("VISAMPERR", np.full(shape, 0.01)), float)
            aerr = np.where(np.isfinite(aerr) & (aerr > 0), aerr, 0.01)
            perr = np.deg2rad(np.asarray(table.get("VISPHIERR", np.full(shape, 1.0)), float))
            perr = np.where(np.isfinite(perr) & (perr > 0), perr, np.deg2rad(1.0))
            table.columns["VISAMP"] = np.abs(vis) + (rng.normal(size=shape) * aerr if noise else 0.0)
            table.columns["VISAMPERR"] = aerr
            phase = np.angle(vis) + (rng.normal(size=shape) * perr if noise else 0.0)
            table.columns["VISPHI"] = np.rad2deg(wrap_phase(phase, np))
            table.columns["VISPHIERR"] = np.rad2deg(perr)
    oi.path = None
    oi.read_findings = []
    return oi


def synthetic_oifits(visfunc: VisFunc, *, u, v, wavelength, sta_index=None, station_xyz=None, mjd=60000.0,
                     vis2_err=0.01, t3phi_err=np.deg2rad(1.0), t3amp_err=0.01, seed=0, noise=True,
                     target="SIM", insname="SIM", arrname="SIM") -> OIFits:
    """An OIFITS2 (OI_VIS2 + OI_T3) for telescopes at ``station_xyz`` or explicit baselines.

    Give either ``station_xyz`` (n_tel × 3, metres, x East, y North; the uv of one snapshot is
    the station differences — all baselines and triangles are built) or explicit per-row
    ``u``, ``v`` (metres) with ``sta_index`` (rows × 2) for V² only.
    """
    from ..observables import baselines, triangles

    rng = np.random.default_rng(seed)
    wave = np.atleast_1d(np.asarray(wavelength, float))
    tables_v2, tables_t3 = [], []
    if station_xyz is not None:
        xyz = np.asarray(station_xyz, float)
        ntel = xyz.shape[0]
        bl = baselines(ntel)
        tr = triangles(ntel)
        uu = np.array([xyz[j, 0] - xyz[i, 0] for i, j in bl])
        vv = np.array([xyz[j, 1] - xyz[i, 1] for i, j in bl])
        sta = np.array([(i + 1, j + 1) for i, j in bl])
        sta_names = [f"S{k + 1}" for k in range(ntel)]
    else:
        uu, vv = np.atleast_1d(np.asarray(u, float)), np.atleast_1d(np.asarray(v, float))
        sta = np.asarray(sta_index if sta_index is not None else [(1, 2)] * uu.size)
        ntel = int(sta.max())
        sta_names = [f"S{k + 1}" for k in range(ntel)]
        xyz = np.zeros((ntel, 3))
        tr = []
    shape = (uu.size, wave.size)
    model = _model_vis2(visfunc, uu[:, None] + 0 * wave, vv[:, None] + 0 * wave, wave[None, :] + 0 * uu[:, None])
    err2 = np.broadcast_to(np.asarray(vis2_err, float), shape)
    data2 = model + (rng.normal(size=shape) * err2 if noise else 0.0)
    tables_v2.append(vis2_table(insname, arrname, target_id=1, mjd=mjd, u=uu, v=vv, sta_index=sta, vis2=data2, vis2err=err2))
    if tr:
        u1 = np.array([xyz[j, 0] - xyz[i, 0] for i, j, k in tr])
        v1 = np.array([xyz[j, 1] - xyz[i, 1] for i, j, k in tr])
        u2 = np.array([xyz[k, 0] - xyz[j, 0] for i, j, k in tr])
        v2 = np.array([xyz[k, 1] - xyz[j, 1] for i, j, k in tr])
        tshape = (len(tr), wave.size)
        W = np.broadcast_to(wave, tshape)
        amp, phi = _model_t3(visfunc, np.broadcast_to(u1[:, None], tshape), np.broadcast_to(v1[:, None], tshape),
                             np.broadcast_to(u2[:, None], tshape), np.broadcast_to(v2[:, None], tshape), W)
        perr = np.broadcast_to(np.asarray(t3phi_err, float), tshape)
        aerr = np.broadcast_to(np.asarray(t3amp_err, float), tshape)
        phi_n = wrap_phase(phi + (rng.normal(size=tshape) * perr if noise else 0.0), np)
        amp_n = amp + (rng.normal(size=tshape) * aerr if noise else 0.0)
        tables_t3.append(t3_table(insname, arrname, target_id=1, mjd=mjd, u1=u1, v1=v1, u2=u2, v2=v2,
                                  sta_index=np.array([(i + 1, j + 1, k + 1) for i, j, k in tr]),
                                  t3phi=phi_n, t3phierr=perr, t3amp=amp_n, t3amperr=aerr))
    return new_oifits(
        target_table([target]),
        [array_table(arrname, sta_names, xyz, frame="SKY")],
        [wavelength_table(insname, wave)],
        tables_v2 + tables_t3,
        primary={"OBJECT": target, "INSTRUME": insname, "TELESCOP": arrname},
    )


__all__ = ["from_template", "synthetic_oifits", "closure_phase"]


def earth_rotation_oifits(visfunc: VisFunc, *, configuration: str | list[str], dec_deg: float, hour_angles_h,
                          wavelength, vis_noise: float, v2_calibration: float = 0.02, facility: str = "VLTI",
                          seed: int = 0, target: str = "SIM", mjd: float = 60000.0, insname: str = "SIM") -> OIFits:
    """An OIFITS2 (OI_VIS2 + OI_T3) of an array observing a target at declination ``dec_deg``
    at the hour angles ``hour_angles_h`` (hours): all baselines and closure triangles of the
    stations of ``configuration`` (a name of :data:`oiflow.simulate.geometry.CONFIGURATIONS`
    or a station list of ``facility``), projected by Earth rotation.

    Error model (from the true visibilities): each baseline's complex visibility carries
    Gaussian noise of standard deviation ``vis_noise`` (absolute) and V² a relative
    calibration error ``v2_calibration``: σ(V²) = √((2|V|σ_V + σ_V²)² + (c V²)²); a closure
    phase adds the phase errors of its three baselines, σ(φ) = √Σ (σ_V/max(|V_k|, σ_V))²
    (radians, at most π); σ(T3AMP) = |B| σ(φ). Values are the model plus that noise
    (deterministic under ``seed``).
    """
    from ..observables import baselines, triangles
    from ..units import DEG
    from ..site import resolve_stations
    from .geometry import project_baselines

    rng = np.random.default_rng(seed)
    site, stations = resolve_stations(configuration, facility)
    enu = site.enu(stations)
    ha = np.asarray(hour_angles_h, float) * 15.0 * DEG
    lat = site.latitude_deg * DEG
    dec = dec_deg * DEG
    wave = np.atleast_1d(np.asarray(wavelength, float))
    bl, tr = baselines(len(stations)), triangles(len(stations))
    nt = ha.size
    mjd_rows = mjd + np.arange(nt) * 0.0417  # one hour apart (labels only: uv come from the hour angles)

    def project(pairs):
        d = np.array([enu[j] - enu[i] for i, j in pairs])
        u, v, _ = project_baselines(d, ha, dec, lat)  # (T, B)
        return u.ravel(), v.ravel()

    u, v = project(bl)
    vis = visfunc(u[:, None] / wave, v[:, None] / wave, np.broadcast_to(wave, (u.size, wave.size)))
    amp = np.abs(vis)
    s = float(vis_noise)
    v2err = np.hypot(2 * amp * s + s * s, v2_calibration * amp**2)
    v2 = amp**2 + rng.normal(size=amp.shape) * v2err
    sta2 = np.tile(np.array([(i + 1, j + 1) for i, j in bl]), (nt, 1))
    tables = [vis2_table(insname, "SIM", target_id=1, mjd=np.repeat(mjd_rows, len(bl)), u=u, v=v, sta_index=sta2,
                         vis2=v2, vis2err=v2err)]
    if tr:
        u1, v1 = project([(i, j) for i, j, k in tr])
        u2, v2_ = project([(j, k) for i, j, k in tr])
        (a, b), (c, d), (e, f) = t3_uv(u1[:, None] + 0 * wave, v1[:, None] + 0 * wave, u2[:, None] + 0 * wave,
                                       v2_[:, None] + 0 * wave)
        W = np.broadcast_to(wave, a.shape)
        legs = [visfunc(x / W, y / W, W) for x, y in ((a, b), (c, d), (e, f))]
        bis = legs[0] * legs[1] * legs[2]
        perr = np.minimum(np.sqrt(sum((s / np.maximum(np.abs(leg), s)) ** 2 for leg in legs)), np.pi)
        phi = wrap_phase(np.angle(bis) + rng.normal(size=bis.shape) * perr, np)
        aerr = np.abs(bis) * perr + s**3
        t3amp = np.abs(bis) + rng.normal(size=bis.shape) * aerr
        sta3 = np.tile(np.array([(i + 1, j + 1, k + 1) for i, j, k in tr]), (nt, 1))
        tables.append(t3_table(insname, "SIM", target_id=1, mjd=np.repeat(mjd_rows, len(tr)), u1=u1, v1=v1, u2=u2,
                               v2=v2_, sta_index=sta3, t3phi=phi, t3phierr=perr, t3amp=t3amp, t3amperr=aerr))
    return new_oifits(
        target_table([target], dec_deg=dec_deg),
        [array_table("SIM", stations, enu, frame="SKY")],
        [wavelength_table(insname, wave)],
        tables,
        primary={"OBJECT": target, "INSTRUME": insname, "TELESCOP": site.name},
    )
