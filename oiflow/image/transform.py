"""Image ↔ visibility transforms (the one home for them: simulator image skies, the fitter's
image component and imaging all call these).

Image grid convention (as displayed on the sky and as stored in FITS with CDELT1 < 0):
``image[iy, ix]`` with North up (y grows with ``iy``) and East left (x grows as ``ix``
decreases). For an ``n``-pixel axis the reference pixel is ``n // 2`` (0-based), so

    x_east(ix)  = −(ix − n//2) · pixel_size
    y_north(iy) = +(iy − n//2) · pixel_size

and V(u, v) = Σ image · exp(−2πi(u x + v y)) (OIFITS sign convention, see :mod:`oiflow`).
"""

from __future__ import annotations

import math

from ..backend import array_namespace


def pixel_coordinates(n: int, pixel_size: float, xp):
    """(x_east, y_north) 1-D coordinate vectors in radians for an n×n grid."""
    idx = xp.arange(n, dtype=xp.float64) - (n // 2)
    return -idx * pixel_size, idx * pixel_size


def dft(image, pixel_size: float, u, v, xp=None):
    """Exact (separable) discrete Fourier transform of ``image`` at frequencies (u, v).

    ``u``, ``v``: 1-D arrays in cycles/radian; ``pixel_size`` in radians. Returns complex
    visibilities (not normalised by the total flux). Cost O(M·n²) through two matrix products.
    """
    xp = xp or array_namespace(image)
    ny, nx = image.shape
    x, _ = pixel_coordinates(nx, pixel_size, xp)
    _, y = pixel_coordinates(ny, pixel_size, xp)
    two_pi = 2.0 * math.pi
    ex_phase = -two_pi * (u[:, None] * x[None, :])  # (M, nx)
    ey_phase = -two_pi * (v[:, None] * y[None, :])  # (M, ny)
    ex = xp.cos(ex_phase) + 1j * xp.sin(ex_phase)
    ey = xp.cos(ey_phase) + 1j * xp.sin(ey_phase)
    img = xp.astype(image, xp.complex128)
    tmp = ey @ img  # (M, nx): Σ_y e^{-2πi v y} I[y, x]
    return xp.sum(tmp * ex, axis=1)
