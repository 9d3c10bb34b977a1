"""The VMLM-B optimiser: solution against scipy's L-BFGS-B, the numpy fast path against the
array-API code, stopping rules."""

import numpy as np
import pytest
from scipy.optimize import minimize

from oiflow.backend import get_xp, to_numpy
from oiflow.image.optimize import _direction, _direction_numpy, vmlmb

XP = get_xp("numpy")


def _problem(n=400, seed=3):
    """A bound-constrained, ill-conditioned convex quadratic ½ xᵀA x − bᵀx, x ≥ 0, with about
    half of the solution at the bound."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    A = (Q * np.geomspace(1.0, 1e3, n)) @ Q.T
    b = A @ np.where(rng.random(n) < 0.5, 0.0, rng.random(n)) + rng.normal(size=n) * 0.5

    def fun_np(x):
        x = np.asarray(x)
        ax = A @ x
        return float(0.5 * x @ ax - b @ x), ax - b

    return A, b, fun_np


def test_vmlmb_matches_scipy_lbfgsb():
    A, b, fun = _problem()
    x0 = np.ones(b.size)
    ref = minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=[(0, None)] * b.size,
                   options=dict(maxiter=5000, ftol=1e-15, gtol=1e-12))
    res = vmlmb(fun, x0, 0.0, XP, maxiter=3000, ftol=1e-14)
    assert res.f <= ref.fun + 1e-9 * abs(ref.fun)
    np.testing.assert_allclose(res.x, ref.x, atol=1e-5 * np.abs(ref.x).max())
    assert res.x.min() >= 0.0 and (res.x == 0).sum() > 0.2 * b.size  # the bound is active


def test_vmlmb_gtol_and_ftol_stop_early_and_report_convergence():
    _, b, fun = _problem()
    x0 = np.ones(b.size)
    loose = vmlmb(fun, x0, 0.0, XP, maxiter=3000, ftol=1e-300, gtol=1e-3)
    tight = vmlmb(fun, x0, 0.0, XP, maxiter=3000, ftol=1e-300, gtol=1e-8)
    assert loose.converged and "gtol" in loose.message
    assert tight.converged and loose.nit < tight.nit
    f_ftol = vmlmb(fun, x0, 0.0, XP, maxiter=3000, ftol=1e-4)
    assert f_ftol.converged and "ftol" in f_ftol.message and f_ftol.nit < tight.nit
    capped = vmlmb(fun, x0, 0.0, XP, maxiter=5, ftol=1e-300)
    assert not capped.converged and capped.nit == 5


def test_numpy_direction_equals_array_api_direction():
    """The compressed numpy two-loop recursion gives the array-API one's direction."""
    rng = np.random.default_rng(5)
    n, m = 3000, 7
    x = np.where(rng.random(n) < 0.6, 0.0, rng.random(n))
    g = rng.normal(size=n)
    S = [rng.normal(size=n) for _ in range(m)]
    Y = [s + 0.3 * rng.normal(size=n) for s in S]
    RHO = [1.0 / float(s @ y) for s, y in zip(S, Y)]
    at_bound = x <= 0.0
    free = ~(at_bound & (g > 0))
    gf = np.where(free, g, 0.0)
    fast = _direction_numpy(g, gf, free, at_bound, S, Y, RHO, XP)
    xs = get_xp("array_api_strict")
    generic = _direction(xs.asarray(g), xs.asarray(gf), xs.asarray(free), xs.asarray(at_bound),
                         [xs.asarray(s) for s in S], [xs.asarray(y) for y in Y], RHO, xs)
    np.testing.assert_allclose(fast, to_numpy(generic), rtol=0, atol=1e-12 * np.abs(fast).max())
    assert np.all(fast[at_bound & (g > 0)] == 0) and np.all(fast[at_bound] >= 0)


@pytest.mark.parametrize("backend", ["numpy", "array_api_strict"])
def test_vmlmb_same_iterates_on_both_backends(backend):
    A, b, fun = _problem(n=200)
    xp = get_xp(backend)
    An, bn = xp.asarray(A), xp.asarray(b)

    def f_xp(x):
        ax = An @ x
        return float(xp.sum(0.5 * x * ax - bn * x)), ax - bn

    res = vmlmb(f_xp, xp.asarray(np.ones(b.size)), 0.0, xp, maxiter=40, ftol=1e-300)
    ref = vmlmb(fun, np.ones(b.size), 0.0, XP, maxiter=40, ftol=1e-300)
    assert res.nit == ref.nit == 40
    np.testing.assert_allclose(to_numpy(res.x), ref.x, atol=1e-8 * np.abs(ref.x).max())
