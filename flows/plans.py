"""What the flows plan, without Prefect: the inputs of a run checked, the stage graph of each
flow built on a scheduler (:mod:`oiflow.flows.chain`), and the body every flow shares
(:func:`plan_and_run`).

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

from oiflow.flows.chain import Chain
from oiflow.flows.summary import RunSummary
from oiflow.flows.units import Scheduler

ALL_STAGES = ("reduce", "calibrate", "fit", "image")

#: builds a run's stage graph on a Chain
Build = Callable[[Chain], None]


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


# -- the stage graphs of the flows ---------------------------------------------------------------


def pipeline_build(config: RunConfig, night: Path | None = None) -> Build:
    """``l0_to_l3``: every input night (raw: reduce first; OIFITS: ingest) and ``input.files``
    into ONE group of L2 products, fitted and imaged together."""
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

    return build


def archive_build(root: Path, config: RunConfig) -> tuple[list[Path], Build]:
    """``reprocess_archive``: the night directories of ``root`` and a build with one group per
    night (its L3 products are that night's)."""
    nights = night_dirs(root)

    def build(chain: Chain) -> None:
        for night in nights:
            group = chain.group()
            if config.input.level == 0:
                chain.raw_night(night, group)
            else:
                chain.ingest_nights([night], config.input.level, group)
            group.close()

    return nights, build


def files_build(files, level: int) -> Build:
    """The single-stage flows: OIFITS files ingested into one group."""
    def build(chain: Chain) -> None:
        group = chain.group()
        chain.ingest_files(files, level, group)
        group.close()

    return build


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
