"""Weighted least squares of a model on interferometric observables, with honest error bars.

* ``scipy.optimize.least_squares`` (trust-region reflective, bounds from the model description)
  on the normalised residuals of :class:`~oiflow.fit.evaluate.ModelEvaluator` — closure and
  differential phases compared on the circle, OI_CORR correlations whitened.
* Errors from the covariance C = (JᵀJ)⁻¹ at the solution (J by central differences):
  ``errors_raw`` = √diag C assumes the error bars in the files are right; ``errors`` =
  errors_raw · √χ²_red (the convention of PMOIRED/LITpro, so the two agree). Both are reported,
  labelled. Correlation matrix from C.
* Bootstrap by observation (exposures resampled with replacement) and MCMC (emcee) on demand.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from ..errors import FitError
from ..units import MAS
from .data import FitData
from .evaluate import ModelEvaluator
from .model import Model, parse_model

log = logging.getLogger(__name__)

ERROR_KIND = "errors scaled by sqrt(chi2_red) (covariance errors times sqrt of the reduced chi2); errors_raw: unscaled covariance errors"


@dataclass
class FitResult:
    """Outcome of a fit. ``to_dict()`` is the JSON product (``fit_<model>.json``)."""

    model: Model  # with the best-fit values as starting values
    names: list[str]  # free parameters
    values: dict[str, float]  # every parameter (free, fixed, tied)
    errors: dict[str, float]  # free and tied, scaled by √χ²_red
    errors_raw: dict[str, float]
    covariance: np.ndarray  # raw, free parameters
    correlation: np.ndarray
    chi2: float
    n_data: int
    n_free: int
    observables: tuple[str, ...]
    files: list[str]
    success: bool = True
    message: str = ""
    nfev: int = 0
    elapsed_s: float = 0.0
    derived: dict[str, float] = field(default_factory=dict)
    bootstrap: dict[str, dict[str, float]] | None = None
    mcmc: dict[str, dict[str, float]] | None = None
    reference_wavelength_m: float | None = None
    smearing: bool = False
    evaluator: ModelEvaluator | None = field(default=None, repr=False)

    @property
    def chi2_red(self) -> float:
        dof = self.n_data - self.n_free
        return self.chi2 / dof if dof > 0 else float("nan")

    def unit(self, name: str) -> str:
        return self.model.parameters[name].unit

    def reported(self) -> list[str]:
        """Parameters reported in the JSON: the free ones, then the tied ones."""
        return self.names + [p.name for p in self.model.tied]

    def to_dict(self) -> dict[str, Any]:
        params = {n: {"value": _f(self.values[n]), "error": _f(self.errors.get(n)), "unit": self.unit(n)}
                  for n in self.reported()}
        out: dict[str, Any] = {
            "model": self.model.to_spec(),
            "parameters": params,
            "chi2_red": _f(self.chi2_red),
            "n_data": int(self.n_data),
            "correlation": {"parameters": list(self.names),
                            "matrix": [[_f(x) for x in row] for row in self.correlation]},
            "error_kind": ERROR_KIND,
            "errors_raw": {n: _f(self.errors_raw.get(n)) for n in self.reported()},
            "chi2": _f(self.chi2),
            "n_free": int(self.n_free),
            "observables": list(self.observables),
            "files": list(self.files),
            "bandwidth_smearing": self.smearing,
            "success": bool(self.success),
            "message": self.message,
        }
        if self.reference_wavelength_m is not None:
            out["reference_wavelength_um"] = _f(self.reference_wavelength_m * 1e6)
        if self.derived:
            out["derived"] = {k: _f(v) for k, v in self.derived.items()}
        if self.bootstrap is not None:
            out["bootstrap"] = self.bootstrap
        if self.mcmc is not None:
            out["mcmc"] = self.mcmc
        return out

    def summary(self) -> str:
        lines = [f"model {self.model.name}: chi2_red = {self.chi2_red:.4g} ({self.n_data} data, "
                 f"{self.n_free} free; errors scaled by sqrt(chi2_red), raw in brackets)"]
        for n in self.reported():
            tied = " (tied)" if n not in self.names else ""
            lines.append(f"  {n:24s} = {self.values[n]:.6g} ± {self.errors.get(n, float('nan')):.2g} "
                         f"[{self.errors_raw.get(n, float('nan')):.2g}] {self.unit(n)}{tied}")
        for k, v in self.derived.items():
            lines.append(f"  {k:24s} = {v:.6g}")
        return "\n".join(lines)


def _f(x):
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


# -- the least-squares problem ------------------------------------------------------------------
class Problem:
    """Residuals as a function of the free-parameter vector."""

    def __init__(self, model: Model, data: FitData, smearing: bool | None = None):
        self.model = model
        self.data = data
        self.ev = ModelEvaluator(model, data, smearing=smearing)
        self.free = model.free
        self.names = [p.name for p in self.free]
        self.x0 = np.array([p.value for p in self.free], float)
        self.lower = np.array([p.lower for p in self.free], float)
        self.upper = np.array([p.upper for p in self.free], float)
        self.weights = None  # bootstrap multiplicities (sqrt applied to residuals)

    def values(self, p) -> dict[str, float]:
        return self.model.values(p)

    def residuals(self, p) -> np.ndarray:
        r = self.ev.residuals(self.values(p))
        if self.weights is not None:
            r = r * self.weights
        return r

    def solve(self, x0=None, **kw):
        x0 = np.clip(self.x0 if x0 is None else np.asarray(x0, float), self.lower, self.upper)
        bounded = np.isfinite(self.lower).any() or np.isfinite(self.upper).any()
        opts = dict(x_scale="jac", xtol=1e-10, ftol=1e-10, gtol=1e-10, max_nfev=200 * (len(x0) + 1))
        opts.update(kw)
        return least_squares(self.residuals, x0, bounds=(self.lower, self.upper) if bounded else (-np.inf, np.inf),
                             method="trf", **opts)

    def jacobian(self, p) -> np.ndarray:
        """Central-difference Jacobian of the residuals (steps inside the bounds)."""
        p = np.asarray(p, float)
        cols = []
        for i in range(p.size):
            h = 1e-6 * max(abs(p[i]), 1e-3)
            hi = min(p[i] + h, self.upper[i])
            lo = max(p[i] - h, self.lower[i])
            if hi == lo:
                cols.append(np.zeros(self.data.n_data))
                continue
            a, b = p.copy(), p.copy()
            a[i], b[i] = hi, lo
            cols.append((self.residuals(a) - self.residuals(b)) / (hi - lo))
        return np.stack(cols, axis=1)


def _covariance(jac: np.ndarray) -> np.ndarray:
    jtj = jac.T @ jac
    try:
        return np.linalg.inv(jtj)
    except np.linalg.LinAlgError:
        return np.linalg.pinv(jtj)


def _propagate(func, p: np.ndarray, cov: np.ndarray, periodic: float | None = None) -> float:
    """σ of a scalar function of the free parameters, linearised (central differences)."""
    g = np.zeros(p.size)
    for i in range(p.size):
        h = 1e-6 * max(abs(p[i]), 1e-3)
        a, b = p.copy(), p.copy()
        a[i] += h
        b[i] -= h
        d = func(a) - func(b)
        if periodic:
            d = (d + periodic / 2) % periodic - periodic / 2
        g[i] = d / (2 * h)
    var = float(g @ cov @ g)
    return math.sqrt(var) if var > 0 else 0.0


def derived_binary(model: Model, vals: dict) -> dict[str, float] | None:
    """Separation (mas), position angle (deg, North through East, brighter → fainter) and flux
    ratio (faint/bright, at λ_ref) when the model has exactly two located components."""
    comps = [c for c in model.components if c.type != "background"]
    if len(comps) != 2:
        return None
    f = [vals[f"{c.name}.flux"] for c in comps]
    bright, faint = (comps[0], comps[1]) if f[0] >= f[1] else (comps[1], comps[0])
    dx = vals[f"{faint.name}.x"] - vals[f"{bright.name}.x"]
    dy = vals[f"{faint.name}.y"] - vals[f"{bright.name}.y"]
    fb, ff = vals[f"{bright.name}.flux"], vals[f"{faint.name}.flux"]
    return {
        "separation_mas": math.hypot(dx, dy),
        "position_angle_deg": math.degrees(math.atan2(dx, dy)) % 360.0,
        "flux_ratio": ff / fb if fb > 0 else float("nan"),
    }


def fit_model(model, data: FitData, *, smearing: bool | None = None, bootstrap: int = 0, mcmc: dict | bool | None = None,
              seed: int = 0) -> FitResult:
    """Fit ``model`` (description or :class:`Model`) to ``data``."""
    model = parse_model(model)
    t0 = time.perf_counter()
    prob = Problem(model, data, smearing=smearing)
    n_free = len(prob.names)
    if data.n_data <= n_free:
        raise FitError(f"{data.n_data} data points for {n_free} free parameters: the fit is undetermined")
    try:
        sol = prob.solve()
    except ValueError as exc:
        raise FitError(f"least squares failed: {exc}") from None
    p = sol.x
    r = prob.residuals(p)
    if not np.all(np.isfinite(r)):
        raise FitError("the model gives non-finite residuals at the solution")
    chi2 = float(r @ r)
    jac = prob.jacobian(p)
    cov = _covariance(jac)
    dof = data.n_data - n_free
    chi2_red = chi2 / dof
    raw = np.sqrt(np.clip(np.diag(cov), 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(raw, raw)
    corr = np.where(np.isfinite(corr), corr, 0.0)
    vals = prob.values(p)
    scale = math.sqrt(chi2_red)
    errors_raw = dict(zip(prob.names, raw))
    for tp in model.tied:
        errors_raw[tp.name] = _propagate(lambda q, n=tp.name: prob.values(q)[n], p, cov)
    errors = {k: v * scale for k, v in errors_raw.items()}
    best = model.with_values(vals)
    derived = derived_binary(model, vals)
    if derived:
        for key, periodic in (("separation_mas", None), ("position_angle_deg", 360.0), ("flux_ratio", None)):
            e = _propagate(lambda q, k=key: derived_binary(model, prob.values(q))[k], p, cov, periodic)
            derived[f"{key}_error"] = e * scale
    result = FitResult(
        model=best, names=prob.names, values=vals, errors=errors, errors_raw=errors_raw, covariance=cov,
        correlation=corr, chi2=chi2, n_data=data.n_data, n_free=n_free, observables=data.observables,
        files=data.files, success=bool(sol.success), message=str(sol.message), nfev=int(sol.nfev),
        derived=derived or {}, reference_wavelength_m=prob.ev.ref_wave if any(c.chromatic for c in model.components)
        else None, smearing=prob.ev.smearing, evaluator=prob.ev)
    if bootstrap:
        result.bootstrap = bootstrap_fit(prob, p, int(bootstrap), seed=seed)
    if mcmc:
        result.mcmc = mcmc_fit(prob, p, cov, **(mcmc if isinstance(mcmc, dict) else {}), seed=seed)
    result.elapsed_s = time.perf_counter() - t0
    return result


def bootstrap_fit(prob: Problem, p: np.ndarray, n: int, seed: int = 0) -> dict[str, dict[str, float]]:
    """Resample observations (exposures) with replacement ``n`` times and refit from ``p``.

    Returns per parameter the median, the standard deviation and the 16th/84th percentiles."""
    ids = prob.data.observation_ids()
    n_obs = int(ids.max()) + 1
    if n_obs < 3:
        raise FitError(f"bootstrap by observation needs at least 3 observations, found {n_obs}")
    rng = np.random.default_rng(seed)
    samples = []
    try:
        for _ in range(n):
            counts = np.bincount(rng.integers(0, n_obs, n_obs), minlength=n_obs)
            prob.weights = np.sqrt(counts[ids].astype(float))
            sol = prob.solve(p, xtol=1e-8, ftol=1e-8, gtol=1e-8)
            samples.append(sol.x)
    finally:
        prob.weights = None
    s = np.array(samples)
    return {name: {"median": float(np.median(s[:, i])), "std": float(np.std(s[:, i], ddof=1)),
                   "p16": float(np.percentile(s[:, i], 16)), "p84": float(np.percentile(s[:, i], 84)),
                   "n": int(n), "n_observations": n_obs}
            for i, name in enumerate(prob.names)}


def mcmc_fit(prob: Problem, p: np.ndarray, cov: np.ndarray, nwalkers: int | None = None, nsteps: int = 600,
             burn: int | None = None, seed: int = 0) -> dict[str, dict[str, float]]:
    """Sample the posterior (flat priors within the bounds, likelihood exp(−χ²/2) with the
    file's error bars) with emcee, starting in a small ball around ``p``."""
    import emcee

    ndim = p.size
    nwalkers = nwalkers or max(4 * ndim, 16)
    burn = nsteps // 3 if burn is None else burn
    rng = np.random.default_rng(seed)
    sig = np.sqrt(np.clip(np.diag(cov), 1e-12, None))

    def logp(q):
        if np.any(q < prob.lower) or np.any(q > prob.upper):
            return -np.inf
        r = prob.residuals(q)
        return -0.5 * float(r @ r)

    start = p + 0.1 * sig * rng.standard_normal((nwalkers, ndim))
    start = np.clip(start, prob.lower, prob.upper)
    sampler = emcee.EnsembleSampler(nwalkers, ndim, logp)
    sampler.random_state = np.random.RandomState(seed).get_state()  # reproducible under seed
    sampler.run_mcmc(start, nsteps, progress=False)
    chain = sampler.get_chain(discard=burn, flat=True)
    acc = float(np.mean(sampler.acceptance_fraction))
    return {name: {"median": float(np.median(chain[:, i])), "std": float(np.std(chain[:, i])),
                   "p16": float(np.percentile(chain[:, i], 16)), "p84": float(np.percentile(chain[:, i], 84)),
                   "acceptance": acc, "n_samples": int(chain.shape[0])}
            for i, name in enumerate(prob.names)}


__all__ = ["FitResult", "fit_model", "Problem", "derived_binary", "bootstrap_fit", "mcmc_fit", "MAS"]
