"""The vectorised binary model: a uniform disk + a point companion at n parameter rows
p = (x mas, y mas, flux ratio, primary diameter mas) at once, its observables (V², closure phase,
|B|, band-averaged), normalised residuals and analytic Jacobian, on a :class:`~.device._Device`.
Arrays are frequency-major (F, n): one row per frequency, the n nodes contiguous."""

from __future__ import annotations

import math

import numpy as np

from ...backend import to_numpy
from ...units import MAS
from .. import analytic
from .device import BinaryContext, _Device

_TWO_PI = 2.0 * math.pi


def _wrap(a, xp):
    """Angles to [−π, π] (array API)."""
    return a - _TWO_PI * xp.round(a / _TWO_PI)


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
