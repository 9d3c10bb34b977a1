"""The automatic regularisation weight (``mu: auto``): the rule, its bounds and what it concluded.

The rule works on a ``solve(mu, x_start) -> Solution`` callable (an optimisation of
χ² + μR warm-started from ``x_start``); it knows nothing of images.

**Discrepancy principle, bounded.** μ is the largest weight in [μ_lo, μ_hi] whose solution
fits the data: χ²_red ≤ ``accept``, the target (``chi2_target``, 1 by default) plus a given
number of standard deviations of χ² (:func:`acceptance`; the reconstruction uses 2: the
smoothest image statistically consistent with the data, Morozov's principle with its safety
factor). χ²_red grows with μ, so the search brackets the crossing from a start μ₀ (down while
the fit is worse than accepted, up while it is better; each solve warm-started from the
previous one) by secant steps: the next μ is where log χ²_red reaches the aim (just below the
acceptance) on the line through the last two solves in log μ (a slope of SLOPE_PRIOR from the
first one), between a factor MIN_STEP and ``step`` away. A fitting solve within TOLERANCE of the
acceptance ends the search; a crossing is refined by interpolating log χ²_red linearly in log μ
(safeguarded inside the bracket, at most ``refine`` solves, until the fitting end is within
TOLERANCE of the aim). At most ``max_solves`` solves (the iteration budget): ``exhausted``
says when that stopped the search; when it stops inside a bracket, μ is interpolated there
without a solve (``interpolated``: its χ²_red is the interpolated one, to be checked by what
follows). μ never leaves the bounds, whatever the data.

**Bounds** (:func:`mu_bounds`): μ_ref = N_data / ΔR, where ΔR is how much the regulariser
distinguishes an image of the object's size from one twice as wide (see
:func:`oiflow.image.mu_search.mu_reference`): at μ_ref, halving the resolution of the image
costs as much as a fit at χ²_red = 1 (χ² = N_data). μ_lo = μ_ref·MU_SPAN[0] (the regulariser
is negligible against the noise) and μ_hi = μ_ref·MU_SPAN[1] (the data barely matter).

**Target out of reach.** When χ²_red stays above ``accept`` down to μ_lo (model errors,
underestimated error bars, a grid that cannot hold the object, or an optimiser that cannot get
there in its iterations), the rule says so (``reached`` False) and aims instead at
PLATEAU_MARGIN × the lowest χ²_red it met (the floor): the largest μ that fits within 10 % of
what the data allow. When χ²_red is below the target even at μ_hi, μ = μ_hi (``at_bound``
"upper": the data do not constrain the image beyond the regulariser).

**L-curve** (``mu_method: lcurve``): ten solves from 10·μ₀ down by √10 (within the bounds);
μ at the corner (maximum curvature) of (log χ², log R).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import ImagingError

#: μ bounds relative to μ_ref (:func:`mu_bounds`)
MU_SPAN = (1e-3, 1e3)
#: unreachable χ² target: aim at this × the lowest χ²_red met
PLATEAU_MARGIN = 1.1
#: the search stops when a fitting solve has χ²_red within this fraction below the acceptance
TOLERANCE = 0.03
#: d log χ²_red / d log μ assumed from a single solve (typical of the imaging panel's curves), and
#: the range a measured slope is kept in
SLOPE_PRIOR, MIN_SLOPE, MAX_SLOPE = 0.3, 0.05, 2.0
#: the smallest factor between two μ of the bracketing (and the bracket refinement stops below it)
MIN_STEP = 1.25


@dataclass
class Solution:
    mu: float
    chi2: float  # reduced χ² of the solution
    reg: float  # regulariser value
    x: Any  # the solution (whatever solve returns)


@dataclass
class MuChoice:
    """The weight chosen and what the rule concluded."""

    mu: float
    x: Any
    rule: str  # "discrepancy" | "lcurve"
    target: float  # χ²_red requested
    reached: bool | None  # some solution fitted within ``accept`` (None for the L-curve)
    aimed: float  # χ²_red the choice was made against (``accept``, or the plateau aim when out of reach)
    bounds: tuple[float, float]
    at_bound: str | None  # "lower" | "upper" when μ sits on a bound
    floor: float  # lowest χ²_red of all solves
    chi2: float  # χ²_red of the chosen solution
    exhausted: bool = False  # the search stopped at its budget of solves (iterations), not at a bound
    accept: float | None = None  # largest χ²_red counted as a fit (the target + its statistical tolerance)
    solves: list[Solution] = field(default_factory=list, repr=False)
    settled: int = 0  # corrections of μ after the search that kept χ²_red within ``accept`` (the reconstruction's)
    interpolated: bool = False  # μ interpolated inside the last bracket when the budget ended (χ²_red estimated)

    def to_dict(self) -> dict:
        return {"rule": self.rule, "mu": self.mu, "target": self.target, "accept": self.accept, "reached": self.reached,
                "aimed": self.aimed, "chi2": self.chi2, "floor": self.floor, "bounds": list(self.bounds),
                "at_bound": self.at_bound, "exhausted": self.exhausted, "solves": len(self.solves),
                "settled": self.settled, "interpolated": self.interpolated}

    def message(self) -> str | None:
        """A sentence for the user when the choice is not a plain fit to the target."""
        if self.reached is False:
            where = ("within the iteration budget (MAXITER)" if self.exhausted else
                     f"down to the lower bound μ = {self.bounds[0]:.3g}")
            return (f"χ²_red target {self.target:g} not reached: the lowest χ²_red found {where} is {self.floor:.3g}; "
                    f"μ = {self.mu:.3g} is the largest weight within {PLATEAU_MARGIN:g} × that floor — the data are "
                    "not fitted to their error bars")
        if self.at_bound == "upper":
            return (f"χ²_red {self.chi2:.3g} ≤ target {self.target:g} even at the largest weight μ = {self.mu:.3g}: "
                    "the data hardly constrain the image beyond the regulariser")
        return None


def mu_bounds(mu_ref: float) -> tuple[float, float]:
    if not (math.isfinite(mu_ref) and mu_ref > 0):
        raise ImagingError(f"cannot scale the regularisation weight (reference μ = {mu_ref})")
    return mu_ref * MU_SPAN[0], mu_ref * MU_SPAN[1]


def _clip(mu: float, bounds) -> float:
    return min(max(mu, bounds[0]), bounds[1])


def _checked(s: Solution) -> Solution:
    if not math.isfinite(s.chi2):
        raise ImagingError(f"χ² is not finite at μ = {s.mu:.3g}: the data cannot be imaged (check the error bars)")
    return s


def _interpolate(a: Solution, b: Solution, target: float) -> float:
    """μ between a (fits, smaller μ) and b (does not fit) where log χ² reaches log target on the
    line through a and b, kept in the middle 60 % of the bracket (in log μ)."""
    la, lb = math.log(a.mu), math.log(b.mu)
    t = 0.5
    if a.chi2 > 0 and b.chi2 > a.chi2 and target > 0:
        t = (math.log(target) - math.log(a.chi2)) / (math.log(b.chi2) - math.log(a.chi2))
    t = min(max(t, 0.2), 0.8)
    return math.exp(la + t * (lb - la))


def acceptance(target: float, ndata: int, sigmas: float) -> float:
    """The largest χ²_red statistically consistent with ``target``: χ² of N Gaussian residuals has
    a standard deviation √(2N), so target·(1 + sigmas·√(2/N))."""
    return target * (1.0 + sigmas * math.sqrt(2.0 / max(ndata, 1)))


def next_mu(cur: Solution, prev: Solution | None, aim: float, step: float, bounds) -> float:
    """The next μ of the bracketing from ``cur``: where log χ²_red reaches log ``aim`` on the line
    through the last two solves (their slope, or :data:`SLOPE_PRIOR` from one), a factor
    between :data:`MIN_STEP` and ``step`` away, within the bounds."""
    slope = SLOPE_PRIOR
    dlog = math.log(cur.mu) - math.log(prev.mu) if prev is not None else 0.0
    if dlog != 0.0 and prev.chi2 > 0 and cur.chi2 > 0:
        s = (math.log(cur.chi2) - math.log(prev.chi2)) / dlog
        if math.isfinite(s) and s > 0:
            slope = min(max(s, MIN_SLOPE), MAX_SLOPE)
    ratio = aim / cur.chi2 if cur.chi2 > 0 else 1.0 / step
    factor = math.exp(math.log(ratio) / slope)
    if cur.chi2 > aim:
        factor = min(max(factor, 1.0 / step), 1.0 / MIN_STEP)
    else:
        factor = max(min(factor, step), MIN_STEP)
    return _clip(cur.mu * factor, bounds)


def discrepancy(solve: Callable[[float, Any], Solution], x0, mu0: float, bounds: tuple[float, float], target: float,
                *, accept: float | None = None, step: float = 10.0, refine: int = 3, max_solves: int = 12) -> MuChoice:
    """The bounded discrepancy rule (module docstring); ``solve`` results are checked finite.
    A solution fits when χ²_red ≤ ``accept`` (default ``target``; see :func:`acceptance`).
    At most ``max_solves`` solves (≥ 1): the bracketing stops there (``exhausted``)."""
    lo, hi = bounds
    accept = target if accept is None else accept
    close = accept * (1 - TOLERANCE)  # a fit this close to the acceptance ends the search
    aim = accept * (1 - TOLERANCE / 2)
    cur = _checked(solve(_clip(mu0, bounds), x0))
    sols = [cur]
    prev = None
    down = cur.chi2 > accept
    exhausted = False
    while not (close <= cur.chi2 <= accept):
        nxt = next_mu(cur, prev, aim, step, bounds)
        if nxt == cur.mu:
            break
        if len(sols) >= max_solves:
            exhausted = True
            break
        new = _checked(solve(nxt, cur.x))
        sols.append(new)
        if (new.chi2 > accept) != down:
            break
        prev, cur = cur, new
    floor = min(s.chi2 for s in sols)
    reached = floor <= accept
    aimed = accept if reached else PLATEAU_MARGIN * floor
    good = [s for s in sols if s.chi2 <= aimed]
    a = max(good, key=lambda s: s.mu)
    above = [s for s in sols if s.mu > a.mu and s.chi2 > aimed]
    b = min(above, key=lambda s: s.mu) if above else None
    for _ in range(refine if b is not None else 0):
        if a.chi2 >= aimed * (1 - TOLERANCE) or b.mu / a.mu < MIN_STEP:
            break
        if len(sols) >= max_solves:  # the budget ends inside a bracket: interpolate, do not solve
            mu = _interpolate(a, b, aimed)
            est = math.exp(math.log(a.chi2) + (math.log(mu) - math.log(a.mu)) * (math.log(b.chi2) - math.log(a.chi2))
                           / (math.log(b.mu) - math.log(a.mu))) if a.chi2 > 0 and b.chi2 > 0 else aimed
            return MuChoice(mu=mu, x=b.x, rule="discrepancy", target=target, reached=reached, aimed=aimed,
                            bounds=(lo, hi), at_bound=None, floor=floor, chi2=est, exhausted=True, accept=accept,
                            solves=sols, interpolated=True)
        m = _checked(solve(_interpolate(a, b, aimed), b.x))  # from the smoother side
        sols.append(m)
        if m.chi2 <= aimed:
            a = m
        else:
            b = m
    at_bound = "upper" if a.mu >= hi else ("lower" if a.mu <= lo else None)
    return MuChoice(mu=a.mu, x=a.x, rule="discrepancy", target=target, reached=reached, aimed=aimed, bounds=(lo, hi),
                    at_bound=at_bound, floor=floor, chi2=a.chi2, exhausted=exhausted, accept=accept, solves=sols)


def _menger_corner(points: list[tuple[float, float]]) -> int:
    """Index of the L-curve corner: the point of maximum curvature of the polyline (log χ², log R)
    traversed by decreasing μ, which runs left along the flat part (R small) and turns up (χ² at
    its floor) — a clockwise turn, so the corner has the most negative signed Menger curvature."""
    best, best_k = 0, -math.inf
    for i in range(1, len(points) - 1):
        (x1, y1), (x2, y2), (x3, y3) = points[i - 1], points[i], points[i + 1]
        area2 = (x2 - x1) * (y3 - y1) - (y2 - y1) * (x3 - x1)
        d = math.dist(points[i - 1], points[i]) * math.dist(points[i], points[i + 1]) * math.dist(points[i - 1], points[i + 1])
        k = -2 * area2 / d if d > 0 else 0.0
        if k > best_k:
            best_k, best = k, i
    return best


def lcurve(solve: Callable[[float, Any], Solution], x0, mu0: float, bounds: tuple[float, float], target: float,
           *, npoints: int = 10, max_solves: int = 12) -> MuChoice:
    """The L-curve corner over ``npoints`` solves from 10·μ₀ down by √10 (within the bounds)."""
    sols: list[Solution] = []
    mu, x = _clip(10.0 * mu0, bounds), x0
    for _ in range(min(npoints, max(max_solves, 1))):
        s = _checked(solve(mu, x))
        sols.append(s)
        nxt = _clip(mu / math.sqrt(10.0), bounds)
        if nxt == mu:
            break
        mu, x = nxt, s.x
    pts = [(math.log10(max(s.chi2, 1e-300)), math.log10(max(s.reg, 1e-300))) for s in sols]
    c = sols[_menger_corner(pts) if len(pts) >= 3 else len(pts) - 1]
    at_bound = "upper" if c.mu >= bounds[1] else ("lower" if c.mu <= bounds[0] else None)
    return MuChoice(mu=c.mu, x=c.x, rule="lcurve", target=target, reached=None, aimed=c.chi2, bounds=bounds,
                    at_bound=at_bound, floor=min(s.chi2 for s in sols), chi2=c.chi2, solves=sols)
