"""Task: ingest the L1/L2 OIFITS files of one unit (a night, or one loose file)."""

from __future__ import annotations

from prefect import task

from oiflow.archive import UnitResult, WorkUnit
from oiflow.ingest import ingest_unit

from oiflow.tasks.artifacts import report_unit
from oiflow.tasks.policy import task_options


@task(**task_options("ingest"), task_run_name="ingest {unit.unit}")
def ingest(unit: WorkUnit) -> UnitResult:
    """Copy the unit's OIFITS files into the product tree and describe them for the catalogue.
    Safe to rerun: writes are atomic and give the same bytes."""
    return report_unit(ingest_unit(unit))
