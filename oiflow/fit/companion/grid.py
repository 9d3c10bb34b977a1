"""The grid of a companion search: CANDID's default extent and step, the map axes, and a
flux-profiled χ² map (no iteration; the seeds of the fitter's binaries)."""

from __future__ import annotations

import math
import os

import numpy as np

from ...backend import get_xp, to_numpy
from ...units import MAS
from ..data import FitData
from .device import BinaryContext, _Device
from .dispatch import _map_threads
from .kernel import _flux_coefficients, _kinds, _models, _terms, _wrap


def default_grid(data: FitData) -> tuple[float, float, float]:
    """CANDID's defaults: rmin = λ_min/B_max (smallest scale), step = √2·rmin,
    rmax = λ_min²/(Δλ·B_max) (the bandwidth-smearing field of view), in mas."""
    b = np.hypot(data.freq_u, data.freq_v) * data.freq_wave
    bmax = float(b.max())
    lmin = float(data.freq_wave.min())
    rmin = lmin / bmax / MAS
    band = data.freq_band[data.freq_band > 0]
    rmax = (lmin**2 / (float(np.median(band)) * bmax) / MAS) if band.size else 20 * rmin
    return rmin, rmax, math.sqrt(2) * rmin


def grid_axes(rmax: float, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Map axes (mas) following the image convention: x_east(ix) = −(ix − n//2)·step,
    y(iy) = (iy − n//2)·step, n odd."""
    half = int(math.ceil(rmax / step))
    idx = np.arange(-half, half + 1, dtype=float)
    return -idx * step, idx * step


def _flux_map_chunk(nodes, ctx: BinaryContext, d0: float, fluxes, xp):
    dev = _Device(ctx, xp)
    val, err, is_phase = (xp.asarray(a[:, None]) for a in _kinds(ctx))
    n = nodes.shape[0]
    p = xp.asarray(np.column_stack([nodes, np.zeros(n), np.full(n, d0)]))
    terms = _terms(p, dev, False)
    coef = _flux_coefficients(terms, dev)
    best = xp.full((n,), math.inf, dtype=xp.float64)
    best_f = xp.zeros((n,), dtype=xp.float64)
    for f in fluxes:
        model = _models(terms, xp.full((n,), float(f), dtype=xp.float64), dev, coef=coef)
        r = val - model
        r = xp.where(is_phase, _wrap(r, xp), r) / err
        chi2 = xp.sum(r * r, axis=0)
        better = chi2 < best
        best = xp.where(better, chi2, best)
        best_f = xp.where(better, xp.full_like(best_f, float(f)), best_f)
    return to_numpy(best), to_numpy(best_f)


def flux_profiled_map(nodes, ctx: BinaryContext, d0: float, fluxes, xp=None, threads: int | None = None,
                      chunk: int = 256):
    """χ² of a UD (diameter ``d0`` mas) + point companion at every node (x, y mas), minimised over
    the flux ratios ``fluxes`` (no iteration: the terms are computed once per node, the models
    for every flux ratio from them). Returns host arrays (χ², best flux ratio)."""
    xp = xp or get_xp("numpy")
    pieces = [nodes[i:i + chunk] for i in range(0, len(nodes), chunk)]
    parts = _map_threads(lambda piece: _flux_map_chunk(piece, ctx, d0, fluxes, xp), pieces,
                         threads or (os.cpu_count() or 1))
    return np.concatenate([c for c, _ in parts]), np.concatenate([f for _, f in parts])
