"""Image reconstruction (regularised maximum likelihood), IMAGE-OI I/O, image transforms.

    from oiflow.image import reconstruct_files
    result = reconstruct_files(["target.oifits"], "products/target.image.fits",
                               {"npix": 128, "pixel_size_mas": 0.15, "regularization": "tv", "mu": 1e4})
    result.chi2, result.chi2_terms, result.image

Modules: transform (image ↔ visibility: finufft, exact DFT, cupy/cufinufft), data (selection
and likelihood), regularizers, optimize (VMLM-B), reconstruct, initial, imageoi (IMAGE-OI
files), metric (beam, Beauty-Contest score), plots, files (file-level contract).
"""

from .files import reconstruct_files
from .reconstruct import ImageResult, image_settings, reconstruct

__all__ = ["ImageResult", "image_settings", "reconstruct", "reconstruct_files"]
