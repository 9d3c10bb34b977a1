"""The raw FITS layout of our simulated PIONIER/GRAVITY-like ABCD instrument (L0).

One file per exposure. Written by :mod:`oiflow.simulate.raw_writer`, read by
:mod:`oiflow.reduce.raw_reader`; both take the names from here.

Primary header (ESO-archive style keywords)::

    INSTRUME, TELESCOP, ORIGIN, DATE-OBS (ISO UTC), MJD-OBS, ARCFILE, OBJECT, RA, DEC (deg)
    HIERARCH ESO DPR CATG   CALIB | SCIENCE
    HIERARCH ESO DPR TYPE   DARK | FLAT | P2VM | OBJECT
    HIERARCH ESO DPR TECH   INTERFEROMETRY
    HIERARCH ESO OBS NAME   CAL_<target> / SCI_<target>  (ASPRO2 naming; the category)
    HIERARCH ESO OBS ID     observation (OB) number
    HIERARCH ESO OBS TARG NAME
    HIERARCH ESO INS MODE   spectral setup (e.g. H-6CH)
    HIERARCH ESO INS SHUTi ST   T/F, beam i (1..4) open
    HIERARCH ESO ISS CONF NTEL, STATIONi, TiX, TiY, TiZ   station i (East, North, Up; m)
    HIERARCH ESO ISS GEOLAT / GEOLON / GEOELEV            site (deg, deg, m)
    HIERARCH ESO ISS ARRAY  facility name (VLTI, CHARA)
    HIERARCH ESO DET DIT, DET NDIT, DET CHIP GAIN (e-/ADU)

HDUs: ``IMAGING_DATA`` (float32 image, NAXIS1 = channels, NAXIS2 = outputs, NAXIS3 = frames),
``FRAMES`` (binary table: TIME = MJD at the start of each frame, OPD = commanded internal OPD in m
of the scanned pair (i, j) in P2VM exposures: it adds +2π·OPD/λ to the phase of C_ij),
``WAVELENGTH`` (EFF_WAVE, EFF_BAND in m), ``OUTPUTS`` (TEL1, TEL2 1-based, LABEL A/B/C/D:
the nominal output map).
"""

KW_CATG = "HIERARCH ESO DPR CATG"
KW_TYPE = "HIERARCH ESO DPR TYPE"
KW_TECH = "HIERARCH ESO DPR TECH"
KW_OBS_NAME = "HIERARCH ESO OBS NAME"
KW_OBS_ID = "HIERARCH ESO OBS ID"
KW_TARG = "HIERARCH ESO OBS TARG NAME"
KW_MODE = "HIERARCH ESO INS MODE"
KW_SHUT = "HIERARCH ESO INS SHUT{i} ST"
KW_NTEL = "HIERARCH ESO ISS CONF NTEL"
KW_STATION = "HIERARCH ESO ISS CONF STATION{i}"
KW_TX = "HIERARCH ESO ISS CONF T{i}X"
KW_TY = "HIERARCH ESO ISS CONF T{i}Y"
KW_TZ = "HIERARCH ESO ISS CONF T{i}Z"
KW_GEOLAT = "HIERARCH ESO ISS GEOLAT"
KW_GEOLON = "HIERARCH ESO ISS GEOLON"
KW_GEOELEV = "HIERARCH ESO ISS GEOELEV"
KW_ARRAY = "HIERARCH ESO ISS ARRAY"
KW_DIT = "HIERARCH ESO DET DIT"
KW_NDIT = "HIERARCH ESO DET NDIT"
KW_GAIN = "HIERARCH ESO DET CHIP GAIN"

EXT_DATA = "IMAGING_DATA"
EXT_FRAMES = "FRAMES"
EXT_WAVE = "WAVELENGTH"
EXT_OUTPUTS = "OUTPUTS"

TYPES = ("DARK", "FLAT", "P2VM", "OBJECT")
INSTRUMENT = "SIMABCD"
