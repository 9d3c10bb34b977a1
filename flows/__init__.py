"""Prefect flows: the order of oiflow stages, the fan-out over units, the task runner.

Import :mod:`oiflow.flows.runtime` first (``configure()``) when Prefect is not yet imported: it sets
the quiet, telemetry-free defaults that Prefect reads at import time.

Flows: :func:`oiflow.flows.pipeline.l0_to_l3` (what ``oiflow run CONFIG`` runs; alias ``run_pipeline``),
the single-stage flows :func:`oiflow.flows.pipeline.reduce_night`, :func:`oiflow.flows.pipeline.calibrate_night`,
:func:`oiflow.flows.pipeline.fit_targets`, :func:`oiflow.flows.pipeline.reconstruct_targets`, and
:func:`oiflow.flows.reprocess.reprocess_archive` (an archive of nights, only what changed). The order
of the stages of each flow is its recipe in :mod:`oiflow.flows.recipes` (the stages themselves in
:mod:`oiflow.flows.chain`), the checks and the body of every flow in :mod:`oiflow.flows.plans`, the running
of units in :mod:`oiflow.flows.units` (with the task or function of each stage from :mod:`oiflow.flows.stages`),
their progress in :mod:`oiflow.flows.progress`; :mod:`oiflow.flows.run` runs a flow for the command line
(answering a rerun with nothing to do without starting Prefect).
"""
