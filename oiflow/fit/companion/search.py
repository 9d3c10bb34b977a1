"""The companion search itself (:func:`companion_search`): the single star, the grid of fits, the
best binary refined by the ordinary fitter, the significance, the maps, the verdict, and the
:class:`CompanionResult` the products are written from."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ... import verdict as V
from ...backend import get_xp
from ...errors import ConfigError, DataError
from ...units import MAS
from ...verdict import Verdict
from ..data import FitData, load_data
from ..evaluate import ModelEvaluator, SmearingChoice, decide_smearing, requested_smearing
from ..fitter import FitResult, fit_model
from ..model import parse_model
from .detection import detection_limit_map
from .device import BinaryContext
from .dispatch import _backend_name, _map_threads, _on_workers
from .grid import default_grid, grid_axes
from .levenberg_marquardt import _solve_chunk, solve_nodes
from .significance import nsigma


@dataclass
class CompanionResult:
    best: dict[str, float]  # x_mas, y_mas, flux_ratio, diameter_mas (+ _error)
    nsigma: float
    chi2r_single: float
    chi2r_binary: float
    diameter_single_mas: float
    n_data: int
    rmin_mas: float
    rmax_mas: float
    step_mas: float
    x_axis: np.ndarray
    y_axis: np.ndarray
    chi2_map: np.ndarray  # χ²_r of the fit started at each node (NaN outside rmin..rmax)
    nsigma_map: np.ndarray
    nodes: np.ndarray  # (n, 2) start positions
    solutions: np.ndarray  # (n, 4) converged (x, y, f, d)
    solution_chi2r: np.ndarray
    fit: FitResult | None = None
    detection: dict[str, Any] | None = None  # x_axis, y_axis, flux_ratio map, radial profile
    observables: tuple[str, ...] = ()
    files: list[str] = field(default_factory=list)
    smearing: bool = True
    smearing_choice: SmearingChoice | None = None
    timings: dict[str, float] = field(default_factory=dict)
    verdict: Verdict = field(default_factory=Verdict)

    @property
    def separation_mas(self) -> float:
        return math.hypot(self.best["x_mas"], self.best["y_mas"])

    @property
    def position_angle_deg(self) -> float:
        return math.degrees(math.atan2(self.best["x_mas"], self.best["y_mas"])) % 360.0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "best": {k: float(v) for k, v in self.best.items()},
            "separation_mas": self.separation_mas,
            "position_angle_deg": self.position_angle_deg,
            "flux_ratio": float(self.best["flux_ratio"]),
            "nsigma": float(self.nsigma),
            "chi2r_single": float(self.chi2r_single),
            "chi2r_binary": float(self.chi2r_binary),
            "chi2r_convention": "chi2 / n_data (CANDID)",
            "diameter_single_mas": float(self.diameter_single_mas),
            "n_data": int(self.n_data),
            "grid": {"rmin_mas": self.rmin_mas, "rmax_mas": self.rmax_mas, "step_mas": self.step_mas,
                     "n_nodes": int(self.nodes.shape[0])},
            "observables": list(self.observables),
            "files": list(self.files),
            "bandwidth_smearing": self.smearing,
            "smearing": self.smearing_choice.to_dict() if self.smearing_choice else None,
            "verdict": self.verdict.to_dict(),
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
        }
        if self.fit is not None:
            out["fit"] = self.fit.to_dict()
        if self.detection is not None:
            det = self.detection
            out["detection_limit"] = {
                "nsigma": det["nsigma"], "step_mas": det["step_mas"],
                "companion_removed": det["companion_removed"],
                "radius_mas": [float(r) for r in det["radius_mas"]],
                "flux_ratio_median": [_nan_none(v) for v in det["flux_ratio_median"]],
                "flux_ratio_p90": [_nan_none(v) for v in det["flux_ratio_p90"]],
            }
        return out


def _nan_none(v):
    v = float(v)
    return v if math.isfinite(v) else None


def _ud_fit(data: FitData, smearing: bool, diameter: float | None = None) -> FitResult:
    """Single-star fit: from ``diameter`` only, or (None) searched by the fitter's diameter scan."""
    rho_max = float(np.hypot(data.freq_u, data.freq_v).max())
    start = 0.5 / rho_max / MAS if diameter is None else diameter
    return fit_model({"star": {"type": "ud", "diameter": float(max(start, 1e-3))},
                      "options": {"bandwidth_smearing": bool(smearing)}}, data, search=diameter is None)


def _smearing_choice(data: FitData, spec: dict, smearing: bool | None) -> SmearingChoice:
    """The smearing of the search's fits: ``smearing`` when given, else the fitter's rule applied to
    the binary of the best node."""
    if smearing is not None:
        return requested_smearing(smearing, data)
    model = parse_model(spec)
    vals = model.values()
    r = ModelEvaluator(model, data, smearing=False).residuals(vals)
    return decide_smearing(model, data, vals, float(r @ r))


def companion_verdict(result: "CompanionResult", single: FitResult, detection_nsigma: float) -> Verdict:
    """The search's verdict: that of the best binary's fit when it is detected (≥ ``detection_nsigma``),
    with at-bound when it lies on the edge of the field; else that of the single star, with a note."""
    sep = result.separation_mas
    detected = result.nsigma >= detection_nsigma
    base = result.fit.verdict if detected and result.fit is not None else single.verdict
    found = [(base.status, r) for r in base.reasons] or [(base.status, "")]
    if detected and (sep > result.rmax_mas - result.step_mas / 2 or sep < result.rmin_mas + result.step_mas / 2):
        found.append((V.AT_BOUND, f"the best companion ({sep:.4g} mas) lies on the edge of the field searched "
                                  f"({result.rmin_mas:.4g}–{result.rmax_mas:.4g} mas): widen it"))
    if not detected:
        found.append((V.OK, f"no companion detected: nσ = {result.nsigma:.3g} < {detection_nsigma:g} (the best "
                            f"position is noise; the verdict is the single star's, the detection limit the result)"))
    status = max((st for st, _ in found), key=V.rank)
    figures = {**base.figures, "nsigma": float(result.nsigma), "chi2r_single": float(result.chi2r_single),
               "chi2r_binary": float(result.chi2r_binary), "detected": bool(detected)}
    return Verdict(status, tuple(r for _, r in found if r), figures)


def _binary_spec(x, y, f, d, smearing, n_smear=None):
    return {"star": {"type": "ud", "diameter": float(max(d, 1e-4))},
            "companion": {"type": "point", "x": float(x), "y": float(y), "flux": float(max(f, 1e-6))},
            "options": {"bandwidth_smearing": smearing, "n_smear": n_smear}}


def companion_search(files, rmin_mas: float | None = None, rmax_mas: float | None = None,
                     step_mas: float | None = None, *, observables=("v2", "t3phi"), smearing: bool | None = None,
                     n_smear: int | None = None, flux_start: float = 0.02, detection_limit: bool = True,
                     detection_step_mas: float | None = None, detection_nsigma: float = 3.0,
                     remove_companion: bool | None = None, xp=None, client=None, chunk: int | None = None,
                     threads: int | None = None, out_dir=None, plot: bool = True) -> CompanionResult:
    """CANDID-style companion search (see the module docstring).

    ``files``: OIFITS paths/objects or a :class:`FitData`. Grid defaults from
    :func:`default_grid`. ``xp``: array namespace or backend name for the grid (numpy by
    default; "cupy" on a GPU). ``client``: a ``dask.distributed.Client`` to spread node chunks.
    ``threads``: without a client, node chunks run in this many threads (default: the CPU count;
    numpy releases the GIL in its array operations). ``chunk``: nodes per chunk (default: the
    grid split evenly into two chunks per thread, at most 96 nodes each).
    ``smearing``: bandwidth smearing; None (default): decided as for ``oiflow fit``
    (:func:`~oiflow.fit.evaluate.decide_smearing`, at the best node of the grid, which itself
    always uses the exact band average). ``remove_companion``: remove the best companion before
    the detection-limit map (default: when it is detected at ≥ ``detection_nsigma``). With ``out_dir``, writes
    ``companion.json``, ``companion_maps.fits`` and PNG plots there.
    """
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    if isinstance(xp, str):
        backend, xp = xp, get_xp(xp)
    else:
        xp = xp or get_xp("numpy")
        backend = _backend_name(xp)
    data = files if isinstance(files, FitData) else load_data(files, observables)
    d_rmin, d_rmax, d_step = default_grid(data)
    rmin = d_rmin if rmin_mas is None else float(rmin_mas)
    rmax = d_rmax if rmax_mas is None else float(rmax_mas)
    step = d_step if step_mas is None else float(step_mas)
    if not (0 <= rmin < rmax) or step <= 0:
        raise ConfigError(f"invalid grid: rmin={rmin}, rmax={rmax}, step={step} (mas)")

    t = time.perf_counter()
    single = _ud_fit(data, smearing is True)
    d0 = single.values["star.diameter"]
    timings["single_star_fit"] = time.perf_counter() - t

    ctx = BinaryContext.from_data(data, smearing is not False)
    xs, ys = grid_axes(rmax, step)
    X, Y = np.meshgrid(xs, ys)
    R = np.hypot(X, Y)
    inside = (R >= rmin) & (R <= rmax)
    nodes = np.stack([X[inside], Y[inside]], axis=1)
    if nodes.shape[0] == 0:
        raise ConfigError(f"the grid has no node between rmin={rmin} and rmax={rmax} mas with step {step}")
    p0 = np.column_stack([nodes, np.full(len(nodes), flux_start), np.full(len(nodes), d0)])

    t = time.perf_counter()
    threads = threads or (os.cpu_count() or 1)
    if chunk is None:  # at least two chunks per thread (nodes converge at different rates), at most 96 nodes
        chunk = max(8, min(96, math.ceil(len(p0) / (2 * threads))))
    chunks = [p0[i:i + chunk] for i in range(0, len(p0), chunk)]
    if client is not None:
        parts = _on_workers(client, _solve_chunk, chunks, ctx, backend)
    else:
        parts = _map_threads(lambda c: solve_nodes(c, ctx, xp), chunks, threads)
    sol = np.concatenate([s for s, _ in parts])
    sol_chi2 = np.concatenate([c for _, c in parts])
    timings["grid_fits"] = time.perf_counter() - t

    sol_chi2r = sol_chi2 / data.n_data
    sol_r = np.hypot(sol[:, 0], sol[:, 1])
    valid = (sol_r >= rmin) & (sol_r <= rmax) & np.isfinite(sol_chi2r)
    if not valid.any():
        raise DataError("no grid fit converged inside rmin..rmax")
    k = int(np.argmin(np.where(valid, sol_chi2r, np.inf)))

    t = time.perf_counter()
    x, y, f, d = sol[k]
    choice = _smearing_choice(data, _binary_spec(x, y, f, d, False, n_smear), smearing)
    fit = fit_model(_binary_spec(x, y, f, d, choice.on, n_smear), data, search=False)
    if single.smearing != choice.on:  # the single star on the same model of the channels
        single = _ud_fit(data, choice.on, d0)
    chi2r_single = single.chi2 / data.n_data
    timings["best_fit_refinement"] = time.perf_counter() - t
    chi2r_binary = min(fit.chi2 / data.n_data, float(sol_chi2r[k]))
    ns = nsigma(chi2r_single, chi2r_binary, data.n_data - 1)
    best = {"x_mas": fit.values["companion.x"], "y_mas": fit.values["companion.y"],
            "flux_ratio": fit.values["companion.flux"], "diameter_mas": fit.values["star.diameter"],
            "x_mas_error": fit.errors["companion.x"], "y_mas_error": fit.errors["companion.y"],
            "flux_ratio_error": fit.errors["companion.flux"], "diameter_mas_error": fit.errors["star.diameter"]}

    chi2_map = np.full(X.shape, np.nan)
    chi2_map[inside] = np.where(valid, sol_chi2r, np.nan)
    nsig_map = np.full(X.shape, np.nan)
    nsig_map[inside] = np.where(valid, nsigma(chi2r_single, np.minimum(sol_chi2r, chi2r_single), data.n_data - 1),
                                np.nan)

    result = CompanionResult(
        best=best, nsigma=ns, chi2r_single=chi2r_single, chi2r_binary=chi2r_binary, diameter_single_mas=d0,
        n_data=data.n_data, rmin_mas=rmin, rmax_mas=rmax, step_mas=step, x_axis=xs, y_axis=ys,
        chi2_map=chi2_map, nsigma_map=nsig_map, nodes=nodes, solutions=sol, solution_chi2r=sol_chi2r,
        fit=fit, observables=data.observables, files=data.files, smearing=choice.on, smearing_choice=choice,
        timings=timings)
    result.verdict = companion_verdict(result, single, detection_nsigma)

    if detection_limit:
        t = time.perf_counter()
        remove = (ns >= detection_nsigma) if remove_companion is None else bool(remove_companion)
        result.detection = detection_limit_map(
            data, ctx, rmin, rmax, detection_step_mas or step / 2.0, nsigma_level=detection_nsigma,
            companion=(best["x_mas"], best["y_mas"], best["flux_ratio"], best["diameter_mas"]) if remove else None,
            xp=xp, client=client, backend=backend, chunk=chunk, threads=threads)
        timings["detection_limit"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t_start
    if out_dir is not None:
        from ..products import write_companion_products

        write_companion_products(result, out_dir, plot=plot)
    return result
