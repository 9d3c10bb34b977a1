"""Flow: reprocess an archive of nights — only what depends on changed inputs, settings or code.

An archive is a directory of night directories: raw files (``input.level`` 0, the default) or
reduced/calibrated OIFITS (level 1 or 2). Each night runs the recipe of
:func:`oiflow.flows.recipes.reprocess_archive` (reduce → calibrate → fit/image of the configured
targets, ``L3/<target>/<night>``). Change detection is per unit
(:meth:`oiflow.catalog.Catalog.up_to_date`): an unchanged archive costs a scan (checksums cached
on size and mtime) and no writes; a changed raw file redoes its observation, its night's
calibration and that night's L3; a changed calibrator catalogue redoes the L2 and L3, not the
L1. Units run on the flow's Dask task runner, at most ``cluster.max_parallel`` at a time (0: as
many as the cluster takes), nights overlapping; by default as plain Dask tasks under the flow
run (``cluster.unit_runs``: an archive has thousands of units, and a Prefect task run each costs
the server and the flow process CPU that the stages need on a small machine); ``unit_runs:
prefect`` lists each unit in the UI.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from oiflow.config import RunConfig

from oiflow.flows.common import finish, run_units
from oiflow.flows.plans import archive_build, check_stage_settings


@flow(name="reprocess-archive", validate_parameters=True)
def reprocess_archive(root: Path, config: RunConfig, force: bool = False):
    """Scan ``root`` (one directory per night), process what changed, register the products."""
    check_stage_settings(config)
    nights, build = archive_build(root, config)
    return finish(run_units("reprocess-archive", config, build, unit_runs="dask", force=force,
                            report_unmatched=bool(nights)))
