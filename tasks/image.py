"""Task: reconstruct the image of one target (L2 → L3 IMAGE-OI FITS, image.png, image.residuals.png)."""

from __future__ import annotations

from prefect import task

from oiflow.archive import UnitResult, WorkUnit
from oiflow.work.image import run_image_unit

from oiflow.tasks.artifacts import report_unit
from oiflow.tasks.policy import task_options


@task(**task_options("image"), task_run_name="image {unit.unit}")
def image(unit: WorkUnit) -> UnitResult:
    """One reconstruction; safe to rerun (atomic writes)."""
    return report_unit(run_image_unit(unit))
