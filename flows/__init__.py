"""Prefect flows: the order of oiflow stages, the fan-out over units, the task runner.

Import :mod:`flows.runtime` first (``configure()``) when Prefect is not yet imported: it sets
the quiet, telemetry-free defaults that Prefect reads at import time.

Flows: :func:`flows.pipeline.l0_to_l3` (what ``oiflow run CONFIG`` runs; alias ``run_pipeline``),
the single-stage flows :func:`flows.pipeline.reduce_night`, :func:`flows.pipeline.calibrate_night`,
:func:`flows.pipeline.fit_targets`, :func:`flows.pipeline.reconstruct_targets`, and
:func:`flows.reprocess.reprocess_archive` (an archive of nights, only what changed). The order
of the stages of each flow is its recipe in :mod:`flows.recipes` (the stages themselves in
:mod:`flows.chain`), the checks and the body of every flow in :mod:`flows.plans`, the running
of units in :mod:`flows.units` (with the task or function of each stage from :mod:`flows.stages`),
their progress in :mod:`flows.progress`; :mod:`flows.run` runs a flow for the command line
(answering a rerun with nothing to do without starting Prefect).
"""
