"""Recentring: V², closure phases and amplitudes do not fix the position of the object.

When no absolute phase is fitted, the image is shown with its photocentre at the reference
pixel: :func:`recenter` moves it by whole pixels (used between the blur-and-restart rounds), and
:func:`recenter_final` does it to the final image when it is more than RECENTER_MIN_SHIFT
pixels off. The cyclic whole-pixel shift is exact but for bandwidth smearing (it depends on the
distance from the phase centre) and flux near the edges: when the shift costs more than
RECENTER_TOLERANCE in χ², RECENTER_ITER iterations re-fit it (within MAXITER), and the shifted
image is kept when its χ² is then within RECENTER_TOLERANCE of the unshifted one — and never
outside what the μ rule accepted.
"""

from __future__ import annotations

import numpy as np

from .mu_rule import MuChoice
from .objective import Objective
from .schedule import Runs

RECENTER_MIN_SHIFT = 2  # pixels: the final image is recentred when its photocentre is further off
RECENTER_ITER = 50  # iterations that re-fit the recentred image
RECENTER_TOLERANCE = 0.01  # relative χ² increase accepted for a centred image


def recenter(x: np.ndarray, shape, min_shift: int = 1) -> np.ndarray:
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


def recenter_final(obj: Objective, x: np.ndarray, choice: MuChoice | None, runs: Runs) -> np.ndarray:
    """The final image ``x`` recentred (module docstring), or ``x`` itself."""
    xp = obj.xp
    obj(xp.asarray(x))
    chi2_before = obj.last["chi2_red"]
    limit = chi2_before * (1 + RECENTER_TOLERANCE)
    if choice is not None and choice.reached:  # and never out of what the μ rule accepted
        limit = min(limit, max(chi2_before, choice.accept))
    xc = recenter(x, obj.shape, min_shift=RECENTER_MIN_SHIFT)
    if xc is x:
        return x
    obj(xp.asarray(xc))
    if obj.last["chi2_red"] > limit:
        xc, _ = runs(xc, RECENTER_ITER, "recentre")
        obj(xp.asarray(xc))
    return xc if obj.last["chi2_red"] <= limit else x
