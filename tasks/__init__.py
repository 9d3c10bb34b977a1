"""Prefect tasks: thin wrappers over oiflow stage functions (one module per stage).

Each task is coarse (a night, an observation, a target), takes and returns file paths and
small records, retries only on transient errors (:mod:`oiflow.tasks.policy`) and caches on the work
unit's key (input checksums + settings + code version, hashed again so it never looks like a
path). Business logic stays in :mod:`oiflow`; ``task.fn(...)`` calls the bare function.

Stage modules: :mod:`oiflow.tasks.reduce` (an observation, L0 → L1), :mod:`oiflow.tasks.calibrate` (a night,
L1 → L2), :mod:`oiflow.tasks.fit` (a target, L2 → L3 fit; the companion grid on the task's Dask
cluster), :mod:`oiflow.tasks.image` (a target, L2 → L3 image), :mod:`oiflow.tasks.ingest` (L1/L2 OIFITS into
the product tree). Each wraps a unit function of :mod:`oiflow.work` (or :mod:`oiflow.ingest`)
and publishes the unit's quicklook PNGs as image artifacts (:mod:`oiflow.tasks.artifacts`).
"""
