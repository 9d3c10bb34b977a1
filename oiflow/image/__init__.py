"""Image reconstruction (regularised maximum likelihood), IMAGE-OI I/O, image transforms.

    from oiflow.image import reconstruct_files
    result = reconstruct_files(["target.oifits"], "products/target.image.fits",
                               {"npix": 128, "pixel_size_mas": 0.15, "regularization": "tv", "mu": 1e4})
    result.chi2, result.chi2_terms, result.image

Modules: transform (image ↔ visibility: finufft, exact DFT, cupy/cufinufft), data (selection
and likelihood), regularizers, optimize (VMLM-B), reconstruct, initial, imageoi (IMAGE-OI
files), metric (beam, Beauty-Contest score), plots (quicklooks), quicklook_process (the child
process that draws them for ``oiflow image``), files (file-level contract).

The names below are imported on first use: a module that needs only ``oiflow.image.transform``
(the fitter's image component, the simulator) does not pay for the reconstruction and its I/O.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"reconstruct_files": "files", "ImageResult": "reconstruct", "image_settings": "reconstruct",
            "reconstruct": "reconstruct"}

__all__ = ["ImageResult", "image_settings", "reconstruct", "reconstruct_files"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
