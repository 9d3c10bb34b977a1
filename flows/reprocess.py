"""Flow: reprocess an archive of nights — only the nights whose inputs, settings or code changed.

Change detection uses the catalogue (:func:`oiflow.archive.plan_units`): an unchanged archive
costs a scan (checksums cached on size and mtime) and no writes. Nights run as coarse tasks
on the flow's Dask task runner, at most ``cluster.max_parallel`` at a time (0: as many as the
cluster takes).
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from oiflow.archive import plan_units
from oiflow.config import RunConfig
from oiflow.errors import ConfigError
from oiflow.ingest import STAGE, archive_units
from tasks.ingest import ingest

from flows.common import finish, new_summary, open_catalog
from flows.units import run_units


@flow(name="reprocess-archive", validate_parameters=True)
def reprocess_archive(root: Path, config: RunConfig, force: bool = False):
    """Scan ``root`` (one directory per night), process what changed, register the products."""
    if config.input.level == 0:
        raise ConfigError("reprocessing raw (L0) nights needs the reduce stage, not available in this build; "
                          "set input.level to 1 or 2 for archives of reduced or calibrated OIFITS")
    summary = new_summary("reprocess-archive", config)
    with open_catalog(config) as catalog:
        units = archive_units(root, config.output.root, config.input.level, catalog)
        plan = plan_units(units, catalog, force=force)
        run_units(plan, ingest, catalog, summary, max_parallel=config.cluster.max_parallel)
        return finish(summary, catalog, STAGE)
