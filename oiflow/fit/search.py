"""Start values searched, not trusted: the global minimum of a fit.

The least-squares fit from the given start values is one candidate. With the model option
``search: true`` (the default), others come from

* a 1-D scan of every free size — ``diameter`` of ud/ld/ring, ``fwhm`` of gaussian, ring
  ``width`` — over the sizes the baselines resolve, 0 to 3/ρ_min in steps of 0.2/ρ_max
  (ρ = B/λ in cycles/rad; beyond 3/ρ_min a disk is resolved out on every baseline; the step
  samples each lobe of the visibility five times), at most :data:`SCAN_MAX` values; the
  :data:`N_SCAN_STARTS` lowest local minima of each scan within :data:`SCAN_WITHIN` × the lowest
  are starts (sizes scanned in turn, each with the previous ones at their best);
* for a binary — two components, the second (point or ud) with free x and y, the first (point,
  ud or ld) at a fixed position — the companion machinery of :mod:`oiflow.fit.companion`: a
  χ² map of UD + point companion, the flux ratio profiled over :data:`MAP_FLUXES` at every node,
  on a grid of step :data:`MAP_STEP` × λ_min/B_max over rmin … min(rmax, 4 × the start's
  separation) of :func:`~oiflow.fit.companion.default_grid` (no node farther than ≈ λ/2B from
  any position: a coarser grid of fits from nodes, as the companion search uses, missed
  companions in tests); its :data:`N_MAP_MINIMA` lowest local minima refined by the vectorised
  Levenberg–Marquardt; the :data:`N_GRID_STARTS` best distinct solutions are starts;
* for the other non-linear parameters (pa, axis_ratio, offsets outside the binary case):
  :data:`N_MULTI` random starts (seeded).

Every searched start is probed (:data:`PROBE`: a few iterations); the best probe and the given
start are fitted to convergence, and up to :data:`N_CONTINUE` − 1 more probes with χ² within twice
the best; the lowest χ² is kept. The size scans are then repeated through the
kept solution (the other parameters at their fitted values): a point lower by more than
:data:`LOWER_DCHI2` × max(1, χ²_red) starts another fit (at most :data:`N_RECHECK` times). With
``search: false`` only the given start is fitted and that scan is the check: a lower point found
there is reported (the verdict is not-at-minimum).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..units import MAS

SIZE_KEYS = {"ud": ("diameter",), "ld": ("diameter",), "gaussian": ("fwhm",), "ring": ("diameter", "width")}
SCAN_MAX = 600
N_SCAN_STARTS = 3
SCAN_WITHIN = 10.0
#: binaries: map step in λ_min/B_max, flux ratios tried at every node, map minima refined, starts kept
MAP_STEP = 0.7
MAP_FLUXES = tuple(np.geomspace(1e-3, 1.0, 6))
N_MAP_MINIMA = 6
N_GRID_STARTS = 3
N_MULTI = 8
N_RECHECK = 2
LOWER_DCHI2 = 1.0


@dataclass
class Candidate:
    """One local fit: where it started (and why), where it ended, its χ²."""

    origin: str
    start: np.ndarray
    x: np.ndarray
    chi2: float
    nfev: int
    status: int  # scipy least_squares status (0: evaluation limit)
    message: str = ""

    def to_dict(self, names) -> dict[str, Any]:
        return {"origin": self.origin, "start": dict(zip(names, map(float, self.start))),
                "end": dict(zip(names, map(float, self.x))), "chi2": float(self.chi2), "nfev": int(self.nfev)}


@dataclass
class SearchRecord:
    """What the search tried: ``candidates[0]`` is the fit from the given start; ``best`` the kept one;
    ``lower`` a lower point the final scan found and that was not followed (search off)."""

    enabled: bool
    names: list[str]
    candidates: list[Candidate] = field(default_factory=list)
    best: int = 0
    scans: list[dict[str, Any]] = field(default_factory=list)
    grid: dict[str, Any] | None = None
    lower: dict[str, Any] | None = None

    @property
    def solution(self) -> Candidate:
        return self.candidates[self.best]

    @property
    def given(self) -> Candidate:
        return self.candidates[0]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"enabled": self.enabled, "n_candidates": len(self.candidates),
                               "kept": self.candidates[self.best].origin,
                               "candidates": [c.to_dict(self.names) for c in self.candidates],
                               "scans": self.scans}
        if self.grid is not None:
            out["grid"] = self.grid
        if self.lower is not None:
            out["lower_point_not_followed"] = self.lower
        return out


# -- sizes ----------------------------------------------------------------------------------------
def size_parameters(prob) -> list[int]:
    """Indices (in the free vector) of the free sizes of the model."""
    out = []
    for c in prob.model.components:
        for key in SIZE_KEYS.get(c.type, ()):
            name = f"{c.name}.{key}"
            if name in prob.names:
                out.append(prob.names.index(name))
    return out


def size_grid(data, lower: float = 0.0, upper: float = math.inf) -> np.ndarray:
    """Sizes (mas) the baselines resolve: 0 … 3/ρ_min in steps of 0.2/ρ_max (at most SCAN_MAX),
    within [lower, upper]."""
    rho = np.hypot(data.freq_u, data.freq_v)
    rho = rho[rho > 0]
    if rho.size == 0:
        return np.zeros(0)
    hi = 3.0 / float(rho.min()) / MAS
    step = max(0.2 / float(rho.max()) / MAS, hi / SCAN_MAX)
    grid = np.arange(0.0, hi + step / 2, step)
    lo, up = max(lower, 0.0), min(upper, hi)
    return grid[(grid >= lo) & (grid <= up)]


def _chi2(prob, p) -> float:
    r = prob.residuals(p)
    c = float(r @ r)
    return c if math.isfinite(c) else math.inf


def scan(prob, p: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray]:
    """χ² along free parameter ``i`` (a size) over :func:`size_grid`, the others at ``p``."""
    grid = size_grid(prob.data, prob.lower[i], prob.upper[i])
    chi2 = np.empty(grid.size)
    q = p.copy()
    for k, g in enumerate(grid):
        q[i] = g
        chi2[k] = _chi2(prob, q)
    return grid, chi2


def local_minima(values: np.ndarray, chi2: np.ndarray, n: int, within: float = SCAN_WITHIN) -> list[float]:
    """The ``n`` lowest local minima of a sampled curve (ends included), lowest first, those at most
    ``within`` times the lowest."""
    if chi2.size == 0:
        return []
    left = np.r_[np.inf, chi2[:-1]]
    right = np.r_[chi2[1:], np.inf]
    idx = np.flatnonzero((chi2 <= left) & (chi2 <= right) & np.isfinite(chi2))
    idx = idx[np.argsort(chi2[idx])][:n]
    idx = idx[chi2[idx] <= within * chi2[idx[0]]] if idx.size else idx
    return [float(values[k]) for k in idx]


# -- binaries: the companion grid -------------------------------------------------------------------
def binary_roles(model) -> tuple[Any, Any] | None:
    """(primary, secondary) components when the model is a binary the companion grid can seed."""
    comps = model.components
    if len(comps) != 2:
        return None
    names = {p.name for p in model.free}
    a, b = comps
    if a.type not in ("point", "ud", "ld") or b.type not in ("point", "ud"):
        return None
    if {f"{a.name}.x", f"{a.name}.y"} & names or any(a.parameters[k].tied for k in ("x", "y")):
        return None
    if not {f"{b.name}.x", f"{b.name}.y"} <= names:
        return None
    return a, b


def grid_starts(prob, p: np.ndarray, record: SearchRecord, threads: int | None = None) -> list[np.ndarray]:
    """Starts for a binary model (module docstring): the flux-profiled χ² map of
    :func:`~oiflow.fit.companion.flux_profiled_map` over the field, its lowest local minima
    refined by the companion search's vectorised Levenberg–Marquardt."""
    from scipy.ndimage import minimum_filter

    from .companion import SUPPORTED, BinaryContext, default_grid, flux_profiled_map, grid_axes, solve_nodes

    roles = binary_roles(prob.model)
    if roles is None or any(b.name not in SUPPORTED for b in prob.data.blocks):
        return []
    a, b = roles
    vals = prob.values(p)
    x0, y0 = vals[f"{b.name}.x"] - vals[f"{a.name}.x"], vals[f"{b.name}.y"] - vals[f"{a.name}.y"]
    rmin, rmax, _ = default_grid(prob.data)
    rmax = max(min(rmax, 4.0 * math.hypot(x0, y0)), 10.0 * rmin)
    step = MAP_STEP * rmin  # rmin = λ_min/B_max
    xs, ys = grid_axes(rmax, step)
    X, Y = np.meshgrid(xs, ys)
    R = np.hypot(X, Y)
    inside = (R >= rmin) & (R <= rmax)
    ctx = BinaryContext.from_data(prob.data, prob.ev.smearing)
    d0 = vals.get(f"{a.name}.diameter", 0.0)
    chi2, flux = flux_profiled_map(np.stack([X[inside], Y[inside]], axis=1), ctx, d0, MAP_FLUXES, threads=threads)
    cmap = np.full(X.shape, np.inf)
    cmap[inside] = chi2
    fmap = np.zeros(X.shape)
    fmap[inside] = flux
    iy, ix = np.nonzero((cmap == minimum_filter(cmap, size=3, mode="nearest")) & np.isfinite(cmap))
    order = np.argsort(cmap[iy, ix])[:N_MAP_MINIMA]
    iy, ix = iy[order], ix[order]
    seeds = np.column_stack([X[iy, ix], Y[iy, ix], fmap[iy, ix], np.full(iy.size, d0)])
    sol, sol_chi2 = solve_nodes(seeds, ctx)
    record.grid = {"rmin_mas": rmin, "rmax_mas": rmax, "step_mas": step, "n_nodes": int(inside.sum()),
                   "map_minima": int(iy.size), "best_chi2": float(np.min(sol_chi2)) if sol_chi2.size else None}
    starts: list[np.ndarray] = []
    for k in np.argsort(sol_chi2):
        x, y, f, d = sol[k]
        if len(starts) >= N_GRID_STARTS or not np.isfinite(sol_chi2[k]):
            break
        if any(math.hypot(x - s_[0], y - s_[1]) < rmin for s_ in starts):
            continue
        starts.append(np.array([x, y, f, d]))
    out = []
    for x, y, f, d in starts:
        q = p.copy()
        new = {f"{b.name}.x": vals[f"{a.name}.x"] + x, f"{b.name}.y": vals[f"{a.name}.y"] + y,
               f"{b.name}.flux": f * vals[f"{a.name}.flux"], f"{a.name}.diameter": d if a.type != "point" else None}
        for name, v in new.items():
            if v is not None and name in prob.names:
                q[prob.names.index(name)] = v
        out.append(np.clip(q, prob.lower, prob.upper))
    return out


# -- other non-linear parameters: multi-start ---------------------------------------------------------
def multi_starts(prob, p: np.ndarray, skip: set[str], seed: int) -> list[np.ndarray]:
    """Random starts for pa, axis_ratio and offsets (not in ``skip``), the rest at ``p``."""
    rho = np.hypot(prob.data.freq_u, prob.data.freq_v)
    reach = 2.0 / float(rho.max()) / MAS if rho.size and rho.max() > 0 else 1.0
    draws = []
    for i, name in enumerate(prob.names):
        key = name.split(".", 1)[1]
        if name in skip or key not in ("pa", "axis_ratio", "x", "y"):
            continue
        draws.append((i, key))
    if not draws:
        return []
    rng = np.random.default_rng(seed)
    starts = []
    for _ in range(N_MULTI):
        q = p.copy()
        for i, key in draws:
            if key == "pa":
                q[i] = rng.uniform(0.0, 180.0)
            elif key == "axis_ratio":
                q[i] = rng.uniform(max(prob.lower[i], 0.2), min(prob.upper[i], 1.0))
            else:
                half = max(2.0 * abs(p[i]), reach)
                q[i] = p[i] + rng.uniform(-half, half)
        starts.append(np.clip(q, prob.lower, prob.upper))
    return starts


# -- the search -------------------------------------------------------------------------------------
#: the searched starts are probed (a few iterations, loose tolerances); the N_CONTINUE best are then
#: fitted to convergence with the fitter's own tolerances
PROBE = dict(xtol=1e-6, ftol=1e-8, gtol=1e-8, max_nfev=15)
N_CONTINUE = 2


def _fit(prob, start: np.ndarray, origin: str, **kw) -> Candidate:
    sol = prob.solve(start, **kw)
    return Candidate(origin, np.asarray(start, float).copy(), sol.x.copy(), _chi2(prob, sol.x), int(sol.nfev),
                     int(sol.status), str(sol.message))


def _tried(start: np.ndarray, candidates: list[Candidate]) -> bool:
    return any(np.allclose(start, c.start, rtol=1e-6, atol=1e-9) for c in candidates)


def _threshold(prob, chi2: float) -> float:
    dof = max(prob.data.n_data - len(prob.names), 1)
    return LOWER_DCHI2 * max(1.0, chi2 / dof)


def search_minimum(prob, *, search: bool = True, seed: int = 0, threads: int | None = None) -> SearchRecord:
    """Fit from the given start and, with ``search``, from the searched starts (module docstring);
    the kept candidate is ``record.solution``."""
    record = SearchRecord(enabled=search, names=list(prob.names))
    x0 = np.clip(prob.x0, prob.lower, prob.upper)
    record.candidates.append(_fit(prob, x0, "given start"))
    sizes = size_parameters(prob)
    if search:
        _fit_starts(prob, record, _searched_starts(prob, x0, sizes, record, seed, threads))
    if not (search and len(prob.names) == len(sizes) == 1):  # else that slice was scanned already
        _rescan(prob, record, sizes, follow=search)
    return record


def _searched_starts(prob, x0: np.ndarray, sizes: list[int], record: SearchRecord, seed: int,
                     threads: int | None) -> list[tuple[str, np.ndarray]]:
    """(origin, start) of the size scans, the binary map and the multi-starts."""
    starts: list[tuple[str, np.ndarray]] = []
    p = x0.copy()
    roles = binary_roles(prob.model)
    gridded = {f"{roles[0].name}.diameter"} if roles else set()  # the map's fits include the primary's diameter
    for i in sizes:
        if prob.names[i] in gridded:
            continue
        grid, chi2 = scan(prob, p, i)
        minima = local_minima(grid, chi2, N_SCAN_STARTS)
        record.scans.append({"parameter": prob.names[i], "through": "start", "n": int(grid.size),
                             "from": float(grid[0]) if grid.size else None,
                             "to": float(grid[-1]) if grid.size else None, "minima": minima})
        for m in minima:
            q = p.copy()
            q[i] = m
            starts.append((f"scan {prob.names[i]}", q))
        if minima:
            p[i] = minima[0]
    starts += [("companion grid", q) for q in grid_starts(prob, p, record, threads=threads)]
    skip = {f"{roles[1].name}.x", f"{roles[1].name}.y"} if roles and record.grid is not None else set()
    starts += [(f"multi-start {k + 1}", q) for k, q in enumerate(multi_starts(prob, p, skip, seed))]
    return starts


def _fit_starts(prob, record: SearchRecord, starts: list[tuple[str, np.ndarray]]) -> None:
    """Probe every start, fit the best probes to convergence (module docstring), keep the lowest χ²."""
    first = len(record.candidates)
    for origin, q in starts:
        if not _tried(q, record.candidates):
            record.candidates.append(_fit(prob, q, origin, **PROBE))
    probes = sorted(range(first, len(record.candidates)), key=lambda k: record.candidates[k].chi2)
    converged = list(range(first))
    for n, k in enumerate(probes[:N_CONTINUE]):
        probe = record.candidates[k]
        known = min(record.candidates[j].chi2 for j in converged)
        if np.allclose(probe.x, record.given.x, rtol=1e-7, atol=1e-12) or (n > 0 and probe.chi2 > 2 * known):
            continue  # it ran into the given start's (converged) minimum, or lies far above the best
        done = _fit(prob, probe.x, probe.origin)
        done.start, done.nfev = probe.start, probe.nfev + done.nfev
        record.candidates[k] = done
        converged.append(k)
    record.best = min(converged, key=lambda k: record.candidates[k].chi2)


def refine_minimum(prob, record: SearchRecord, origin: str) -> None:
    """Fit ``prob`` — the same parameters, another model of the data (bandwidth smearing) — from
    the kept solution, keep that, and scan the sizes through it again (module docstring): the
    smearing moves the nulls of a resolved source, and with them the minima."""
    record.candidates.append(_fit(prob, record.solution.x, origin))
    record.best = len(record.candidates) - 1
    record.lower = None
    _rescan(prob, record, size_parameters(prob), follow=record.enabled)


def _rescan(prob, record: SearchRecord, sizes: list[int], follow: bool) -> None:
    """Scan the sizes through the kept solution; follow a lower point (search) or record it (check)."""
    for attempt in range(N_RECHECK + 1):
        best = record.solution
        lower = None
        for i in sizes:
            grid, chi2 = scan(prob, best.x, i)
            if grid.size == 0:
                continue
            k = int(np.argmin(chi2))
            if chi2[k] < best.chi2 - _threshold(prob, best.chi2) and (lower is None or chi2[k] < lower[2]):
                lower = (i, float(grid[k]), float(chi2[k]))
        if lower is None:
            return
        i, value, chi2 = lower
        if not follow or attempt == N_RECHECK:
            record.lower = {"parameter": prob.names[i], "value": value, "chi2": chi2,
                            "delta_chi2": chi2 - best.chi2}
            return
        q = best.x.copy()
        q[i] = value
        cand = _fit(prob, q, f"scan {prob.names[i]} through the solution")
        record.candidates.append(cand)
        if cand.chi2 < best.chi2:
            record.best = len(record.candidates) - 1
