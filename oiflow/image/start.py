"""The start of a reconstruction: its candidate images and, for ``initial: auto``, the choice.

``initial: auto`` (the default): a point, and the Gaussian and the uniform disk fitted to the V²
(:data:`oiflow.image.initial.START_CANDIDATES`) are optimised on the coarsest grid at the first
μ by successive halving (:func:`choose_start`: all for START_ITER = 25 iterations, the better
two for START_GROWTH × as many more); a later candidate wins only where its χ² is lower than the
earlier ones' by more than √(2N). A start that suits the object keeps the optimiser out of the
basins of the others (a point for a binary, a disk for a star with a sharp limb). The choice
needs a fixed number of iterations to be reliable (:func:`start_choice_cost`: 275; compared
after 50 the choice was wrong on the 2008 Beauty-Contest spotted star, a disk start trapped in a
worse minimum): when the coarse share of MAXITER is smaller, the start is the point.
"""

from __future__ import annotations

import math

import numpy as np

from ..config import ImageTarget
from ..errors import ImagingError
from ..units import MAS
from .data import ImagingData
from .initial import START_CANDIDATES, initial_image
from .objective import Objective

#: the ``auto`` start: START_ITER iterations for each candidate, START_GROWTH times as many more
#: for the better half, until two are compared (:func:`choose_start`)
START_ITER, START_GROWTH = 25, 4


def start_candidates(settings: ImageTarget, data: ImagingData, fitted_fwhm: float,
                     initial: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The start images (unit flux, the final grid) by name, in order of preference: ``initial``
    ("given") when passed, the :data:`START_CANDIDATES` for ``initial: auto``, else the one
    ``settings.initial`` names. ``fitted_fwhm``: the Gaussian FWHM fitted to the V² (rad)."""
    n, pix = settings.npix, settings.pixel_size_mas * MAS
    size = settings.initial_size_mas * MAS if settings.initial_size_mas else None
    if initial is not None:
        init = np.asarray(initial, float)
        if init.shape != (n, n):
            raise ImagingError(f"initial image has shape {init.shape}, the grid is {(n, n)}")
        init = np.clip(init, 0, None)
        if init.sum() <= 0:
            raise ImagingError("initial image has no positive flux")
        return {"given": init / init.sum()}
    if settings.initial.strip().lower() == "auto":
        return {kind: initial_image(kind, n, pix, data=data, fitted_fwhm=fitted_fwhm, size=size)
                for kind in START_CANDIDATES}
    return {settings.initial: initial_image(settings.initial, n, pix, size=size, data=data,
                                            components=settings.initial_model, seed=settings.seed,
                                            fitted_fwhm=fitted_fwhm)}


def choose_start(starts: dict[str, np.ndarray], run, obj: Objective, iterations: int) -> tuple[str, np.ndarray]:
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
        ranked = preferred(scored, margin)
        if len(ranked) <= 2:
            return ranked[0][1], ranked[0][2]
        kept = ranked[: (len(ranked) + 1) // 2]
        alive = [(name, xs) for _, name, xs in sorted(kept, key=lambda t: list(starts).index(t[1]))]
        k *= START_GROWTH


def preferred(scored: list, margin: float) -> list:
    """``scored`` (χ², name, x), in order of preference, ranked best first: the most preferred
    whose χ² is within ``margin`` of the lowest, then the others by χ²."""
    low = min(f for f, _, _ in scored)
    first = next(t for t in scored if t[0] <= low + margin)
    return [first] + sorted((t for t in scored if t is not first), key=lambda t: t[0])


def start_choice_cost(candidates: int, iterations: int) -> int:
    """Iterations :func:`choose_start` runs for ``candidates`` starts of ``iterations`` each."""
    total, k = 0, iterations
    while True:
        total += candidates * k
        if candidates <= 2:
            return total
        candidates, k = (candidates + 1) // 2, START_GROWTH * k
