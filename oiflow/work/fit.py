"""Fit stage units: one configured target (``fit.targets``) over its L2 OIFITS of a night or
set → ``<root>/L3/<target>/<set>/fit_<model>.json`` (+ plots), and with ``companion_search``
the CANDID-style search: ``companion.json`` and ``companion_maps.fits`` (+ maps). Each product's
catalogue row carries its verdict (the fit's; the search's for both companion products), which
the run summary lists when it is not ok.

The model description (a YAML path or a mapping) is part of the settings as its content, so
editing the model file redoes the fit. The companion grid can be spread over a Dask cluster:
pass a ``dask.distributed`` client (the Prefect task passes its worker's client).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


from ..archive import UnitResult, WorkUnit, code_version, make_unit
from ..catalog import Catalog
from ..config import FitTarget, load_yaml
from ..errors import ConfigError, OiflowError
from ..product_tree import l3_dir, remove_stale_temporaries
from .l3 import input_granules, l3_record, target_data

STAGE = "fit"
#: stems of the fit products (the target's image unit writes into the same directory)
PRODUCT_STEMS = ("fit_", "companion")
MODULES = ("oiflow.fit", "oiflow.observables", "oiflow.oifits")


def fit_code_version() -> str:
    return code_version(*MODULES)


def fit_settings(target: str, spec: FitTarget) -> dict[str, Any]:
    """Effective settings of one target's fit: the FitTarget with the model's content inlined."""
    s = spec.model_dump(mode="json")
    model = spec.model
    if not isinstance(model, dict):
        p = Path(model)
        if not p.is_file():
            raise ConfigError(f"fit target {target}: model file not found: {p}")
        model = load_yaml(p)
    s["model"] = model
    s["target"] = target
    return s


def fit_unit(target: str, subset: str, l2_files, root: str | Path, spec: FitTarget, catalog: Catalog) -> WorkUnit:
    """The fit unit of ``target`` (its OI_TARGET name) over ``l2_files`` (night-or-set ``subset``)."""
    return make_unit(STAGE, f"{target}/{subset}", sorted(str(Path(f).resolve()) for f in l2_files),
                     fit_settings(target, spec), fit_code_version(), l3_dir(root, target, subset), catalog,
                     params={"subset": subset})


def run_fit_unit(unit: WorkUnit, client=None) -> UnitResult:
    """Fit (and search for a companion, when asked) into ``unit.out_dir``; failures are
    returned, not raised. ``client``: a Dask client for the companion grid (None: threads)."""
    from ..fit import companion_search, fit_files
    from ..fit.headline import companion_headline, fit_headline
    from ..fit.products import write_companion_products, write_fit_products

    t0 = time.perf_counter()
    result = UnitResult(stage=STAGE, unit=unit.unit)
    target, subset = unit.settings["target"], unit.params["subset"]
    spec = FitTarget.model_validate({k: v for k, v in unit.settings.items() if k != "target"})
    out_dir = Path(unit.out_dir)
    inputs = [{"name": i.name, "sha256": i.sha256} for i in unit.inputs]
    common = dict(stage=STAGE, target=target, subset=subset, dataproduct_type="fit", settings_hash=unit.settings_hash,
                  inputs=inputs)
    try:
        data = target_data([i.path for i in unit.inputs], target)
        granules = input_granules(data)
        channels = max((g["nb_channels"] or 0 for g in granules if g["target_name"] == target), default=None)
        if out_dir.is_dir():
            remove_stale_temporaries(out_dir, stems=PRODUCT_STEMS)  # not the image's: it may be running
        res = fit_files(data, spec.model, spec.observables, bootstrap=spec.bootstrap, smearing=spec.smearing)
        for p in write_fit_products(res, out_dir, plot=True):
            if p.suffix == ".json":
                result.products.append(l3_record(p, granules=granules, nb_channels=channels,
                                                 access_format="application/json", verdict=res.verdict.to_dict(),
                                                 result=fit_headline(res), **common))
            else:
                result.plots.append(str(p))
    except OiflowError as exc:
        result.fail(f"fit {unit.unit}", exc)
    if spec.companion_search and not result.failures:
        try:
            threads = sum(client.nthreads().values()) if client is not None else None
            cs = companion_search(data, spec.companion_rmin_mas, spec.companion_rmax_mas, spec.companion_step_mas,
                                  observables=spec.observables, smearing=spec.smearing, client=client,
                                  threads=threads)
            verdict, found = cs.verdict.to_dict(), companion_headline(cs)
            for p in write_companion_products(cs, out_dir, plot=True):
                if p.suffix == ".json":
                    result.products.append(l3_record(p, granules=granules, nb_channels=channels,
                                                     access_format="application/json", verdict=verdict,
                                                     result=found, **common))
                elif p.suffix == ".fits":
                    result.products.append(l3_record(p, granules=granules, nb_channels=channels, verdict=verdict,
                                                     result=found, **common))
                else:
                    result.plots.append(str(p))
        except OiflowError as exc:
            result.fail(f"companion search {unit.unit}", exc)
    result.seconds = time.perf_counter() - t0
    return result
