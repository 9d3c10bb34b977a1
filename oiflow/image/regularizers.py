"""Regularisers of the image (value and gradient), on any array-API namespace.

They act on the flux-normalised image ``y`` (Σ y = 1, y ≥ 0), shape (ny, nx). Each returns
``(value, gradient)``; the reconstruction adds ``μ · value`` to the χ².

* ``hyperbolic`` (edge-preserving total variation, alias ``tv``):
  Σ √(|∇y|² + τ²) − τ, with τ = ``tau`` × ``brightness`` (a reference pixel value of the
  normalised image: by default the mean pixel value 1/N; the reconstruction passes the object's
  mean pixel value, see :func:`oiflow.image.objective.object_brightness`, so that τ follows the
  data, not the field of view) — small τ: TV (sharp edges), large τ: quadratic smoothness;
* ``mem``: maximum entropy against a prior p (Σ p = 1): Σ y ln(y/p) − y + p (≥ 0, 0 at y = p);
* ``smooth``: quadratic smoothness Σ |∇y|²;
* ``compactness``: Σ w y² with radial weights w = N·(1 + (2r/γ)²)/Σ(…) (γ = ``prior_fwhm``):
  prefers a compact image of FWHM ≈ γ;
* ``l1``: Σ w (√(y² + δ²) − δ) with the radial weights above (δ = ``tau`` × ``brightness``). A plain l1 norm
  is constant (= the flux) for a positive normalised image; with radial weights it is a
  sparsity prior that favours emission near the centre.

∇ is the forward difference with a zero last row/column (Neumann boundary); its adjoint is
:func:`_dt`.
"""

from __future__ import annotations

import math

from ..errors import ConfigError

ALIASES = {"tv": "hyperbolic", "edge-preserving": "hyperbolic", "edge_preserving": "hyperbolic", "hyperbolic": "hyperbolic",
           "mem": "mem", "mem_prior": "mem", "entropy": "mem", "smooth": "smooth", "quadratic": "smooth",
           "smoothness": "smooth", "compactness": "compactness", "l1": "l1", "l1l2": "hyperbolic", "l1l2white": "l1",
           "totvar": "hyperbolic"}
NAMES = ("hyperbolic", "mem", "smooth", "compactness", "l1")
#: what a name means when it is not a plain synonym of the regulariser doing it (WISARD's names
#: included): said with the result (:func:`announce`)
ALIAS_NOTES = {
    "tv": "total variation is done by the hyperbolic regulariser: TV smoothed below the edge threshold τ",
    "totvar": "total variation (WISARD's TOTVAR) is done by the hyperbolic regulariser: TV smoothed below the "
              "edge threshold τ",
    "l1l2": "WISARD's L1L2 (the l1-l2 potential of the image gradient: quadratic for small gradients, linear for "
            "large ones) is done by the hyperbolic regulariser, a potential of the same kind with the threshold τ "
            "(WISARD's DELTA and SCALE are not used)",
    "l1l2white": "WISARD's L1L2WHITE (the l1-l2 potential of the pixel values) is done by the l1 regulariser, a "
                 "potential of the same kind on the pixels with radial weights that favour flux near the centre "
                 "(WISARD's DELTA and SCALE are not used)",
}


def canonical(name: str) -> str:
    key = str(name).strip().lower()
    if key not in ALIASES:
        raise ConfigError(f"unknown regularization {name!r}; use one of {', '.join(sorted(ALIASES))}")
    return ALIASES[key]


def announce(name: str) -> str | None:
    """One line saying which regulariser does ``name`` and what that means, when ``name`` is not
    a plain synonym of it (:data:`ALIAS_NOTES`); None otherwise."""
    key = str(name).strip().lower()
    note = ALIAS_NOTES.get(key)
    return f"regularization {name!r} → {canonical(name)}: {note}" if note else None


def describe(name: str, tau: float, ascii: bool = False) -> str:
    """What runs for ``name``, with its threshold, in a few words: the command's result line and
    the product's RGL_DESC (``ascii``: for a FITS card), e.g. ``tv (smoothed: hyperbolic, τ =
    0.001 × object mean pixel)``; τ (δ for l1) is ``tau`` × the object's mean pixel value."""
    asked, key = str(name).strip().lower(), canonical(name)
    t, x = ("tau", "x") if ascii else ("τ", "×")
    what = {"hyperbolic": f"hyperbolic, {t} = {tau:g} {x} object mean pixel",
            "l1": f"l1, {'delta' if ascii else 'δ'} = {tau:g} {x} object mean pixel"}.get(key, key)
    if asked == key:
        return what
    return f"{asked} (smoothed: {what})" if asked in ("tv", "totvar") else f"{asked} ({what})"


def _dx(y, xp):
    z = xp.zeros((y.shape[0], 1), dtype=y.dtype)
    return xp.concat([y[:, 1:] - y[:, :-1], z], axis=1)


def _dy(y, xp):
    z = xp.zeros((1, y.shape[1]), dtype=y.dtype)
    return xp.concat([y[1:, :] - y[:-1, :], z], axis=0)


def _dxt(p, xp):
    """Adjoint of :func:`_dx` (p's last column is ignored)."""
    z = xp.zeros((p.shape[0], 1), dtype=p.dtype)
    pe = xp.concat([p[:, :-1], z], axis=1)
    return xp.concat([z, pe[:, :-1]], axis=1) - pe


def _dyt(p, xp):
    z = xp.zeros((1, p.shape[1]), dtype=p.dtype)
    pe = xp.concat([p[:-1, :], z], axis=0)
    return xp.concat([z, pe[:-1, :]], axis=0) - pe


def radial_weights(shape, pixel_size: float, fwhm: float, xp):
    """N·(1 + (2r/γ)²) / Σ(1 + (2r/γ)²): mean 1, grows as r² beyond γ/2."""
    ny, nx = shape
    iy = xp.astype(xp.arange(ny), xp.float64) - ny // 2
    ix = xp.astype(xp.arange(nx), xp.float64) - nx // 2
    r2 = (iy[:, None] ** 2 + ix[None, :] ** 2) * pixel_size**2
    w = 1.0 + 4.0 * r2 / fwhm**2
    return w * (ny * nx) / xp.sum(w)


def gaussian_prior(shape, pixel_size: float, fwhm: float, xp):
    """A normalised circular Gaussian image (prior for MEM)."""
    ny, nx = shape
    iy = xp.astype(xp.arange(ny), xp.float64) - ny // 2
    ix = xp.astype(xp.arange(nx), xp.float64) - nx // 2
    r2 = (iy[:, None] ** 2 + ix[None, :] ** 2) * pixel_size**2
    g = xp.exp(-4.0 * math.log(2.0) * r2 / fwhm**2)
    g = g + 1e-8 * xp.max(g)  # strictly positive: the entropy needs p > 0 everywhere
    return g / xp.sum(g)


class Regularizer:
    """A named regulariser with its parameters bound (prior, weights, τ)."""

    def __init__(self, name: str, shape, pixel_size: float, xp, *, tau: float = 0.05, prior_fwhm: float | None = None,
                 prior=None, brightness: float | None = None):
        self.name = canonical(name)
        self.xp = xp
        self._numpy = "numpy" in getattr(xp, "__name__", "")
        ny, nx = shape
        self.npix = ny * nx
        self.tau = float(tau) * (1.0 / self.npix if brightness is None else float(brightness))
        fwhm = prior_fwhm if prior_fwhm else 0.25 * max(ny, nx) * pixel_size
        self.weights = None
        self.prior = None
        if self.name in ("compactness", "l1"):
            self.weights = radial_weights(shape, pixel_size, fwhm, xp)
        if self.name == "mem":
            if prior is not None:
                p = xp.asarray(prior, dtype=xp.float64)
                p = xp.where(p > 0, p, xp.zeros_like(p)) + 1e-8 * xp.max(p)
                self.prior = p / xp.sum(p)
            else:
                self.prior = gaussian_prior(shape, pixel_size, fwhm, xp)

    def _hyperbolic_numpy(self, y):
        """The hyperbolic value and gradient with numpy slices (no concatenations): the same
        numbers as the array-API code."""
        import numpy as np

        gx = np.zeros_like(y)
        gy = np.zeros_like(y)
        np.subtract(y[:, 1:], y[:, :-1], out=gx[:, :-1])
        np.subtract(y[1:, :], y[:-1, :], out=gy[:-1, :])
        s = np.sqrt(gx * gx + gy * gy + self.tau**2)
        val = np.sum(s - self.tau)
        px = gx / s
        py = gy / s
        grad = np.zeros_like(y)
        grad[:, 1:] += px[:, :-1]
        grad[:, :-1] -= px[:, :-1]
        grad[1:, :] += py[:-1, :]
        grad[:-1, :] -= py[:-1, :]
        return val, grad

    @property
    def lower_bound(self) -> float:
        """Smallest allowed pixel value of the normalised image (MEM needs y > 0)."""
        return 1e-10 / self.npix if self.name == "mem" else 0.0

    def __call__(self, y):
        xp = self.xp
        if self.name == "hyperbolic" and self._numpy:
            return self._hyperbolic_numpy(y)
        if self.name == "hyperbolic":
            gx, gy = _dx(y, xp), _dy(y, xp)
            s = xp.sqrt(gx * gx + gy * gy + self.tau**2)
            val = xp.sum(s - self.tau)
            grad = _dxt(gx / s, xp) + _dyt(gy / s, xp)
            return val, grad
        if self.name == "smooth":
            gx, gy = _dx(y, xp), _dy(y, xp)
            return xp.sum(gx * gx + gy * gy), 2.0 * (_dxt(gx, xp) + _dyt(gy, xp))
        if self.name == "compactness":
            wy = self.weights * y
            return xp.sum(wy * y), 2.0 * wy
        if self.name == "l1":
            d = self.tau
            s = xp.sqrt(y * y + d * d)
            return xp.sum(self.weights * (s - d)), self.weights * y / s
        if self.name == "mem":
            p = self.prior
            yc = xp.where(y > 0, y, xp.full_like(y, 1e-300))
            logr = xp.log(yc / p)
            val = xp.sum(xp.where(y > 0, y * logr, xp.zeros_like(y)) - y + p)
            return val, logr
        raise ConfigError(f"regularizer {self.name} not implemented")  # pragma: no cover


def spectral(ys, xp):
    """Quadratic spectral smoothness Σ_c ||y_c − y_{c+1}||² over a (nchan, ny, nx) stack."""
    if ys.shape[0] < 2:
        return xp.sum(ys * 0.0), xp.zeros_like(ys)
    d = ys[1:, ...] - ys[:-1, ...]
    z = xp.zeros((1,) + tuple(ys.shape[1:]), dtype=ys.dtype)
    grad = 2.0 * (xp.concat([z, d], axis=0) - xp.concat([d, z], axis=0))
    return xp.sum(d * d), grad
