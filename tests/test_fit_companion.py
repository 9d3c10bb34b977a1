"""The vectorised companion search: significance formula, analytic Jacobian, array-API and
Dask paths, and the detection limit checked by actually injecting a companion."""

import math

import numpy as np
import pytest
from scipy import stats

from oiflow.backend import get_xp
from oiflow.fit import companion_search, fit_model, load_data
from oiflow.fit.analytic import binary, uniform_disk
from oiflow.fit.companion import (BinaryContext, _Device, binary_residuals, detection_limit_map, nsigma,
                                  ratio_at_nsigma, solve_nodes)
from oiflow.oifits import read_oifits
from oiflow.simulate.synthetic import from_template
from oiflow.units import MAS


def test_nsigma_is_candids_formula():
    # CANDID: p = chi2.cdf(ν, ν·a/b); nσ = √(chi2.ppf(1 − p, 1)) where that is representable
    for a, b, n in ((1.2, 1.0, 300), (1.05, 1.0, 1500), (2.0, 1.7, 50)):
        p = stats.chi2.cdf(n, n * a / b)
        assert nsigma(a, b, n) == pytest.approx(math.sqrt(stats.chi2.ppf(1 - p, 1)), rel=1e-9)
    assert nsigma(1.0, 1.2, 100) == 0.0  # the binary is worse: no detection
    assert nsigma(0.975, 0.730, 1499) == pytest.approx(8.8, abs=0.05)  # beyond 1 − p in double precision
    assert nsigma(ratio_at_nsigma(3.0, 1499), 1.0, 1499) == pytest.approx(3.0, abs=1e-9)


@pytest.fixture(scope="module")
def synthetic(shared_data):
    """AX Cir coverage, a 0.9 mas star with a 2 % companion at (−8, 11) mas, the file's noise."""
    tpl = read_oifits(shared_data / "oifits" / "real" / "pionier" / "AXCir.oifits", warn=False)
    oi = from_template(tpl, lambda u, v, w: binary(u, v, 0.02, -8 * MAS, 11 * MAS, 0.9 * MAS), seed=7)
    return load_data([oi], ["v2", "t3phi"])


@pytest.mark.parametrize("smearing", [False, True])
def test_analytic_jacobian_matches_finite_differences(synthetic, smearing):
    dev = _Device(BinaryContext.from_data(synthetic, smearing), get_xp("numpy"))
    p = np.array([[-7.9, 11.1, 0.03, 0.85], [20.0, 3.0, 0.5, 1.1]])
    r, J = binary_residuals(p, dev)
    for k, h in enumerate((1e-3, 1e-3, 1e-6, 1e-6)):
        a, b = p.copy(), p.copy()
        a[:, k] += h
        b[:, k] -= h
        fd = (binary_residuals(a, dev, False)[0] - binary_residuals(b, dev, False)[0]) / (2 * h)
        ok = np.abs(fd) < 1e3 / h  # exclude closure phases that wrap across ±π within the step
        np.testing.assert_allclose(J[:, :, k][ok], fd[ok], rtol=1e-3, atol=1e-3 * np.abs(fd).max())


def test_strict_array_api_path_gives_the_numpy_answer(synthetic):
    ctx = BinaryContext.from_data(synthetic, True)
    p0 = np.array([[-6.0, 9.5, 0.02, 0.9], [-9.0, 12.0, 0.02, 0.9], [15.0, -4.0, 0.02, 0.9]])
    p_np, c_np = solve_nodes(p0, ctx, get_xp("numpy"))
    p_st, c_st = solve_nodes(p0, ctx, get_xp("array_api_strict"))
    np.testing.assert_allclose(c_st, c_np, rtol=1e-8)
    np.testing.assert_allclose(p_st, p_np, rtol=1e-6, atol=1e-8)


def test_search_recovers_an_injected_companion_on_numpy_strict_and_dask(synthetic):
    # smearing=True: the fits as before the auto rule (this test is about the grid's backends)
    res = companion_search(synthetic, 3.0, 20.0, 3.0, detection_limit=False, chunk=32, smearing=True)
    b = res.best
    for key, truth in (("x_mas", -8.0), ("y_mas", 11.0), ("flux_ratio", 0.02), ("diameter_mas", 0.9)):
        assert abs(b[key] - truth) < 3 * b[f"{key}_error"], key
    assert res.nsigma > 10
    strict = companion_search(synthetic, 3.0, 20.0, 3.0, detection_limit=False, xp="array_api_strict", chunk=32,
                              smearing=True)
    np.testing.assert_allclose(strict.chi2_map, res.chi2_map, rtol=1e-6, equal_nan=True)
    distributed = pytest.importorskip("distributed")
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0") as client:
        dres = companion_search(synthetic, 3.0, 20.0, 3.0, detection_limit=False, client=client, chunk=32,
                                smearing=True)
    np.testing.assert_allclose(dres.chi2_map, res.chi2_map, rtol=1e-9, equal_nan=True)
    assert dres.best["x_mas"] == pytest.approx(b["x_mas"], abs=1e-6)


def test_detection_limit_is_what_a_fit_detects_at_3_sigma(shared_data):
    """Map the 3σ limit on a single star, inject a companion with that flux ratio into the same
    noisy data at one position, and measure its significance with ordinary fits: ≈ 3σ."""
    tpl = read_oifits(shared_data / "oifits" / "real" / "pionier" / "AXCir.oifits", warn=False)
    single = from_template(tpl, lambda u, v, w: uniform_disk(u, v, 0.9 * MAS), seed=3)
    data = load_data([single], ["v2", "t3phi"])
    ctx = BinaryContext.from_data(data, False)
    det = detection_limit_map(data, ctx, 5.0, 14.0, 3.0)
    fmap = det["flux_ratio"]
    assert np.isfinite(fmap).sum() > 20
    iy, ix = np.argwhere(np.isfinite(fmap))[7]
    x, y, f3 = det["x_axis"][ix], det["y_axis"][iy], fmap[iy, ix]
    assert 1e-3 < f3 < 2e-2
    # the same noise realisation (same seed) plus the companion
    injected = from_template(tpl, lambda u, v, w: binary(u, v, f3, x * MAS, y * MAS, 0.9 * MAS), seed=3)
    d2 = load_data([injected], ["v2", "t3phi"])
    ud = fit_model({"s": {"type": "ud", "diameter": 0.9}}, d2)
    bi = fit_model({"s": {"type": "ud", "diameter": 0.9},
                    "c": {"type": "point", "flux": f3, "x": {"value": x, "fixed": True}, "y": {"value": y, "fixed": True}}},
                   d2)
    n = d2.n_data
    ns = nsigma(ud.chi2 / n, bi.chi2 / n, n - 1)
    # the map assumes the injected flux (not re-fitted) and a linearised diameter refit: ±0.6σ
    assert ns == pytest.approx(3.0, abs=0.6)
