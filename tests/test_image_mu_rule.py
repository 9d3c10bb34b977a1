"""The automatic regularisation weight (oiflow.image.mu_rule) on model χ²(μ) curves: bounded,
the largest μ that fits, honest about an unreachable target, no IndexError on any curve."""

import math

import numpy as np
import pytest

from oiflow.errors import ImagingError
from oiflow.image.mu_rule import MU_SPAN, PLATEAU_MARGIN, Solution, acceptance, discrepancy, lcurve, mu_bounds


def _solver(chi2_of_mu):
    """A solve(mu, x) whose χ²_red is chi2_of_mu(mu); x records the μ it was called with."""
    calls = []

    def solve(mu, x):
        calls.append(mu)
        c = float(chi2_of_mu(mu))
        return Solution(mu, c, 1.0 / (1.0 + mu), mu)

    return solve, calls


def _logistic(floor, ceiling, mu_half, width=0.3):
    """χ²_red rising monotonically from ``floor`` (small μ) to ``ceiling`` (large μ) around
    ``mu_half``, over ~``width`` decades."""
    return lambda mu: floor + (ceiling - floor) / (1 + math.exp(-(math.log10(mu) - math.log10(mu_half)) / width))


def _crossing(floor, ceiling, mu_half, level, width=0.3):
    """The μ where :func:`_logistic` equals ``level``."""
    return mu_half * 10 ** (-width * math.log((ceiling - floor) / (level - floor) - 1))


BOUNDS = mu_bounds(1e4)


def test_bounds_scale_with_the_reference_and_refuse_nonsense():
    assert BOUNDS == pytest.approx((1e4 * MU_SPAN[0], 1e4 * MU_SPAN[1]))
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ImagingError):
            mu_bounds(bad)


@pytest.mark.parametrize("mu0", [1e1, 1e4, 1e7])
def test_the_largest_mu_that_fits_whatever_the_start(mu0):
    curve = _logistic(0.5, 50.0, 3e3)
    solve, calls = _solver(curve)
    c = discrepancy(solve, None, mu0, BOUNDS, 1.0, refine=6)
    assert c.reached and c.at_bound is None and c.chi2 <= 1.0
    crossing = _crossing(0.5, 50.0, 3e3, 1.0)
    assert crossing / 1.3 <= c.mu <= crossing
    assert all(BOUNDS[0] <= m <= BOUNDS[1] for m in calls)
    assert all(s.chi2 > 1.0 for s in c.solves if s.mu > c.mu)


def test_acceptance_is_one_sigma_steps_of_chi2():
    assert acceptance(1.0, 200, 2.0) == pytest.approx(1.2)
    assert acceptance(1.0, 20000, 1.0) == pytest.approx(1.01)
    solve, _ = _solver(_logistic(0.5, 50.0, 3e3))
    strict = discrepancy(solve, None, 1e4, BOUNDS, 1.0, refine=6)
    loose = discrepancy(solve, None, 1e4, BOUNDS, 1.0, accept=1.2, refine=6)
    assert loose.mu > strict.mu and loose.chi2 <= 1.2 and loose.reached
    assert _crossing(0.5, 50.0, 3e3, 1.2) / 1.3 <= loose.mu <= _crossing(0.5, 50.0, 3e3, 1.2)


def test_runaway_curve_stays_bounded_and_says_the_target_was_not_reached():
    # χ² flat in μ (the regulariser is irrelevant, e.g. data with model errors): before, the
    # sweep called that a plateau at its first steps and kept μ ≈ 1e10–1e15
    solve, calls = _solver(lambda mu: 10310.0)
    c = discrepancy(solve, None, 1e4, BOUNDS, 1.0)
    assert BOUNDS[0] <= c.mu <= BOUNDS[1] and max(calls) <= BOUNDS[1]
    assert c.reached is False and c.floor == pytest.approx(10310.0)
    assert "not reached" in c.message() and "1.03e+04" in c.message()


def test_unreachable_target_picks_the_largest_mu_near_the_floor():
    curve = _logistic(40.0, 400.0, 1e3)  # never below 40
    solve, _ = _solver(curve)
    c = discrepancy(solve, None, 1e4, BOUNDS, 1.0, refine=6)
    assert c.reached is False and c.at_bound is None
    assert c.chi2 <= PLATEAU_MARGIN * c.floor
    assert all(s.chi2 > c.aimed for s in c.solves if s.mu > c.mu)
    assert c.floor == pytest.approx(min(s.chi2 for s in c.solves))


def test_noise_dominated_data_sit_at_the_upper_bound():
    solve, _ = _solver(_logistic(0.1, 0.5, 1e5))  # fits at any μ
    c = discrepancy(solve, None, 1e4, BOUNDS, 1.0)
    assert c.mu == pytest.approx(BOUNDS[1]) and c.at_bound == "upper" and c.reached
    assert "hardly constrain" in c.message()


def test_budget_of_solves_is_respected_and_reported():
    solve, calls = _solver(_logistic(0.5, 50.0, 1.0))  # crossing far below the start
    c = discrepancy(solve, None, 1e6, BOUNDS, 1.0, max_solves=3)
    assert len(calls) == 3 and c.exhausted and c.reached is False
    assert "MAXITER" in c.message()


@pytest.mark.parametrize("values", [[1.0], [0.0], [3.0, 0.2], [0.2, 3.0], [5.0, 5.0, 0.9, 5.0]])
def test_any_short_or_jagged_curve_gives_a_choice(values):
    """Few points or a non-monotone χ²(μ) (local minima): a choice inside the bounds, never an
    IndexError (the old sweep's `reached[0]`)."""
    it = iter(values * 20)
    solve, calls = _solver(lambda mu: next(it))
    c = discrepancy(solve, None, 1e4, BOUNDS, 1.0)
    assert BOUNDS[0] <= c.mu <= BOUNDS[1] and c.chi2 in values


def test_non_finite_chi2_is_an_imaging_error():
    solve, _ = _solver(lambda mu: math.nan)
    with pytest.raises(ImagingError, match="not finite"):
        discrepancy(solve, None, 1e4, BOUNDS, 1.0)


def test_lcurve_corner_within_bounds():
    # χ² grows with μ above 1e3, R with 1/μ below: in log-log an L with its corner at μ = 1e3
    def solve(mu, x):
        return Solution(mu, 1.0 + mu / 1e3, 1.0 + 1e3 / mu, mu)

    c = lcurve(solve, None, 1e4, BOUNDS, 1.0)
    assert c.rule == "lcurve" and BOUNDS[0] <= c.mu <= BOUNDS[1]
    assert 1e3 / 10 <= c.mu <= 1e3 * 10
    assert np.isfinite(c.chi2)
