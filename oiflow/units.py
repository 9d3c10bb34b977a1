"""Unit constants. Inside oiflow angles are radians and lengths metres (see :mod:`oiflow`)."""

import math

MAS = math.pi / 180.0 / 3600.0 / 1000.0  #: one milli-arcsecond in radians
ARCSEC = math.pi / 180.0 / 3600.0  #: one arcsecond in radians
DEG = math.pi / 180.0  #: one degree in radians
MICRON = 1e-6  #: one micrometre in metres
HOUR_IN_DAYS = 1.0 / 24.0
