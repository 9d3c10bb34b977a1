"""Analytic complex visibilities of geometric components (the one home for them).

Each function takes spatial frequencies ``u, v`` in cycles per radian (baseline/λ) and sizes in
radians, and returns the complex visibility normalised to 1 at zero frequency, with the OIFITS
sign convention V = ∫ I exp(−2πi(ux + vy)), x East, y North (see :mod:`oiflow`). They work on
any array-API namespace ``xp`` (numpy, cupy, array_api_strict).
"""

from __future__ import annotations

import math

from ..backend import array_namespace

_PI = math.pi


def _j0_j1(x, xp):
    """Bessel J0 and J1 for real x ≥ 0, with the library routine where the backend has one."""
    name = getattr(xp, "__name__", "")
    if "numpy" in name:
        import numpy as np
        from scipy import special

        xn = np.asarray(x)
        return xp.asarray(special.j0(xn)), xp.asarray(special.j1(xn))
    if "cupy" in name:
        from cupyx.scipy import special as cspecial

        return cspecial.j0(x), cspecial.j1(x)
    return _j0_j1_poly(x, xp)


def _j0_j1_poly(x, xp):
    """Polynomial/asymptotic approximations of J0 and J1 (|error| < 1e-8), pure array API.

    Used for backends without special functions (array_api_strict in CI).
    Coefficients: Abramowitz & Stegun 9.4.1-9.4.6 style rational fits (Hart 1968).
    """
    ax = xp.abs(x)
    small = ax < 8.0
    xs = xp.where(small, x, xp.zeros_like(x))
    y = xs * xs
    j0_num = 57568490574.0 + y * (-13362590354.0 + y * (651619640.7 + y * (-11214424.18 + y * (77392.33017 + y * (-184.9052456)))))
    j0_den = 57568490411.0 + y * (1029532985.0 + y * (9494680.718 + y * (59272.64853 + y * (267.8532712 + y))))
    j1_num = xs * (72362614232.0 + y * (-7895059235.0 + y * (242396853.1 + y * (-2972611.439 + y * (15704.48260 + y * (-30.16036606))))))
    j1_den = 144725228442.0 + y * (2300535178.0 + y * (18583304.74 + y * (99447.43394 + y * (376.9991397 + y))))
    axl = xp.where(small, xp.full_like(ax, 8.0), ax)
    z = 8.0 / axl
    y2 = z * z
    xx0 = axl - 0.785398164
    p0 = 1.0 + y2 * (-0.1098628627e-2 + y2 * (0.2734510407e-4 + y2 * (-0.2073370639e-5 + y2 * 0.2093887211e-6)))
    q0 = -0.1562499995e-1 + y2 * (0.1430488765e-3 + y2 * (-0.6911147651e-5 + y2 * (0.7621095161e-6 - y2 * 0.934935152e-7)))
    big0 = xp.sqrt(0.636619772 / axl) * (xp.cos(xx0) * p0 - z * xp.sin(xx0) * q0)
    xx1 = axl - 2.356194491
    p1 = 1.0 + y2 * (0.183105e-2 + y2 * (-0.3516396496e-4 + y2 * (0.2457520174e-5 + y2 * (-0.240337019e-6))))
    q1 = 0.04687499995 + y2 * (-0.2002690873e-3 + y2 * (0.8449199096e-5 + y2 * (-0.88228987e-6 + y2 * 0.105787412e-6)))
    big1 = xp.sqrt(0.636619772 / axl) * (xp.cos(xx1) * p1 - z * xp.sin(xx1) * q1)
    big1 = xp.where(x < 0, -big1, big1)
    return xp.where(small, j0_num / j0_den, big0), xp.where(small, j1_num / j1_den, big1)


def radius_frequency(u, v, xp=None):
    """ρ = √(u² + v²)."""
    xp = xp or array_namespace(u)
    return xp.sqrt(u * u + v * v)


def stretch(u, v, axis_ratio=1.0, pa=0.0, xp=None):
    """Frequencies seen by an elongated component.

    The component's major axis lies along position angle ``pa`` (radians, North through East);
    ``axis_ratio`` = minor/major ≤ 1. Returns (u', v') such that the elongated visibility is
    the circular one evaluated at (u', v'), the circular size being the major axis.
    """
    xp = xp or array_namespace(u)
    s, c = math.sin(pa), math.cos(pa)
    along = u * s + v * c  # frequency component along the major axis
    across = u * c - v * s  # across it
    return along, across * axis_ratio


def shift_phasor(u, v, x, y, xp=None):
    """exp(−2πi(u x + v y)) for a component displaced by (x East, y North) radians."""
    xp = xp or array_namespace(u)
    phase = -2.0 * _PI * (u * x + v * y)
    return xp.cos(phase) + 1j * xp.sin(phase)


def point(u, v, xp=None):
    """Unresolved source: V = 1."""
    xp = xp or array_namespace(u)
    return xp.ones_like(u) + 0j


def uniform_disk(u, v, diameter, xp=None):
    """Uniform disk of angular ``diameter`` (rad): V = 2 J1(πθρ)/(πθρ)."""
    xp = xp or array_namespace(u)
    x = _PI * diameter * radius_frequency(u, v, xp)
    tiny = x < 1e-6
    xs = xp.where(tiny, xp.ones_like(x), x)
    _, j1 = _j0_j1(xs, xp)
    out = xp.where(tiny, 1.0 - x * x / 8.0, 2.0 * j1 / xs)
    return out + 0j


def gaussian(u, v, fwhm, xp=None):
    """Circular Gaussian of full width at half maximum ``fwhm`` (rad)."""
    xp = xp or array_namespace(u)
    rho = radius_frequency(u, v, xp)
    return xp.exp(-((_PI * fwhm * rho) ** 2) / (4.0 * math.log(2.0))) + 0j


def thin_ring(u, v, diameter, xp=None):
    """Infinitely thin ring of angular ``diameter`` (rad): V = J0(πθρ)."""
    xp = xp or array_namespace(u)
    j0, _ = _j0_j1(_PI * diameter * radius_frequency(u, v, xp), xp)
    return j0 + 0j


def binary(u, v, flux_ratio, x, y, diameter1=0.0, diameter2=0.0, xp=None):
    """Two uniform disks (point sources when the diameter is 0), primary at the origin,
    secondary at (x East, y North) radians with flux ratio ``flux_ratio`` = F2/F1."""
    xp = xp or array_namespace(u)
    v1 = uniform_disk(u, v, diameter1, xp) if diameter1 > 0 else point(u, v, xp)
    v2 = uniform_disk(u, v, diameter2, xp) if diameter2 > 0 else point(u, v, xp)
    return (v1 + flux_ratio * v2 * shift_phasor(u, v, x, y, xp)) / (1.0 + flux_ratio)
