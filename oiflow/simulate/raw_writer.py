"""Writing simulated exposures in our PIONIER/GRAVITY-like raw FITS layout
(:mod:`oiflow.simulate.raw_layout`). Files are written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.time import Time

from ..provenance import write_hdulist_atomic
from . import raw_layout as L
from .frames import Combiner, Exposure


def raw_hdulist(exposure: Exposure, combiner: Combiner, *, site, stations: list[str], arcfile: str,
                obs_id: int = 0, target: str | None = None, ra_deg: float = 0.0, dec_deg: float = 0.0,
                category: str | None = None) -> fits.HDUList:
    """The HDUList of one raw exposure (see the layout module for the keywords)."""
    h = fits.Header()
    h["INSTRUME"] = combiner.name
    h["TELESCOP"] = f"{site.name}-{''.join(s for s in stations)}"
    h["ORIGIN"] = "oiflow simulator"
    mjd0 = float(exposure.mjd[0])
    h["DATE-OBS"] = Time(mjd0, format="mjd", scale="utc").isot
    h["MJD-OBS"] = mjd0
    h["ARCFILE"] = arcfile
    kind = exposure.kind
    is_obj = kind == "OBJECT"
    h["OBJECT"] = target if is_obj and target else kind
    h["RA"] = (float(ra_deg) if is_obj else 0.0, "deg")
    h["DEC"] = (float(dec_deg) if is_obj else 0.0, "deg")
    h[L.KW_CATG] = "SCIENCE" if (is_obj and category == "SCI") else "CALIB"
    h[L.KW_TYPE] = kind
    h[L.KW_TECH] = "INTERFEROMETRY"
    if is_obj:
        h[L.KW_OBS_NAME] = f"{'SCI' if category == 'SCI' else 'CAL'}_{target}"
        h[L.KW_TARG] = target
    else:
        h[L.KW_OBS_NAME] = f"CALIB_{kind}"
    h[L.KW_OBS_ID] = int(obs_id)
    h[L.KW_MODE] = combiner.mode
    beams = set(exposure.meta.get("beams", []))
    for i in range(4):
        h[L.KW_SHUT.format(i=i + 1)] = i in beams
    h[L.KW_ARRAY] = site.name
    h[L.KW_NTEL] = len(stations)
    enu = site.enu(stations)
    for i, name in enumerate(stations, start=1):
        h[L.KW_STATION.format(i=i)] = name
        h[L.KW_TX.format(i=i)] = (float(enu[i - 1, 0]), "East (m)")
        h[L.KW_TY.format(i=i)] = (float(enu[i - 1, 1]), "North (m)")
        h[L.KW_TZ.format(i=i)] = (float(enu[i - 1, 2]), "Up (m)")
    h[L.KW_GEOLAT] = site.latitude_deg
    h[L.KW_GEOLON] = site.longitude_deg
    h[L.KW_GEOELEV] = site.height_m
    h[L.KW_DIT] = float(exposure.dit)
    h[L.KW_NDIT] = int(exposure.frames.shape[0])
    h[L.KW_GAIN] = 1.0
    primary = fits.PrimaryHDU(header=h)
    data = fits.ImageHDU(np.ascontiguousarray(exposure.frames, dtype=np.float32), name=L.EXT_DATA)
    n = exposure.frames.shape[0]
    opd = exposure.opd if exposure.opd is not None else np.zeros(n)
    frames = fits.BinTableHDU.from_columns([
        fits.Column("TIME", "D", unit="d", array=np.asarray(exposure.mjd, float)),
        fits.Column("OPD", "D", unit="m", array=np.asarray(opd, float)),
    ], name=L.EXT_FRAMES)
    wave = fits.BinTableHDU.from_columns([
        fits.Column("EFF_WAVE", "D", unit="m", array=combiner.wavelength),
        fits.Column("EFF_BAND", "D", unit="m", array=combiner.bandwidth),
    ], name=L.EXT_WAVE)
    from ..observables import baselines

    bl = baselines(4)
    outs = fits.BinTableHDU.from_columns([
        fits.Column("TEL1", "I", array=np.array([bl[b][0] + 1 for b in combiner.output_baseline])),
        fits.Column("TEL2", "I", array=np.array([bl[b][1] + 1 for b in combiner.output_baseline])),
        fits.Column("LABEL", "1A", array=np.array(combiner.output_label)),
    ], name=L.EXT_OUTPUTS)
    return fits.HDUList([primary, data, frames, wave, outs])


def write_raw(exposure: Exposure, combiner: Combiner, path: str | Path, **kwargs) -> Path:
    """Write one exposure to ``path`` (atomically) in the ABCD raw layout."""
    path = Path(path)
    hdul = raw_hdulist(exposure, combiner, arcfile=path.name, **kwargs)
    return write_hdulist_atomic(hdul, path, checksum=False)
