"""Regularised maximum-likelihood image reconstruction (MiRA-like).

Minimise  f(x) = χ²(y) + μ R(y) (+ spectral term),  y = x / Σx,  x ≥ 0

with a bound-constrained L-BFGS (VMLM-B, :mod:`oiflow.image.optimize`, run on the same array
backend as the objective) and analytic gradients: the data term's gradient comes from
the transform's adjoint (:mod:`oiflow.image.transform`), the regulariser's from
:mod:`oiflow.image.regularizers`. Because the data and regularisers see the normalised image
y, the objective does not depend on the scale of x: positivity is a bound and the flux
normalisation is exact (∂f/∂x = (∂f/∂y − ⟨∂f/∂y, y⟩)/Σx).

The array work runs on the chosen backend (numpy, cupy or array_api_strict); only scalars
travel to the host during the optimisation.

**Schedule, within MAXITER.** ``maxiter`` bounds the iterations of every optimisation of the
reconstruction together (:class:`IterationBudget`): the choice of the start, the μ search, every
grid, the final settling of μ and the recentring. With ``levels > 1`` the image is first made on
coarser grids (pixels 2×, 4×…, as long as they sample the data; together at most
MAXITER·COARSE_SHARE iterations), each result interpolated to start the next.

* **Start** (``initial: auto``, the default): a point, and the Gaussian and the uniform disk
  fitted to the V² (:data:`oiflow.image.initial.START_CANDIDATES`) are optimised on the
  coarsest grid at the first μ by successive halving (:func:`_choose_start`: all for
  START_ITER = 25 iterations, the better two for 100 more); a later candidate wins only where
  its χ² is lower than the earlier ones' by more than √(2N). A start that suits the object keeps
  the optimiser out of the basins of the others (a point for a binary, a disk for a star with a
  sharp limb). The choice needs a fixed number of iterations to be reliable (275): when the
  coarse share of MAXITER is smaller, the start is the point.
* **μ** (``mu: auto``): the bounded discrepancy rule of :mod:`oiflow.image.mu_rule` — the
  largest μ in [μ_ref·10⁻³, μ_ref·10³] whose solution has χ²_red within CHI2_SIGMAS = 2 standard
  deviations of χ² above ``chi2_target`` (1 + 2√(2/N) for N data: the smoothest image the data
  allow), μ_ref = N / ΔR a data-scaled reference (:func:`mu_reference`) — searched on the
  coarsest grid (secant steps of at most a decade) and again on the final one (at most √10),
  each search at most MAXITER·SEARCH_SHARE iterations in warm-started solves of at most
  MAXITER·SOLVE_SHARE. The final optimisation at the chosen μ moves χ²_red (the solves stop
  before convergence): :func:`_settle_mu` then brings it back within TOLERANCE below the
  acceptance (at most SETTLE_STEPS re-optimisations), so that the written image is the one the
  rule accepts. When the target is out of reach (the floor of χ²_red stays above it),
  ``ImageResult.mu_rule`` says so (``reached`` False, with a message) and μ is the largest
  within 1.1 × the floor. ``mu_method="lcurve"`` takes the corner of the L-curve (log χ²,
  log R) instead.
* **Rounds**: after the first optimisation on the final grid, ``restarts`` blur-and-restart
  rounds convolve the image with a Gaussian (``blur_fwhm_mas``, default half the beam), recentre
  it (when no absolute phase is fitted) and optimise again with a fresh quasi-Newton memory,
  sharing what is left of MAXITER.

The edge threshold τ of the hyperbolic (and l1) regulariser is ``tau`` × the object's mean pixel
value (:func:`object_brightness`: flux over the area of the Gaussian fitted to the V²), so that
it follows the data, not the field of view.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from ..backend import get_xp, resolve_device, to_numpy
from ..config import ImageTarget, validate
from ..errors import ConfigError, ImagingError
from ..units import MAS
from ..verdict import Verdict
from .data import DeviceGroup, ImagingData, likelihood, model_observables
from .initial import START_CANDIDATES, fit_gaussian_fwhm, gaussian, initial_image
from .metric import Beam, beam_from_uv, convolve_beam, nominal_resolution
from .mu_rule import MU_SPAN, TOLERANCE, MuChoice, Solution, acceptance, discrepancy, lcurve, mu_bounds, next_mu
from .optimize import MAXITER_MESSAGE, vmlmb
from .regularizers import Regularizer, canonical, spectral
from .transform import make_transform
from .verdict import image_verdict

log = logging.getLogger(__name__)

Progress = Callable[[dict], None]

#: NUFFT settings of the objective. eps = 1e-7: model visibilities to ≲ 1e-7 of the flux, far
#: below any interferometric error bar (σ(V²) ≥ 1e-5 → |V| needed to ~5e-6); the gradient stays
#: exact for that model (finufft's types 1 and 2 are adjoint to rounding, see NufftTransform).
#: upsampfac 1.25: smaller grid, faster for the few points per Fourier mode of interferometry.
NUFFT_OPTIONS = dict(eps=1e-7, upsampfac=1.25)
#: a coarse level only prepares the start of the next one: it stops once f decreases by less
#: than this (relative) in 3 successive iterations, or when its share of MAXITER is spent
COARSE_FTOL = 1e-4


def image_settings(settings: ImageTarget | dict | None = None, **overrides) -> ImageTarget:
    """An :class:`ImageTarget` from a model, a dict or nothing, with keyword overrides."""
    if settings is None:
        base: dict[str, Any] = {}
    elif isinstance(settings, ImageTarget):
        base = settings.model_dump()
    elif isinstance(settings, dict):
        base = dict(settings)
    else:
        raise ConfigError(f"image settings must be an ImageTarget or a dict, not {type(settings).__name__}")
    base.update({k: v for k, v in overrides.items() if v is not None})
    return validate(ImageTarget, base, "image settings")


@dataclass
class ImageResult:
    """The outcome of a reconstruction (numpy arrays on the host)."""

    image: np.ndarray  # (ny, nx) grey or (nchan, ny, nx); total flux = settings.flux per channel
    pixel_size: float  # rad
    wavelengths: np.ndarray  # one per image
    chi2: float  # reduced χ² of all terms
    chi2_terms: dict[str, float]  # reduced χ² per term
    ndata: int
    used: dict[str, int]
    excluded: dict[str, int]
    mu: float
    regularization: str
    regularization_value: float
    niter: int  # optimiser iterations, all rounds (auto-μ sweep included)
    nfev: int
    converged: bool
    message: str
    beam: Beam
    initial_image: np.ndarray
    settings: ImageTarget
    elapsed: float  # seconds
    backend: str
    transform: str
    data: ImagingData | None = None
    models: list[dict[str, np.ndarray]] = field(default_factory=list)  # per group, per term
    history: list[dict] = field(default_factory=list)
    mu_curve: list[dict] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    out_path: str | None = None
    png_paths: list[str] = field(default_factory=list)
    #: what the automatic μ rule concluded (:meth:`oiflow.image.mu_rule.MuChoice.to_dict`: rule,
    #: target, reached, aimed, chi2, floor, bounds, at_bound); None for a fixed μ
    mu_rule: dict | None = None
    start: str = ""  # the initial image used ("given" for an image passed in; see oiflow.image.initial)
    budget: int = 0  # MAXITER: the iterations of every optimisation together (IterationBudget)
    verdict: Verdict | None = None  # oiflow.image.verdict: ok | poor-fit | maxiter | not-at-minimum | failed

    @property
    def grey(self) -> bool:
        return self.image.ndim == 2

    def summary(self) -> dict:
        return {
            "chi2": self.chi2, "chi2_terms": self.chi2_terms, "ndata": self.ndata, "mu": self.mu,
            "regularization": self.regularization, "niter": self.niter, "nfev": self.nfev,
            "converged": self.converged, "elapsed_s": round(self.elapsed, 3), "backend": self.backend,
            "transform": self.transform, "npix": int(self.image.shape[-1]),
            "pixel_size_mas": self.pixel_size / MAS, "flux": float(self.image.sum(axis=(-2, -1)).mean()),
            "beam_mas": [self.beam.major / MAS, self.beam.minor / MAS, math.degrees(self.beam.pa)],
            "used": self.used, "excluded": self.excluded, "out_path": self.out_path, "mu_rule": self.mu_rule,
            "start": self.start,
            "verdict": self.verdict.to_dict() if self.verdict is not None else None,
        }


class Objective:
    """f(x) (host float) and ∂f/∂x (backend array) of the flat variables x (mean pixel 1)."""

    def __init__(self, data: ImagingData, settings: ImageTarget, xp, prior: np.ndarray | None = None,
                 object_fwhm: float | None = None):
        self.xp = xp
        self.data = data
        self.n = settings.npix
        self.pixel_size = settings.pixel_size_mas * MAS
        self.ngroups = len(data.groups)
        self.shape = (self.ngroups, self.n, self.n)
        self.size = self.ngroups * self.n * self.n
        self.groups = [DeviceGroup(g, xp) for g in data.groups]
        self.transforms = [make_transform(xp.asarray(g.u), xp.asarray(g.v), self.n, self.pixel_size, xp,
                                          method=settings.transform, **NUFFT_OPTIONS) for g in data.groups]
        fwhm = settings.prior_fwhm_mas * MAS if settings.prior_fwhm_mas else None
        if object_fwhm is None:
            object_fwhm = object_size(data, self.n * self.pixel_size)
        kw = dict(tau=settings.tau, prior_fwhm=fwhm, brightness=object_brightness(object_fwhm, self.n, self.pixel_size))
        self.reg = Regularizer(settings.regularization, (self.n, self.n), self.pixel_size, xp, prior=prior, **kw)
        self.extra = [(Regularizer(name, (self.n, self.n), self.pixel_size, xp, prior=prior, **kw), float(w))
                      for name, w in settings.extra_regularizers.items()]
        self.mu = 0.0
        self.spectral_mu = float(settings.spectral_mu)
        self.ndata = data.ndata
        self.nfev = 0
        self.last: dict[str, Any] = {}

    @property
    def lower_bound(self) -> float:
        return max([self.reg.lower_bound] + [r.lower_bound for r, _ in self.extra]) * self.n * self.n

    def visibilities(self, y_host: np.ndarray) -> list[np.ndarray]:
        """Model visibilities (numpy) at each group's frequencies for normalised images."""
        xp = self.xp
        out = []
        for k, T in enumerate(self.transforms):
            out.append(to_numpy(T.forward(xp.asarray(np.ascontiguousarray(y_host[k])))))
        return out

    def __call__(self, x_flat):
        """(f, ∂f/∂x) for a flat backend array x (the optimiser's variables)."""
        xp = self.xp
        self.nfev += 1
        x = xp.reshape(x_flat, self.shape)
        sums = xp.sum(x, axis=(1, 2))
        chi2_total = 0.0
        reg_total = 0.0
        extra_total = 0.0
        terms: dict[str, float] = {}
        grads = []
        ys = x / sums[:, None, None]
        for k in range(self.ngroups):
            y = ys[k, ...]
            V = self.transforms[k].forward(y)
            chi2, G = likelihood(self.groups[k], V)
            gy = self.transforms[k].adjoint(G)
            for term, val in chi2.items():
                fv = float(to_numpy(val))
                terms[term] = terms.get(term, 0.0) + fv
                chi2_total += fv
            if self.mu > 0:
                rv, rg = self.reg(y)
                reg_total += float(to_numpy(rv))
                gy = gy + self.mu * rg
            for r, w in self.extra:
                rv, rg = r(y)
                extra_total += w * float(to_numpy(rv))
                gy = gy + w * rg
            grads.append(gy)
        gys = xp.stack(grads, axis=0)
        f = chi2_total + self.mu * reg_total + extra_total
        if self.spectral_mu > 0 and self.ngroups > 1:
            sv, sg = spectral(ys, xp)
            f += self.spectral_mu * float(to_numpy(sv))
            gys = gys + self.spectral_mu * sg
        # chain rule through y = x / Σx
        dots = xp.sum(gys * ys, axis=(1, 2))
        gx = (gys - dots[:, None, None]) / sums[:, None, None]
        self.last = {"chi2": chi2_total, "chi2_red": chi2_total / max(self.ndata, 1), "terms": terms,
                     "reg": reg_total, "f": f}
        return f, xp.reshape(gx, (-1,))

    def regularization_value(self, x_host: np.ndarray) -> float:
        xp = self.xp
        x = np.asarray(x_host, float).reshape(self.shape)
        total = 0.0
        for k in range(self.ngroups):
            y = xp.asarray(x[k] / x[k].sum())
            total += float(to_numpy(self.reg(y)[0]))
        return total


def _normalised(x: np.ndarray, shape) -> np.ndarray:
    x = np.asarray(x, float).reshape(shape)
    return x / x.sum(axis=(1, 2), keepdims=True)


def _optimise(obj: Objective, x0: np.ndarray, maxiter: int, ftol: float, progress: Progress | None, phase: str,
              history: list[dict], round_no: int = 0):
    """Run VMLM-B from host ``x0``; returns the host solution (mean 1) and the result."""
    xp = obj.xp

    def cb(x, f, it):
        info = {"phase": phase, "round": round_no, "iteration": it, "mu": obj.mu,
                **{k: obj.last.get(k) for k in ("chi2_red", "reg", "f")}}
        history.append(info)
        if progress is not None:
            progress(info)

    res = vmlmb(obj, xp.asarray(np.ascontiguousarray(x0, dtype=np.float64)), obj.lower_bound, xp,
                maxiter=int(maxiter), ftol=ftol, callback=cb)
    x = np.asarray(to_numpy(res.x), dtype=np.float64)
    x = x * (obj.size / x.sum())  # keep mean 1: the objective is scale invariant
    return x, res


def _blur(x: np.ndarray, shape, pixel_size: float, fwhm: float, lower: float) -> np.ndarray:
    xs = np.asarray(x, float).reshape(shape)
    out = np.stack([np.clip(convolve_beam(img, pixel_size, fwhm), 0, None) for img in xs])
    out = np.maximum(out, lower)
    return out.ravel() * (xs.sum() / out.sum())


def _recenter(x: np.ndarray, shape, min_shift: int = 1) -> np.ndarray:
    """Move the photocentre of the (summed) image to the reference pixel (integer pixels);
    ``x`` itself when the shift would be below ``min_shift`` pixels on both axes."""
    xs = np.asarray(x, float).reshape(shape)
    tot = xs.sum(axis=0)
    n0, n1 = tot.shape
    iy, ix = np.indices(tot.shape)
    s = tot.sum()
    cy = float((iy * tot).sum() / s)
    cx = float((ix * tot).sum() / s)
    dy, dx = int(round(n0 // 2 - cy)), int(round(n1 // 2 - cx))
    if max(abs(dy), abs(dx)) < min_shift:
        return x
    return np.roll(xs, (dy, dx), axis=(1, 2)).ravel()


RECENTER_MIN_SHIFT = 2  # pixels: the final image is recentred when its photocentre is further off
RECENTER_ITER = 50  # iterations that re-fit the recentred image
RECENTER_TOLERANCE = 0.01  # relative χ² increase accepted for a centred image
#: the automatic μ accepts a fit up to CHI2_SIGMAS standard deviations of χ² above the target
#: (:func:`oiflow.image.mu_rule.acceptance`): the smoothest image consistent with the data
CHI2_SIGMAS = 2.0
#: MAXITER bounds the iterations of every optimisation of a reconstruction together (the
#: choice of the start, the μ search, every grid, the recentring): :class:`IterationBudget`.
#: Its shares: the ``auto`` start, START_ITER iterations for each candidate and START_GROWTH
#: times as many more for the better two (:func:`_choose_start`: 275 iterations; compared after
#: 50 the choice was wrong on the 2008 Beauty-Contest spotted star, a disk start trapped in a
#: worse minimum), when the coarse share holds them (else the point, the Dirac, is the start);
#: the coarse grids together at most MAXITER·COARSE_SHARE; the μ search on a grid at most
#: MAXITER·SEARCH_SHARE, in solves of at most MAXITER·SOLVE_SHARE (at least SOLVE_MIN_ITER)
START_ITER, START_GROWTH = 25, 4
COARSE_SHARE = 1 / 2
SEARCH_SHARE = 1 / 3
SOLVE_SHARE, SOLVE_MIN_ITER = 1 / 10, 10
#: a solve of the search on a coarse grid runs this fraction of one on the final grid: it only
#: places the final grid's search
COARSE_SOLVE = 0.6
#: a solve of the search that stops at its limit while χ²_red fell by more than EXTEND_DROP over
#: its last EXTEND_WINDOW iterations runs once more (:func:`_still_falling`)
EXTEND_WINDOW, EXTEND_DROP = 10, 0.02
#: solves of the μ search at most: on the first grid (bracketing from μ_ref), on the final one
#: (from the first grid's choice)
SEARCH_SOLVES = (6, 4)
#: a final χ²_red outside [target, acceptance] is brought back by at most this many corrections
#: of μ (:func:`_settle_mu`)
SETTLE_STEPS = 2
#: fewer data points cannot constrain even an elliptical Gaussian (size, elongation, orientation)
MIN_DATA = 3
#: first μ tried by the automatic rule, × μ_ref (the median of the choices on the benchmark panel,
#: so that the bracketing usually takes one or two solves; the choice itself does not depend on it)
MU_START = 1.0


@dataclass
class IterationBudget:
    """MAXITER shared by every optimisation of one reconstruction (its shares: :data:`START_ITER`)."""

    total: int
    used: int = 0

    @property
    def left(self) -> int:
        return max(0, self.total - self.used)

    def grant(self, wanted: float) -> int:
        """Iterations an optimisation may run: ``wanted``, at most what is left."""
        return max(0, int(min(wanted, self.left)))

    def spend(self, n: int) -> None:
        self.used += int(n)


def object_size(data: ImagingData, fov: float, fitted: float | None = None) -> float:
    """Size (rad) of the object for the data-scaled settings: the FWHM of the circular Gaussian
    that best fits the V² (:func:`oiflow.image.initial.fit_gaussian_fwhm`, at most half the
    field; ``fitted``: that fit, when the caller has it), at least the nominal resolution λ/2B_max."""
    g = fit_gaussian_fwhm(data, fov / 2) if fitted is None else fitted
    return max(g, nominal_resolution(data.max_frequency))


def object_brightness(fwhm: float, n: int, pixel_size: float) -> float:
    """Mean pixel value of a unit-flux object of FWHM ``fwhm`` (rad) on an n×n grid: 1 / its
    area in pixels (π/(4 ln 2)·(fwhm/pixel)², the area of a Gaussian), the area kept between 1
    pixel and the field. The edge threshold τ of the regularisers is relative to it."""
    area = math.pi / (4 * math.log(2)) * (fwhm / pixel_size) ** 2
    return 1.0 / min(max(area, 1.0), float(n * n))


def mu_reference(obj: Objective, fwhm: float) -> float:
    """μ_ref = N_data / ΔR, ΔR = |R(g) − R(g₂)| for unit-flux Gaussians of FWHM w and 2w on the
    objective's grid, w the object's size ``fwhm`` but at most a quarter of the field (so that
    both lie inside it): the weight at which halving the resolution of the image costs as much
    in regularisation as a fit at χ²_red = 1. Falls back on N_data / R(g) when the regulariser
    does not tell the two apart."""
    n, pix = obj.n, obj.pixel_size
    w = min(fwhm, n * pix / 4)
    vals = []
    for width in (w, 2 * w):
        g = gaussian(n, pix, width)
        vals.append(obj.ngroups * float(to_numpy(obj.reg(obj.xp.asarray(g))[0])))
    delta = abs(vals[0] - vals[1]) or abs(vals[0])
    return max(obj.ndata, 1) / delta if delta > 0 else float(max(obj.ndata, 1))


def _still_falling(history: list[dict], r) -> bool:
    """Whether the run ``r`` stopped at its limit while χ²_red still fell by more than
    EXTEND_DROP over its last EXTEND_WINDOW iterations (``history``: its iterations last)."""
    if r is None or r.converged or r.nit < EXTEND_WINDOW:
        return False
    old, new = history[-EXTEND_WINDOW]["chi2_red"], history[-1]["chi2_red"]
    return old > 0 and (old - new) / old > EXTEND_DROP


def _auto_mu(obj: Objective, x: np.ndarray, settings: ImageTarget, run, curve, history, *, mu0: float,
             bounds: tuple[float, float], step: float, refine: int, per_solve: int, max_solves: int) -> MuChoice:
    """Run the rule of :mod:`oiflow.image.mu_rule` on this grid; each solve is an optimisation
    of at most ``per_solve`` iterations (``run``: within MAXITER) warm-started from the previous
    solution, at most ``max_solves`` of them; a solve whose χ²_red still falls steeply at its
    limit (:func:`_still_falling`) runs ``per_solve`` more once: a χ²_red taken far from
    convergence is too high and would push μ down."""

    def solve(mu: float, x_start: np.ndarray) -> Solution:
        obj.mu = mu
        xs, r = run(x_start, per_solve, "auto-mu")
        if _still_falling(history, r):
            xs, _ = run(xs, per_solve, "auto-mu")
        obj(obj.xp.asarray(xs))
        chi2r, reg = obj.last["chi2_red"], obj.last["reg"]
        curve.append({"mu": mu, "chi2_red": chi2r, "reg": reg, "npix": obj.shape[-1]})
        return Solution(mu, chi2r, reg, xs)

    if settings.mu_method == "lcurve":
        return lcurve(solve, x, mu0, bounds, settings.chi2_target, max_solves=max_solves)
    accept = acceptance(settings.chi2_target, obj.ndata, CHI2_SIGMAS)
    return discrepancy(solve, x, mu0, bounds, settings.chi2_target, accept=accept, step=step, refine=refine,
                       max_solves=max_solves)


def _choose_start(starts: dict[str, np.ndarray], run, obj: Objective, iterations: int) -> tuple[str, np.ndarray]:
    """The ``auto`` start, by successive halving at the objective's μ (``run``: within MAXITER):
    every candidate is optimised for ``iterations``, the better half for START_GROWTH ×
    ``iterations`` more, and so on until two are compared, by their χ² (the fit to the data).
    Candidates come in order of preference (the point first,
    :data:`oiflow.image.initial.START_CANDIDATES`): a later one wins only where its χ² is lower
    than every earlier one's by more than √(2N), the standard deviation of χ² for N data — a
    difference the data can tell; a start that suits the object (a disk for a star with a sharp
    limb) then keeps the optimiser out of the basins of the others, and where the data cannot
    tell (sparse coverage) the point stays. Returns the name and solution of the winner."""
    margin = math.sqrt(2.0 * max(obj.ndata, 1))
    alive = list(starts.items())
    k = iterations
    while True:
        scored = []
        for name, x0 in alive:
            xs, _ = run(x0, k, f"start {name}")
            obj(obj.xp.asarray(xs))
            scored.append((obj.last["chi2"], name, xs))  # in order of preference
        ranked = _preferred(scored, margin)
        if len(ranked) <= 2:
            return ranked[0][1], ranked[0][2]
        kept = ranked[: (len(ranked) + 1) // 2]
        alive = [(name, xs) for _, name, xs in sorted(kept, key=lambda t: list(starts).index(t[1]))]
        k *= START_GROWTH


def _preferred(scored: list, margin: float) -> list:
    """``scored`` (χ², name, x), in order of preference, ranked best first: the most preferred
    whose χ² is within ``margin`` of the lowest, then the others by χ²."""
    low = min(f for f, _, _ in scored)
    first = next(t for t in scored if t[0] <= low + margin)
    return [first] + sorted((t for t in scored if t is not first), key=lambda t: t[0])


def start_choice_cost(candidates: int, iterations: int) -> int:
    """Iterations :func:`_choose_start` runs for ``candidates`` starts of ``iterations`` each."""
    total, k = 0, iterations
    while True:
        total += candidates * k
        if candidates <= 2:
            return total
        candidates, k = (candidates + 1) // 2, START_GROWTH * k


def _settle_mu(obj: Objective, x: np.ndarray, choice: MuChoice, run):
    """Bring the final χ²_red back within TOLERANCE below the acceptance (where the search stops)
    when the search reached the target or ran out of iterations before: its solves stop before
    convergence, and the optimisation that follows at the chosen μ moves χ²_red — above the
    acceptance the image does not fit the data, well below it μ is not the largest that fits.
    μ is then moved by the search's secant step (:func:`oiflow.image.mu_rule.next_mu`: the
    prior slope from one state, the measured one from two, at most a factor √10) and the image
    re-optimised from where it is until it converges, at most :data:`SETTLE_STEPS` times within
    MAXITER (once when the search ran out of iterations before reaching the target). The result
    is the state that fits (χ²_red ≤ the acceptance) at the largest μ; when none fits, the last
    one, or the rule's own choice when the target was never reached. ``choice`` is updated (μ, χ²_red, ``settled``); returns the
    image and ``{"result": the optimisation that made it}`` (None: the state before settling)."""
    xp = obj.xp
    obj(xp.asarray(x))
    states = [(Solution(obj.mu, obj.last["chi2_red"], obj.last["reg"], x), None)]
    aim = choice.accept * (1 - TOLERANCE / 2)
    steps = SETTLE_STEPS if choice.reached else 1  # not reached (out of iterations): one try at the target
    for _ in range(steps):
        cur = states[-1][0]
        if choice.accept * (1 - TOLERANCE) <= cur.chi2 <= choice.accept:
            break
        prev = states[-2][0] if len(states) > 1 else None
        new_mu = next_mu(cur, prev, aim, math.sqrt(10.0), choice.bounds)
        if new_mu == cur.mu:
            break
        obj.mu = new_mu
        xs, r = run(cur.x, math.inf, "settle")  # to convergence, within MAXITER
        if r is None:
            break
        obj(xp.asarray(xs))
        states.append((Solution(new_mu, obj.last["chi2_red"], obj.last["reg"], xs), r))
        choice.settled += 1
    fitting = [st for st in states if st[0].chi2 <= choice.accept]
    # the largest μ that fits; none fits: the state before settling (the rule's own choice)
    best, r = max(fitting, key=lambda st: st[0].mu) if fitting else (states[-1] if choice.reached else states[0])
    obj.mu = best.mu
    obj(xp.asarray(best.x))
    lo, hi = choice.bounds
    choice.mu, choice.chi2, choice.x = best.mu, best.chi2, best.x
    choice.at_bound = "upper" if best.mu >= hi else ("lower" if best.mu <= lo else None)
    if fitting and not choice.reached:  # the search ran out of iterations before the target
        choice.reached, choice.aimed, choice.floor = True, choice.accept, min(choice.floor, best.chi2)
    return best.x, {"result": r}


def _load_prior(settings: ImageTarget) -> np.ndarray | None:
    if not settings.prior:
        return None
    from .imageoi import read_fits_image

    return read_fits_image(settings.prior).resample(settings.npix, settings.pixel_size_mas * MAS)


#: how a regulariser's value scales when the pixel size doubles (same sky image): μ is divided
#: by this on a coarse level so that the balance with χ² stays about the same
_COARSE_SCALE = {"hyperbolic": 2.0, "smooth": 4.0, "compactness": 4.0, "l1": 1.0, "mem": 1.0}


def _levels(settings: ImageTarget, max_freq: float) -> list[tuple[int, float]]:
    """Grids (npix, pixel size rad) from the coarsest to the requested one: each coarser level
    halves npix and doubles the pixel while the pixel still samples the data (p·ρmax ≤ 0.45)
    and the grid keeps ≥ 32 pixels."""
    n, pix = settings.npix, settings.pixel_size_mas * MAS
    levels = [(n, pix)]
    for _ in range(settings.levels - 1):
        n2, p2 = levels[0][0] // 2, levels[0][1] * 2
        if n2 < 32 or p2 * max_freq > 0.45:
            break
        levels.insert(0, (n2, p2))
    return levels


def linear_weights(k: np.ndarray, n: int) -> np.ndarray:
    """(len(k), n) matrix of linear interpolation at the (fractional) sample positions ``k`` of
    n samples; 0 outside [0, n − 1]. W_y · img · W_xᵀ is the bilinear interpolation of
    ``scipy.ndimage.map_coordinates(img, meshgrid(k_y, k_x), order=1, mode="constant")`` on a
    grid (tests/test_image_reconstruct.py compares them): numpy alone, scipy.ndimage's import
    costs ~0.3 s of every imaging command's start-up."""
    k = np.asarray(k, float)
    W = np.zeros((k.size, n))
    inside = (k >= 0) & (k <= n - 1)
    i0 = np.clip(np.floor(k).astype(int), 0, max(n - 2, 0))
    f = k - i0
    rows = np.nonzero(inside)[0]
    W[rows, i0[rows]] += 1.0 - f[rows]
    if n > 1:
        W[rows, i0[rows] + 1] += f[rows]
    return W


def _resample(img: np.ndarray, n_to: int) -> np.ndarray:
    """Resample an image on the same field of view to n_to × n_to (centre pixels aligned),
    flux normalised to 1 (bilinear interpolation of the surface brightness)."""
    n_from = img.shape[-1]
    if n_from == n_to:
        return img / img.sum()
    ratio = n_from / n_to
    k = (np.arange(n_to) - n_to // 2) * ratio + n_from // 2
    if ratio > 1:  # shrinking: smooth first so that no flux falls between samples
        img = convolve_beam(img, 1.0, ratio)
    W = linear_weights(k, n_from)
    out = np.clip(W @ img @ W.T, 0, None)
    return out / out.sum()


def reconstruct(data: ImagingData, settings: ImageTarget | dict | None = None, *, progress: Progress | None = None,
                initial: np.ndarray | None = None, prior: np.ndarray | None = None, backend: str | None = None) -> ImageResult:
    """Reconstruct an image (or one per channel) from ``data`` (see :func:`oiflow.image.data.imaging_data`).

    ``initial``: an (n, n) image overriding ``settings.initial``; ``prior``: an (n, n) image
    for MEM (else ``settings.prior`` or a Gaussian). ``backend`` forces an array namespace
    name (``"array_api_strict"`` in tests); otherwise ``settings.device`` decides, falling back
    to numpy with a message when no GPU is usable. ``progress`` receives a dict per iteration
    (iteration, chi2_red, reg, mu, phase, round, npix).

    The schedule (start, μ, grids, MAXITER) is the module docstring's. ``ImageResult.start``
    names the start used, ``niter`` counts every iteration (at most ``settings.maxiter``).
    """
    t0 = time.perf_counter()
    settings = image_settings(settings)
    if data.ndata < MIN_DATA:
        raise ImagingError(f"{data.ndata} data point(s) of {data.target!r} ({data.used}): at least {MIN_DATA} are "
                           "needed to image (the parameters of an elliptical Gaussian)")
    messages: list[str] = []
    if backend is None:
        backend, msg = resolve_device(settings.device)
        if msg:
            messages.append(msg)
            log.warning(msg)
    xp = get_xp(backend)
    n = settings.npix
    pix = settings.pixel_size_mas * MAS
    max_freq = data.max_frequency
    if max_freq * pix > 0.5:
        messages.append(f"pixel {settings.pixel_size_mas} mas undersamples the data (highest frequency needs "
                        f"≤ {0.5 / max_freq / MAS:.3g} mas): the image will alias")
        log.warning(messages[-1])
    if prior is None:
        prior = _load_prior(settings)
    fitted = fit_gaussian_fwhm(data, n * pix / 2)  # the object's size seen by the V² (once: all below use it)
    candidates: dict[str, np.ndarray] = {}
    if initial is not None:
        init = np.asarray(initial, float)
        if init.shape != (n, n):
            raise ImagingError(f"initial image has shape {init.shape}, the grid is {(n, n)}")
        init = np.clip(init, 0, None)
        if init.sum() <= 0:
            raise ImagingError("initial image has no positive flux")
        candidates["given"] = init / init.sum()
    elif settings.initial.strip().lower() == "auto":
        for kind in START_CANDIDATES:
            candidates[kind] = initial_image(kind, n, pix, data=data, fitted_fwhm=fitted,
                                             size=settings.initial_size_mas * MAS if settings.initial_size_mas else None)
    else:
        candidates[settings.initial] = initial_image(
            settings.initial, n, pix, size=settings.initial_size_mas * MAS if settings.initial_size_mas else None,
            data=data, components=settings.initial_model, seed=settings.seed, fitted_fwhm=fitted)
    all_u = np.concatenate([g.u for g in data.groups])
    all_v = np.concatenate([g.v for g in data.groups])
    beam = beam_from_uv(np.concatenate([all_u, -all_u]), np.concatenate([all_v, -all_v]))
    history: list[dict] = []
    curve: list[dict] = []
    niter = nfev = 0
    absolute_phase = any("visphi" in g.terms for g in data.groups)
    recenter = settings.recenter and not absolute_phase
    levels = _levels(settings, max_freq)
    reg_name = canonical(settings.regularization)
    auto_mu = settings.mu == "auto"
    mu = None if auto_mu else float(settings.mu)
    maxiter = settings.maxiter
    budget = IterationBudget(maxiter)
    coarse_budget = IterationBudget(int(maxiter * COARSE_SHARE))
    per_solve = max(SOLVE_MIN_ITER, int(maxiter * SOLVE_SHARE))
    x = None
    obj = res = None
    start = next(iter(candidates))
    fwhm = object_size(data, n * pix, fitted)
    choice: MuChoice | None = None
    settle = None
    for li, (n_l, pix_l) in enumerate(levels):
        final = li == len(levels) - 1
        factor = _COARSE_SCALE[reg_name] ** round(math.log2(pix_l / pix))
        s_l = settings.model_copy(update=dict(npix=n_l, pixel_size_mas=pix_l / MAS))
        prior_l = None if prior is None else _resample(np.clip(np.asarray(prior, float), 0, None), n_l)
        obj = Objective(data, s_l, xp, prior=prior_l, object_fwhm=fwhm)
        ng = obj.ngroups
        level_budget = budget if final else coarse_budget
        ref = mu_reference(obj, fwhm) if auto_mu else None

        def run(x_start, wanted, phase, ftol=settings.ftol, round_no=0):
            """An optimisation within both budgets; (x, result or None when no iteration is left)."""
            nonlocal niter, nfev
            granted = min(budget.grant(wanted), level_budget.grant(wanted))  # (the same object on the final grid)
            if granted <= 0:
                return x_start, None
            xr, r = _optimise(obj, x_start, granted, ftol, progress, phase, history, round_no)
            niter += r.nit
            nfev += r.nfev
            budget.spend(r.nit)
            if not final:
                coarse_budget.spend(r.nit)
            return xr, r

        if x is None:
            mu0 = MU_START * ref if auto_mu else mu / factor
            starts = {k: np.maximum(np.tile(_resample(img, n_l)[None], (ng, 1, 1)).ravel() * (n_l * n_l),
                                    obj.lower_bound) for k, img in candidates.items()}
            if len(starts) > 1 and start_choice_cost(len(starts), START_ITER) > coarse_budget.total:
                start = "dirac"  # MAXITER cannot afford the choice (see START_ITER)
                starts = {start: starts[start]}
            if len(starts) > 1:
                obj.mu = mu0
                start, x = _choose_start(starts, run, obj, START_ITER)
                log.info("start: %s (chosen by successive halving)", start)
            else:
                x = starts[start]
        else:
            prev = np.asarray(x, float).reshape(ng, levels[li - 1][0], levels[li - 1][0])
            x = np.stack([_resample(img, n_l) for img in prev]).ravel() * (n_l * n_l)
            x = np.maximum(x, obj.lower_bound)
        if auto_mu and (li == 0 or final):  # coarsest grid, then again on the final one
            if choice is None:
                mu0, step, refine, max_solves = MU_START * ref, 10.0, 2, SEARCH_SOLVES[0]
            else:  # from the coarse choice, at the same place between the bounds
                mu0, step, refine, max_solves = (choice.mu / choice.bounds[0] * ref * MU_SPAN[0], math.sqrt(10.0), 2,
                                                 SEARCH_SOLVES[1])
            cap = min(int(maxiter * SEARCH_SHARE), level_budget.left, budget.left)
            solve_iter = max(1, min(per_solve if final else max(SOLVE_MIN_ITER, int(per_solve * COARSE_SOLVE)), cap))
            choice = _auto_mu(obj, x, s_l, run, curve, history, mu0=mu0, bounds=mu_bounds(ref), step=step, refine=refine,
                              per_solve=solve_iter, max_solves=max(1, min(max_solves, cap // solve_iter)))
            x = choice.x
            mu = choice.mu * factor
        obj.mu = mu / factor
        rounds = settings.restarts + 1 if final else 1
        for round_no in range(rounds):
            if round_no > 0:
                x = _blur(x, obj.shape, pix_l, settings.blur_fwhm_mas * MAS if settings.blur_fwhm_mas
                          else 0.5 * beam.mean_fwhm, obj.lower_bound)
                if recenter:
                    x = _recenter(x, obj.shape)
            phase = "optimise" if final else f"coarse {n_l}px"
            ftol = settings.ftol if final else max(settings.ftol, COARSE_FTOL)
            left = min(budget.left, level_budget.left)
            x, r = run(x, max(1, left // (rounds - round_no)), phase, ftol, round_no)  # the rounds share what is left
            if final:
                res = r  # None when no iteration was left: not converged
    if choice is not None and choice.rule == "discrepancy" and (choice.reached or choice.exhausted):
        x, settle = _settle_mu(obj, x, choice, run)
        mu = choice.mu
    if recenter:
        # V², closure phases and amplitudes do not fix the position: show the photocentre at the
        # centre. The cyclic whole-pixel shift is exact but for bandwidth smearing (it depends on
        # the distance from the phase centre) and flux near the edges: when the shift costs more
        # than RECENTER_TOLERANCE in χ², a few iterations re-fit it (within MAXITER), and the
        # shifted image is kept when its χ² is then within RECENTER_TOLERANCE of the unshifted one.
        obj(xp.asarray(x))
        chi2_before = obj.last["chi2_red"]
        limit = chi2_before * (1 + RECENTER_TOLERANCE)
        if choice is not None and choice.reached:  # and never out of what the μ rule accepted
            limit = min(limit, max(chi2_before, choice.accept))
        xc = _recenter(x, obj.shape, min_shift=RECENTER_MIN_SHIFT)
        if xc is not x:
            obj(xp.asarray(xc))
            if obj.last["chi2_red"] > limit:
                xc, _ = run(xc, RECENTER_ITER, "recentre")
                obj(xp.asarray(xc))
            if obj.last["chi2_red"] <= limit:
                x = xc
    obj(xp.asarray(x))
    if settle is not None and settle["result"] is not None:
        res = settle["result"]  # the last optimisation at the final μ decides convergence
    converged = res is not None and res.success
    message = res.message if res is not None else MAXITER_MESSAGE
    last = obj.last
    if choice is not None:
        choice.chi2 = last["chi2_red"]  # of the image written (the recentring may move it by < 1 %)
    if choice is not None and choice.message():
        messages.append(choice.message())
        log.warning(messages[-1])
    y = _normalised(x, obj.shape)
    vis = obj.visibilities(y)
    models = [model_observables(g, V) for g, V in zip(data.groups, vis)]
    counts: dict[str, int] = {}
    for g in data.groups:
        for term, t in g.terms.items():
            counts[term] = counts.get(term, 0) + len(t)
    chi2_terms = {term: last["terms"].get(term, 0.0) / counts[term] for term in counts}
    image = y * settings.flux
    result = ImageResult(
        image=image[0] if settings.polychromatic == "grey" else image,
        pixel_size=pix,
        wavelengths=data.wavelengths,
        chi2=last["chi2_red"],
        chi2_terms=chi2_terms,
        ndata=data.ndata,
        used=dict(data.used),
        excluded=dict(data.excluded),
        mu=float(mu),
        regularization=reg_name,
        regularization_value=obj.regularization_value(x),
        niter=niter,
        nfev=nfev,
        converged=bool(converged),
        message=str(message),
        beam=beam,
        initial_image=candidates[start] * settings.flux,
        settings=settings,
        elapsed=time.perf_counter() - t0,
        backend=backend,
        transform=type(obj.transforms[0]).name,
        data=data,
        models=models,
        history=history,
        mu_curve=curve,
        messages=messages,
        mu_rule=None if choice is None else choice.to_dict(),
        start=start,
        budget=budget.total,
    )
    result.verdict = image_verdict(result)
    return result
