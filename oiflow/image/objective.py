"""The objective of a reconstruction: f(x) = χ²(y) + μ R(y) (+ extra and spectral terms), y = x / Σx.

:class:`Objective` evaluates f and its analytic gradient on the chosen array backend: the data
term through the transform (:mod:`oiflow.image.transform`) and its adjoint, the regularisers
through :mod:`oiflow.image.regularizers`. The data and regularisers see the normalised image y,
so f does not depend on the scale of x: positivity is a bound and the flux normalisation is
exact (∂f/∂x = (∂f/∂y − ⟨∂f/∂y, y⟩)/Σx). Only scalars travel to the host.

The object's size and brightness that scale the regulariser's edge threshold τ come from the
V² (:func:`object_size`, :func:`object_brightness`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..backend import to_numpy
from ..config import ImageTarget
from ..units import MAS
from .data import DeviceGroup, ImagingData, likelihood
from .initial import fit_gaussian_fwhm
from .metric import nominal_resolution
from .regularizers import Regularizer, spectral
from .transform import make_transform

#: NUFFT settings of the objective. eps = 1e-7: model visibilities to ≲ 1e-7 of the flux, far
#: below any interferometric error bar (σ(V²) ≥ 1e-5 → |V| needed to ~5e-6); the gradient stays
#: exact for that model (finufft's types 1 and 2 are adjoint to rounding, see NufftTransform).
#: upsampfac 1.25: smaller grid, faster for the few points per Fourier mode of interferometry.
NUFFT_OPTIONS = dict(eps=1e-7, upsampfac=1.25)


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


def normalised(x: np.ndarray, shape) -> np.ndarray:
    """Host images (one per group) of flat ``x``, each of unit flux."""
    x = np.asarray(x, float).reshape(shape)
    return x / x.sum(axis=(1, 2), keepdims=True)


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
