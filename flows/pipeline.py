"""Flow: what ``oiflow run CONFIG`` runs — the stages in order, as plain Python.

Today the pipeline starts from reduced (L1) or calibrated (L2) OIFITS: ``input.files`` and/or
night directories (``input.night``/``input.nights``) are ingested into the product tree and
the catalogue. The stages being built elsewhere plug in here, each through one task module::

    L0 nights  → tasks/reduce.py     (oiflow.reduce.reduce_observation, per observation)
    L1 files   → tasks/calibrate.py  (oiflow.calibrate.calibrate_night, per night)
    L2 files   → tasks/fit.py        (oiflow.fit.fit_files, per target)
               → tasks/image.py      (oiflow.image.reconstruct_files, per target)

A configuration asking for a stage that is not in this build is refused before anything runs.
"""

from __future__ import annotations

from prefect import flow

from oiflow.archive import plan_units
from oiflow.config import RunConfig
from oiflow.errors import ConfigError
from oiflow.ingest import STAGE as INGEST, file_units, night_units
from tasks.ingest import ingest

from flows.common import finish, new_summary, open_catalog
from flows.units import run_units


def check_available(config: RunConfig) -> None:
    """Refuse configurations that need stages missing from this build."""
    missing = []
    if config.input.level == 0 and (config.input.night or config.input.nights):
        missing.append("reduce (input.level 0)")
    if config.fit.targets:
        missing.append("fit (fit.targets)")
    if config.image.targets:
        missing.append("image (image.targets)")
    if missing:
        raise ConfigError(f"stage(s) not available in this build: {', '.join(missing)}")
    if not (config.input.files or config.input.night or config.input.nights):
        raise ConfigError("nothing to do: give input.files (L1/L2 OIFITS) or input.night / input.nights")
    if config.input.level not in (1, 2):
        raise ConfigError("input.level must be 1 (reduced) or 2 (calibrated) for OIFITS inputs")


@flow(name="oiflow-pipeline", validate_parameters=True)
def run_pipeline(config: RunConfig, force: bool = False):
    """Ingest the configured OIFITS (files and night directories) and register the products."""
    check_available(config)
    summary = new_summary("pipeline", config)
    with open_catalog(config) as catalog:
        nights = ([config.input.night] if config.input.night else []) + list(config.input.nights)
        level = config.input.level
        units = night_units(nights, config.output.root, level, catalog)
        units += file_units(config.input.files, config.output.root, level, catalog)
        run_units(plan_units(units, catalog, force=force), ingest, catalog, summary,
                  max_parallel=config.cluster.max_parallel)
        return finish(summary, catalog, INGEST)
