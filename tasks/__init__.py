"""Prefect tasks: thin wrappers over oiflow stage functions (one module per stage).

Each task is coarse (a night, an observation, a target), takes and returns file paths and
small records, retries only on transient errors (:mod:`tasks.policy`) and caches on the work
unit's key (input checksums + settings + code version, hashed again so it never looks like a
path). Business logic stays in :mod:`oiflow`; ``task.fn(...)`` calls the bare function.

Stage modules: :mod:`tasks.ingest` (L1/L2 OIFITS into the product tree). The reduce,
calibrate, fit and image stages plug in as ``tasks/reduce.py``, ``tasks/calibrate.py``,
``tasks/fit.py`` and ``tasks/image.py`` with the same shape.
"""
