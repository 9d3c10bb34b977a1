"""File-level imaging: OIFITS (or IMAGE-OI input) files in, IMAGE-OI output file out.

:func:`reconstruct_files` is the contract the orchestration (Prefect task) and both commands
(``oiflow image`` and ``oiflow-image-ci``) use.

Settings precedence: oiflow defaults < the ``IMAGE-OI INPUT PARAM`` of an input file < the
fields set explicitly in ``settings`` (as MiRA's command-line options override the file).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from ..config import ImageTarget
from ..errors import ImagingError, OIFitsWarning
from ..oifits import read_oifits
from ..oifits.model import OIFits
from ..provenance import Provenance
from ..units import MAS
from .data import Selection, imaging_data
from .imageoi import INITIAL_HDUNAME, read_input_params, settings_from_params, write_imageoi_output
from .reconstruct import ImageResult, Progress, image_settings, reconstruct

log = logging.getLogger(__name__)


def _explicit_fields(settings: ImageTarget | dict | None) -> dict[str, Any]:
    if settings is None:
        return {}
    if isinstance(settings, ImageTarget):
        return {k: getattr(settings, k) for k in settings.model_fields_set}
    return dict(settings)


def _combine(ois: list[OIFits]) -> OIFits:
    """One OIFits holding the tables of several files, for the output's NS_MODEL columns.

    Tables keep their order; INSNAME/ARRNAME/CORRNAME of the k-th file (k ≥ 2) get a ``_k``
    suffix when they clash with earlier files, TARGET_IDs are remapped onto one OI_TARGET."""
    if len(ois) == 1:
        return ois[0].copy()
    from ..oifits.model import ArrayTable, CorrTable, DataTable, InspolTable, TargetTable, WavelengthTable

    base = ois[0].copy()
    tnames = {i: n for i, n in base.target_names().items()}
    name_to_id = {n: i for i, n in tnames.items()}
    target = base.target
    seen = {"INSNAME": {w.insname for w in base.wavelengths}, "ARRNAME": {a.arrname for a in base.arrays},
            "CORRNAME": {c.corrname for c in base.corrs}}
    for k, oi in enumerate(ois[1:], start=2):
        oi = oi.copy()
        rename: dict[str, dict[str, str]] = {key: {} for key in seen}
        for t in oi.tables:
            for key, cls in (("INSNAME", WavelengthTable), ("ARRNAME", ArrayTable), ("CORRNAME", CorrTable)):
                if isinstance(t, cls):
                    name = str(t.keyword(key, "") or "")
                    new = name if name not in seen[key] else f"{name}_{k}"
                    rename[key][name] = new
                    seen[key].add(new)
                    t.header[key] = new
        idmap = {}
        for tid, name in oi.target_names().items():
            if name not in name_to_id:
                new_id = max(name_to_id.values(), default=0) + 1
                name_to_id[name] = new_id
                row = oi.target.take(np.nonzero(np.asarray(oi.target["TARGET_ID"]) == tid)[0])
                row.columns["TARGET_ID"] = np.array([new_id], dtype=target["TARGET_ID"].dtype)
                for col in target.columns:
                    if col in row.columns:
                        target.columns[col] = np.concatenate([target.columns[col], row.columns[col].astype(target.columns[col].dtype)])
            idmap[tid] = name_to_id[name]
        for t in oi.tables:
            if isinstance(t, TargetTable):
                continue
            if isinstance(t, (DataTable, InspolTable)):
                for key in ("INSNAME", "ARRNAME", "CORRNAME"):
                    name = str(t.keyword(key, "") or "")
                    if name and name in rename[key]:
                        t.header[key] = rename[key][name]
                if "TARGET_ID" in t.columns:
                    t.columns["TARGET_ID"] = np.array([idmap.get(int(i), int(i)) for i in np.ravel(t["TARGET_ID"])],
                                                      dtype=np.asarray(t["TARGET_ID"]).dtype)
            base.tables.append(t)
    return base


def reconstruct_files(files, out_path: str | os.PathLike, settings: ImageTarget | dict | None = None, *,
                      progress: Progress | None = None, plots: bool = True, truth: np.ndarray | None = None) -> ImageResult:
    """Reconstruct an image from OIFITS ``files`` and write the IMAGE-OI output ``out_path``.

    ``settings``: an :class:`~oiflow.config.ImageTarget` or a dict of its fields (npix,
    pixel_size_mas, regularization, mu (float or "auto"), device, maxiter, …). An input file
    with an ``IMAGE-OI INPUT PARAM`` table contributes its parameters and its initial/prior
    images (found by HDUNAME); explicit ``settings`` fields win. The output (atomic, with
    provenance) holds the image, the OI tables with NS_MODEL_* columns and the parameters;
    with ``plots``, ``image.png`` and ``residuals.png`` are written next to it.
    """
    t0 = time.perf_counter()
    files = [Path(f) for f in ([files] if isinstance(files, (str, os.PathLike)) else files)]
    if not files:
        raise ImagingError("no input file")
    ois = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OIFitsWarning)
        for f in files:
            ois.append(read_oifits(f))
    params: dict[str, Any] = {}
    images: dict = {}
    for f in files:
        with fits.open(f, memmap=False) as hdul:
            p = read_input_params(hdul)
            if p:
                if params:
                    raise ImagingError(f"{f}: several inputs carry IMAGE-OI INPUT PARAM; give one")
                params = p
                fields, images = settings_from_params(p, hdul)
                for img in images.values():  # detach from the closed file
                    img.data = np.array(img.data)
    file_fields = settings_from_params(params)[0] if params else {}
    if params:
        file_fields.update(fields)
    effective = image_settings({**file_fields, **_explicit_fields(settings)})
    n = effective.npix
    pix = effective.pixel_size_mas * MAS
    initial = None
    initial_name = INITIAL_HDUNAME
    if "initial" in images and "initial" not in _explicit_fields(settings):
        img = images["initial"]
        initial_name = img.name or INITIAL_HDUNAME
        if img.pixel_size is None:
            img.pixel_size = pix
        initial = np.clip(img.resample(n, pix), 0, None)
        if initial.sum() <= 0:
            initial = None  # an empty initial image: use the default one
    prior = None
    prior_name = None
    if "prior" in images and not effective.prior:
        img = images["prior"]
        prior_name = img.name
        if img.pixel_size is None:
            img.pixel_size = pix
        prior = np.clip(img.resample(n, pix), 0, None)
    sel = Selection(target=effective.target, wave_min=effective.wave_min, wave_max=effective.wave_max,
                    use_vis2=effective.use_vis2, use_t3=effective.use_t3, use_vis=effective.use_vis)
    data = imaging_data(ois, sel, polychromatic=effective.polychromatic)
    if effective.target is None:
        effective = effective.model_copy(update={"target": data.target})
    result = reconstruct(data, effective, progress=progress, initial=initial, prior=prior)
    prov = Provenance.for_inputs(3, "image", files, settings=effective.model_dump(mode="json"))
    combined = _combine(ois)
    write_imageoi_output(result, combined, out_path, input_params=params or None, initial_name=initial_name,
                         prior=prior, prior_name=prior_name, provenance=prov, elapsed=time.perf_counter() - t0)
    result.out_path = str(out_path)
    if plots:
        from .plots import plot_image, plot_residuals

        out_dir = Path(out_path).parent
        result.png_paths = [plot_image(result, out_dir / "image.png", truth=truth),
                            plot_residuals(result, out_dir / "residuals.png")]
    result.elapsed = time.perf_counter() - t0
    return result
