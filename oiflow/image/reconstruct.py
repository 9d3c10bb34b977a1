"""Regularised maximum-likelihood image reconstruction (MiRA-like): the schedule.

Minimise  f(x) = χ²(y) + μ R(y) (+ spectral term),  y = x / Σx,  x ≥ 0

with a bound-constrained L-BFGS (VMLM-B, :mod:`oiflow.image.optimize`) on the array backend the
settings choose (numpy, cupy, array_api_strict), falling back to numpy with a message when no
GPU is usable. :func:`reconstruct` is the order of the steps; each concern has its module:

* :mod:`oiflow.image.objective` — f and its analytic gradient (transform, likelihood, regularisers);
* :mod:`oiflow.image.schedule` — MAXITER (``maxiter``) bounds every optimisation together and
  its shares (:class:`~oiflow.image.schedule.IterationBudget`, :class:`~oiflow.image.schedule.Runs`);
* :mod:`oiflow.image.grids` — with ``levels > 1`` the image is first made on coarser grids
  (pixels 2×, 4×…, as long as they sample the data; together at most MAXITER·COARSE_SHARE
  iterations), each result interpolated to start the next;
* :mod:`oiflow.image.start` — the start (``initial: auto``: a point, a Gaussian and a disk
  fitted to the V², chosen by successive halving on the coarsest grid);
* :mod:`oiflow.image.mu_search` — μ (``mu: auto``): the bounded discrepancy rule of
  :mod:`oiflow.image.mu_rule` searched on the coarsest grid and again on the final one, then
  settled after the final optimisation;
* rounds: after the first optimisation on the final grid, ``restarts`` blur-and-restart rounds
  convolve the image with a Gaussian (``blur_fwhm_mas``, default half the beam), recentre it
  (when no absolute phase is fitted) and optimise again with a fresh quasi-Newton memory,
  sharing what is left of MAXITER;
* :mod:`oiflow.image.recentre` — the final image's photocentre moved to the reference pixel
  when no absolute phase is fitted.

The edge threshold τ of the hyperbolic (and l1) regulariser is ``tau`` × the object's mean pixel
value (:func:`oiflow.image.objective.object_brightness`: flux over the area of the Gaussian
fitted to the V²), so that it follows the data, not the field of view.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ..backend import get_xp, resolve_device
from ..config import ImageTarget, validate
from ..errors import ConfigError, ImagingError
from ..units import MAS
from ..verdict import Verdict
from .data import ImagingData, model_observables
from .grids import blur, coarse_factor, levels, resample
from .initial import fit_gaussian_fwhm
from .metric import Beam, beam_from_uv
from .mu_rule import MuChoice
from .mu_search import MU_START, mu_reference, search_on_grid, settle_mu
from .objective import Objective, normalised, object_size
from .optimize import MAXITER_MESSAGE
from .recentre import recenter, recenter_final
from .regularizers import canonical
from .schedule import COARSE_FTOL, Progress, Runs
from .start import START_ITER, choose_start, start_candidates, start_choice_cost
from .verdict import image_verdict

log = logging.getLogger(__name__)

#: fewer data points cannot constrain even an elliptical Gaussian (size, elongation, orientation)
MIN_DATA = 3


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


def _load_prior(settings: ImageTarget) -> np.ndarray | None:
    if not settings.prior:
        return None
    from .imageoi import read_fits_image

    return read_fits_image(settings.prior).resample(settings.npix, settings.pixel_size_mas * MAS)


def _array_backend(settings: ImageTarget, backend: str | None, messages: list[str]):
    """(name, namespace) of the array backend: ``backend`` when forced, else the device the
    settings ask for, or numpy with a message when no GPU is usable."""
    if backend is None:
        backend, msg = resolve_device(settings.device)
        if msg:
            messages.append(msg)
            log.warning(msg)
    return backend, get_xp(backend)


def _check_enough(data: ImagingData) -> None:
    """Enough data to image: :data:`MIN_DATA` points."""
    if data.ndata < MIN_DATA:
        raise ImagingError(f"{data.ndata} data point(s) of {data.target!r} ({data.used}): at least {MIN_DATA} are "
                           "needed to image (the parameters of an elliptical Gaussian)")


def _check_sampling(data: ImagingData, settings: ImageTarget, messages: list[str]) -> None:
    """A message when the pixel undersamples the data (the image will alias)."""
    if data.max_frequency * settings.pixel_size_mas * MAS > 0.5:
        messages.append(f"pixel {settings.pixel_size_mas} mas undersamples the data (highest frequency needs "
                        f"≤ {0.5 / data.max_frequency / MAS:.3g} mas): the image will alias")
        log.warning(messages[-1])


def _beam(data: ImagingData) -> Beam:
    """The beam of the (u, v) coverage (with its symmetric points)."""
    u = np.concatenate([g.u for g in data.groups])
    v = np.concatenate([g.v for g in data.groups])
    return beam_from_uv(np.concatenate([u, -u]), np.concatenate([v, -v]))


def _first_grid_start(candidates: dict[str, np.ndarray], obj: Objective, runs: Runs, mu0: float):
    """(name, x) of the start on the first grid: the only candidate, or the one
    :func:`oiflow.image.start.choose_start` picks at ``mu0`` — the point when the coarse share of
    MAXITER cannot afford the choice."""
    n = obj.n
    starts = {k: np.maximum(np.tile(resample(img, n)[None], (obj.ngroups, 1, 1)).ravel() * (n * n), obj.lower_bound)
              for k, img in candidates.items()}
    start = next(iter(candidates))
    if len(starts) > 1 and start_choice_cost(len(starts), START_ITER) > runs.coarse.total:
        start = "dirac"  # MAXITER cannot afford the choice (see START_ITER)
        starts = {start: starts[start]}
    if len(starts) == 1:
        return start, starts[start]
    obj.mu = mu0
    start, x = choose_start(starts, runs, obj, START_ITER)
    log.info("start: %s (chosen by successive halving)", start)
    return start, x


def _to_grid(x: np.ndarray, n_from: int, obj: Objective) -> np.ndarray:
    """The previous grid's solution ``x`` (n_from² per group) interpolated to ``obj``'s grid (mean 1)."""
    n = obj.n
    prev = np.asarray(x, float).reshape(obj.ngroups, n_from, n_from)
    return np.maximum(np.stack([resample(img, n) for img in prev]).ravel() * (n * n), obj.lower_bound)


def _rounds(obj: Objective, x: np.ndarray, settings: ImageTarget, runs: Runs, beam: Beam, recentre: bool):
    """The optimisation of a grid at its μ: one round on a coarse grid (stopped early,
    COARSE_FTOL), 1 + ``restarts`` blur-and-restart rounds on the final one sharing what is left of
    MAXITER. Returns (x, the last optimisation's result or None)."""
    final = runs.final
    rounds = settings.restarts + 1 if final else 1
    res = None
    for round_no in range(rounds):
        if round_no > 0:
            fwhm = settings.blur_fwhm_mas * MAS if settings.blur_fwhm_mas else 0.5 * beam.mean_fwhm
            x = blur(x, obj.shape, obj.pixel_size, fwhm, obj.lower_bound)
            if recentre:
                x = recenter(x, obj.shape)
        phase = "optimise" if final else f"coarse {obj.n}px"
        ftol = settings.ftol if final else max(settings.ftol, COARSE_FTOL)
        x, res = runs(x, max(1, runs.left // (rounds - round_no)), phase, ftol, round_no)  # the rounds share what is left
    return x, res


@dataclass
class _Multigrid:
    """What the pass over the grids leaves: the final grid's objective and image, μ, the μ rule's
    choice, the start's name and the final optimisation's result."""

    obj: Objective
    x: np.ndarray
    mu: float
    choice: MuChoice | None
    start: str
    result: Any


def _multigrid(data: ImagingData, settings: ImageTarget, xp, candidates: dict[str, np.ndarray], prior, fwhm: float,
               beam: Beam, runs: Runs, curve: list[dict], recentre: bool) -> _Multigrid:
    """Every grid from the coarsest (:func:`oiflow.image.grids.levels`): the start on the first,
    the μ search on the first and the final one (``mu: auto``), the rounds on each."""
    pix = settings.pixel_size_mas * MAS
    reg_name = canonical(settings.regularization)
    auto_mu = settings.mu == "auto"
    mu = None if auto_mu else float(settings.mu)
    grids = levels(settings, data.max_frequency)
    x = obj = res = choice = None
    start = next(iter(candidates))
    for li, (n_l, pix_l) in enumerate(grids):
        final = li == len(grids) - 1
        factor = coarse_factor(reg_name, pix_l, pix)
        s_l = settings.model_copy(update=dict(npix=n_l, pixel_size_mas=pix_l / MAS))
        prior_l = None if prior is None else resample(np.clip(np.asarray(prior, float), 0, None), n_l)
        obj = Objective(data, s_l, xp, prior=prior_l, object_fwhm=fwhm)
        runs.on_grid(obj, final)
        ref = mu_reference(obj, fwhm) if auto_mu else None
        if x is None:
            start, x = _first_grid_start(candidates, obj, runs, MU_START * ref if auto_mu else mu / factor)
        else:
            x = _to_grid(x, grids[li - 1][0], obj)
        if auto_mu and (li == 0 or final):  # coarsest grid, then again on the final one
            choice = search_on_grid(obj, x, s_l, runs, curve, ref, choice)
            x = choice.x
            mu = choice.mu * factor
        obj.mu = mu / factor
        x, r = _rounds(obj, x, settings, runs, beam, recentre)
        if final:
            res = r  # None when no iteration was left: not converged
    return _Multigrid(obj, x, mu, choice, start, res)


def _chi2_per_term(data: ImagingData, terms: dict[str, float]) -> dict[str, float]:
    """Reduced χ² of each observable from the χ² sums ``terms``."""
    counts: dict[str, int] = {}
    for g in data.groups:
        for term, t in g.terms.items():
            counts[term] = counts.get(term, 0) + len(t)
    return {term: terms.get(term, 0.0) / counts[term] for term in counts}


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
    _check_enough(data)
    messages: list[str] = []
    backend, xp = _array_backend(settings, backend, messages)
    _check_sampling(data, settings, messages)
    n, pix = settings.npix, settings.pixel_size_mas * MAS
    if prior is None:
        prior = _load_prior(settings)
    fitted = fit_gaussian_fwhm(data, n * pix / 2)  # the object's size seen by the V² (once: all below use it)
    candidates = start_candidates(settings, data, fitted, initial)
    beam = _beam(data)
    recentre = settings.recenter and not any("visphi" in g.terms for g in data.groups)
    runs = Runs.for_maxiter(settings.maxiter, settings.ftol, progress)
    curve: list[dict] = []
    grid = _multigrid(data, settings, xp, candidates, prior, object_size(data, n * pix, fitted), beam, runs, curve,
                      recentre)
    obj, x, mu, choice, res = grid.obj, grid.x, grid.mu, grid.choice, grid.result
    settle = None
    if choice is not None and choice.rule == "discrepancy" and (choice.reached or choice.exhausted):
        x, settle = settle_mu(obj, x, choice, runs)
        mu = choice.mu
    if recentre:
        x = recenter_final(obj, x, choice, runs)
    obj(xp.asarray(x))
    if settle is not None and settle["result"] is not None:
        res = settle["result"]  # the last optimisation at the final μ decides convergence
    last = obj.last
    if choice is not None:
        choice.chi2 = last["chi2_red"]  # of the image written (the recentring may move it by < 1 %)
        if choice.message():
            messages.append(choice.message())
            log.warning(messages[-1])
    y = normalised(x, obj.shape)
    image = y * settings.flux
    result = ImageResult(
        image=image[0] if settings.polychromatic == "grey" else image,
        pixel_size=pix,
        wavelengths=data.wavelengths,
        chi2=last["chi2_red"],
        chi2_terms=_chi2_per_term(data, last["terms"]),
        ndata=data.ndata,
        used=dict(data.used),
        excluded=dict(data.excluded),
        mu=float(mu),
        regularization=canonical(settings.regularization),
        regularization_value=obj.regularization_value(x),
        niter=runs.niter,
        nfev=runs.nfev,
        converged=bool(res is not None and res.success),
        message=str(res.message if res is not None else MAXITER_MESSAGE),
        beam=beam,
        initial_image=candidates[grid.start] * settings.flux,
        settings=settings,
        elapsed=time.perf_counter() - t0,
        backend=backend,
        transform=type(obj.transforms[0]).name,
        data=data,
        models=[model_observables(g, V) for g, V in zip(data.groups, obj.visibilities(y))],
        history=runs.history,
        mu_curve=curve,
        messages=messages,
        mu_rule=None if choice is None else choice.to_dict(),
        start=grid.start,
        budget=runs.budget.total,
    )
    result.verdict = image_verdict(result)
    return result
