"""Model fitting (LITpro-style): analytic models, fitter, companion search.

    from oiflow.fit import fit_files, companion_search
    res = fit_files(["AXCir.oifits"], {"star": {"type": "ud", "diameter": 0.8},
                                       "comp": {"type": "point", "x": 6, "y": -28, "flux": 0.01}})
    print(res.summary()); res.to_dict()          # the JSON product
    cs = companion_search(["AXCir.oifits"], rmin_mas=2, rmax_mas=35, step_mas=3.8, out_dir="out")

Modules: :mod:`~oiflow.fit.analytic` (visibilities), :mod:`~oiflow.fit.model` (descriptions),
:mod:`~oiflow.fit.data` (observables from OIFITS), :mod:`~oiflow.fit.evaluate` (model →
observables, residuals, the smearing rule), :mod:`~oiflow.fit.search` (start values searched),
:mod:`~oiflow.fit.certify` (the verdict's checks), :mod:`~oiflow.fit.fitter` (least squares, the
error rule, bootstrap, MCMC), :mod:`~oiflow.fit.companion` (CANDID-style search),
:mod:`~oiflow.fit.products` (JSON/PNG/FITS). Every result carries ``verdict``
(:class:`oiflow.verdict.Verdict`).
"""

from __future__ import annotations

from pathlib import Path

from .companion import CompanionResult, companion_search, nsigma
from .data import FitData, load_data
from .fitter import FitResult, fit_model
from .model import Model, parse_model


def fit_files(files, model, observables=("v2", "t3phi"), out_dir=None, plot: bool = True, *,
              bootstrap: int = 0, mcmc=None, smearing: bool | None = None, seed: int = 0,
              search: bool | None = None) -> FitResult:
    """Fit ``model`` (dict, YAML path or YAML text) to OIFITS ``files`` on ``observables``.

    With ``out_dir``, writes ``fit_<modelname>.json`` and, when ``plot``, ``fit_<modelname>_*.png``
    there. ``bootstrap``: number of resamplings by observation; ``mcmc``: True or emcee settings
    (nwalkers, nsteps, burn); ``smearing`` and ``search`` override the model's
    ``bandwidth_smearing`` (auto) and ``search`` (true) options.
    """
    m = parse_model(model)
    data = load_data(files, observables)
    result = fit_model(m, data, smearing=smearing, bootstrap=bootstrap, mcmc=mcmc, seed=seed, search=search)
    if out_dir is not None:
        from .products import write_fit_products

        write_fit_products(result, Path(out_dir), plot=plot)
    return result


__all__ = ["fit_files", "fit_model", "companion_search", "nsigma", "load_data", "parse_model", "FitResult",
           "CompanionResult", "FitData", "Model"]
