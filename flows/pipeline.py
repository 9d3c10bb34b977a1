"""Flows: the L0 → L3 pipeline (what ``oiflow run CONFIG`` runs) and one flow per stage.

* :func:`l0_to_l3` — raw night(s) → reduce → calibrate → fit and image the configured targets;
  it also takes L1 or L2 OIFITS (``input.files``, or night directories of OIFITS with
  ``input.level`` 1 or 2) and then starts at calibrate, or at fit and image.
* :func:`reduce_night`, :func:`calibrate_night`, :func:`fit_targets`, :func:`reconstruct_targets`
  — one stage over given inputs, with the same tasks, bookkeeping and products.

The order of the stages of each flow is its recipe (:mod:`oiflow.flows.recipes`, on the stages of
:mod:`oiflow.flows.chain`), the checks and the body every flow shares are in :mod:`oiflow.flows.plans`; every
flow runs its units on the flow's task runner (the Dask cluster of the configuration's profile),
reports its progress (:mod:`oiflow.flows.progress`) and ends with a summary and artifacts.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from oiflow.config import RunConfig

from oiflow.flows import recipes
from oiflow.flows.common import finish, run_units
from oiflow.flows.plans import check_config, pipeline_build

#: kept for the command line and deployments of phase 1
check_available = check_config


@flow(name="l0-to-l3", validate_parameters=True)
def l0_to_l3(night: Path | None = None, config: RunConfig | None = None, force: bool = False):
    """The whole pipeline over ``night`` (a raw night directory; None: the configuration's
    inputs) and ``config.input.files``: reduce, calibrate, fit and image, each unit redone
    only when its inputs, settings or code changed (``force``: redo all)."""
    config = config or RunConfig()
    check_config(config, night)
    return finish(run_units("l0-to-l3", config, pipeline_build(config, night), unit_runs="prefect", force=force))


#: ``oiflow run`` and the ``run_pipeline`` deployments run the whole pipeline
run_pipeline = l0_to_l3


@flow(name="reduce-night", validate_parameters=True)
def reduce_night(night: Path, config: RunConfig, force: bool = False):
    """Reduce one raw night directory to L1 (``<root>/<night>/L1``), one task per observation."""
    return finish(run_units("reduce-night", config, lambda chain: recipes.reduce_night(chain, night),
                            unit_runs="prefect", force=force, stages=("reduce",)))


@flow(name="calibrate-night", validate_parameters=True)
def calibrate_night(l1_files: list[Path], config: RunConfig, force: bool = False):
    """Calibrate L1 OIFITS (ingested into ``<root>/<night>/L1`` first), one task per night."""
    return finish(run_units("calibrate-night", config, lambda chain: recipes.calibrate_night(chain, l1_files),
                            unit_runs="prefect", force=force, stages=("calibrate",)))


@flow(name="fit-targets", validate_parameters=True)
def fit_targets(l2_files: list[Path], config: RunConfig, force: bool = False):
    """Fit the targets of ``config.fit.targets`` over L2 OIFITS, one task per target."""
    return finish(run_units("fit-targets", config, lambda chain: recipes.l2_to_l3(chain, l2_files),
                            unit_runs="prefect", force=force, stages=("fit",)))


@flow(name="reconstruct-targets", validate_parameters=True)
def reconstruct_targets(l2_files: list[Path], config: RunConfig, force: bool = False):
    """Reconstruct images of the targets of ``config.image.targets`` from L2 OIFITS."""
    return finish(run_units("reconstruct-targets", config, lambda chain: recipes.l2_to_l3(chain, l2_files),
                            unit_runs="prefect", force=force, stages=("image",)))
