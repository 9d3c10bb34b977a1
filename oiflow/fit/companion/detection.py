"""Detection limits by injection: at every position the flux ratio of a companion that, added to
the data (with the detected companion removed), would be detected at ``nsigma_level`` — the UD
diameter re-fitted (linearised) on the injected data; bisection in log flux ratio, vectorised
over positions."""

from __future__ import annotations

import math
import os

import numpy as np
from scipy import optimize

from ...backend import get_xp, to_numpy
from ..data import FitData
from .device import BinaryContext, _Device
from .dispatch import _map_threads, _on_workers
from .grid import grid_axes
from .kernel import _binary_observables, _data_models, _flux_coefficients, _kinds, _terms, _wrap
from .significance import ratio_at_nsigma


def _detection_chunk(pos, ctx, backend, base_val, d0, ratio3, n_iter, fmin, fmax):
    """Flux ratios at the detection threshold for a chunk of positions (bisection in log f)."""
    xp = get_xp(backend)
    dev = _Device(ctx, xp)
    _, err, is_phase = _kinds(ctx)
    err = xp.asarray(err)
    is_phase = xp.asarray(is_phase)
    base = xp.asarray(base_val)  # data with the detected companion removed
    n = pos.shape[0]
    single = _data_models(xp.asarray(np.array([[0.0, 0.0, 0.0, d0]])), dev)[0, :]  # (M,)
    r0 = base - single
    r0 = xp.where(is_phase, _wrap(r0, xp), r0) / err
    chi2_0 = float(to_numpy(xp.sum(r0 * r0)))
    # derivative of the single-star model with respect to its diameter (for the linearised refit)
    h = max(1e-4 * d0, 1e-5)
    plus = _data_models(xp.asarray(np.array([[0.0, 0.0, 0.0, d0 + h]])), dev)[0, :]
    minus = _data_models(xp.asarray(np.array([[0.0, 0.0, 0.0, max(d0 - h, 0.0)]])), dev)[0, :]
    jd = (plus - minus) / (h + min(h, d0)) / err
    jj = float(to_numpy(xp.sum(jd * jd)))
    p = xp.stack([xp.asarray(pos[:, 0]), xp.asarray(pos[:, 1]), xp.zeros((n,), dtype=xp.float64),
                  xp.full((n,), d0, dtype=xp.float64)], axis=1)
    terms = _terms(p, dev, False)
    coef = _flux_coefficients(terms, dev)  # the models for any flux ratio, without the terms again
    lo = xp.full((n,), math.log(fmin), dtype=xp.float64)
    hi = xp.full((n,), math.log(fmax), dtype=xp.float64)
    # per observable block (V², closure phase, |B|): slices of the single-star model, 1/error,
    # residual and diameter derivative, as (m, 1) columns
    sizes = [v.size for v in (ctx.v2_val, ctx.cp_val, ctx.t3a_val) if v is not None]
    parts, start = [], 0
    for m in sizes:
        sl = slice(start, start + m)
        parts.append((single[sl][:, None], 1.0 / err[sl][:, None], r0[sl][:, None], jd[sl][:, None],
                      bool(to_numpy(is_phase[start]))))
        start += m

    def ratio(logf):
        chi2 = proj = 0.0
        for (model, _), (single_b, inv_err, r0_b, jd_b, phase) in zip(
                _binary_observables(terms, xp.exp(logf), dev, False, coef=coef), parts):
            delta = model - single_b  # (m, n)
            r = r0_b + (_wrap(delta, xp) if phase else delta) * inv_err  # the single star on the injected data
            chi2 = chi2 + xp.sum(r * r, axis=0)
            proj = proj + xp.sum(r * jd_b, axis=0)
        return (chi2 - proj**2 / jj) / chi2_0  # the binary (the injected model) keeps χ² = chi2_0

    reach = ratio(hi) >= ratio3
    for _ in range(n_iter):
        mid = 0.5 * (lo + hi)
        det = ratio(mid) >= ratio3
        hi = xp.where(det, mid, hi)
        lo = xp.where(det, lo, mid)
    f3 = xp.where(reach, xp.exp(0.5 * (lo + hi)), xp.full_like(lo, float("nan")))
    return to_numpy(f3)


def detection_limit_map(data: FitData, ctx: BinaryContext, rmin: float, rmax: float, step: float, *,
                        nsigma_level: float = 3.0, companion=None, xp=None, client=None, backend: str = "numpy",
                        chunk: int = 256, threads: int | None = None, n_iter: int = 16, fmin: float = 1e-5,
                        fmax: float = 1.0) -> dict:
    """Flux ratio detectable at ``nsigma_level`` at every position (injection, see module doc)."""
    xp = xp or get_xp(backend)
    dev = _Device(ctx, xp)
    val, err, is_phase = _kinds(ctx)
    base = val.copy()
    d_single = None
    if companion is not None:
        x, y, f, d = companion
        with_c = to_numpy(_data_models(xp.asarray(np.array([[x, y, f, d]])), dev))[0]
        without = to_numpy(_data_models(xp.asarray(np.array([[0.0, 0.0, 0.0, d]])), dev))[0]
        diff = with_c - without
        diff = np.where(is_phase, (diff + np.pi) % (2 * np.pi) - np.pi, diff)
        base = base - diff
        base = np.where(is_phase, (base + np.pi) % (2 * np.pi) - np.pi, base)
        d_single = d
    # single-star fit on the (cleaned) data: 1-D least squares on the diameter
    def resid(dd):
        m = to_numpy(_data_models(xp.asarray(np.array([[0.0, 0.0, 0.0, abs(dd[0])]])), dev))[0]
        r = base - m
        r = np.where(is_phase, (r + np.pi) % (2 * np.pi) - np.pi, r)
        return r / err

    start = d_single if d_single is not None else float(np.median(np.abs(ctx.U)) * 0 + 0.5)
    d0 = float(abs(optimize.least_squares(resid, [start], x_scale="jac").x[0]))
    ratio3 = ratio_at_nsigma(nsigma_level, data.n_data - 1)
    xs, ys = grid_axes(rmax, step)
    X, Y = np.meshgrid(xs, ys)
    R = np.hypot(X, Y)
    inside = (R >= rmin) & (R <= rmax)
    pos = np.stack([X[inside], Y[inside]], axis=1)
    pieces = [pos[i:i + chunk] for i in range(0, len(pos), chunk)]
    extra = (backend, base, d0, ratio3, n_iter, fmin, fmax)
    if client is not None:
        parts = _on_workers(client, _detection_chunk, pieces, ctx, *extra)
    else:
        parts = _map_threads(lambda piece: _detection_chunk(piece, ctx, *extra), pieces,
                             threads or (os.cpu_count() or 1))
    f3 = np.concatenate(parts) if parts else np.zeros(0)
    fmap = np.full(X.shape, np.nan)
    fmap[inside] = f3
    edges = np.arange(rmin, rmax + step, step)
    rr = R[inside]
    radius, med, p90 = [], [], []
    for a, b in zip(edges[:-1], edges[1:]):
        s = (rr >= a) & (rr < b) & np.isfinite(f3)
        if s.sum() >= 3:
            radius.append(0.5 * (a + b))
            med.append(float(np.median(f3[s])))
            p90.append(float(np.percentile(f3[s], 90)))
    return {"x_axis": xs, "y_axis": ys, "flux_ratio": fmap, "nsigma": nsigma_level, "step_mas": step,
            "diameter_mas": d0, "companion_removed": companion is not None, "radius_mas": np.array(radius),
            "flux_ratio_median": np.array(med), "flux_ratio_p90": np.array(p90)}
