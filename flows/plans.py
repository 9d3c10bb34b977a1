"""What the flows plan, without Prefect: the inputs of a run checked, each flow's recipe
(:mod:`oiflow.flows.recipes`) bound to its inputs, and the body every flow shares (:func:`plan_and_run`:
the recipe run on a scheduler).

The same code serves the flows (:mod:`oiflow.flows.pipeline`, :mod:`oiflow.flows.reprocess`) and the idle
check of the command line (:func:`oiflow.flows.run.run_flow`): a :class:`~oiflow.flows.units.PlanProbe`
walks the plan outside Prefect and either finds a unit to do or shows, with the flow's own
summary, that there is nothing to do.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from oiflow.archive import night_dirs
from oiflow.catalog import Catalog
from oiflow.config import RunConfig
from oiflow.errors import ConfigError
from oiflow.work.fit import fit_settings
from oiflow.work.image import image_settings_for

from oiflow.flows import recipes
from oiflow.flows.chain import ALL_STAGES, Chain
from oiflow.flows.recipes import files_level
from oiflow.flows.summary import RunSummary
from oiflow.flows.units import Scheduler

#: builds a run's stage graph on a Chain (a recipe of :mod:`oiflow.flows.recipes` bound to its inputs)
Build = Callable[[Chain], None]


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


# -- the recipes of the flows, bound to their inputs ------------------------------------------------


def pipeline_build(config: RunConfig, night: Path | None = None) -> Build:
    """``l0_to_l3`` over ``night`` (None: the configuration's nights) and ``input.files``
    (:func:`oiflow.flows.recipes.l0_to_l3`)."""
    nights = input_nights(config, night)
    return lambda chain: recipes.l0_to_l3(chain, config, nights)


def archive_build(root: Path, config: RunConfig) -> tuple[list[Path], Build]:
    """``reprocess_archive``: the night directories of ``root`` and their build
    (:func:`oiflow.flows.recipes.reprocess_archive`)."""
    nights = night_dirs(root)
    return nights, lambda chain: recipes.reprocess_archive(chain, config, nights)


# -- the body of every flow ----------------------------------------------------------------------


def new_summary(flow: str, config: RunConfig) -> RunSummary:
    return RunSummary(flow=flow, root=str(Path(config.output.root).resolve()), seconds=time.perf_counter())


def plan_and_run(flow: str, config: RunConfig, build: Build, *, stages=ALL_STAGES, force: bool = False,
                 report_unmatched: bool = True, scheduler: type[Scheduler] = Scheduler, **scheduler_kw) -> RunSummary:
    """Open the catalogue, build the stage graph on ``scheduler``, run it, list the configured
    targets without data (``report_unmatched``) and collect the products of the run's units
    into the summary (``seconds``: the whole of it)."""
    summary = new_summary(flow, config)
    with Catalog.for_root(config.output.root, config.catalog.url, writer=True) as catalog:
        sched = scheduler(catalog, summary, max_parallel=config.cluster.max_parallel, force=force, **scheduler_kw)
        chain = Chain(sched, config, catalog, stages)
        build(chain)
        sched.run()
        if report_unmatched:
            chain.report_unmatched()
        summary.products = catalog.products(paths=sorted(set(summary.current)))
    summary.seconds = time.perf_counter() - summary.seconds
    return summary
