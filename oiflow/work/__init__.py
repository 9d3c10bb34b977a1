"""Work units of the science stages: what ONE coarse pipeline task does, without Prefect.

A stage applied to a unit (:class:`~oiflow.archive.WorkUnit`: inputs with checksums, effective
settings, code version) writes its products into the product tree (README: "Pipeline runs, the product catalogue…") and returns
a :class:`~oiflow.archive.UnitResult` (product records with their catalogue granules, quicklook
PNGs, failures). The Prefect tasks (``tasks/``) are thin wrappers over the ``run_*_unit``
functions here; the flows (``flows/``) build the units and chain the stages.

=========  ==============================  ====================================================
stage      unit                            products
=========  ==============================  ====================================================
reduce     one observation (native,        ``<root>/<night>/L1/<obs-id>.fits`` (calib_level 1)
           in-process) or one night and
           instrument (other backends)
calibrate  one night                       ``<root>/<night>/L2/<target>_<night>.fits`` (2),
                                           ``tf_<setup>.png``
fit        one target and night-or-set     ``<root>/L3/<target>/<set>/fit_<model>.json`` (3),
                                           PNGs; ``companion.json``, ``companion_maps.fits``
image      one target and night-or-set     ``<root>/L3/<target>/<set>/image.fits`` (3),
                                           ``image.png``, ``image.residuals.png``
=========  ==============================  ====================================================

Ingest (real L1/L2 OIFITS entering the tree) is :mod:`oiflow.ingest`, with the same shape.
Every ``run_*_unit`` is safe to rerun (atomic writes; a rerun rewrites the same products).
"""
