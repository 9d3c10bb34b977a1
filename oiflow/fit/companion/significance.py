"""The detection significance of a companion, as CANDID defines it (Gallenne et al. 2015 §3.2):
a binary's χ²_r against a single star's, as a Gaussian-equivalent number of σ."""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, special


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
