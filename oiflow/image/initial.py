"""Initial images: Dirac, Gaussian, uniform disk, random, components of a model, a FITS image.

All return a numpy (ny, nx) image on the grid of :mod:`oiflow.image.transform` (North up,
East left, reference pixel n//2), normalised to unit flux.

``auto`` (the default) is not one image but a rule applied by the reconstruction
(:func:`oiflow.image.reconstruct.reconstruct`): each of :data:`START_CANDIDATES` is optimised
for a few iterations and the one whose objective is then lowest is kept.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..units import MAS

_SUPERSAMPLE = 5
#: names of the built-in initial images (anything else names a FITS file)
INITIAL_KINDS = ("auto", "dirac", "gaussian", "ud", "random", "model")
#: the simple images the ``auto`` start chooses among: a point, and the Gaussian and the uniform
#: disk of the size fitted to the V² (the object unresolved, smooth, or with a sharp limb)
START_CANDIDATES = ("dirac", "gaussian", "ud")


def _grid(n: int, pixel_size: float, supersample: int = 1):
    """(x_east, y_north) 2-D coordinates in radians, optionally supersampled within pixels."""
    k = np.arange(n * supersample) / supersample - (n // 2) - (supersample - 1) / (2 * supersample)
    x = -k * pixel_size
    y = k * pixel_size
    return x[None, :], y[:, None]


def _bin(img: np.ndarray, s: int) -> np.ndarray:
    if s == 1:
        return img
    n0, n1 = img.shape[0] // s, img.shape[1] // s
    return img.reshape(n0, s, n1, s).sum(axis=(1, 3))


def _normalise(img: np.ndarray) -> np.ndarray:
    total = float(img.sum())
    if not np.isfinite(total) or total <= 0:
        raise DataError("initial image has no positive flux")
    return img / total


def dirac(n: int) -> np.ndarray:
    img = np.zeros((n, n))
    img[n // 2, n // 2] = 1.0
    return img


def gaussian(n: int, pixel_size: float, fwhm: float, x0: float = 0.0, y0: float = 0.0) -> np.ndarray:
    """Circular Gaussian of FWHM ``fwhm`` (rad) centred at (x0 East, y0 North), pixel-integrated."""
    s = _SUPERSAMPLE
    x, y = _grid(n, pixel_size, s)
    fwhm = max(fwhm, pixel_size / 2)
    img = np.exp(-4 * math.log(2) * ((x - x0) ** 2 + (y - y0) ** 2) / fwhm**2)
    return _normalise(_bin(img, s))


def uniform_disk(n: int, pixel_size: float, diameter: float, x0: float = 0.0, y0: float = 0.0) -> np.ndarray:
    """Uniform disk of ``diameter`` (rad), pixel-integrated by supersampling."""
    s = _SUPERSAMPLE
    x, y = _grid(n, pixel_size, s)
    r = max(diameter / 2, pixel_size / 2)
    img = (((x - x0) ** 2 + (y - y0) ** 2) <= r * r).astype(float)
    return _normalise(_bin(img, s))


def random(n: int, seed: int = 0) -> np.ndarray:
    return _normalise(np.random.default_rng(seed).random((n, n)))


def from_components(n: int, pixel_size: float, components: list[dict[str, Any]]) -> np.ndarray:
    """Sum of components ``{"type": "point"|"gaussian"|"ud", "flux", "x_mas", "y_mas",
    "fwhm_mas"|"diameter_mas"}`` rendered on the grid (e.g. a model from the fitter)."""
    if not components:
        raise ConfigError("initial model has no components")
    img = np.zeros((n, n))
    for comp in components:
        kind = str(comp.get("type", "")).lower()
        flux = float(comp.get("flux", 1.0))
        x0 = float(comp.get("x_mas", 0.0)) * MAS
        y0 = float(comp.get("y_mas", 0.0)) * MAS
        if kind in ("point", "dirac"):
            ix = int(round(n // 2 - x0 / pixel_size))
            iy = int(round(n // 2 + y0 / pixel_size))
            if 0 <= ix < n and 0 <= iy < n:
                img[iy, ix] += flux
        elif kind in ("gaussian", "g"):
            img += flux * gaussian(n, pixel_size, float(comp["fwhm_mas"]) * MAS, x0, y0)
        elif kind in ("ud", "uniform_disk", "disk"):
            img += flux * uniform_disk(n, pixel_size, float(comp["diameter_mas"]) * MAS, x0, y0)
        else:
            raise ConfigError(f"unknown component type {kind!r} in the initial model (point, gaussian, ud)")
    return _normalise(img)


def fit_gaussian_fwhm(data, max_fwhm: float) -> float:
    """FWHM (rad) of the circular Gaussian that best fits the V² of ``data`` (an ImagingData);
    a grid search in log size. Falls back to ``max_fwhm / 4`` without V²."""
    freqs, vals, errs = [], [], []
    for g in data.groups:
        t = g.terms.get("vis2")
        if t is not None:
            freqs.append(t.spatial_frequency)
            vals.append(t.data)
            errs.append(t.error)
    if not freqs:
        return max_fwhm / 4
    rho = np.concatenate(freqs)
    d = np.concatenate(vals)
    e = np.concatenate(errs)
    best, best_chi2 = max_fwhm / 4, np.inf
    for fwhm in np.geomspace(max_fwhm / 500, max_fwhm, 200):
        model = np.exp(-((math.pi * fwhm * rho) ** 2) / (2 * math.log(2)))
        chi2 = float(np.sum(((model - d) / e) ** 2))
        if chi2 < best_chi2:
            best, best_chi2 = fwhm, chi2
    return best


def initial_image(kind: str, n: int, pixel_size: float, *, size: float | None = None, data=None,
                  components=None, seed: int = 0, fitted_fwhm: float | None = None) -> np.ndarray:
    """The initial image named ``kind`` (dirac, gaussian, ud, random, model, or a FITS path;
    ``auto`` is the reconstruction's rule, see the module docstring).

    ``size`` (rad) is the Gaussian FWHM or the disk diameter; when None it is fitted to the V²
    of ``data`` (a Gaussian; the disk diameter is 1.5 × the Gaussian FWHM; ``fitted_fwhm``: that
    fit, when the caller has it already).
    """
    key = str(kind).strip()
    low = key.lower()
    if low == "auto":
        raise ConfigError("initial 'auto' is a choice among several images made by the reconstruction, not one image")
    fov = n * pixel_size
    if low in ("gaussian", "ud") and size is None:
        if fitted_fwhm is not None:
            size = fitted_fwhm
        else:
            size = fit_gaussian_fwhm(data, fov / 2) if data is not None else fov / 8
        if low == "ud":
            size *= 1.5
    if low == "dirac":
        return dirac(n)
    if low == "gaussian":
        return gaussian(n, pixel_size, size)
    if low == "ud":
        return uniform_disk(n, pixel_size, size)
    if low == "random":
        return random(n, seed)
    if low == "model":
        return from_components(n, pixel_size, components or [])
    from .imageoi import read_fits_image

    img = read_fits_image(key)
    return _normalise(np.clip(img.resample(n, pixel_size), 0, None))
