"""The automatic regularisation weight applied to images (``mu: auto``).

The rule itself (:mod:`oiflow.image.mu_rule`) knows nothing of images; here it gets its
solves, its reference and its budget. μ is the largest in [μ_ref·10⁻³, μ_ref·10³] whose
solution has χ²_red within CHI2_SIGMAS = 2 standard deviations of χ² above ``chi2_target``
(1 + 2√(2/N) for N data: the smoothest image the data allow), μ_ref = N / ΔR a data-scaled
reference (:func:`mu_reference`). It is searched on the coarsest grid (secant steps of at most a
decade) and again on the final one (at most √10, :func:`search_on_grid`), each search at most
MAXITER·SEARCH_SHARE iterations in warm-started solves of at most MAXITER·SOLVE_SHARE. The final
optimisation at the chosen μ moves χ²_red (the solves stop before convergence):
:func:`settle_mu` then brings it back within TOLERANCE below the acceptance (at most
SETTLE_STEPS re-optimisations), so that the written image is the one the rule accepts. When
the target is out of reach, ``ImageResult.mu_rule`` says so (``reached`` False, with a
message) and μ is the largest within 1.1 × the floor. ``mu_method="lcurve"`` takes the corner
of the L-curve (log χ², log R) instead.
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import to_numpy
from ..config import ImageTarget
from .initial import gaussian
from .mu_rule import MU_SPAN, TOLERANCE, MuChoice, Solution, acceptance, discrepancy, lcurve, mu_bounds, next_mu
from .objective import Objective
from .schedule import SEARCH_SHARE, SOLVE_MIN_ITER, SOLVE_SHARE, Runs

#: the automatic μ accepts a fit up to CHI2_SIGMAS standard deviations of χ² above the target
#: (:func:`oiflow.image.mu_rule.acceptance`): the smoothest image consistent with the data
CHI2_SIGMAS = 2.0
#: a solve of the search on a coarse grid runs this fraction of one on the final grid: it only
#: places the final grid's search
COARSE_SOLVE = 0.6
#: a solve of the search that stops at its limit while χ²_red fell by more than EXTEND_DROP over
#: its last EXTEND_WINDOW iterations runs once more (:func:`still_falling`)
EXTEND_WINDOW, EXTEND_DROP = 10, 0.02
#: solves of the μ search at most: on the first grid (bracketing from μ_ref), on the final one
#: (from the first grid's choice)
SEARCH_SOLVES = (6, 4)
#: a final χ²_red outside [target, acceptance] is brought back by at most this many corrections
#: of μ (:func:`settle_mu`)
SETTLE_STEPS = 2
#: first μ tried by the automatic rule, × μ_ref (the median of the choices on the benchmark panel,
#: so that the bracketing usually takes one or two solves; the choice itself does not depend on it)
MU_START = 1.0


def mu_reference(obj: Objective, fwhm: float) -> float:
    """μ_ref = N_data / ΔR, ΔR = |R(g) − R(g₂)| for unit-flux Gaussians of FWHM w and 2w on the
    objective's grid, w the object's size ``fwhm`` but at most a quarter of the field (so that
    both lie inside it): the weight at which halving the resolution of the image costs as much
    in regularisation as a fit at χ²_red = 1. Falls back on N_data / R(g) when the regulariser
    does not tell the two apart."""
    n, pix = obj.n, obj.pixel_size
    w = min(fwhm, n * pix / 4)
    vals = []
    for width in (w, 2 * w):
        g = gaussian(n, pix, width)
        vals.append(obj.ngroups * float(to_numpy(obj.reg(obj.xp.asarray(g))[0])))
    delta = abs(vals[0] - vals[1]) or abs(vals[0])
    return max(obj.ndata, 1) / delta if delta > 0 else float(max(obj.ndata, 1))


def still_falling(history: list[dict], r) -> bool:
    """Whether the run ``r`` stopped at its limit while χ²_red still fell by more than
    EXTEND_DROP over its last EXTEND_WINDOW iterations (``history``: its iterations last)."""
    if r is None or r.converged or r.nit < EXTEND_WINDOW:
        return False
    old, new = history[-EXTEND_WINDOW]["chi2_red"], history[-1]["chi2_red"]
    return old > 0 and (old - new) / old > EXTEND_DROP


def search_mu(obj: Objective, x: np.ndarray, settings: ImageTarget, run, curve, history, *, mu0: float,
             bounds: tuple[float, float], step: float, refine: int, per_solve: int, max_solves: int) -> MuChoice:
    """Run the rule of :mod:`oiflow.image.mu_rule` on this grid; each solve is an optimisation
    of at most ``per_solve`` iterations (``run``: within MAXITER) warm-started from the previous
    solution, at most ``max_solves`` of them; a solve whose χ²_red still falls steeply at its
    limit (:func:`still_falling`) runs ``per_solve`` more once: a χ²_red taken far from
    convergence is too high and would push μ down."""

    def solve(mu: float, x_start: np.ndarray) -> Solution:
        obj.mu = mu
        xs, r = run(x_start, per_solve, "auto-mu")
        if still_falling(history, r):
            xs, _ = run(xs, per_solve, "auto-mu")
        obj(obj.xp.asarray(xs))
        chi2r, reg = obj.last["chi2_red"], obj.last["reg"]
        curve.append({"mu": mu, "chi2_red": chi2r, "reg": reg, "npix": obj.shape[-1]})
        return Solution(mu, chi2r, reg, xs)

    if settings.mu_method == "lcurve":
        return lcurve(solve, x, mu0, bounds, settings.chi2_target, max_solves=max_solves)
    accept = acceptance(settings.chi2_target, obj.ndata, CHI2_SIGMAS)
    return discrepancy(solve, x, mu0, bounds, settings.chi2_target, accept=accept, step=step, refine=refine,
                       max_solves=max_solves)


def search_on_grid(obj: Objective, x: np.ndarray, settings: ImageTarget, runs: Runs, curve: list[dict], ref: float,
                   previous: MuChoice | None) -> MuChoice:
    """The μ search on the current grid of ``runs``: on the first grid (``previous`` None) from
    MU_START·μ_ref by steps of a decade, at most SEARCH_SOLVES[0] solves; on the final grid from
    the first grid's choice at the same place between the bounds, by steps of √10, at most
    SEARCH_SOLVES[1]. Every solve and the whole search within their shares of MAXITER."""
    maxiter = settings.maxiter
    if previous is None:
        mu0, step, max_solves = MU_START * ref, 10.0, SEARCH_SOLVES[0]
    else:
        mu0, step, max_solves = previous.mu / previous.bounds[0] * ref * MU_SPAN[0], math.sqrt(10.0), SEARCH_SOLVES[1]
    per_solve = max(SOLVE_MIN_ITER, int(maxiter * SOLVE_SHARE))
    cap = min(int(maxiter * SEARCH_SHARE), runs.left)
    solve_iter = max(1, min(per_solve if runs.final else max(SOLVE_MIN_ITER, int(per_solve * COARSE_SOLVE)), cap))
    return search_mu(obj, x, settings, runs, curve, runs.history, mu0=mu0, bounds=mu_bounds(ref), step=step, refine=2,
                     per_solve=solve_iter, max_solves=max(1, min(max_solves, cap // solve_iter)))


def settle_mu(obj: Objective, x: np.ndarray, choice: MuChoice, run):
    """Bring the final χ²_red back within TOLERANCE below the acceptance (where the search stops)
    when the search reached the target or ran out of iterations before: its solves stop before
    convergence, and the optimisation that follows at the chosen μ moves χ²_red — above the
    acceptance the image does not fit the data, well below it μ is not the largest that fits.
    μ is then moved by the search's secant step (:func:`oiflow.image.mu_rule.next_mu`: the
    prior slope from one state, the measured one from two, at most a factor √10) and the image
    re-optimised from where it is until it converges, at most :data:`SETTLE_STEPS` times within
    MAXITER (once when the search ran out of iterations before reaching the target). The result
    is the state that fits (χ²_red ≤ the acceptance) at the largest μ; when none fits, the last
    one, or the rule's own choice when the target was never reached. ``choice`` is updated (μ, χ²_red, ``settled``); returns the
    image and ``{"result": the optimisation that made it}`` (None: the state before settling)."""
    xp = obj.xp
    obj(xp.asarray(x))
    states = [(Solution(obj.mu, obj.last["chi2_red"], obj.last["reg"], x), None)]
    aim = choice.accept * (1 - TOLERANCE / 2)
    steps = SETTLE_STEPS if choice.reached else 1  # not reached (out of iterations): one try at the target
    for _ in range(steps):
        cur = states[-1][0]
        if choice.accept * (1 - TOLERANCE) <= cur.chi2 <= choice.accept:
            break
        prev = states[-2][0] if len(states) > 1 else None
        new_mu = next_mu(cur, prev, aim, math.sqrt(10.0), choice.bounds)
        if new_mu == cur.mu:
            break
        obj.mu = new_mu
        xs, r = run(cur.x, math.inf, "settle")  # to convergence, within MAXITER
        if r is None:
            break
        obj(xp.asarray(xs))
        states.append((Solution(new_mu, obj.last["chi2_red"], obj.last["reg"], xs), r))
        choice.settled += 1
    fitting = [st for st in states if st[0].chi2 <= choice.accept]
    # the largest μ that fits; none fits: the state before settling (the rule's own choice)
    best, r = max(fitting, key=lambda st: st[0].mu) if fitting else (states[-1] if choice.reached else states[0])
    obj.mu = best.mu
    obj(xp.asarray(best.x))
    lo, hi = choice.bounds
    choice.mu, choice.chi2, choice.x = best.mu, best.chi2, best.x
    choice.at_bound = "upper" if best.mu >= hi else ("lower" if best.mu <= lo else None)
    if fitting and not choice.reached:  # the search ran out of iterations before the target
        choice.reached, choice.aimed, choice.floor = True, choice.accept, min(choice.floor, best.chi2)
    return best.x, {"result": r}
