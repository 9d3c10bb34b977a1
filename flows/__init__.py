"""Prefect flows: the order of oiflow stages, the fan-out over units, the task runner.

Import :mod:`flows.runtime` first (``configure()``) when Prefect is not yet imported: it sets
the quiet, telemetry-free defaults that Prefect reads at import time.

Flows: :func:`flows.ingest.ingest_files` (L1/L2 files into the product tree),
:func:`flows.reprocess.reprocess_archive` (an archive of nights, only what changed),
:func:`flows.pipeline.run_pipeline` (what ``oiflow run CONFIG`` runs).
"""
