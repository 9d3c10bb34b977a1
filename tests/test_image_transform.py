"""Transforms (NUFFT vs exact DFT, adjoints, array-API path) and analytic gradients."""

import copy

import numpy as np
import pytest

from oiflow.backend import get_xp, to_numpy
from oiflow.image.data import DeviceGroup, Selection, _Scatter, imaging_data, likelihood
from oiflow.image.objective import Objective
from oiflow.image.reconstruct import image_settings
from oiflow.image.regularizers import NAMES, Regularizer, spectral
from oiflow.image.transform import MatrixDFT, NufftTransform, dft, dft_adjoint, make_transform
from oiflow.observables import bispectrum
from oiflow.simulate.synthetic import synthetic_oifits
from oiflow.fit.analytic import binary
from oiflow.units import MAS

XP = get_xp("numpy")


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(7)


@pytest.mark.parametrize("n", [32, 33])
def test_nufft_matches_exact_dft(rng, n):
    pix = 0.2 * MAS
    img = rng.random((n, n))
    u = rng.normal(size=300) * 1e8
    v = rng.normal(size=300) * 1e8
    exact = dft(img, pix, u, v, XP)
    fast = NufftTransform(u, v, n, pix, XP).forward(img)
    assert np.max(np.abs(fast - exact)) < 1e-8 * np.abs(exact).max()
    g = rng.normal(size=300) + 1j * rng.normal(size=300)
    np.testing.assert_allclose(NufftTransform(u, v, n, pix, XP).adjoint(g), dft_adjoint(g, pix, u, v, (n, n), XP),
                               rtol=0, atol=1e-8 * np.abs(g).sum())


@pytest.mark.parametrize("kind", ["dft", "nufft"])
def test_adjoint_identity(rng, kind):
    """<A x, g> = <x, Re(Aᴴ g)> for a real image x: the gradient back-projection is exact."""
    n, pix = 40, 0.25 * MAS
    u, v = rng.normal(size=200) * 8e7, rng.normal(size=200) * 8e7
    T = make_transform(u, v, n, pix, XP, method=kind)
    x = rng.random((n, n))
    g = rng.normal(size=200) + 1j * rng.normal(size=200)
    lhs = np.real(np.vdot(g, T.forward(x)))
    rhs = np.sum(x * T.adjoint(g))
    assert abs(lhs - rhs) < 1e-11 * abs(lhs) * 10


def test_array_api_strict_transform_matches_numpy(rng):
    xs = get_xp("array_api_strict")
    n, pix = 24, 0.3 * MAS
    u, v = rng.normal(size=50) * 1e8, rng.normal(size=50) * 1e8
    img = rng.random((n, n))
    T = make_transform(xs.asarray(u), xs.asarray(v), n, pix, xs)
    assert isinstance(T, MatrixDFT)  # the path a GPU takes without cufinufft
    np.testing.assert_allclose(to_numpy(T.forward(xs.asarray(img))), dft(img, pix, u, v, XP), atol=1e-10)
    g = rng.normal(size=50) + 1j * rng.normal(size=50)
    np.testing.assert_allclose(to_numpy(T.adjoint(xs.asarray(g))), dft_adjoint(g, pix, u, v, (n, n), XP), atol=1e-10)


def test_scatter_by_cumulative_sum_equals_bincount(rng):
    xs = get_xp("array_api_strict")
    idx = rng.integers(0, 30, size=200)
    idx[:30] = np.arange(30)
    g = rng.normal(size=200) + 1j * rng.normal(size=200)
    ref = _Scatter(idx, 30, XP)(g)
    got = to_numpy(_Scatter(idx, 30, xs)(xs.asarray(g)))
    np.testing.assert_allclose(got, ref, atol=1e-12)


@pytest.fixture(scope="module")
def small_data():
    """4 telescopes, 3 channels: V², closure phases, T3 amplitudes (binary sky)."""
    xyz = np.array([[0, 0, 0], [40, 10, 0], [15, 70, 0], [-30, 45, 0]], float)

    def vf(u, v, w):
        return binary(u, v, 0.4, 1.2 * MAS, 0.7 * MAS, 0.5 * MAS, xp=XP)

    oi = synthetic_oifits(vf, u=None, v=None, wavelength=[1.6e-6, 1.7e-6, 1.8e-6], station_xyz=xyz, seed=3)
    from oiflow.oifits.build import vis_table

    v2 = oi.vis2[0]
    vis = vf(v2["UCOORD"][:, None] / 1.7e-6, v2["VCOORD"][:, None] / 1.7e-6, None)
    w = np.broadcast_to([1.6e-6, 1.7e-6, 1.8e-6], v2["VIS2DATA"].shape)
    vis = vf(v2["UCOORD"][:, None] / w, v2["VCOORD"][:, None] / w, None)
    oi.tables.append(vis_table("SIM", "SIM", target_id=1, mjd=60000.0, u=v2["UCOORD"], v=v2["VCOORD"],
                               sta_index=v2["STA_INDEX"], visamp=np.abs(vis), visamperr=0.02, visphi=np.angle(vis),
                               visphierr=np.deg2rad(2.0), phityp="absolute"))
    return imaging_data([oi], Selection(use_t3="all", use_vis="all"))


def test_likelihood_gradient_matches_finite_differences(small_data, rng):
    group = small_data.groups[0]
    V = (rng.normal(size=group.u.size) + 1j * rng.normal(size=group.u.size)) * 0.4
    assert set(group.terms) == {"vis2", "t3phi", "t3amp", "visamp", "visphi"}
    for term in group.terms:
        g1 = copy.copy(group)
        g1.terms = {term: group.terms[term]}
        dg = DeviceGroup(g1, XP)
        _, G = likelihood(dg, V)

        def f(Vv):
            return float(likelihood(dg, Vv, want_grad=False)[0][term])

        for j in rng.choice(V.size, 6, replace=False):
            e = np.zeros_like(V)
            e[j] = 1e-6
            num = (f(V + e) - f(V - e)) / 2e-6 + 1j * (f(V + 1j * e) - f(V - 1j * e)) / 2e-6
            assert abs(G[j] - num) <= 1e-5 * max(abs(num), 1e-3), (term, j, G[j], num)


def test_forward_model_uses_observables_convention(small_data):
    """The closure-phase model equals arg(V_ij V_jk conj V_ik) of observables.bispectrum."""
    from oiflow.image.data import model_observables

    g = small_data.groups[0]
    V = binary(g.u, g.v, 0.4, 1.2 * MAS, 0.7 * MAS, 0.5 * MAS, xp=XP)
    t = g.terms["t3phi"]
    expected = np.angle(bispectrum(V[t.legs[:, 0]], V[t.legs[:, 1]], V[t.legs[:, 2]], XP))
    np.testing.assert_allclose(model_observables(g, V)["t3phi"], expected, atol=1e-12)
    # noise-free data of a binary: the model of the true visibilities reproduces the data within noise
    resid = np.angle(np.exp(1j * (t.data - expected))) / t.error
    assert np.sqrt(np.mean(resid**2)) < 1.5


@pytest.mark.parametrize("reg", NAMES)
def test_objective_gradient_matches_finite_differences(small_data, rng, reg):
    """∂f/∂x through the adjoint transform, the normalisation and each regulariser."""
    s = image_settings(dict(npix=24, pixel_size_mas=0.25, regularization=reg, transform="dft", tau=0.5))
    obj = Objective(small_data, s, XP)
    obj.mu = 50.0
    x = rng.random(24 * 24) + 0.5
    f0, g = obj(x)
    for _ in range(3):
        d = rng.normal(size=x.size)
        h = 1e-5
        num = (obj(x + h * d)[0] - obj(x - h * d)[0]) / (2 * h)
        assert abs(g @ d - num) <= 1e-5 * abs(num) + 1e-8 * abs(f0)


@pytest.mark.parametrize("reg", NAMES)
def test_regularizer_gradients(rng, reg):
    y = rng.random((9, 11))
    y /= y.sum()
    R = Regularizer(reg, y.shape, 0.2 * MAS, XP, tau=0.5)
    _, g = R(y)
    h = 1e-7 * y.mean()
    for idx in [(0, 0), (4, 5), (8, 10), (3, 0)]:
        yp, ym = y.copy(), y.copy()
        yp[idx] += h
        ym[idx] -= h
        num = (R(yp)[0] - R(ym)[0]) / (2 * h)
        assert abs(g[idx] - num) <= 1e-5 * max(abs(num), 1e-6)


def test_spectral_regularizer_gradient(rng):
    ys = rng.random((3, 5, 6))
    v, g = spectral(ys, XP)
    yp = ys.copy()
    yp[1, 2, 3] += 1e-6
    assert abs((spectral(yp, XP)[0] - v) / 1e-6 - g[1, 2, 3]) < 1e-5


def test_objective_same_on_array_api_strict(small_data, rng):
    """The backend-generic path (what cupy runs) gives the numpy value and gradient."""
    xs = get_xp("array_api_strict")
    s = image_settings(dict(npix=16, pixel_size_mas=0.3, transform="dft"))
    x = rng.random(16 * 16) + 0.5
    on = Objective(small_data, s, XP)
    os_ = Objective(small_data, s, xs)
    on.mu = os_.mu = 10.0
    fn, gn = on(x)
    fs, gs = os_(xs.asarray(x))
    assert abs(fs - fn) < 1e-9 * abs(fn)
    np.testing.assert_allclose(to_numpy(gs), gn, rtol=1e-8, atol=1e-10 * np.abs(gn).max())
