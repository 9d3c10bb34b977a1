"""Image stage units: one configured target (``image.targets``) over its L2 OIFITS of a night
or set → ``<root>/L3/<target>/<set>/image.fits`` (IMAGE-OI) with the quicklooks ``image.png`` and
``image.residuals.png`` (named after the product, :func:`oiflow.image.plots.quicklook_paths`).
The image's verdict (:mod:`oiflow.image.verdict`) goes into its catalogue record, hence the run
summary; a failure (damaged input included) is the unit's, never the worker's.

Only the fields set in the configuration are passed (and hashed): the others keep
:func:`oiflow.image.reconstruct_files`' precedence (defaults < an input's IMAGE-OI INPUT PARAM
< explicit settings). ``target`` defaults to the matched OI_TARGET name; FITS images given as
``prior`` or ``initial`` are inputs (checksums), named by file name in the settings.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

from ..archive import UnitResult, WorkUnit, code_version, make_unit
from ..catalog import Catalog
from ..config import ImageTarget
from ..errors import ConfigError, OiflowError
from ..product_tree import l3_dir, remove_stale_temporaries
from .l3 import input_granules, l3_record, target_data

STAGE = "image"
#: stem of the image products: image.fits, image.png, image.residuals.png (the target's fit
#: unit writes into the same directory under its own stems)
PRODUCT_STEMS = ("image",)
MODULES = ("oiflow.image", "oiflow.observables", "oiflow.oifits")


def image_code_version() -> str:
    return code_version(*MODULES)


def _image_files(spec: ImageTarget) -> dict[str, str]:
    """``{"prior"|"initial": absolute path}`` of the FITS images the settings name."""
    files = {}
    if spec.prior:
        files["prior"] = spec.prior
    from ..image.initial import INITIAL_KINDS

    if spec.initial and spec.initial.lower() not in INITIAL_KINDS:
        files["initial"] = spec.initial
    out = {}
    for role, f in files.items():
        p = Path(f)
        if not p.is_file():
            raise ConfigError(f"image.{role}: FITS image not found: {p}")
        out[role] = str(p.resolve())
    return out


def image_settings_for(target: str, spec: ImageTarget) -> dict[str, Any]:
    s = spec.model_dump(mode="json", exclude_unset=True)
    s.setdefault("target", target)
    for role, path in _image_files(spec).items():
        s[role] = Path(path).name
    return s


def image_unit(target: str, subset: str, l2_files, root: str | Path, spec: ImageTarget, catalog: Catalog) -> WorkUnit:
    images = _image_files(spec)
    files = sorted(str(Path(f).resolve()) for f in l2_files)
    return make_unit(STAGE, f"{target}/{subset}", files + sorted(images.values()), image_settings_for(target, spec),
                     image_code_version(), l3_dir(root, target, subset), catalog,
                     params={"subset": subset, "target": target, "oifits": files, "images": images})


def image_headline(res) -> str:
    """An image's result in words for the products tables: χ²_red, the regularisation and its
    weight μ ("χ²_red 1.02, tv μ 1000")."""
    return f"χ²_red {res.chi2:.2f}, {res.regularization} μ {res.mu:.4g}"


def run_image_unit(unit: WorkUnit) -> UnitResult:
    """Reconstruct the image of ``unit`` into ``unit.out_dir``; failures are returned, not raised."""
    from astropy.io import fits
    from astropy.io.fits.verify import VerifyWarning

    from ..image import reconstruct_files

    t0 = time.perf_counter()
    result = UnitResult(stage=STAGE, unit=unit.unit)
    target, subset, files = unit.params["target"], unit.params["subset"], unit.params["oifits"]
    settings = {**unit.settings, **unit.params.get("images", {})}
    out_dir = Path(unit.out_dir)
    inputs = [{"name": i.name, "sha256": i.sha256} for i in unit.inputs]
    try:
        if out_dir.is_dir():
            remove_stale_temporaries(out_dir, stems=PRODUCT_STEMS)  # not the fit's: it may be running
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", VerifyWarning)  # long OIFLOW keywords copied into the image file
            res = reconstruct_files(files, out_dir / "image.fits", settings, plots=True)
        granules = input_granules(target_data(files, target))
        planes = int(fits.getheader(out_dir / "image.fits", 0).get("NAXIS3", 1))
        result.products.append(l3_record(out_dir / "image.fits", stage=STAGE, target=target, subset=subset,
                                         granules=granules, dataproduct_type="image", settings_hash=unit.settings_hash,
                                         inputs=inputs, nb_channels=planes,
                                         verdict=res.verdict.to_dict() if res.verdict is not None else None,
                                         result=image_headline(res)))
        result.plots += [str(p) for p in (res.png_paths or [])]
    except OiflowError as exc:
        result.fail(f"image {unit.unit}", exc)
    result.seconds = time.perf_counter() - t0
    return result
