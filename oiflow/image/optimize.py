"""A bound-constrained limited-memory quasi-Newton optimiser (VMLM-B, Thiébaut 2002), written
against the array API so it runs where the objective's arrays live (numpy, cupy,
array_api_strict) and only scalars reach the host.

Each iteration: the free variables are those not held at the lower bound by a gradient
pointing outwards (and a direction component that would push a variable already at the bound
further down is dropped); the L-BFGS two-loop recursion (``mem`` pairs) gives a direction on them;
a backtracking line search along the projected path x(α) = max(x + α d, lower) enforces the
Armijo condition f(x(α)) ≤ f(x) + c₁ gᵀ(x(α) − x). Pairs with sᵀy ≤ 0 are skipped; a
non-descent direction resets the memory. A step is accepted only if it lowers f (the projection
can turn a descent direction into an ascent path when the quasi-Newton step is long).

Why not scipy's L-BFGS-B: for images (10⁴–10⁵ variables, many at the bound) its generalized
Cauchy point search costs several milliseconds per iteration — more than the NUFFT that
evaluates the objective.

Stops when the relative decrease of f is ≤ ``ftol`` in 3 successive iterations once the memory
holds FTOL_MEMORY pairs (converged), when the projected gradient vanishes (converged), after
``maxiter`` iterations, or when the line search cannot decrease f (reported, not converged).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

#: the message of a run stopped by its iteration limit (not convergence)
MAXITER_MESSAGE = "maximum number of iterations reached"
#: the ftol test counts only once the quasi-Newton memory holds this many pairs: right after a
#: (re)start the steps are short (a steepest-descent step of ~1 % of x, then few curvature pairs)
#: and a warm start for a slightly different μ would stop after 3 small steps, not converged
FTOL_MEMORY = 5


@dataclass
class OptimizeResult:
    x: object
    f: float
    nit: int
    nfev: int
    converged: bool
    message: str

    @property
    def success(self) -> bool:
        return self.converged


def _is_numpy(xp) -> bool:
    return "numpy" in getattr(xp, "__name__", "")


def _dot(a, b, xp) -> float:
    if _is_numpy(xp):
        # einsum: no temporary array and no BLAS call (a threaded BLAS ddot per call spins its
        # threads and was measured 10× slower on this loaded 2-core machine)
        import numpy as np

        return float(np.einsum("i,i->", a, b))
    return float(xp.sum(a * b))


def _direction(g, gf, free, at_bound, S, Y, RHO, xp):
    """L-BFGS two-loop recursion on the free variables (the pairs restricted to them), with the
    initial inverse Hessian γ·I (γ = sᵀy/yᵀy of the last pair); components that would push a variable at its
    bound further down are dropped."""
    fmask = xp.astype(free, g.dtype)  # 1 on the free variables, 0 elsewhere
    Sf = [s * fmask for s in S]
    Yf = [y * fmask for y in Y]
    q = gf
    alphas = []
    for s, yf, rho in zip(reversed(S), reversed(Yf), reversed(RHO)):
        a = rho * _dot(s, q, xp)
        alphas.append(a)
        q = q - a * yf
    if S:
        yy = _dot(Yf[-1], Yf[-1], xp)
        gamma = _dot(Sf[-1], Yf[-1], xp) / yy if yy > 0 else 1.0
        if not gamma > 0:
            gamma = 1.0
        r = gamma * q
    else:
        r = q
    for (sf, y, rho), a in zip(zip(Sf, Y, RHO), reversed(alphas)):
        b = rho * _dot(y, r, xp)
        r = r + (a - b) * sf
    d = -(r * fmask)
    return xp.where(at_bound & (d < 0), xp.zeros_like(d), d)


def _direction_numpy(g, gf, free, at_bound, S, Y, RHO, xp):
    """:func:`_direction` for numpy arrays on the compressed free variables (the same numbers,
    without the work on the variables held at the bound: most of an image's background)."""
    import numpy as np

    idx = np.flatnonzero(free)
    # BLAS ddot runs single-threaded below ~10,000 elements (cheapest call); einsum above
    dot = np.dot if idx.size <= 8192 else _np_dot
    Sf = [s[idx] for s in S]
    Yf = [y[idx] for y in Y]
    q = g[idx]
    alphas = []
    for sf, yf, rho in zip(reversed(Sf), reversed(Yf), reversed(RHO)):
        a = rho * float(dot(sf, q))
        alphas.append(a)
        q = q - a * yf
    if S:
        yy = float(dot(Yf[-1], Yf[-1]))
        gamma = float(dot(Sf[-1], Yf[-1])) / yy if yy > 0 else 1.0
        if not gamma > 0:
            gamma = 1.0
        q *= gamma
    for sf, yf, rho, a in zip(Sf, Yf, RHO, reversed(alphas)):
        b = rho * float(dot(yf, q))
        q += (a - b) * sf
    d = np.zeros_like(g)
    d[idx] = -q
    d[at_bound & (d < 0)] = 0.0
    return d


def _np_dot(a, b):
    import numpy as np

    return np.einsum("i,i->", a, b)


def vmlmb(fun: Callable, x0, lower: float, xp, *, maxiter: int = 500, ftol: float = 1e-9, gtol: float = 0.0,
          mem: int = 10, callback: Callable | None = None, max_backtracks: int = 30) -> OptimizeResult:
    """Minimise ``fun(x) -> (f: float, g: array)`` subject to x ≥ ``lower`` (a scalar), x flat.

    ``gtol``: stop (converged) when the norm of the projected gradient is ≤ ``gtol`` times its
    initial value. ``callback(x, f, it)`` is called after each iteration.
    """
    c1 = 1e-4
    numpy = _is_numpy(xp)
    x = xp.where(x0 > lower, x0, xp.full_like(x0, lower))
    f, g = fun(x)
    nfev = 1
    S: list = []
    Y: list = []
    RHO: list = []
    msg = MAXITER_MESSAGE
    converged = False
    it = 0
    small = 0
    nreset = 0
    pg0 = None
    for it in range(1, maxiter + 1):
        at_bound = x <= lower
        free = xp.logical_not(at_bound & (g > 0))
        gf = xp.where(free, g, xp.zeros_like(g))
        pg_norm = math.sqrt(_dot(gf, gf, xp))
        if pg0 is None:
            pg0 = pg_norm
        if pg_norm == 0.0 or pg_norm <= gtol * pg0:
            msg, converged = ("projected gradient is zero" if pg_norm == 0.0 else
                              "projected gradient reduced below gtol"), True
            it -= 1
            break
        d = (_direction_numpy if numpy else _direction)(g, gf, free, at_bound, S, Y, RHO, xp)
        slope = _dot(g, d, xp)
        if not slope < 0:
            S, Y, RHO = [], [], []
            d = -gf
            slope = -pg_norm**2
        if S:
            step = 1.0
        else:  # first step (or after a reset): move by ~1% of the current values
            dn = math.sqrt(_dot(d, d, xp))
            xn = math.sqrt(_dot(x, x, xp))
            step = 0.01 * max(xn, 1e-12) / dn if dn > 0 else 1.0
        accepted = False
        for _ in range(max_backtracks):
            xn_ = x + step * d
            xn_ = xp.where(xn_ > lower, xn_, xp.full_like(xn_, lower))
            dx = xn_ - x
            fn, gn = fun(xn_)
            nfev += 1
            decrease = _dot(g, dx, xp)
            if math.isfinite(fn) and decrease < 0 and fn < f and fn <= f + c1 * decrease:
                accepted = True
                break
            # quadratic interpolation along the (projected) path, safeguarded
            phi0 = slope * step
            denom = 2.0 * (fn - f - phi0) if math.isfinite(fn) else 0.0
            new = -phi0 * step / denom if denom > 0 else 0.5 * step
            step = min(max(new, 0.1 * step), 0.5 * step)
        if not accepted:
            if S:  # forget the curvature pairs and try the steepest descent next iteration
                S, Y, RHO = [], [], []
                nreset += 1
                continue
            msg = "line search could not decrease the objective"
            it -= 1
            break
        s = dx
        y = gn - g
        sy = _dot(s, y, xp)
        if sy > 1e-16 * math.sqrt(_dot(s, s, xp) * _dot(y, y, xp)):
            S.append(s)
            Y.append(y)
            RHO.append(1.0 / sy)
            if len(S) > mem:
                S.pop(0)
                Y.pop(0)
                RHO.pop(0)
        f_old = f
        x, f, g = xn_, fn, gn
        if callback is not None:
            callback(x, f, it)
        small = small + 1 if abs(f_old - f) <= ftol * max(abs(f), abs(f_old), 1e-300) else 0
        if small >= 3 and len(S) >= min(mem, FTOL_MEMORY):
            msg, converged = "relative reduction of the objective below ftol (3 iterations)", True
            break
    return OptimizeResult(x=x, f=float(f), nit=max(it, 0), nfev=nfev, converged=converged, message=msg)
