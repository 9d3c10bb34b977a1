"""What a fit is worth: the checks behind its verdict (statuses of :mod:`oiflow.verdict`).

* **Unconstrained** (error = inf, named): a free parameter whose Jacobian column vanishes, or
  that takes part in a direction the data do not see (a singular value of the column-normalised
  Jacobian below :data:`RANK_RTOL` × the largest), or whose error exceeds the range it could
  take (:func:`plausible_range`). The covariance of the other parameters is computed with the
  degenerate ones held at their values.
* **At a bound**: a parameter within 1e-6 (relative) of a bound of its range — its value is a
  limit, not a measurement.
* **At a minimum**, three checks on the free parameters off their bounds and constrained:
  the gradient — the Gauss–Newton step to the minimum, δ = (JᵀJ)⁻¹Jᵀr, is below
  :data:`MAX_STEP_SIGMA` of the covariance error in every parameter; the Hessian — χ² evaluated
  at ±½σ along every parameter and pair of parameters (finite differences, σ the covariance
  error): the Hessian scaled by those steps must be positive definite and no evaluated
  neighbour lower than the solution by more than :data:`NEIGHBOUR_TOL`; the search — the scan
  through the solution finds no lower point (:mod:`oiflow.fit.search`).
* **Poor fit**: χ²_red above :data:`POOR_FIT_CHI2_RED`; the errors are then scaled by
  √χ²_red (as always, see :data:`oiflow.fit.fitter.ERROR_RULE`) and the verdict says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import verdict as V
from ..units import MAS

#: χ²_red above which a fit is a poor fit (the model does not explain the data, or the error bars
#: are underestimated by more than √3)
POOR_FIT_CHI2_RED = 3.0
#: relative singular value of the column-normalised Jacobian below which a direction is not seen
RANK_RTOL = 1e-8
#: largest Gauss–Newton step to the minimum, in covariance errors, at a minimum
MAX_STEP_SIGMA = 0.1
#: a neighbour at ±½σ lower than the solution by more than this (χ²) means no minimum
NEIGHBOUR_TOL = 0.01
#: spectral index range (F_λ ∝ λ^index): wider than any astrophysical spectrum over a band
SPECTRAL_INDEX_RANGE = 10.0


@dataclass
class Covariance:
    """Raw covariance of the free parameters (inf on the diagonal of unconstrained ones, NaN
    off it) and why each unconstrained parameter is."""

    matrix: np.ndarray
    names: list[str]
    unconstrained: dict[str, str] = field(default_factory=dict)

    @property
    def sigma(self) -> np.ndarray:
        return np.sqrt(np.clip(np.diag(self.matrix), 0, None))


def covariance(jac: np.ndarray, names: list[str]) -> Covariance:
    """(JᵀJ)⁻¹ over the constrained parameters; vanishing or degenerate directions are unconstrained."""
    n = len(names)
    norms = np.linalg.norm(jac, axis=0)
    why: dict[str, str] = {}
    for j in np.flatnonzero(~(norms > 0)):
        why[names[j]] = "the model does not change with it on these data (zero derivative)"
    live = np.flatnonzero(norms > 0)
    if live.size:
        js = jac[:, live] / norms[live]
        _, s, vt = np.linalg.svd(js, full_matrices=False)
        for k in np.flatnonzero(s < RANK_RTOL * s.max()):
            involved = [names[live[j]] for j in np.flatnonzero(np.abs(vt[k]) > 0.1)]
            for name in involved:
                why.setdefault(name, "degenerate with " + ", ".join(m for m in involved if m != name)
                               if len(involved) > 1 else "the data do not see it")
    keep = np.array([i for i in range(n) if names[i] not in why], dtype=int)
    cov = np.full((n, n), np.nan)
    cov[np.diag_indices(n)] = np.inf
    if keep.size:
        jk = jac[:, keep]
        cov[np.ix_(keep, keep)] = np.linalg.inv(jk.T @ jk)
    return Covariance(cov, list(names), why)


def plausible_range(name: str, unit: str, lower: float, upper: float, data, vals: dict) -> float:
    """The range a parameter could take, to which its error is compared: the bounds when both are
    finite; for angular sizes and offsets (mas) the largest scale the baselines see, 3/ρ_min;
    180° for a position angle; the model's total flux for a flux; the value for a temperature;
    :data:`SPECTRAL_INDEX_RANGE` for a spectral index; otherwise unlimited."""
    if math.isfinite(lower) and math.isfinite(upper):
        return upper - lower
    key = name.split(".", 1)[1]
    if unit == "mas":
        rho = np.hypot(data.freq_u, data.freq_v)
        rho = rho[rho > 0]
        return 3.0 / float(rho.min()) / MAS if rho.size else math.inf
    if key == "pa":
        return 180.0
    if key == "flux":
        return sum(v for k, v in vals.items() if k.endswith(".flux"))
    if key == "temperature":
        return abs(vals[name])
    if key == "spectral_index":
        return SPECTRAL_INDEX_RANGE
    return math.inf


def beyond_range(cov: Covariance, model, data, vals: dict, scale: float) -> None:
    """Mark unconstrained (in ``cov``) the parameters whose headline error (raw × ``scale``)
    exceeds their :func:`plausible_range`."""
    for i, name in enumerate(cov.names):
        par = model.parameters[name]
        span = plausible_range(name, par.unit, par.lower, par.upper, data, vals)
        error = cov.sigma[i] * scale
        if name not in cov.unconstrained and error > span:
            unit = f" {par.unit}" if par.unit else ""
            cov.unconstrained[name] = f"its error {error:.3g}{unit} exceeds the range it could take ({span:.3g}{unit})"
            cov.matrix[i, :] = cov.matrix[:, i] = np.nan
            cov.matrix[i, i] = np.inf


def bounds_hit(prob, p: np.ndarray) -> dict[str, tuple[str, float]]:
    """Free parameters at a bound: name → ("lower" or "upper", bound)."""
    out = {}
    for i, name in enumerate(prob.names):
        for side, b in (("lower", prob.lower[i]), ("upper", prob.upper[i])):
            if math.isfinite(b) and abs(p[i] - b) <= 1e-6 * max(1.0, abs(b), abs(p[i])):
                out[name] = (side, float(b))
    return out


def _chi2(prob, q) -> float:
    r = prob.residuals(q)
    return float(r @ r)


def minimum_checks(prob, p: np.ndarray, jac: np.ndarray, r: np.ndarray, chi2: float, sigma: np.ndarray,
                   interior: np.ndarray) -> tuple[list[str], dict[str, Any]]:
    """Gradient and Hessian checks (module docstring) over the parameters ``interior`` (mask);
    returns (reasons the point is not a minimum, figures)."""
    idx = np.flatnonzero(interior & np.isfinite(sigma) & (sigma > 0))
    reasons: list[str] = []
    figures: dict[str, Any] = {}
    if idx.size == 0:
        return reasons, figures
    names = [prob.names[i] for i in idx]
    jk = jac[:, idx]
    step = np.linalg.solve(jk.T @ jk, jk.T @ r)
    ratio = np.abs(step) / sigma[idx]
    figures["newton_step_sigma"] = float(ratio.max())
    if ratio.max() > MAX_STEP_SIGMA:
        k = int(np.argmax(ratio))
        reasons.append(f"the gradient is not zero: the step to the minimum is {ratio[k]:.2g}σ in {names[k]} "
                       f"(at a minimum < {MAX_STEP_SIGMA:g}σ)")
    # Hessian of χ² by finite differences with steps of ½σ (kept inside the bounds)
    h = np.array([min(0.5 * sigma[i], 0.999 * (p[i] - prob.lower[i]), 0.999 * (prob.upper[i] - p[i])) for i in idx])
    ok = h > 0
    idx, h, names = idx[ok], h[ok], [n for n, o in zip(names, ok) if o]
    m = idx.size
    if m == 0:
        return reasons, figures

    def at(*moves):
        q = p.copy()
        for k, s in moves:
            q[idx[k]] += s * h[k]
        return _chi2(prob, q)

    plus = np.array([at((k, 1)) for k in range(m)])
    minus = np.array([at((k, -1)) for k in range(m)])
    H = np.diag(plus + minus - 2.0 * chi2)  # scaled Hessian: d²χ²/(dp_k dp_l) · h_k h_l
    for k in range(m):
        for j in range(k + 1, m):
            H[k, j] = H[j, k] = (at((k, 1), (j, 1)) - at((k, 1), (j, -1)) - at((k, -1), (j, 1))
                                 + at((k, -1), (j, -1))) / 4.0
    eig = np.linalg.eigvalsh(H)
    figures["hessian_min_eigenvalue"] = float(eig[0])
    drop = chi2 - np.minimum(plus, minus)
    if drop.max() > NEIGHBOUR_TOL:
        k = int(np.argmax(drop))
        sign = "+" if plus[k] < minus[k] else "−"
        reasons.append(f"χ² is lower by {drop[k]:.3g} at {names[k]} {sign} ½σ: not a minimum")
    elif eig[0] <= 0:
        reasons.append(f"the χ² surface is not curved upwards in every direction (Hessian eigenvalue "
                       f"{eig[0]:.3g}): a saddle, not a minimum")
    return reasons, figures


def fit_verdict(*, chi2_red: float, n_data: int, n_free: int, unconstrained: dict[str, str],
                at_bound: dict[str, tuple[str, float]], values: dict[str, float], not_minimum: list[str],
                figures: dict[str, Any], notes: list[str], evaluation_limit: bool) -> V.Verdict:
    """The verdict of a fit from its checks (module docstring); ``notes`` are reasons that change no
    status (the search's findings, comparisons of the error estimates)."""
    found: list[tuple[str, str]] = []
    for name, why in unconstrained.items():
        found.append((V.UNCONSTRAINED, f"{name} is unconstrained (error = inf): {why}"))
    if not_minimum and evaluation_limit:
        found.append((V.NOT_AT_MINIMUM, "stopped at the evaluation limit"))
    found += [(V.NOT_AT_MINIMUM, r) for r in not_minimum]
    for name, (side, b) in at_bound.items():
        found.append((V.AT_BOUND, f"{name} = {values[name]:.6g} is at its {side} bound {b:g}: a limit, "
                                  f"not a measurement"))
    if math.isfinite(chi2_red) and chi2_red > POOR_FIT_CHI2_RED:
        found.append((V.POOR_FIT, f"χ²_red = {chi2_red:.4g} > {POOR_FIT_CHI2_RED:g}: the model does not "
                                  f"explain the data (or their errors are underestimated); errors scaled by "
                                  f"√χ²_red = {math.sqrt(chi2_red):.3g}"))
    status = max((s for s, _ in found), key=V.rank, default=V.OK)
    found.sort(key=lambda sr: -V.rank(sr[0]))
    figs = {"chi2_red": chi2_red, "chi2_red_threshold": POOR_FIT_CHI2_RED, "n_data": n_data, "n_free": n_free,
            **figures}
    if unconstrained:
        figs["unconstrained"] = sorted(unconstrained)
    if at_bound:
        figs["at_bound"] = sorted(at_bound)
    return V.Verdict(status, tuple([r for _, r in found] + list(notes)), figs)
