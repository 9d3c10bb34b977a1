"""The grids of a reconstruction (multigrid) and moving images between them.

With ``levels > 1`` the image is first made on coarser grids (pixels 2×, 4×…, as long as they
sample the data, :func:`levels`), each result interpolated (:func:`resample`) to start the
next; μ is divided by :func:`coarse_factor` on a coarse grid so that its balance with χ² stays
about the same. :func:`blur` is the blur of the blur-and-restart rounds.
"""

from __future__ import annotations

import math

import numpy as np

from ..config import ImageTarget
from ..units import MAS
from .metric import convolve_beam

#: how a regulariser's value scales when the pixel size doubles (same sky image): μ is divided
#: by this on a coarse level so that the balance with χ² stays about the same
COARSE_SCALE = {"hyperbolic": 2.0, "smooth": 4.0, "compactness": 4.0, "l1": 1.0, "mem": 1.0}


def coarse_factor(regularization: str, pixel_size: float, final_pixel_size: float) -> float:
    """What μ is divided by on a grid of ``pixel_size`` (rad) when the final grid has
    ``final_pixel_size``: COARSE_SCALE[reg] per doubling of the pixel."""
    return COARSE_SCALE[regularization] ** round(math.log2(pixel_size / final_pixel_size))


def levels(settings: ImageTarget, max_freq: float) -> list[tuple[int, float]]:
    """Grids (npix, pixel size rad) from the coarsest to the requested one: each coarser level
    halves npix and doubles the pixel while the pixel still samples the data (p·ρmax ≤ 0.45)
    and the grid keeps ≥ 32 pixels."""
    n, pix = settings.npix, settings.pixel_size_mas * MAS
    grids = [(n, pix)]
    for _ in range(settings.levels - 1):
        n2, p2 = grids[0][0] // 2, grids[0][1] * 2
        if n2 < 32 or p2 * max_freq > 0.45:
            break
        grids.insert(0, (n2, p2))
    return grids


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


def resample(img: np.ndarray, n_to: int) -> np.ndarray:
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


def blur(x: np.ndarray, shape, pixel_size: float, fwhm: float, lower: float) -> np.ndarray:
    """``x`` (flat, one image per group of ``shape``) convolved with a Gaussian of FWHM ``fwhm``
    (rad), kept ≥ ``lower`` and at the same total."""
    xs = np.asarray(x, float).reshape(shape)
    out = np.stack([np.clip(convolve_beam(img, pixel_size, fwhm), 0, None) for img in xs])
    out = np.maximum(out, lower)
    return out.ravel() * (xs.sum() / out.sum())
