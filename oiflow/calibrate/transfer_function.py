"""Transfer-function estimation and interpolation (CALIBRATION.md §1–4; yoco/pndrs method).

On a calibrator of uniform-disk diameter θ ± σθ, per baseline and channel::

    TF²   = V²_raw / V²_UD(θ),      σ²_TF/TF² = (σ_raw/V²_raw)² + (σ_UD/V²_UD)²,
    σ_UD  = |V²_UD(θ+σθ) − V²_UD(θ−σθ)| / 2
    TFφ   = T3PHI_raw − arg(V_UD,1 V_UD,2 V_UD,3)       (0 or π for a UD)

The UD visibility is :func:`oiflow.fit.analytic.uniform_disk` (the one home of analytic models).
TF errors are floored (2% of TF, 0.1°) and the TF is interpolated at the science times, per
setup × baseline × channel, with one of the modes below (``interpolate``):

``nearest``  the calibrator point nearest in time;
``linear``   linear interpolation between the neighbouring points (constant outside), yoco mode 0;
``smooth``   Gaussian-weighted mean, w = exp(−(Δt/L)²), L = 0.8 h by default, yoco mode 1 (pndrs default);
``average``  weighted mean of the night, yoco mode 2;
``linfit``   weighted straight-line fit in time, covariance scaled by max(χ²_red, 1), yoco mode 3.

Errors of smooth/average follow yoco ``oiFitsTfSmoothLength`` errMode 0:
σ² = χ² σ_o² (Σw)^{1−1/χ²}, σ_o² = 1/Σ w s, χ² = max(Σ w s (TF_c − TF(t_c))² / Σ w, 1), s = 1/σ_c².
Phases are averaged as complex numbers: arg Σ w s e^{iφ}. Too few points for a mode fall back to
``average``.
"""

from __future__ import annotations

import numpy as np

from ..errors import CalibrationError
from ..fit.analytic import uniform_disk
from ..observables import wrap_phase
from ..units import MAS

MODES = ("nearest", "linear", "smooth", "average", "linfit")
MIN_POINTS = {"nearest": 1, "linear": 2, "smooth": 1, "average": 1, "linfit": 3}


def ud_visibility(diameter_mas, u_m, v_m, wavelength_m) -> np.ndarray:
    """Real UD visibility 2J1(x)/x for baselines (u, v) metres at ``wavelength_m``."""
    d = float(diameter_mas) * MAS
    u = np.asarray(u_m, float) / np.asarray(wavelength_m, float)
    v = np.asarray(v_m, float) / np.asarray(wavelength_m, float)
    shape = np.broadcast_shapes(u.shape, v.shape)
    out = uniform_disk(np.broadcast_to(u, shape).ravel(), np.broadcast_to(v, shape).ravel(), d, np)
    return np.real(out).reshape(shape)


def ud_vis2(diameter_mas, u_m, v_m, wavelength_m) -> np.ndarray:
    return ud_visibility(diameter_mas, u_m, v_m, wavelength_m) ** 2


def tf_vis2_points(vis2, vis2_err, diameter_mas, diameter_err_mas, u_m, v_m, wavelength_m):
    """TF² and its error on calibrator points (arrays of the same shape).

    Returns (tf, tf_err, tf_err_diameter): the last is the part due to the diameter alone
    (systematic, the same for every point calibrated with this star)."""
    model = ud_vis2(diameter_mas, u_m, v_m, wavelength_m)
    lo = ud_vis2(max(diameter_mas - diameter_err_mas, 0.0), u_m, v_m, wavelength_m)
    hi = ud_vis2(diameter_mas + diameter_err_mas, u_m, v_m, wavelength_m)
    sig_model = np.abs(hi - lo) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        tf = vis2 / model
        err_diam = np.abs(tf) * sig_model / model
        err = np.sqrt((vis2_err / model) ** 2 + err_diam**2)
    return tf, err, err_diam


def tf_t3phi_points(t3phi, u1, v1, u2, v2, wavelength_m, diameter_mas):
    """Instrumental closure phase on calibrator points: T3PHI − arg(V_UD(ij) V_UD(jk) V_UD(ki))."""
    va = ud_visibility(diameter_mas, u1, v1, wavelength_m)
    vb = ud_visibility(diameter_mas, u2, v2, wavelength_m)
    vc = ud_visibility(diameter_mas, -(np.asarray(u1) + u2), -(np.asarray(v1) + v2), wavelength_m)
    model_phase = np.angle(va * vb * vc + 0j)
    return wrap_phase(np.asarray(t3phi, float) - model_phase, np)


def tf_t3amp_points(t3amp, t3amp_err, diameter_mas, diameter_err_mas, u1, v1, u2, v2, wavelength_m):
    """T3AMP TF = T3AMP_raw / |V_UD(ij) V_UD(jk) V_UD(ki)| with the diameter error as for V²."""
    def prod(d):
        va = ud_visibility(d, u1, v1, wavelength_m)
        vb = ud_visibility(d, u2, v2, wavelength_m)
        vc = ud_visibility(d, -(np.asarray(u1) + u2), -(np.asarray(v1) + v2), wavelength_m)
        return np.abs(va * vb * vc)

    model = prod(diameter_mas)
    sig_model = np.abs(prod(diameter_mas + diameter_err_mas) - prod(max(diameter_mas - diameter_err_mas, 0.0))) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        tf = t3amp / model
        err_diam = np.abs(tf) * sig_model / model
        err = np.sqrt((t3amp_err / model) ** 2 + err_diam**2)
    return tf, err, err_diam


def _weighted_stats(w, s, y, t_c, predict_at_cal, phase):
    """yoco errMode 0 from weights w (N, M) [point c, target time m], s (N,), y (N,)."""
    ws = w * s[:, None]
    sw = ws.sum(axis=0)
    if phase:
        z = (ws * np.exp(1j * y)[:, None]).sum(axis=0)
        val = np.angle(z)
    else:
        val = (ws * y[:, None]).sum(axis=0) / sw
    sig_o2 = 1.0 / sw
    res = y - predict_at_cal
    if phase:
        res = wrap_phase(res, np)
    chi2 = np.maximum((ws * (res**2)[:, None]).sum(axis=0) / np.maximum(w.sum(axis=0), 1e-300), 1.0)
    sumw = w.sum(axis=0)
    err = np.sqrt(chi2 * sig_o2 * np.power(np.maximum(sumw, 1e-300), 1.0 - 1.0 / chi2))
    return val, err


def interpolate(t_cal, y, err, t_sci, mode: str = "smooth", window_h: float = 0.8, phase: bool = False):
    """Transfer function and its error at times ``t_sci`` (MJD) from points (t_cal, y ± err).

    1-D arrays; ``phase=True`` for angles in radians (complex averaging, wrapped results).
    """
    if mode not in MODES:
        raise CalibrationError(f"unknown TF interpolation mode {mode!r}; use one of {', '.join(MODES)}")
    t_cal = np.asarray(t_cal, float)
    y = np.asarray(y, float)
    err = np.asarray(err, float)
    t_sci = np.atleast_1d(np.asarray(t_sci, float))
    ok = np.isfinite(t_cal) & np.isfinite(y) & np.isfinite(err) & (err > 0)
    t_cal, y, err = t_cal[ok], y[ok], err[ok]
    n = t_cal.size
    if n == 0:
        raise CalibrationError("no usable transfer-function point")
    if n < MIN_POINTS[mode]:
        mode = "average"
    s = 1.0 / err**2
    if mode == "nearest":
        k = np.argmin(np.abs(t_sci[None, :] - t_cal[:, None]), axis=0)
        return y[k], err[k]
    if mode == "linear":
        order = np.argsort(t_cal)
        tc, yc, ec = t_cal[order], y[order], err[order]
        idx = np.clip(np.searchsorted(tc, t_sci) - 1, 0, n - 2)
        t0, t1 = tc[idx], tc[idx + 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.where(t1 > t0, (t_sci - t0) / (t1 - t0), 0.0)
        a = np.clip(a, 0.0, 1.0)
        d = yc[idx + 1] - yc[idx]
        if phase:
            d = wrap_phase(d, np)
        val = yc[idx] + a * d
        val = wrap_phase(val, np) if phase else val
        return val, np.sqrt(((1 - a) * ec[idx]) ** 2 + (a * ec[idx + 1]) ** 2)
    if mode == "linfit":
        t0 = np.average(t_cal, weights=s)
        ref = np.angle(np.sum(s * np.exp(1j * y))) if phase else 0.0
        yy = wrap_phase(y - ref, np) if phase else y
        design = np.stack([np.ones(n), (t_cal - t0) * 24.0], axis=1)
        cov = np.linalg.inv(design.T @ (design * s[:, None]))
        coef = cov @ (design.T @ (s * yy))
        chi2 = float(np.sum(s * (yy - design @ coef) ** 2) / (n - 2))
        cov = cov * max(chi2, 1.0)
        x = np.stack([np.ones_like(t_sci), (t_sci - t0) * 24.0], axis=1)
        val = x @ coef
        e = np.sqrt(np.einsum("mi,ij,mj->m", x, cov, x))
        return (wrap_phase(val + ref, np) if phase else val), e
    L = window_h / 24.0
    if mode == "smooth":
        w = np.exp(-(((t_sci[None, :] - t_cal[:, None]) / L) ** 2))
        wc = np.exp(-(((t_cal[None, :] - t_cal[:, None]) / L) ** 2))
    else:  # average
        w = np.ones((n, t_sci.size))
        wc = np.ones((n, n))
    wsc = wc * s[:, None]
    if phase:
        pred = np.angle((wsc * np.exp(1j * y)[:, None]).sum(axis=0))
    else:
        pred = (wsc * y[:, None]).sum(axis=0) / wsc.sum(axis=0)
    # points far (≫ L) from every calibrator get vanishing weights: keep them finite
    w = np.maximum(w, 1e-300)
    return _weighted_stats(w, s, y, t_cal, pred, phase)


def floor_errors(tf, err, min_rel: float = 0.02):
    return np.maximum(err, min_rel * np.abs(tf))


def calibrate_vis2(vis2, vis2_err, tf, tf_err):
    """V²_cal = V²/TF², σ = √(σ² + (V²_cal σ_TF)²)/TF² (no division by a small V²)."""
    cal = vis2 / tf
    return cal, np.sqrt(vis2_err**2 + (cal * tf_err) ** 2) / np.abs(tf)


def calibrate_t3phi(t3phi, t3phi_err, tf_phi, tf_phi_err):
    return wrap_phase(t3phi - tf_phi, np), np.sqrt(t3phi_err**2 + tf_phi_err**2)
