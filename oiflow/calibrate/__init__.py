"""L1 → L2 calibration: calibrator diameters (catalogue, config, JSDC), transfer function per
setup × baseline × channel, interpolation in time, one L2 file per science target and night."""

from .diameters import Diameter, DiameterCatalog, DiameterSource, band_of
from .night import CalibrateResult, calibrate_night, merge_target
from .transfer_function import interpolate, ud_vis2

__all__ = ["CalibrateResult", "Diameter", "DiameterCatalog", "DiameterSource", "band_of", "calibrate_night",
           "interpolate", "merge_target", "ud_vis2"]
