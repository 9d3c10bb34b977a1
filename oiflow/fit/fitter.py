"""Weighted least squares of a model on interferometric observables, with its minimum searched
and certified, and one statement of the error bars.

* ``scipy.optimize.least_squares`` (trust-region reflective, bounds from the model description)
  on the normalised residuals of :class:`~oiflow.fit.evaluate.ModelEvaluator` — closure and
  differential phases compared on the circle, OI_CORR correlations whitened — from the given
  start and the searched ones (:mod:`oiflow.fit.search`); the lowest χ² is kept.
* Bandwidth smearing: ``auto`` by default, decided at the solution by
  :func:`~oiflow.fit.evaluate.decide_smearing` (then the fit is refined with it).
* The verdict (:mod:`oiflow.fit.certify`): at a minimum (gradient, Hessian, search), parameters
  unconstrained (error = inf) or at a bound, χ²_red above the threshold.
* Errors: :data:`ERROR_RULE` (the one statement; README "Error bars"). Bootstrap by
  observation and MCMC (emcee) on demand, on the same likelihood, reported next to them.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from .. import verdict as V
from ..errors import FitError
from ..units import MAS
from . import certify
from .data import FitData
from .evaluate import ModelEvaluator, SmearingChoice, decide_smearing, requested_smearing
from .model import Model, parse_model
from .search import LOWER_DCHI2, SearchRecord, refine_minimum, search_minimum

log = logging.getLogger(__name__)

#: the rule of the headline error (in every fit JSON as ``error_rule``; README "Error bars")
ERROR_RULE = ("error = covariance error x sqrt(chi2_red): the covariance (J^T J)^-1 of the normalised residuals "
              "at the minimum (errors_raw, right if the files' error bars are right) scaled by the square root "
              "of the reduced chi2 (right if the model is right and the error bars are off by a common factor; "
              "as PMOIRED and LITpro). Infinite (null in JSON) for an unconstrained parameter. MCMC samples the "
              "same likelihood (the files' errors times sqrt(chi2_red)), the bootstrap resamples observations; "
              "both are reported next to it, and the verdict notes a ratio outside "
              f"[{1 / 1.5:.2g}, 1.5]: then quote the larger.")
#: bootstrap or MCMC spreads differing from the headline error by more than this factor are noted
SPREAD_RATIO = 1.5


@dataclass
class FitResult:
    """Outcome of a fit. ``to_dict()`` is the JSON product (``fit_<model>.json``)."""

    model: Model  # with the best-fit values as starting values
    names: list[str]  # free parameters
    values: dict[str, float]  # every parameter (free, fixed, tied)
    errors: dict[str, float]  # free and tied: the headline error (ERROR_RULE); inf when unconstrained
    errors_raw: dict[str, float]
    covariance: np.ndarray  # raw, free parameters (inf diagonal / NaN for unconstrained ones)
    correlation: np.ndarray
    chi2: float
    n_data: int
    n_free: int
    observables: tuple[str, ...]
    files: list[str]
    success: bool = True  # the verdict's statuses for `oiflow fit` exit 0 (not not-at-minimum/unconstrained)
    message: str = ""
    nfev: int = 0
    elapsed_s: float = 0.0
    derived: dict[str, float] = field(default_factory=dict)
    bootstrap: dict[str, dict[str, float]] | None = None
    mcmc: dict[str, dict[str, float]] | None = None
    reference_wavelength_m: float | None = None
    smearing: bool = False
    smearing_choice: SmearingChoice | None = None
    verdict: V.Verdict = field(default_factory=V.Verdict)
    search: SearchRecord | None = field(default=None, repr=False)
    chi2_by_observable: dict[str, float] = field(default_factory=dict)  # χ²/n per observable
    evaluator: ModelEvaluator | None = field(default=None, repr=False)

    @property
    def chi2_red(self) -> float:
        dof = self.n_data - self.n_free
        return self.chi2 / dof if dof > 0 else float("nan")

    @property
    def error_scale(self) -> float:
        """√χ²_red: the headline errors are the raw ones times this."""
        return math.sqrt(self.chi2_red) if self.chi2_red > 0 else float("nan")

    def unit(self, name: str) -> str:
        return self.model.parameters[name].unit

    def reported(self) -> list[str]:
        """Parameters reported in the JSON: the free ones, then the tied ones."""
        return self.names + [p.name for p in self.model.tied]

    def error_estimates(self) -> dict[str, dict[str, float | None]]:
        """Per parameter, side by side: covariance raw and scaled (the headline), bootstrap and MCMC
        standard deviations when computed."""
        out = {}
        for n in self.reported():
            row = {"covariance_raw": _f(self.errors_raw.get(n)), "covariance_scaled": _f(self.errors.get(n))}
            if self.bootstrap and n in self.bootstrap:
                row["bootstrap"] = _f(self.bootstrap[n]["std"])
            if self.mcmc and n in self.mcmc:
                row["mcmc"] = _f(self.mcmc[n]["std"])
            out[n] = row
        return out

    def to_dict(self) -> dict[str, Any]:
        params = {n: {"value": _f(self.values[n]), "error": _f(self.errors.get(n)), "unit": self.unit(n)}
                  for n in self.reported()}
        out: dict[str, Any] = {
            "model": self.model.to_spec(),
            "parameters": params,
            "chi2_red": _f(self.chi2_red),
            "n_data": int(self.n_data),
            "verdict": self.verdict.to_dict(),
            "correlation": {"parameters": list(self.names),
                            "matrix": [[_f(x) for x in row] for row in self.correlation]},
            "error_rule": ERROR_RULE,
            "error_scale": _f(self.error_scale),
            "errors": self.error_estimates(),
            "errors_raw": {n: _f(self.errors_raw.get(n)) for n in self.reported()},
            "chi2": _f(self.chi2),
            "chi2_red_by_observable": {k: _f(v) for k, v in self.chi2_by_observable.items()},
            "n_free": int(self.n_free),
            "observables": list(self.observables),
            "files": list(self.files),
            "bandwidth_smearing": self.smearing,
            "smearing": self.smearing_choice.to_dict() if self.smearing_choice else None,
            "success": bool(self.success),
            "message": self.message,
        }
        if self.search is not None:
            out["search"] = self.search.to_dict()
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
        """Parameters with the headline error and the other estimates side by side, the smearing
        choice and, last, the verdict line."""
        extra = [k for k, on in (("bootstrap", self.bootstrap), ("mcmc", self.mcmc)) if on]
        lines = [f"model {self.model.name}: chi2_red = {self.chi2_red:.4g} ({self.n_data} data, {self.n_free} free)",
                 f"  errors: covariance x sqrt(chi2_red) = x{self.error_scale:.3g} (the headline; README 'Error bars')"
                 + f"; columns: raw covariance{''.join(', ' + k for k in extra)}"]
        for n in self.reported():
            tied = " (tied)" if n not in self.names else ""
            row = self.error_estimates()[n]
            cols = [_g(row["covariance_raw"])] + [_g(row.get(k)) for k in extra]
            lines.append(f"  {n:24s} = {self.values[n]:.6g} ± {_g(self.errors.get(n))} {self.unit(n)}{tied}"
                         f"   [{' | '.join(cols)}]")
        for k, v in self.derived.items():
            lines.append(f"  {k:24s} = {v:.6g}")
        if self.smearing_choice is not None:
            lines.append(self.smearing_choice.line())
        lines.append(self.verdict.line())
        return "\n".join(lines)


def _g(x) -> str:
    if x is None:
        return "inf"
    return "inf" if not math.isfinite(x) else f"{x:.2g}"


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


def _propagate(func, p: np.ndarray, cov: np.ndarray, periodic: float | None = None) -> float:
    """σ of a scalar function of the free parameters, linearised (central differences); inf when it
    depends on an unconstrained parameter."""
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
    bad = ~np.isfinite(np.diag(cov))
    if np.any(bad & (g != 0)):
        return math.inf
    k = ~bad
    var = float(g[k] @ cov[np.ix_(k, k)] @ g[k])
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


def smearing_mode(model: Model, smearing: bool | None) -> bool | str:
    """True, False or "auto": the argument when given, else the model's ``bandwidth_smearing`` option."""
    if smearing is not None:
        return bool(smearing)
    return model.options.get("bandwidth_smearing", "auto")


def fit_model(model, data: FitData, *, smearing: bool | None = None, bootstrap: int = 0,
              mcmc: dict | bool | None = None, seed: int = 0, search: bool | None = None) -> FitResult:
    """Fit ``model`` (description or :class:`Model`) to ``data``: search the minimum
    (:mod:`oiflow.fit.search`; ``search`` overrides the model's option), decide the smearing
    (``smearing`` overrides the model's option, auto by default), certify the minimum and state
    the errors (module docstring). Bootstrap and MCMC on demand."""
    model = parse_model(model)
    t0 = time.perf_counter()
    mode = smearing_mode(model, smearing)
    prob = Problem(model, data, smearing=mode is True)
    n_free = len(prob.names)
    if data.n_data <= n_free:
        raise FitError(f"{data.n_data} data points for {n_free} free parameters: the fit is undetermined")
    do_search = bool(model.options.get("search", True) if search is None else search)
    dof = data.n_data - n_free
    try:
        record = search_minimum(prob, search=do_search, seed=seed)
        notes = _search_notes(record, prob, dof)
        choice = requested_smearing(mode is True, data)
        if mode == "auto":
            best = record.solution
            choice = decide_smearing(model, data, prob.values(best.x), best.chi2)
            if choice.on:  # refine with the smearing, from the monochromatic solution
                prob = Problem(model.with_values(prob.values(best.x)), data, smearing=True)
                refine_minimum(prob, record, "the kept solution refined with bandwidth smearing")
    except ValueError as exc:
        raise FitError(f"least squares failed: {exc}") from None
    sol = record.solution
    p = sol.x
    r = prob.residuals(p)
    if not np.all(np.isfinite(r)):
        raise FitError("the model gives non-finite residuals at the solution")
    chi2 = float(r @ r)
    chi2_red = chi2 / dof
    scale = math.sqrt(chi2_red)
    jac = prob.jacobian(p)
    vals = prob.values(p)
    cov = certify.covariance(jac, prob.names)
    certify.beyond_range(cov, model, data, vals, scale)
    unconstrained = cov.unconstrained
    raw = cov.sigma
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov.matrix / np.outer(raw, raw)
    corr[np.diag_indices(n_free)] = 1.0
    corr = np.where(np.isfinite(corr), corr, np.nan)
    errors_raw = dict(zip(prob.names, raw))
    for tp in model.tied:
        errors_raw[tp.name] = _propagate(lambda q, n=tp.name: prob.values(q)[n], p, cov.matrix)
    errors = {k: v * scale for k, v in errors_raw.items()}
    at_bound = certify.bounds_hit(prob, p)
    interior = np.array([n not in at_bound and n not in unconstrained for n in prob.names])
    not_min, figures = certify.minimum_checks(prob, p, jac, r, chi2, raw, interior)
    if record.lower is not None:
        lw = record.lower
        not_min.append(f"a lower minimum exists: the scan of {lw['parameter']} finds χ² lower by "
                       f"{-lw['delta_chi2']:.4g} at {lw['value']:.6g} (search off or not followed)")
    derived = derived_binary(model, vals)
    if derived:
        for key, periodic in (("separation_mas", None), ("position_angle_deg", 360.0), ("flux_ratio", None)):
            e = _propagate(lambda q, k=key: derived_binary(model, prob.values(q))[k], p, cov.matrix, periodic)
            derived[f"{key}_error"] = e * scale
    by_obs = _chi2_by_observable(prob, r)
    figures.update({f"chi2_red_{k}": v for k, v in by_obs.items()})
    figures["smearing"] = choice.on
    result = FitResult(
        model=model.with_values(vals), names=prob.names, values=vals, errors=errors, errors_raw=errors_raw,
        covariance=cov.matrix, correlation=corr, chi2=chi2, n_data=data.n_data, n_free=n_free,
        observables=data.observables, files=data.files, message=sol.message,
        nfev=sum(c.nfev for c in record.candidates), derived=derived or {},
        reference_wavelength_m=prob.ev.ref_wave if any(c.chromatic for c in model.components) else None,
        smearing=prob.ev.smearing, smearing_choice=choice, search=record, chi2_by_observable=by_obs,
        evaluator=prob.ev)
    if bootstrap:
        result.bootstrap = bootstrap_fit(prob, p, int(bootstrap), seed=seed)
        notes += _spread_notes(result, "bootstrap")
    if mcmc:
        result.mcmc = mcmc_fit(prob, p, cov.matrix, **(mcmc if isinstance(mcmc, dict) else {}), seed=seed,
                               scale=scale)
        notes += _spread_notes(result, "mcmc")
    result.verdict = certify.fit_verdict(
        chi2_red=chi2_red, n_data=data.n_data, n_free=n_free, unconstrained=unconstrained, at_bound=at_bound,
        values=vals, not_minimum=not_min, figures=figures, notes=notes, evaluation_limit=sol.status == 0)
    result.success = result.verdict.status not in EXIT_1
    result.elapsed_s = time.perf_counter() - t0
    return result


#: verdict statuses on which ``oiflow fit`` exits 1 (the JSON is still written)
EXIT_1 = (V.NOT_AT_MINIMUM, V.UNCONSTRAINED)


def _chi2_by_observable(prob: Problem, r: np.ndarray) -> dict[str, float]:
    out, start = {}, 0
    for b in prob.data.blocks:
        seg = r[start:start + len(b)]
        out[b.name] = float(seg @ seg) / max(len(b), 1)
        start += len(b)
    return out


def _search_notes(record: SearchRecord, prob: Problem, dof: int) -> list[str]:
    """What the search changed, for the verdict's reasons (no status)."""
    given, best = record.given, record.solution
    if record.best == 0 or given.chi2 - best.chi2 <= LOWER_DCHI2 * max(1.0, best.chi2 / dof):
        return []
    where = ", ".join(f"{n} = {v:.5g}" for n, v in zip(prob.names, given.x))
    return [f"the given start led to a local minimum (χ²_red {given.chi2 / dof:.4g} at {where}); the search "
            f"({best.origin}) found the lower one reported here"]


def _spread_notes(result: FitResult, kind: str) -> list[str]:
    """A note per parameter whose bootstrap/MCMC spread differs from the headline error by more than
    SPREAD_RATIO."""
    notes = []
    for name, row in getattr(result, kind).items():
        head = result.errors.get(name, math.nan)
        if not (math.isfinite(head) and head > 0):
            continue
        ratio = row["std"] / head
        if ratio > SPREAD_RATIO or ratio < 1 / SPREAD_RATIO:
            notes.append(f"{kind} spread of {name} is {ratio:.2g}× the headline error"
                         + (" (points of an observation correlated, or the model incomplete): quote the "
                            f"{kind} spread" if ratio > SPREAD_RATIO else ""))
    return notes


def bootstrap_fit(prob: Problem, p: np.ndarray, n: int, seed: int = 0) -> dict[str, dict[str, float]]:
    """Resample observations (exposures) with replacement ``n`` times and refit from ``p``.

    Each resampling refits from ``p`` (no search: ``p`` is the global minimum of the data).
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
             burn: int | None = None, seed: int = 0, scale: float = 1.0) -> dict[str, dict[str, float]]:
    """Sample the posterior with emcee, starting in a small ball around ``p``: flat priors within
    the bounds, likelihood exp(−χ²/(2·scale²)) — the files' error bars times ``scale``, the
    √χ²_red of the headline errors (:data:`ERROR_RULE`), so that the spreads compare with them."""
    import emcee

    ndim = p.size
    nwalkers = nwalkers or max(4 * ndim, 16)
    burn = nsteps // 3 if burn is None else burn
    rng = np.random.default_rng(seed)
    sig = np.sqrt(np.clip(np.diag(cov), 1e-12, None)) * scale
    sig = np.where(np.isfinite(sig), sig, 0.01 * np.maximum(np.abs(p), 1.0))
    s2 = scale * scale

    def logp(q):
        if np.any(q < prob.lower) or np.any(q > prob.upper):
            return -np.inf
        r = prob.residuals(q)
        return -0.5 * float(r @ r) / s2

    start = p + 0.1 * sig * rng.standard_normal((nwalkers, ndim))
    start = np.clip(start, prob.lower, prob.upper)
    sampler = emcee.EnsembleSampler(nwalkers, ndim, logp)
    sampler.random_state = np.random.RandomState(seed).get_state()  # reproducible under seed
    sampler.run_mcmc(start, nsteps, progress=False)
    chain = sampler.get_chain(discard=burn, flat=True)
    acc = float(np.mean(sampler.acceptance_fraction))
    return {name: {"median": float(np.median(chain[:, i])), "std": float(np.std(chain[:, i])),
                   "p16": float(np.percentile(chain[:, i], 16)), "p84": float(np.percentile(chain[:, i], 84)),
                   "acceptance": acc, "n_samples": int(chain.shape[0]), "error_scale": float(scale)}
            for i, name in enumerate(prob.names)}


__all__ = ["FitResult", "fit_model", "Problem", "derived_binary", "bootstrap_fit", "mcmc_fit", "ERROR_RULE", "EXIT_1",
           "MAS"]
