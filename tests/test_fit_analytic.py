"""Analytic visibilities of the fitting models, checked against numerical Hankel transforms of
their intensity profiles and on the array-API-strict backend."""

import math

import numpy as np
import pytest
from scipy import integrate, special

from oiflow.backend import get_xp, to_numpy
from oiflow.fit import analytic
from oiflow.units import MAS

XP = get_xp("numpy")


def hankel(profile, r0, r1, rho):
    """V(ρ) = ∫ I(r) J0(2πρr) 2πr dr / ∫ I(r) 2πr dr for a circular profile on [r0, r1]."""
    kw = dict(limit=400, epsabs=1e-12, epsrel=1e-12)
    norm = integrate.quad(lambda r: profile(r) * 2 * math.pi * r, r0, r1, **kw)[0]
    return np.array([integrate.quad(lambda r: profile(r) * special.j0(2 * math.pi * q * r) * 2 * math.pi * r,
                                    r0, r1, **kw)[0] / norm for q in rho])


def hankel_mu(intensity, rho):
    """The same for a limb-darkening law I(μ) on a disk of diameter THETA, integrated in μ
    (r = R√(1−μ²), r dr = −R² μ dμ), where the integrand is smooth."""
    R = THETA / 2
    kw = dict(limit=400, epsabs=1e-13, epsrel=1e-13)
    norm = integrate.quad(lambda m: intensity(m) * m, 0, 1, **kw)[0]
    return np.array([integrate.quad(lambda m: intensity(m) * special.j0(2 * math.pi * q * R * math.sqrt(1 - m * m)) * m,
                                    0, 1, **kw)[0] / norm for q in rho])


THETA = 2.0 * MAS
RHO = np.array([1e6, 5e7, 1.2e8, 2.5e8, 4e8])


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0, 2.0, 0.77])
def test_power_law_limb_darkening_matches_hankel_transform(alpha):
    expected = hankel_mu(lambda m: m ** alpha, RHO)
    got = analytic.ld_power(RHO, 0 * RHO, THETA, alpha, XP).real
    np.testing.assert_allclose(got, expected, atol=1e-9)


@pytest.mark.parametrize("u1,u2", [(0.0, 0.0), (0.4, 0.2), (0.9, -0.3)])
def test_quadratic_limb_darkening_matches_hankel_transform(u1, u2):
    expected = hankel_mu(lambda m: 1 - u1 * (1 - m) - u2 * (1 - m) ** 2, RHO)
    got = analytic.ld_quadratic(RHO, 0 * RHO, THETA, u1, u2, XP).real
    np.testing.assert_allclose(got, expected, atol=1e-9)


def test_annulus_matches_hankel_transform_and_thin_ring_limit():
    d_in, w = 1.5 * MAS, 0.4 * MAS
    expected = hankel(lambda r: 1.0, d_in / 2, d_in / 2 + w, RHO)
    np.testing.assert_allclose(analytic.ring(RHO, 0 * RHO, d_in, w, XP).real, expected, atol=1e-9)
    thin = analytic.ring(RHO, 0 * RHO, d_in, 0.0, XP).real
    np.testing.assert_allclose(thin, special.j0(math.pi * d_in * RHO), atol=1e-12)
    narrow = analytic.ring(RHO, 0 * RHO, d_in, 1e-5 * MAS, XP).real
    np.testing.assert_allclose(narrow, thin, atol=1e-4)


def test_elongated_disk_is_the_circular_one_along_its_major_axis():
    # a disk with major axis at PA 30 deg: along that direction the visibility is the circular
    # disk of the major axis; across it, of the minor axis
    pa, ratio, d = math.radians(30), 0.5, 3.0 * MAS
    rho = np.linspace(1e6, 2e8, 20)
    along_u, along_v = rho * math.sin(pa), rho * math.cos(pa)
    across_u, across_v = rho * math.cos(pa), -rho * math.sin(pa)
    for (u, v), size in (((along_u, along_v), d), ((across_u, across_v), d * ratio)):
        su, sv = analytic.stretch(u, v, ratio, pa, XP)
        np.testing.assert_allclose(analytic.uniform_disk(su, sv, d, XP).real,
                                   analytic.uniform_disk(rho, 0 * rho, size, XP).real, atol=1e-12)


def test_background_and_chromatic_laws():
    lam = np.array([1.5e-6, 1.65e-6, 2.2e-6])
    assert np.all(analytic.background(lam, lam, XP) == 0)
    np.testing.assert_allclose(analytic.power_law_ratio(lam, -4.0, 1.65e-6), (lam / 1.65e-6) ** -4)
    h, c, k = 6.62607015e-34, 299792458.0, 1.380649e-23
    planck = lambda w, t: w ** -5 / np.expm1(h * c / (w * k * t))  # noqa: E731
    np.testing.assert_allclose(analytic.blackbody_ratio(lam, 3500.0, 1.65e-6, XP),
                               planck(lam, 3500.0) / planck(1.65e-6, 3500.0), rtol=1e-12)


def test_new_shapes_on_the_strict_array_api_backend():
    xs = get_xp("array_api_strict")
    u, v = xs.asarray(RHO), xs.asarray(0.3 * RHO)
    for f, args in ((analytic.ld_quadratic, (THETA, 0.4, 0.2)), (analytic.ring, (THETA, 0.3 * MAS)),
                    (analytic.ld_power, (THETA, 0.5)), (analytic.gaussian, (THETA,))):
        got = to_numpy(f(u, v, *args, xp=xs))
        ref = f(RHO, 0.3 * RHO, *args, xp=XP)
        np.testing.assert_allclose(got, ref, atol=2e-7)
