"""Companion search in the manner of CANDID (Gallenne et al. 2015), vectorised over the grid.

1. Single star: a uniform-disk fit; χ²_r,UD (CANDID's χ²_r is χ²/N_data).
2. A grid of starting positions (x East, y North) with spacing ``step`` between ``rmin`` and
   ``rmax``; from every node a Levenberg–Marquardt fit of (x, y, flux ratio, primary diameter)
   of a uniform disk + point companion. All nodes iterate together as arrays (analytic Jacobian,
   batched 4×4 normal equations) on the array namespace ``xp`` — numpy, cupy or any array-API
   library — and, when a ``dask.distributed`` client is given, node chunks run on its workers.
3. The χ² map (χ²_r of the fit started at each node), the best binary (refined with the
   ordinary fitter for its error bars), and its significance against the single star,
   computed as CANDID does: p = P_χ²(ν·χ²_r,UD/χ²_r,bin)(x = ν) with ν = N_data − 1, and
   nσ = √(χ²₁ quantile of 1 − p) (the Gaussian-equivalent two-sided significance).
4. A detection-limit map by injection: at every position the flux ratio of a companion that,
   added to the data (with the detected companion removed), would be detected at 3σ — the UD
   diameter re-fitted (linearised) on the injected data, the binary χ² being that of the
   injected model. Bisection in log flux ratio, vectorised over positions.

Bandwidth smearing: each channel is taken uniform in wavenumber over its EFF_BAND; the grid
always uses the exact band average of the binary's V² and bispectrum (sinc-attenuated phasors,
no sampling; it costs nothing more); whether the final fits model it is decided by the rule of
``oiflow fit`` (:func:`~oiflow.fit.evaluate.decide_smearing`, at the best node) unless asked;
the final fit samples the channel (:mod:`oiflow.fit.evaluate`); the two agree to <1e-4 (tested).
The search's verdict (:func:`companion_verdict`) is that of the best binary's fit when detected,
else that of the single star.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize, special

from .. import verdict as V
from ..backend import get_xp, to_numpy
from ..errors import ConfigError, DataError
from ..units import MAS
from ..verdict import Verdict
from . import analytic
from .data import FitData, load_data
from .evaluate import ModelEvaluator, SmearingChoice, decide_smearing, requested_smearing
from .fitter import FitResult, fit_model
from .model import parse_model

log = logging.getLogger(__name__)

SUPPORTED = ("v2", "t3phi", "t3amp")
_TWO_PI = 2.0 * math.pi


# -- significance (CANDID's definition) -----------------------------------------------------------
def nsigma(chi2r_single, chi2r_binary, ndof):
    """Detection significance of a binary against a single star (CANDID, Gallenne et al. 2015 §3.2).

    p = CDF of a χ² with ν·χ²_r,single/χ²_r,binary degrees of freedom evaluated at ν; nσ is the
    normal deviate with two-sided tail p. Vectorised; 0 where the binary is not better."""
    from scipy import stats  # here: importing scipy.stats costs ~0.4 s in every worker that only calibrates

    a = np.asarray(chi2r_single, float)
    b = np.asarray(chi2r_binary, float)
    ratio = np.where(b > 0, a / np.where(b > 0, b, 1.0), np.inf)
    df = ndof * ratio
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = stats.chi2.logcdf(ndof, df)
        # underflow: P(a, x) ≈ x^a e^(−x) / Γ(a+1) / (1 − x/(a+1)) for x < a (a = df/2, x = ν/2)
        a_, x_ = df / 2.0, ndof / 2.0
        approx = a_ * np.log(x_) - x_ - special.gammaln(a_ + 1.0) - np.log1p(-x_ / (a_ + 1.0))
        logp = np.where(np.isfinite(logp), logp, approx)
    logq = logp - math.log(2.0)
    out = stats.norm.isf(np.exp(logq))
    tiny = logq < -700  # beyond double precision: asymptotic inverse of the normal tail
    if np.any(tiny):
        lq = np.where(tiny & np.isfinite(logq), logq, -1.0)
        t = -2.0 * lq
        asym = np.sqrt(np.maximum(t - np.log(t) - math.log(2 * math.pi), 0))
        out = np.where(tiny, np.where(np.isfinite(logq), asym, np.inf), out)
    out = np.where(ratio <= 1.0, 0.0, out)
    return out if out.ndim else float(out)


def ratio_at_nsigma(target: float, ndof: int) -> float:
    """The χ²_r,single/χ²_r,binary ratio whose :func:`nsigma` is ``target``."""
    hi = 1.5
    while nsigma(hi, 1.0, ndof) < target:
        hi *= 2.0
    return optimize.brentq(lambda r: nsigma(r, 1.0, ndof) - target, 1.0 + 1e-12, hi, xtol=1e-12)


def _wrap(a, xp):
    """Angles to [−π, π] (array API)."""
    return a - _TWO_PI * xp.round(a / _TWO_PI)


# -- the vectorised binary problem ----------------------------------------------------------------
@dataclass
class BinaryContext:
    """Host arrays describing the data for the vectorised binary model (picklable for Dask)."""

    U: np.ndarray  # (F,) cycles/rad at the channel's central wavelength
    V: np.ndarray
    eps: np.ndarray  # (F,) fractional bandwidth Δλ/λ (0: no smearing)
    v2_idx: np.ndarray | None
    v2_val: np.ndarray | None
    v2_err: np.ndarray | None
    t3_idx: np.ndarray | None  # (nt, 3)
    t3_conj: np.ndarray | None
    cp_val: np.ndarray | None
    cp_err: np.ndarray | None
    t3a_val: np.ndarray | None
    t3a_err: np.ndarray | None
    n_data: int

    @classmethod
    def from_data(cls, data: FitData, smearing: bool) -> "BinaryContext":
        unsupported = [b.name for b in data.blocks if b.name not in SUPPORTED]
        if unsupported:
            raise ConfigError(f"the companion search uses {', '.join(SUPPORTED)}; not {', '.join(unsupported)}")
        eps = data.freq_band / data.freq_wave if smearing else np.zeros_like(data.freq_wave)
        kw: dict[str, Any] = dict(v2_idx=None, v2_val=None, v2_err=None, t3_idx=None, t3_conj=None, cp_val=None,
                                  cp_err=None, t3a_val=None, t3a_err=None)
        for b in data.blocks:
            if b.name == "v2":
                kw.update(v2_idx=b.freq[:, 0], v2_val=b.value, v2_err=b.error)
            else:
                if kw["t3_idx"] is not None and not np.array_equal(kw["t3_idx"], b.freq):
                    raise DataError("t3phi and t3amp must come from the same triangles for the companion search")
                kw.update(t3_idx=b.freq, t3_conj=b.conj)
                if b.name == "t3phi":
                    kw.update(cp_val=b.value, cp_err=b.error)
                else:
                    kw.update(t3a_val=b.value, t3a_err=b.error)
        if data.corr:
            log.warning("OI_CORR correlations are ignored by the vectorised companion search")
        return cls(U=data.freq_u, V=data.freq_v, eps=np.nan_to_num(eps), n_data=data.n_data, **kw)


class _Device:
    """The context moved to the namespace ``xp`` (once per chunk of nodes).

    The vectorised model works on frequency-major arrays (F, n) — one row per frequency, the n
    nodes contiguous — so that picking the frequencies of a V² or a closure triangle is a copy
    of whole rows, and per-node parameters broadcast along the contiguous axis."""

    def __init__(self, ctx: BinaryContext, xp):
        self.xp = xp
        a = lambda x, dt=None: None if x is None else xp.asarray(x) if dt is None else xp.asarray(x, dtype=dt)  # noqa
        col = lambda x: None if x is None else xp.asarray(np.asarray(x, float)[:, None])  # noqa: E731
        self.U, self.V, self.half_eps = col(ctx.U), col(ctx.V), col(0.5 * ctx.eps)
        self.zfac = col((math.pi * MAS) * np.sqrt(ctx.U * ctx.U + ctx.V * ctx.V))  # z = zfac · d
        self.v2_idx = a(ctx.v2_idx, xp.int64)
        self.v2_val, self.v2_err = col(ctx.v2_val), col(ctx.v2_err)
        self.v2_u = self.v2_v = None
        if ctx.v2_idx is not None:
            self.v2_u, self.v2_v = col(ctx.U[ctx.v2_idx]), col(ctx.V[ctx.v2_idx])
        self.t3_idx = None if ctx.t3_idx is None else [a(ctx.t3_idx[:, k], xp.int64) for k in range(3)]
        self.t3_sign = self.t3_u = self.t3_v = None
        if ctx.t3_idx is not None:
            # sign of the imaginary parts (−1 where the stored frequency is the conjugate)
            sign = np.where(ctx.t3_conj, -1.0, 1.0)
            self.t3_sign = [col(sign[:, k]) if ctx.t3_conj[:, k].any() else None for k in range(3)]
            # stored (sign-folded) frequencies: dW_k/dx = conj?(G_stored) · 2π u_stored
            self.t3_u = [col(ctx.U[ctx.t3_idx[:, k]]) for k in range(3)]
            self.t3_v = [col(ctx.V[ctx.t3_idx[:, k]]) for k in range(3)]
        self.cp_val, self.cp_err = col(ctx.cp_val), col(ctx.cp_err)
        self.t3a_val, self.t3a_err = col(ctx.t3a_val), col(ctx.t3a_err)
        self.f32 = _Float32(self)


class _Float32:
    """The frequencies, signs and errors of a :class:`_Device` in single precision: the Jacobian
    only steers the Levenberg–Marquardt steps (residuals and χ² stay in double precision), and
    single precision halves the cost of its many array passes."""

    def __init__(self, dev: _Device):
        xp = dev.xp
        c = lambda x: None if x is None else xp.astype(x, xp.float32)  # noqa: E731
        self.xp = xp
        self.U, self.V = c(dev.U), c(dev.V)
        self.v2_u, self.v2_v = c(dev.v2_u), c(dev.v2_v)
        self.v2_idx, self.t3_idx, self.cp_val, self.t3a_val = dev.v2_idx, dev.t3_idx, dev.cp_val, dev.t3a_val
        self.v2_err, self.cp_err, self.t3a_err = c(dev.v2_err), c(dev.cp_err), c(dev.t3a_err)
        self.t3_sign = None if dev.t3_sign is None else [c(x) for x in dev.t3_sign]
        self.t3_u = None if dev.t3_u is None else [c(x) for x in dev.t3_u]
        self.t3_v = None if dev.t3_v is None else [c(x) for x in dev.t3_v]


_UD_SERIES = [(-1) ** k / (math.factorial(k) * math.factorial(k + 1)) for k in range(16)]


def _ud(z, xp, derivative: bool):
    """A = 2J1(z)/z and dA/dz. A power series in (z/2)² (|error| < 1e-14) when z ≤ 4 — the
    usual case of a companion search, and much cheaper than Bessel routines — else the library."""
    if float(to_numpy(xp.max(z))) <= 4.0:
        y = 0.25 * z * z
        a = xp.full_like(z, _UD_SERIES[-1])
        da = xp.full_like(z, (len(_UD_SERIES) - 1) * _UD_SERIES[-1])
        for k in range(len(_UD_SERIES) - 2, -1, -1):
            a = a * y + _UD_SERIES[k]
            if derivative and k >= 1:
                da = da * y + k * _UD_SERIES[k]
        return a, (da * 0.5 * z if derivative else None)
    tiny = z < 1e-6
    zs = xp.where(tiny, xp.ones_like(z), z)
    j0, j1 = analytic._j0_j1(zs, xp)
    v = xp.where(tiny, 1.0 - z * z / 8.0, 2.0 * j1 / zs)
    if not derivative:
        return v, None
    j2 = 2.0 * j1 / zs - j0
    return v, xp.where(tiny, -z / 4.0, -2.0 * j2 / zs)


def _cos_sin(phi, xp):
    """cos and sin of large phases: exact range reduction in double precision, then single
    precision trigonometry (|error| < 1e-7, 5–7× faster than double on common CPUs)."""
    r = phi - _TWO_PI * xp.round(phi / _TWO_PI)
    r32 = xp.astype(r, xp.float32)
    return xp.astype(xp.cos(r32), xp.float64), xp.astype(xp.sin(r32), xp.float64)


def _terms(p, dev: _Device, jacobian: bool):
    """Per frequency and node, (F, n): the primary's A = V_UD (real), the companion's
    band-averaged phasor W = ⟨exp(−2πi(ux + vy))⟩ over a channel uniform in wavenumber
    = sinc(φ Δλ/2λ) e^{−iφ}, and (with ``jacobian``) dA/dd and G = dW/dφ (dW/dx = G·2π u,
    dW/dy = G·2π v)."""
    xp = dev.xp
    phi = (_TWO_PI * MAS) * (dev.U * p[:, 0][None, :] + dev.V * p[:, 1][None, :])  # (F, n)
    c, sn = _cos_sin(phi, xp)
    z = phi * dev.half_eps
    zc, zs_ = _cos_sin(z, xp)
    tiny = xp.abs(z) < 1e-4
    zsafe = xp.where(tiny, xp.ones_like(z), z)
    s = xp.where(tiny, 1.0 - z * z / 6.0, zs_ / zsafe)
    A, dA = _ud(dev.zfac * p[:, 3][None, :], xp, jacobian)
    out = {"A": A, "Wr": s * c, "Wi": -s * sn}
    if jacobian:
        ds = xp.where(tiny, -z / 3.0, (zc - s) / zsafe) * dev.half_eps
        # G = (ds − i s) e^{−iφ}
        out["Gr"] = ds * c - s * sn
        out["Gi"] = -ds * sn - s * c
        out["dA"] = dA * dev.zfac
    return out


def _take(arr, idx, xp):
    return xp.take(arr, idx, axis=0)


def _flux_coefficients(t: dict, dev) -> dict:
    """What the models take from the terms independently of the flux ratio f, at the frequencies
    of each observable: V² = (A² + f² + 2f·A Re W)/(1+f)² and the bispectrum numerator
    N = c0 + f·lin + f²·quad + f³ (complex lin, quad; see :func:`_binary_observables`).
    Computed once, they give the models for any f cheaply (the detection-limit bisection)."""
    xp = dev.xp
    A, Wr, Wi = t["A"], t["Wr"], t["Wi"]
    c: dict = {}
    if dev.v2_idx is not None:
        Av, Rv = _take(A, dev.v2_idx, xp), _take(Wr, dev.v2_idx, xp)
        c["v2"] = (Av, Rv, Av * Av, Av * Rv)
    if dev.t3_idx is not None:
        idx = dev.t3_idx
        sg = dev.t3_sign  # −1 where the stored frequency is the conjugate: Im parts flip
        A1, A2, A3 = (_take(A, idx[k], xp) for k in range(3))
        R1, R2, R3 = (_take(Wr, idx[k], xp) for k in range(3))
        I1, I2, I3 = (_take(Wi, idx[k], xp) if sg[k] is None else _take(Wi, idx[k], xp) * sg[k]
                      for k in range(3))
        a23, a13, a12 = A2 * A3, A1 * A3, A1 * A2
        c["t3"] = dict(A=(A1, A2, A3), R=(R1, R2, R3), I=(I1, I2, I3), a=(a23, a13, a12), c0=A1 * a23,
                       lin=(a23 * R1 + a13 * R2 + a12 * R3, a23 * I1 + a13 * I2 - a12 * I3),
                       quad=(A3 * R3 + A2 * R2 + A1 * R1, A3 * I3 - A2 * I2 - A1 * I1))
    return c


def _binary_observables(t: dict, f, dev, jacobian: bool, model: bool = True, coef: dict | None = None):
    """Model blocks [(model (m, n), jacobian columns (4 × (m, n)) or None), ...] in the order V²,
    T3PHI, T3AMP. ``dev`` is a :class:`_Device` (double precision) or its :class:`_Float32`
    view (the Jacobian, with single-precision terms); ``model=False`` skips the closure phase
    and |B| models (not needed next to the Jacobian); ``coef``: :func:`_flux_coefficients` of
    ``t`` when already computed.

    V² is the band average of |V|²: (A² + f² + 2fA Re W)/(1+f)². The bispectrum is the band
    average of V_ij V_jk conj(V_ik), expanded in powers of f (each phasor product is smeared
    by the sinc of its own total phase; the f³ term has none):
    N = A1A2A3 + f³ + f(A2A3 W1 + A1A3 W2 + A1A2 W3*) + f²(A3 W3 + A2 W2* + A1 W1*), B = N/(1+f)³.
    Everything is real arithmetic on (real, imaginary) pairs; the closure-phase derivatives are
    Im(dN/N) (the (1+f)³ factor is real)."""
    xp = dev.xp
    c = coef if coef is not None else _flux_coefficients(t, dev)
    f = f[None, :]
    q = 1.0 / (1.0 + f)
    blocks = []
    two_pi = _TWO_PI * MAS
    if dev.v2_idx is not None:
        Av, Rv, AA, AR = c["v2"]
        v2 = (AA + f * f + 2.0 * f * AR) * q * q
        jac = None
        if jacobian:
            gx = 2.0 * f * Av * _take(t["Gr"], dev.v2_idx, xp) * q * q * two_pi
            jac = (gx * dev.v2_u, gx * dev.v2_v, (2.0 * f + 2.0 * AR) * q * q - 2.0 * v2 * q,
                   (2.0 * Av + 2.0 * f * Rv) * _take(t["dA"], dev.v2_idx, xp) * q * q)
        blocks.append((v2, jac))
    if dev.t3_idx is not None:
        idx = dev.t3_idx
        sg = dev.t3_sign
        t3 = c["t3"]
        A1, A2, A3 = t3["A"]
        R1, R2, R3 = t3["R"]
        I1, I2, I3 = t3["I"]
        a23, a13, a12 = t3["a"]
        lin_r, lin_i = t3["lin"]
        quad_r, quad_i = t3["quad"]
        f2 = f * f
        Nr = t3["c0"] + f2 * f + f * lin_r + f2 * quad_r
        Ni = f * lin_i + f2 * quad_i
        cols = [None, None]  # closure phase: Im(dN/N); |B|: Re(dN/N)
        want_cp, want_amp = dev.cp_val is not None, dev.t3a_val is not None
        if jacobian:
            n2 = Nr * Nr + Ni * Ni
            ir, ii = Nr / n2, -Ni / n2  # 1/N
            # d/dx: Σ_k 2π u_k [(a_k + b_k) Re G_k + i (a_k − b_k) Im G_k], with (a, b) the real
            # coefficients of (W_k, W_k*) in N; dCP = Im(dN/N), d|B|/|B| = Re(dN/N)
            ab = ((f * a23, f2 * A1), (f * a13, f2 * A2), (f2 * A3, f * a12))
            qx = qy = px = py = 0.0
            for k in range(3):
                gr = _take(t["Gr"], idx[k], xp)
                gi = _take(t["Gi"], idx[k], xp)
                if sg[k] is not None:
                    gi = gi * sg[k]
                a, b = ab[k]
                cr, ci = (a + b) * gr, (a - b) * gi  # dN/dφ_k = cr + i ci
                uk, vk = dev.t3_u[k], dev.t3_v[k]
                if want_cp:
                    im = cr * ii + ci * ir
                    qx, qy = qx + uk * im, qy + vk * im
                if want_amp:
                    re = cr * ir - ci * ii
                    px, py = px + uk * re, py + vk * re
            # d/df
            dfr = 3.0 * f2 + lin_r + 2.0 * f * quad_r
            dfi = lin_i + 2.0 * f * quad_i
            # d/dd: Σ_k dA_k ∂N/∂A_k
            d1, d2, d3 = (_take(t["dA"], idx[k], xp) for k in range(3))
            ddr = (d1 * (a23 + f * (A3 * R2 + A2 * R3) + f2 * R1) + d2 * (a13 + f * (A3 * R1 + A1 * R3) + f2 * R2)
                   + d3 * (a12 + f * (A2 * R1 + A1 * R2) + f2 * R3))
            ddi = (d1 * (f * (A3 * I2 - A2 * I3) - f2 * I1) + d2 * (f * (A3 * I1 - A1 * I3) - f2 * I2)
                   + d3 * (f * (A2 * I1 + A1 * I2) + f2 * I3))
            if want_cp:
                cols[0] = (two_pi * qx, two_pi * qy, dfr * ii + dfi * ir, ddr * ii + ddi * ir)
            if want_amp:
                cols[1] = (two_pi * px, two_pi * py, dfr * ir - dfi * ii - 3.0 * q, ddr * ir - ddi * ii)
        if want_cp:
            blocks.append((xp.atan2(Ni, Nr) if model else None, cols[0]))
        if want_amp:
            amp = xp.sqrt(Nr * Nr + Ni * Ni) * q * q * q if (model or jacobian) else None
            blocks.append((amp if model else None, tuple(col * amp for col in cols[1]) if jacobian else None))
    return blocks


def binary_residuals(p, dev: _Device, jacobian: bool = True):
    """Normalised residuals (n, M) of UD + point models for n parameter rows p = (x mas, y mas,
    flux ratio, primary diameter mas) and, with ``jacobian``, their derivatives (n, M, 4), the
    latter in single precision."""
    xp = dev.xp
    t = _terms(p, dev, jacobian)
    r = xp.permute_dims(_residuals(t, p[:, 2], dev), (1, 0))
    if not jacobian:
        return r, None
    cols = [xp.concat(c, axis=0) for c in zip(*_jacobian_blocks(t, p[:, 2], dev))]
    return r, xp.permute_dims(xp.stack(cols, axis=0), (2, 1, 0))


def _residuals(t: dict, f, dev: _Device):
    """Normalised residuals (M, n) in double precision from the terms of :func:`_terms`."""
    xp = dev.xp
    blocks = _binary_observables(t, f, dev, False)
    res = []
    k = 0
    if dev.v2_idx is not None:
        res.append((dev.v2_val - blocks[k][0]) / dev.v2_err)
        k += 1
    if dev.cp_val is not None:
        res.append(_wrap(dev.cp_val - blocks[k][0], xp) / dev.cp_err)
        k += 1
    if dev.t3a_val is not None:
        res.append((dev.t3a_val - blocks[k][0]) / dev.t3a_err)
    return xp.concat(res, axis=0)


def _jacobian_blocks(t: dict, f, dev: _Device) -> list:
    """Derivatives of the normalised residuals: per observable block (V², closure phase, |B|)
    the four single-precision columns (m, n) (x, y, flux ratio, diameter)."""
    xp = dev.xp
    g = dev.f32
    t32 = {k: xp.astype(v, xp.float32) for k, v in t.items()}
    blocks = _binary_observables(t32, xp.astype(f, xp.float32), g, True, model=False)
    errs = [e for e, present in ((g.v2_err, dev.v2_idx), (g.cp_err, dev.cp_val), (g.t3a_err, dev.t3a_val))
            if present is not None]
    return [tuple(-c / e for c in cols) for (_, cols), e in zip(blocks, errs)]


def _normal_equations(t: dict, f, r, dev: _Device):
    """JᵀJ (n, 4, 4) and Jᵀr (n, 4) in double precision from the terms (F, n) and the residuals
    (M, n): sums over the data axis of products of the single-precision Jacobian columns, block
    by block (the Jacobian is never assembled)."""
    xp = dev.xp
    r32 = xp.astype(r, xp.float32)
    A = [[0.0] * 4 for _ in range(4)]
    g = [0.0] * 4
    start = 0
    for cols in _jacobian_blocks(t, f, dev):
        m = cols[0].shape[0]
        rb = r32[start:start + m, :]
        for i in range(4):
            g[i] = g[i] + xp.sum(cols[i] * rb, axis=0)
            for j in range(i, 4):
                A[i][j] = A[i][j] + xp.sum(cols[i] * cols[j], axis=0)
        start += m
    rows = [xp.stack([A[min(i, j)][max(i, j)] for j in range(4)], axis=1) for i in range(4)]
    return xp.astype(xp.stack(rows, axis=1), xp.float64), xp.astype(xp.stack(g, axis=1), xp.float64)


def _project(p, xp):
    """Keep the flux ratio and the diameter non-negative (|·|, as CANDID)."""
    return xp.stack([p[:, 0], p[:, 1], xp.abs(p[:, 2]), xp.abs(p[:, 3])], axis=1)


def solve_nodes(p0, ctx: BinaryContext, xp=None, n_iter: int = 30, tol: float = 1e-4, merge: float = 0.02):
    """Levenberg–Marquardt from every row of ``p0`` at once; returns host arrays (p, χ²).

    A node stops when an accepted step improves its χ² by less than ``tol`` (relative) or its
    damping exceeds 1e4. Nodes that have run into the same place (x, y within ``merge`` mas and
    flux within 1 %) are merged, the one with the higher χ² taking the other's result; the
    arrays are compacted to the nodes still moving, so late iterations cost little."""
    xp = xp or get_xp("numpy")
    dev = _Device(ctx, xp)
    p_all = _project(xp.asarray(np.asarray(p0, float)), xp)
    n = p_all.shape[0]
    t = _terms(p_all, dev, True)
    r = _residuals(t, p_all[:, 2], dev)
    chi2_all = xp.sum(r * r, axis=0)
    A, g = _normal_equations(t, p_all[:, 2], r, dev)
    p, chi2 = p_all, chi2_all
    lam = xp.full((n,), 1e-3, dtype=xp.float64)
    ids = np.arange(n)  # node index of each active row (host)
    follow = np.arange(n)  # merged nodes point to the node that carries on for them
    eye = xp.eye(4, dtype=xp.float64)[None, ...]
    for it in range(n_iter):
        step = xp.linalg.solve(A + lam[:, None, None] * (A * eye + 1e-12 * eye), g[:, :, None])[:, :, 0]
        trial = _project(p - step, xp)
        t_t = _terms(trial, dev, True)
        r_t = _residuals(t_t, trial[:, 2], dev)
        chi2_t = xp.sum(r_t * r_t, axis=0)
        ok = xp.isfinite(chi2_t) & (chi2_t < chi2)
        gain = xp.where(ok, (chi2 - chi2_t) / chi2, xp.zeros_like(chi2))
        p = xp.where(ok[:, None], trial, p)
        chi2 = xp.where(ok, chi2_t, chi2)
        lam = xp.where(ok, xp.maximum(lam / 5.0, xp.full_like(lam, 1e-7)), lam * 4.0)
        ok_h = to_numpy(ok).astype(bool)
        if ok_h.all():
            A, g = _normal_equations(t_t, trial[:, 2], r_t, dev)
        elif ok_h.any():  # the normal equations of the accepted steps only
            sel = xp.asarray(np.flatnonzero(ok_h))
            sub = {k: xp.take(v, sel, axis=1) for k, v in t_t.items()}
            A_s, g_s = _normal_equations(sub, xp.take(trial[:, 2], sel, axis=0), xp.take(r_t, sel, axis=1), dev)
            pos = xp.asarray(np.cumsum(ok_h) - 1)
            okx = xp.asarray(ok_h)
            A = xp.where(okx[:, None, None], xp.take(A_s, pos, axis=0), A)
            g = xp.where(okx[:, None], xp.take(g_s, pos, axis=0), g)
        done = to_numpy((ok & (gain < tol)) | (lam > 1e4)).copy()
        if merge > 0 and it >= 4 and ids.size > 1:
            ph, ch = to_numpy(p), to_numpy(chi2)
            dist = np.hypot(ph[:, None, 0] - ph[None, :, 0], ph[:, None, 1] - ph[None, :, 1])
            same = (dist < merge) & (np.abs(ph[:, None, 2] - ph[None, :, 2]) <= 0.01 * np.abs(ph[None, :, 2]))
            worse = same & ((ch[:, None] > ch[None, :]) | ((ch[:, None] == ch[None, :])
                                                           & (ids[:, None] > ids[None, :])))
            for i in np.flatnonzero(worse.any(axis=1) & ~done):
                j = np.flatnonzero(worse[i])[0]
                follow[ids[i]] = ids[j]
                done[i] = True
        if done.any():
            p_all, chi2_all = _scatter(p_all, chi2_all, ids, p, chi2, xp)
            keep = np.flatnonzero(~done)
            if keep.size == 0:
                break
            k = xp.asarray(keep)
            p, chi2, lam = xp.take(p, k, axis=0), xp.take(chi2, k, axis=0), xp.take(lam, k, axis=0)
            A, g = xp.take(A, k, axis=0), xp.take(g, k, axis=0)
            ids = ids[keep]
    else:
        p_all, chi2_all = _scatter(p_all, chi2_all, ids, p, chi2, xp)
    p_host, chi2_host = to_numpy(p_all).copy(), to_numpy(chi2_all).copy()
    for i in range(n):  # resolve chains of merges
        j = i
        while follow[j] != j:
            j = follow[j]
        p_host[i], chi2_host[i] = p_host[j], chi2_host[j]
    return p_host, chi2_host


def _scatter(p_all, chi2_all, ids, p, chi2, xp):
    """Write the rows of the active subset (node indices ``ids``) back into the full arrays,
    with take + where only (no item assignment, so any array-API library works)."""
    n = p_all.shape[0]
    mask = np.zeros(n, bool)
    mask[ids] = True
    pos = np.zeros(n, np.int64)
    pos[ids] = np.arange(ids.size)
    m, q = xp.asarray(mask), xp.asarray(pos)
    return (xp.where(m[:, None], xp.take(p, q, axis=0), p_all),
            xp.where(m, xp.take(chi2, q, axis=0), chi2_all))


def _solve_chunk(p0, ctx, backend):
    """Dask/worker entry point: (p0, context, backend name) → (p, χ²)."""
    return solve_nodes(p0, ctx, get_xp(backend))


# -- the search -------------------------------------------------------------------------------
def default_grid(data: FitData) -> tuple[float, float, float]:
    """CANDID's defaults: rmin = λ_min/B_max (smallest scale), step = √2·rmin,
    rmax = λ_min²/(Δλ·B_max) (the bandwidth-smearing field of view), in mas."""
    b = np.hypot(data.freq_u, data.freq_v) * data.freq_wave
    bmax = float(b.max())
    lmin = float(data.freq_wave.min())
    rmin = lmin / bmax / MAS
    band = data.freq_band[data.freq_band > 0]
    rmax = (lmin**2 / (float(np.median(band)) * bmax) / MAS) if band.size else 20 * rmin
    return rmin, rmax, math.sqrt(2) * rmin


def grid_axes(rmax: float, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Map axes (mas) following the image convention: x_east(ix) = −(ix − n//2)·step,
    y(iy) = (iy − n//2)·step, n odd."""
    half = int(math.ceil(rmax / step))
    idx = np.arange(-half, half + 1, dtype=float)
    return -idx * step, idx * step


@dataclass
class CompanionResult:
    best: dict[str, float]  # x_mas, y_mas, flux_ratio, diameter_mas (+ _error)
    nsigma: float
    chi2r_single: float
    chi2r_binary: float
    diameter_single_mas: float
    n_data: int
    rmin_mas: float
    rmax_mas: float
    step_mas: float
    x_axis: np.ndarray
    y_axis: np.ndarray
    chi2_map: np.ndarray  # χ²_r of the fit started at each node (NaN outside rmin..rmax)
    nsigma_map: np.ndarray
    nodes: np.ndarray  # (n, 2) start positions
    solutions: np.ndarray  # (n, 4) converged (x, y, f, d)
    solution_chi2r: np.ndarray
    fit: FitResult | None = None
    detection: dict[str, Any] | None = None  # x_axis, y_axis, flux_ratio map, radial profile
    observables: tuple[str, ...] = ()
    files: list[str] = field(default_factory=list)
    smearing: bool = True
    smearing_choice: SmearingChoice | None = None
    timings: dict[str, float] = field(default_factory=dict)
    verdict: Verdict = field(default_factory=Verdict)

    @property
    def separation_mas(self) -> float:
        return math.hypot(self.best["x_mas"], self.best["y_mas"])

    @property
    def position_angle_deg(self) -> float:
        return math.degrees(math.atan2(self.best["x_mas"], self.best["y_mas"])) % 360.0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "best": {k: float(v) for k, v in self.best.items()},
            "separation_mas": self.separation_mas,
            "position_angle_deg": self.position_angle_deg,
            "flux_ratio": float(self.best["flux_ratio"]),
            "nsigma": float(self.nsigma),
            "chi2r_single": float(self.chi2r_single),
            "chi2r_binary": float(self.chi2r_binary),
            "chi2r_convention": "chi2 / n_data (CANDID)",
            "diameter_single_mas": float(self.diameter_single_mas),
            "n_data": int(self.n_data),
            "grid": {"rmin_mas": self.rmin_mas, "rmax_mas": self.rmax_mas, "step_mas": self.step_mas,
                     "n_nodes": int(self.nodes.shape[0])},
            "observables": list(self.observables),
            "files": list(self.files),
            "bandwidth_smearing": self.smearing,
            "smearing": self.smearing_choice.to_dict() if self.smearing_choice else None,
            "verdict": self.verdict.to_dict(),
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
        }
        if self.fit is not None:
            out["fit"] = self.fit.to_dict()
        if self.detection is not None:
            det = self.detection
            out["detection_limit"] = {
                "nsigma": det["nsigma"], "step_mas": det["step_mas"],
                "companion_removed": det["companion_removed"],
                "radius_mas": [float(r) for r in det["radius_mas"]],
                "flux_ratio_median": [_nan_none(v) for v in det["flux_ratio_median"]],
                "flux_ratio_p90": [_nan_none(v) for v in det["flux_ratio_p90"]],
            }
        return out


def _nan_none(v):
    v = float(v)
    return v if math.isfinite(v) else None


def _ud_fit(data: FitData, smearing: bool, diameter: float | None = None) -> FitResult:
    """Single-star fit: from ``diameter`` only, or (None) searched by the fitter's diameter scan."""
    rho_max = float(np.hypot(data.freq_u, data.freq_v).max())
    start = 0.5 / rho_max / MAS if diameter is None else diameter
    return fit_model({"star": {"type": "ud", "diameter": float(max(start, 1e-3))},
                      "options": {"bandwidth_smearing": bool(smearing)}}, data, search=diameter is None)


def _smearing_choice(data: FitData, spec: dict, smearing: bool | None) -> SmearingChoice:
    """The smearing of the search's fits: ``smearing`` when given, else the fitter's rule applied to
    the binary of the best node."""
    if smearing is not None:
        return requested_smearing(smearing, data)
    model = parse_model(spec)
    vals = model.values()
    r = ModelEvaluator(model, data, smearing=False).residuals(vals)
    return decide_smearing(model, data, vals, float(r @ r))


def companion_verdict(result: "CompanionResult", single: FitResult, detection_nsigma: float) -> Verdict:
    """The search's verdict: that of the best binary's fit when it is detected (≥ ``detection_nsigma``),
    with at-bound when it lies on the edge of the field; else that of the single star, with a note."""
    sep = result.separation_mas
    detected = result.nsigma >= detection_nsigma
    base = result.fit.verdict if detected and result.fit is not None else single.verdict
    found = [(base.status, r) for r in base.reasons] or [(base.status, "")]
    if detected and (sep > result.rmax_mas - result.step_mas / 2 or sep < result.rmin_mas + result.step_mas / 2):
        found.append((V.AT_BOUND, f"the best companion ({sep:.4g} mas) lies on the edge of the field searched "
                                  f"({result.rmin_mas:.4g}–{result.rmax_mas:.4g} mas): widen it"))
    if not detected:
        found.append((V.OK, f"no companion detected: nσ = {result.nsigma:.3g} < {detection_nsigma:g} (the best "
                            f"position is noise; the verdict is the single star's, the detection limit the result)"))
    status = max((st for st, _ in found), key=V.rank)
    figures = {**base.figures, "nsigma": float(result.nsigma), "chi2r_single": float(result.chi2r_single),
               "chi2r_binary": float(result.chi2r_binary), "detected": bool(detected)}
    return Verdict(status, tuple(r for _, r in found if r), figures)


def _binary_spec(x, y, f, d, smearing, n_smear=None):
    return {"star": {"type": "ud", "diameter": float(max(d, 1e-4))},
            "companion": {"type": "point", "x": float(x), "y": float(y), "flux": float(max(f, 1e-6))},
            "options": {"bandwidth_smearing": smearing, "n_smear": n_smear}}


def companion_search(files, rmin_mas: float | None = None, rmax_mas: float | None = None,
                     step_mas: float | None = None, *, observables=("v2", "t3phi"), smearing: bool | None = None,
                     n_smear: int | None = None, flux_start: float = 0.02, detection_limit: bool = True,
                     detection_step_mas: float | None = None, detection_nsigma: float = 3.0,
                     remove_companion: bool | None = None, xp=None, client=None, chunk: int | None = None,
                     threads: int | None = None, out_dir=None, plot: bool = True) -> CompanionResult:
    """CANDID-style companion search (see the module docstring).

    ``files``: OIFITS paths/objects or a :class:`FitData`. Grid defaults from
    :func:`default_grid`. ``xp``: array namespace or backend name for the grid (numpy by
    default; "cupy" on a GPU). ``client``: a ``dask.distributed.Client`` to spread node chunks.
    ``threads``: without a client, node chunks run in this many threads (default: the CPU count;
    numpy releases the GIL in its array operations). ``chunk``: nodes per chunk (default: the
    grid split evenly into two chunks per thread, at most 96 nodes each).
    ``smearing``: bandwidth smearing; None (default): decided as for ``oiflow fit``
    (:func:`~oiflow.fit.evaluate.decide_smearing`, at the best node of the grid, which itself
    always uses the exact band average). ``remove_companion``: remove the best companion before
    the detection-limit map (default: when it is detected at ≥ ``detection_nsigma``). With ``out_dir``, writes
    ``companion.json``, ``companion_maps.fits`` and PNG plots there.
    """
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    if isinstance(xp, str):
        backend, xp = xp, get_xp(xp)
    else:
        xp = xp or get_xp("numpy")
        backend = _backend_name(xp)
    data = files if isinstance(files, FitData) else load_data(files, observables)
    d_rmin, d_rmax, d_step = default_grid(data)
    rmin = d_rmin if rmin_mas is None else float(rmin_mas)
    rmax = d_rmax if rmax_mas is None else float(rmax_mas)
    step = d_step if step_mas is None else float(step_mas)
    if not (0 <= rmin < rmax) or step <= 0:
        raise ConfigError(f"invalid grid: rmin={rmin}, rmax={rmax}, step={step} (mas)")

    t = time.perf_counter()
    single = _ud_fit(data, smearing is True)
    d0 = single.values["star.diameter"]
    timings["single_star_fit"] = time.perf_counter() - t

    ctx = BinaryContext.from_data(data, smearing is not False)
    xs, ys = grid_axes(rmax, step)
    X, Y = np.meshgrid(xs, ys)
    R = np.hypot(X, Y)
    inside = (R >= rmin) & (R <= rmax)
    nodes = np.stack([X[inside], Y[inside]], axis=1)
    if nodes.shape[0] == 0:
        raise ConfigError(f"the grid has no node between rmin={rmin} and rmax={rmax} mas with step {step}")
    p0 = np.column_stack([nodes, np.full(len(nodes), flux_start), np.full(len(nodes), d0)])

    t = time.perf_counter()
    threads = threads or (os.cpu_count() or 1)
    if chunk is None:  # at least two chunks per thread (nodes converge at different rates), at most 96 nodes
        chunk = max(8, min(96, math.ceil(len(p0) / (2 * threads))))
    chunks = [p0[i:i + chunk] for i in range(0, len(p0), chunk)]
    if client is not None:
        ctx_future = client.scatter(ctx, broadcast=True)
        futures = client.map(_solve_chunk, chunks, [ctx_future] * len(chunks), [backend] * len(chunks), pure=False)
        parts = client.gather(futures)
    else:
        parts = _map_threads(lambda c: solve_nodes(c, ctx, xp), chunks, threads)
    sol = np.concatenate([s for s, _ in parts])
    sol_chi2 = np.concatenate([c for _, c in parts])
    timings["grid_fits"] = time.perf_counter() - t

    sol_chi2r = sol_chi2 / data.n_data
    sol_r = np.hypot(sol[:, 0], sol[:, 1])
    valid = (sol_r >= rmin) & (sol_r <= rmax) & np.isfinite(sol_chi2r)
    if not valid.any():
        raise DataError("no grid fit converged inside rmin..rmax")
    k = int(np.argmin(np.where(valid, sol_chi2r, np.inf)))

    t = time.perf_counter()
    x, y, f, d = sol[k]
    choice = _smearing_choice(data, _binary_spec(x, y, f, d, False, n_smear), smearing)
    fit = fit_model(_binary_spec(x, y, f, d, choice.on, n_smear), data, search=False)
    if single.smearing != choice.on:  # the single star on the same model of the channels
        single = _ud_fit(data, choice.on, d0)
    chi2r_single = single.chi2 / data.n_data
    timings["best_fit_refinement"] = time.perf_counter() - t
    chi2r_binary = min(fit.chi2 / data.n_data, float(sol_chi2r[k]))
    ns = nsigma(chi2r_single, chi2r_binary, data.n_data - 1)
    best = {"x_mas": fit.values["companion.x"], "y_mas": fit.values["companion.y"],
            "flux_ratio": fit.values["companion.flux"], "diameter_mas": fit.values["star.diameter"],
            "x_mas_error": fit.errors["companion.x"], "y_mas_error": fit.errors["companion.y"],
            "flux_ratio_error": fit.errors["companion.flux"], "diameter_mas_error": fit.errors["star.diameter"]}

    chi2_map = np.full(X.shape, np.nan)
    chi2_map[inside] = np.where(valid, sol_chi2r, np.nan)
    nsig_map = np.full(X.shape, np.nan)
    nsig_map[inside] = np.where(valid, nsigma(chi2r_single, np.minimum(sol_chi2r, chi2r_single), data.n_data - 1),
                                np.nan)

    result = CompanionResult(
        best=best, nsigma=ns, chi2r_single=chi2r_single, chi2r_binary=chi2r_binary, diameter_single_mas=d0,
        n_data=data.n_data, rmin_mas=rmin, rmax_mas=rmax, step_mas=step, x_axis=xs, y_axis=ys,
        chi2_map=chi2_map, nsigma_map=nsig_map, nodes=nodes, solutions=sol, solution_chi2r=sol_chi2r,
        fit=fit, observables=data.observables, files=data.files, smearing=choice.on, smearing_choice=choice,
        timings=timings)
    result.verdict = companion_verdict(result, single, detection_nsigma)

    if detection_limit:
        t = time.perf_counter()
        remove = (ns >= detection_nsigma) if remove_companion is None else bool(remove_companion)
        result.detection = detection_limit_map(
            data, ctx, rmin, rmax, detection_step_mas or step / 2.0, nsigma_level=detection_nsigma,
            companion=(best["x_mas"], best["y_mas"], best["flux_ratio"], best["diameter_mas"]) if remove else None,
            xp=xp, client=client, backend=backend, chunk=chunk, threads=threads)
        timings["detection_limit"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t_start
    if out_dir is not None:
        from .products import write_companion_products

        write_companion_products(result, out_dir, plot=plot)
    return result


def _map_threads(fn, items, threads: int):
    """[fn(x) for x in items], in a thread pool when there is more than one item and thread."""
    if threads <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(threads, len(items))) as pool:
        return list(pool.map(fn, items))


def _backend_name(xp) -> str:
    name = getattr(xp, "__name__", "numpy")
    for b in ("cupy", "array_api_strict", "numpy"):
        if b in name:
            return b
    return "numpy"


# -- a flux-profiled χ² map (seeds for the fitter's binaries) ------------------------------------------
def _flux_map_chunk(nodes, ctx: BinaryContext, d0: float, fluxes, xp):
    dev = _Device(ctx, xp)
    val, err, is_phase = (xp.asarray(a[:, None]) for a in _kinds(ctx))
    n = nodes.shape[0]
    p = xp.asarray(np.column_stack([nodes, np.zeros(n), np.full(n, d0)]))
    terms = _terms(p, dev, False)
    coef = _flux_coefficients(terms, dev)
    best = xp.full((n,), math.inf, dtype=xp.float64)
    best_f = xp.zeros((n,), dtype=xp.float64)
    for f in fluxes:
        model = _models(terms, xp.full((n,), float(f), dtype=xp.float64), dev, coef=coef)
        r = val - model
        r = xp.where(is_phase, _wrap(r, xp), r) / err
        chi2 = xp.sum(r * r, axis=0)
        better = chi2 < best
        best = xp.where(better, chi2, best)
        best_f = xp.where(better, xp.full_like(best_f, float(f)), best_f)
    return to_numpy(best), to_numpy(best_f)


def flux_profiled_map(nodes, ctx: BinaryContext, d0: float, fluxes, xp=None, threads: int | None = None,
                      chunk: int = 256):
    """χ² of a UD (diameter ``d0`` mas) + point companion at every node (x, y mas), minimised over
    the flux ratios ``fluxes`` (no iteration: the terms are computed once per node, the models
    for every flux ratio from them). Returns host arrays (χ², best flux ratio)."""
    xp = xp or get_xp("numpy")
    pieces = [nodes[i:i + chunk] for i in range(0, len(nodes), chunk)]
    parts = _map_threads(lambda piece: _flux_map_chunk(piece, ctx, d0, fluxes, xp), pieces,
                         threads or (os.cpu_count() or 1))
    return np.concatenate([c for c, _ in parts]), np.concatenate([f for _, f in parts])


# -- detection limits by injection ----------------------------------------------------------------
def _data_models(p, dev: _Device):
    """Model observables (n, M) in the residual order (V², closure phase, |B|)."""
    xp = dev.xp
    return xp.permute_dims(_models(_terms(p, dev, False), p[:, 2], dev), (1, 0))


def _models(t: dict, f, dev: _Device, coef: dict | None = None):
    """Model observables (M, n) from the terms of :func:`_terms` (and their
    :func:`_flux_coefficients`, when computed already)."""
    return dev.xp.concat([m for m, _ in _binary_observables(t, f, dev, False, coef=coef)], axis=0)


def _kinds(ctx: BinaryContext):
    """Per residual element: values, errors and whether it is a phase."""
    vals, errs, phase = [], [], []
    if ctx.v2_idx is not None:
        vals.append(ctx.v2_val), errs.append(ctx.v2_err), phase.append(np.zeros(ctx.v2_val.size, bool))
    if ctx.cp_val is not None:
        vals.append(ctx.cp_val), errs.append(ctx.cp_err), phase.append(np.ones(ctx.cp_val.size, bool))
    if ctx.t3a_val is not None:
        vals.append(ctx.t3a_val), errs.append(ctx.t3a_err), phase.append(np.zeros(ctx.t3a_val.size, bool))
    return np.concatenate(vals), np.concatenate(errs), np.concatenate(phase)


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
        ctx_future = client.scatter(ctx, broadcast=True)
        k = len(pieces)
        parts = client.gather(client.map(_detection_chunk, pieces, [ctx_future] * k,
                                         *[[e] * k for e in extra], pure=False))
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
