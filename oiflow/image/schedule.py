"""MAXITER and the optimisations that share it.

``maxiter`` bounds the iterations of every optimisation of one reconstruction together
(:class:`IterationBudget`): the choice of the start, the μ search, every grid, the final
settling of μ and the recentring. Its shares: the coarse grids together at most
MAXITER·COARSE_SHARE; the μ search on a grid at most MAXITER·SEARCH_SHARE, in solves of at most
MAXITER·SOLVE_SHARE (at least SOLVE_MIN_ITER); the ``auto`` start its own fixed number
(:data:`oiflow.image.start.START_ITER`).

:class:`Runs` runs each optimisation (VMLM-B, :func:`oiflow.image.optimize.vmlmb`, on the
objective's backend) within both MAXITER and the share of the grid it is on, and counts the
iterations and evaluations of all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..backend import to_numpy
from .objective import Objective
from .optimize import vmlmb

Progress = Callable[[dict], None]

#: the coarse grids together run at most MAXITER·COARSE_SHARE iterations
COARSE_SHARE = 1 / 2
#: the μ search on a grid runs at most MAXITER·SEARCH_SHARE iterations
SEARCH_SHARE = 1 / 3
#: a solve of the μ search runs at most MAXITER·SOLVE_SHARE iterations, at least SOLVE_MIN_ITER
SOLVE_SHARE, SOLVE_MIN_ITER = 1 / 10, 10
#: a coarse level only prepares the start of the next one: it stops once f decreases by less
#: than this (relative) in 3 successive iterations, or when its share of MAXITER is spent
COARSE_FTOL = 1e-4


@dataclass
class IterationBudget:
    """MAXITER shared by every optimisation of one reconstruction (module docstring)."""

    total: int
    used: int = 0

    @property
    def left(self) -> int:
        return max(0, self.total - self.used)

    def grant(self, wanted: float) -> int:
        """Iterations an optimisation may run: ``wanted``, at most what is left."""
        return max(0, int(min(wanted, self.left)))

    def spend(self, n: int) -> None:
        self.used += int(n)


def optimise(obj: Objective, x0: np.ndarray, maxiter: int, ftol: float, progress: Progress | None, phase: str,
             history: list[dict], round_no: int = 0):
    """Run VMLM-B from host ``x0``; returns the host solution (mean 1) and the result."""
    xp = obj.xp

    def cb(x, f, it):
        info = {"phase": phase, "round": round_no, "iteration": it, "mu": obj.mu,
                **{k: obj.last.get(k) for k in ("chi2_red", "reg", "f")}}
        history.append(info)
        if progress is not None:
            progress(info)

    res = vmlmb(obj, xp.asarray(np.ascontiguousarray(x0, dtype=np.float64)), obj.lower_bound, xp,
                maxiter=int(maxiter), ftol=ftol, callback=cb)
    x = np.asarray(to_numpy(res.x), dtype=np.float64)
    x = x * (obj.size / x.sum())  # keep mean 1: the objective is scale invariant
    return x, res


@dataclass
class Runs:
    """The optimisations of one reconstruction: each within MAXITER (``budget``) and, on a coarse
    grid, within the coarse share (``coarse``); the objective is the current grid's
    (:meth:`on_grid`). ``niter``/``nfev`` count them all; ``history`` has one entry per iteration."""

    budget: IterationBudget
    coarse: IterationBudget
    ftol: float
    progress: Progress | None = None
    history: list[dict] = field(default_factory=list)
    niter: int = 0
    nfev: int = 0
    obj: Objective | None = None
    final: bool = False

    @classmethod
    def for_maxiter(cls, maxiter: int, ftol: float, progress: Progress | None = None) -> "Runs":
        return cls(IterationBudget(maxiter), IterationBudget(int(maxiter * COARSE_SHARE)), ftol, progress)

    def on_grid(self, obj: Objective, final: bool) -> None:
        """Optimise ``obj`` from now on; ``final``: the requested grid (only MAXITER bounds it)."""
        self.obj, self.final = obj, final

    @property
    def left(self) -> int:
        """Iterations left on the current grid."""
        return self.budget.left if self.final else min(self.budget.left, self.coarse.left)

    def __call__(self, x_start: np.ndarray, wanted: float, phase: str, ftol: float | None = None, round_no: int = 0):
        """An optimisation of at most ``wanted`` iterations within both budgets; (x, result), the
        result None (and x the start) when no iteration is left."""
        granted = min(self.budget.grant(wanted), wanted if self.final else self.coarse.grant(wanted))
        granted = max(0, int(granted))
        if granted <= 0:
            return x_start, None
        xr, r = optimise(self.obj, x_start, granted, self.ftol if ftol is None else ftol, self.progress, phase,
                         self.history, round_no)
        self.niter += r.nit
        self.nfev += r.nfev
        self.budget.spend(r.nit)
        if not self.final:
            self.coarse.spend(r.nit)
        return xr, r
