"""Companion search in the manner of CANDID (Gallenne et al. 2015), vectorised over the grid.

1. Single star: a uniform-disk fit; χ²_r,UD (CANDID's χ²_r is χ²/N_data).
2. A grid of starting positions (x East, y North) with spacing ``step`` between ``rmin`` and
   ``rmax``; from every node a Levenberg–Marquardt fit of (x, y, flux ratio, primary diameter)
   of a uniform disk + point companion. All nodes iterate together as arrays (analytic Jacobian,
   batched 4×4 normal equations) on the array namespace ``xp`` — numpy, cupy or any array-API
   library — and, when a ``dask.distributed`` client is given, node chunks run on its workers.
3. The χ² map (χ²_r of the fit started at each node), the best binary (refined with the
   ordinary fitter for its error bars), and its significance against the single star,
   computed as CANDID does: p = P_χ²(ν·χ²_r,UD/χ²_r,bin)(x = ν) with ν = N_data − 1, and
   nσ = √(χ²₁ quantile of 1 − p) (the Gaussian-equivalent two-sided significance).
4. A detection-limit map by injection: at every position the flux ratio of a companion that,
   added to the data (with the detected companion removed), would be detected at 3σ — the UD
   diameter re-fitted (linearised) on the injected data, the binary χ² being that of the
   injected model. Bisection in log flux ratio, vectorised over positions.

Bandwidth smearing: each channel is taken uniform in wavenumber over its EFF_BAND; the grid
always uses the exact band average of the binary's V² and bispectrum (sinc-attenuated phasors,
no sampling; it costs nothing more); whether the final fits model it is decided by the rule of
``oiflow fit`` (:func:`~oiflow.fit.evaluate.decide_smearing`, at the best node) unless asked;
the final fit samples the channel (:mod:`oiflow.fit.evaluate`); the two agree to <1e-4 (tested).
The search's verdict (:func:`companion_verdict`) is that of the best binary's fit when detected,
else that of the single star.

Modules, one concern each: :mod:`.significance` (nσ as CANDID), :mod:`.device` (the data as
arrays on a namespace), :mod:`.kernel` (the vectorised binary model, residuals, Jacobian),
:mod:`.levenberg_marquardt` (the batched fits), :mod:`.grid` (extent, axes, flux-profiled map),
:mod:`.detection` (detection limits by injection), :mod:`.dispatch` (threads or Dask workers),
:mod:`.search` (:func:`companion_search`, :class:`CompanionResult`, the verdict).
"""

from __future__ import annotations

from .detection import detection_limit_map
from .device import SUPPORTED, BinaryContext, _Device
from .grid import default_grid, flux_profiled_map, grid_axes
from .kernel import _binary_observables, _data_models, _kinds, _terms, binary_residuals
from .levenberg_marquardt import solve_nodes
from .search import CompanionResult, companion_search, companion_verdict
from .significance import nsigma, ratio_at_nsigma

__all__ = ["SUPPORTED", "BinaryContext", "CompanionResult", "binary_residuals", "companion_search",
           "companion_verdict", "default_grid", "detection_limit_map", "flux_profiled_map", "grid_axes", "nsigma",
           "ratio_at_nsigma", "solve_nodes",
           # internals that tests and benchmarks exercise directly
           "_Device", "_binary_observables", "_data_models", "_kinds", "_terms"]
