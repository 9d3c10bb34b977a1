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
    j0_num = 57568490574.0 + y * (-13362590354.0 + y * (651619640.7 + y * (-11214424.18 + y * (77392.33017
                                                                                    + y * (-184.9052456)))))
    j0_den = 57568490411.0 + y * (1029532985.0 + y * (9494680.718 + y * (59272.64853 + y * (267.8532712 + y))))
    j1_num = xs * (72362614232.0 + y * (-7895059235.0 + y * (242396853.1 + y * (-2972611.439 + y * (15704.48260
                                                                                          + y * (-30.16036606))))))
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


# -- more shapes (the fitter's model components and the simulator's sky models) ----------------

def _small(x, xp, limit=1e-3):
    """(mask of |x| < limit, x with those entries replaced by 1) — to evaluate f(x)/x^k safely."""
    tiny = xp.abs(x) < limit
    return tiny, xp.where(tiny, xp.ones_like(x), x)


def _bessel_ratio_series(x, nu: float, xp, nterms: int = 10):
    """Γ(ν+1) (2/x)^ν J_ν(x) = Σ_m (−1)^m Γ(ν+1) (x/2)^{2m} / (m! Γ(ν+m+1)), for small x."""
    y = -0.25 * x * x
    coef = [1.0]
    for m in range(1, nterms):
        coef.append(coef[-1] / (m * (nu + m)))
    out = xp.full_like(x, coef[-1])
    for c in coef[-2::-1]:
        out = out * y + c
    return out


def _ld_moment(x, k: int, xp):
    """Normalised visibility of I(μ) = μ^k (k = 0, 1, 2) at x = πθρ, closed forms on any backend
    (a power series below x = 1, where the closed forms cancel):
    k=0: 2 J1(x)/x; k=1: 3 (sin x − x cos x)/x³; k=2: 8 J2(x)/x² with J2 = 2 J1/x − J0.
    """
    tiny, xs = _small(x, xp, limit=1.0)
    if k == 0:
        _, j1 = _j0_j1(xs, xp)
        big = 2.0 * j1 / xs
    elif k == 1:
        big = 3.0 * (xp.sin(xs) - xs * xp.cos(xs)) / (xs * xs * xs)
    elif k == 2:
        j0, j1 = _j0_j1(xs, xp)
        big = 8.0 * (2.0 * j1 / xs - j0) / (xs * xs)
    else:  # pragma: no cover - internal
        raise ValueError(k)
    return xp.where(tiny, _bessel_ratio_series(x, k / 2.0 + 1.0, xp), big)


def ld_quadratic(u, v, diameter, u1, u2, xp=None):
    """Limb-darkened disk, quadratic law I(μ)/I(1) = 1 − u1 (1 − μ) − u2 (1 − μ)².

    Written as c0 + c1 μ + c2 μ² with c0 = 1 − u1 − u2, c1 = u1 + 2 u2, c2 = −u2; the flux of μ^k
    over the disk is ∝ 1/(k + 2), so V = Σ c_k V_k/(k+2) / Σ c_k/(k+2) (Hanbury Brown et al. 1974).
    """
    xp = xp or array_namespace(u)
    x = _PI * diameter * radius_frequency(u, v, xp)
    c = (1.0 - u1 - u2, u1 + 2.0 * u2, -u2)
    w = [c[k] / (k + 2.0) for k in range(3)]
    norm = w[0] + w[1] + w[2]
    vis = w[0] * _ld_moment(x, 0, xp)
    if w[1] != 0:
        vis = vis + w[1] * _ld_moment(x, 1, xp)
    if w[2] != 0:
        vis = vis + w[2] * _ld_moment(x, 2, xp)
    return vis / norm + 0j


def ld_power(u, v, diameter, alpha, xp=None):
    """Limb-darkened disk, power law I(μ) = μ^α (Hestroffer 1997):
    V = Γ(ν+1) (2/x)^ν J_ν(x), ν = α/2 + 1, x = πθρ. α = 0 is the uniform disk."""
    xp = xp or array_namespace(u)
    if alpha == 0:
        return uniform_disk(u, v, diameter, xp)
    if alpha in (1.0, 2.0):
        return ld_quadratic(u, v, diameter, *((1.0, 0.0) if alpha == 1.0 else (2.0, -1.0)), xp=xp)
    import numpy as np
    from scipy import special

    from ..backend import to_numpy

    nu = alpha / 2.0 + 1.0
    x = to_numpy(_PI * diameter * radius_frequency(u, v, xp))
    with np.errstate(divide="ignore", invalid="ignore"):
        big = special.gamma(nu + 1.0) * (2.0 / x) ** nu * special.jv(nu, x)
    out = np.where(np.abs(x) < 1.0, _bessel_ratio_series(x, nu, np), big)
    return _like(out + 0j, u, xp)


def _like(a, ref, xp):
    """Host numpy array ``a`` moved to the backend (and device) of ``ref``."""
    name = getattr(xp, "__name__", "")
    if "numpy" in name:
        return a
    if "cupy" in name:
        import cupy

        return cupy.asarray(a)
    return xp.asarray(a)


def ring(u, v, diameter, width=0.0, xp=None):
    """Uniform annulus of inner ``diameter`` and radial ``width`` (outer diameter = diameter + 2 width);
    ``width = 0`` is the infinitely thin ring J0(πθρ)."""
    xp = xp or array_namespace(u)
    if width <= 0:
        return thin_ring(u, v, diameter, xp)
    d_out = diameter + 2.0 * width
    a_out, a_in = d_out * d_out, diameter * diameter
    v_out = uniform_disk(u, v, d_out, xp)
    v_in = uniform_disk(u, v, diameter, xp) if diameter > 0 else 0.0
    return (a_out * v_out - a_in * v_in) / (a_out - a_in)


def background(u, v, xp=None):
    """Fully resolved flux: V = 0 at every non-zero baseline (it only dilutes the others)."""
    xp = xp or array_namespace(u)
    return xp.zeros_like(u) + 0j


# -- chromatic flux laws --------------------------------------------------------------------

_H, _C, _KB = 6.62607015e-34, 299792458.0, 1.380649e-23


def blackbody_ratio(wavelength, temperature, reference_wavelength, xp=None):
    """B_λ(λ, T) / B_λ(λ_ref, T): the relative spectrum of a blackbody (λ in m, T in K)."""
    xp = xp or array_namespace(wavelength)
    a = _H * _C / (_KB * temperature)
    num = (reference_wavelength / wavelength) ** 5 * xp.expm1(xp.zeros_like(wavelength) + a / reference_wavelength)
    return num / xp.expm1(a / wavelength)


def power_law_ratio(wavelength, index, reference_wavelength, xp=None):
    """(λ/λ_ref)^index: a flux with spectral index ``index`` in F_λ."""
    return (wavelength / reference_wavelength) ** index
