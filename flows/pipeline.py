"""Flows: the L0 → L3 pipeline (what ``oiflow run CONFIG`` runs) and one flow per stage.

* :func:`l0_to_l3` — raw night(s) → reduce → calibrate → fit and image the configured targets;
  it also takes L1 or L2 OIFITS (``input.files``, or night directories of OIFITS with
  ``input.level`` 1 or 2) and then starts at calibrate, or at fit and image.
* :func:`reduce_night`, :func:`calibrate_night`, :func:`fit_targets`, :func:`reconstruct_targets`
  — one stage over given inputs, with the same tasks, bookkeeping and products.

The chaining lives in :mod:`flows.chain`; every flow runs its units on the flow's task runner
(the Dask cluster of the configuration's profile) and ends with a summary and artifacts.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from oiflow.config import RunConfig
from oiflow.errors import ConfigError
from oiflow.work.fit import fit_settings
from oiflow.work.image import image_settings_for

from flows.chain import Chain
from flows.common import finish, new_summary, open_catalog
from flows.units import Scheduler, unit_runs_client


def files_level(config: RunConfig) -> int:
    """Level of ``input.files``: ``input.files_level``, else ``input.level`` (2 when that is 0)."""
    if config.input.files_level is not None:
        return config.input.files_level
    return config.input.level if config.input.level in (1, 2) else 2


def input_nights(config: RunConfig, night: Path | None = None) -> list[Path]:
    if night is not None:
        return [Path(night)]
    return ([config.input.night] if config.input.night else []) + list(config.input.nights)


def check_config(config: RunConfig, night: Path | None = None) -> None:
    """Refuse, before anything runs, a configuration that cannot work (nothing to do, missing
    files named in it, models that cannot be read)."""
    nights = input_nights(config, night)
    if not (nights or config.input.files):
        raise ConfigError("nothing to do: give input.night / input.nights (raw nights, or OIFITS with "
                          "input.level 1 or 2) and/or input.files (L1/L2 OIFITS)")
    for n in nights:
        if not Path(n).is_dir():
            raise ConfigError(f"night directory not found: {n}")
    for f in config.input.files:
        if not Path(f).is_file():
            raise ConfigError(f"input file not found: {f}")
    if config.input.files and files_level(config) not in (1, 2):
        raise ConfigError("input.files are OIFITS: input.files_level must be 1 (reduced) or 2 (calibrated)")
    check_stage_settings(config)


def check_stage_settings(config: RunConfig) -> None:
    """The files named in the stage settings exist and the models can be read."""
    if config.calibrate.diameters and not Path(config.calibrate.diameters).is_file():
        raise ConfigError(f"calibrate.diameters: file not found: {config.calibrate.diameters}")
    for name, spec in config.fit.targets.items():
        fit_settings(name, spec)  # reads the model file
    for name, spec in config.image.targets.items():
        image_settings_for(name, spec)  # checks prior/initial images


#: kept for the command line and deployments of phase 1
check_available = check_config


def _run(flow_name: str, config: RunConfig, force: bool, build, stages=("reduce", "calibrate", "fit", "image")):
    summary = new_summary(flow_name, config)
    with open_catalog(config) as catalog:
        sched = Scheduler(catalog, summary, max_parallel=config.cluster.max_parallel, force=force,
                          dask_client=unit_runs_client(config, default="prefect"))
        chain = Chain(sched, config, catalog, stages)
        build(chain)
        sched.run()
        chain.report_unmatched()
        return finish(summary, catalog)


@flow(name="l0-to-l3", validate_parameters=True)
def l0_to_l3(night: Path | None = None, config: RunConfig | None = None, force: bool = False):
    """The whole pipeline over ``night`` (a raw night directory; None: the configuration's
    inputs) and ``config.input.files``: reduce, calibrate, fit and image, each unit redone
    only when its inputs, settings or code changed (``force``: redo all)."""
    config = config or RunConfig()
    check_config(config, night)

    def build(chain: Chain) -> None:
        group = chain.group()
        for n in input_nights(config, night):
            if config.input.level == 0:
                chain.raw_night(n, group)
            else:
                chain.ingest_nights([n], config.input.level, group)
        if config.input.files:
            chain.ingest_files(config.input.files, files_level(config), group)
        group.close()

    return _run("l0-to-l3", config, force, build)


#: ``oiflow run`` and the ``run_pipeline`` deployments run the whole pipeline
run_pipeline = l0_to_l3


@flow(name="reduce-night", validate_parameters=True)
def reduce_night(night: Path, config: RunConfig, force: bool = False):
    """Reduce one raw night directory to L1 (``<root>/<night>/L1``), one task per observation."""
    return _run("reduce-night", config, force, lambda chain: chain.raw_night(night, None), stages=("reduce",))


@flow(name="calibrate-night", validate_parameters=True)
def calibrate_night(l1_files: list[Path], config: RunConfig, force: bool = False):
    """Calibrate L1 OIFITS (ingested into ``<root>/<night>/L1`` first), one task per night."""
    def build(chain: Chain) -> None:
        group = chain.group()
        chain.ingest_files(l1_files, 1, group)
        group.close()

    return _run("calibrate-night", config, force, build, stages=("calibrate",))


def _l3_flow(name: str, stage: str, l2_files: list[Path], config: RunConfig, force: bool):
    def build(chain: Chain) -> None:
        group = chain.group()
        chain.ingest_files(l2_files, 2, group)
        group.close()

    return _run(name, config, force, build, stages=(stage,))


@flow(name="fit-targets", validate_parameters=True)
def fit_targets(l2_files: list[Path], config: RunConfig, force: bool = False):
    """Fit the targets of ``config.fit.targets`` over L2 OIFITS, one task per target."""
    return _l3_flow("fit-targets", "fit", l2_files, config, force)


@flow(name="reconstruct-targets", validate_parameters=True)
def reconstruct_targets(l2_files: list[Path], config: RunConfig, force: bool = False):
    """Reconstruct images of the targets of ``config.image.targets`` from L2 OIFITS."""
    return _l3_flow("reconstruct-targets", "image", l2_files, config, force)
