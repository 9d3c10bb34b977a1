"""Assembling the L1 (uncalibrated) OIFITS2 of one observation from the reduced observables.

Tables: OI_TARGET (CATEGORY SCI/CAL), OI_ARRAY (stations, STAXYZ geocentric offsets),
OI_WAVELENGTH (INSNAME = <instrument>_<mode>), OI_VIS2 (6 rows), OI_T3 (4 rows), OI_FLUX
(4 rows, CALSTAT='U'). (u, v) come from the geometry (stations, site, target coordinates) at
mid-exposure. The primary header carries OIFLOW OBSID / SETUP / NIGHT / CATEGORY and frame
counts; provenance is added by the writer.
"""

from __future__ import annotations

import math

import numpy as np
from astropy.time import Time

from ..errors import ReductionError
from ..oifits.build import array_table, flux_table, new_oifits, t3_table, target_table, vis2_table, wavelength_table
from ..oifits.model import OIFits
from ..observables import baselines, triangles
from ..simulate.geometry import uv_coverage
from ..site import SITES, Site
from .estimators import Observables
from .plan import Observation
from .raw_reader import RawExposure

_DIAMETERS = {"U": 8.2}


def site_from_raw(info) -> Site:
    """The site of a raw exposure: its header's position and station (East, North, Up)."""
    if info.site is None:
        raise ReductionError(f"{info.path.name}: no observatory position in the header (ESO ISS GEOLAT/GEOLON, "
                             f"OBSGEO-B/L) and no known array name ({', '.join(SITES)})")
    lat, lon, height = info.site
    stations = {name: tuple(float(x) for x in enu) for name, enu in zip(info.stations, info.station_enu)}
    return Site(info.array or "UNKNOWN", lat, lon, height, stations)


def insname_of(info) -> str:
    return f"{info.instrument or 'INS'}_{info.mode}"


def l1_oifits(obs: Observation, exp: RawExposure, res: Observables, night: str, extra: dict | None = None) -> OIFits:
    info = exp.info
    site = site_from_raw(info)
    stations = list(info.stations)
    mjd_mid = float(np.mean(exp.mjd) + 0.5 * info.dit / 86400.0)
    int_time = float(exp.mjd.size * info.dit)
    cov = uv_coverage(site, stations, math.radians(info.ra_deg), math.radians(info.dec_deg), mjd_mid)
    arrname = site.name
    insname = insname_of(info)
    bl = baselines(len(stations))
    tr = triangles(len(stations))
    target = target_table([obs.target], ra_deg=[info.ra_deg], dec_deg=[info.dec_deg], category=[obs.category or "SCI"])
    diam = [_DIAMETERS.get(s[:1], 1.8) if site.name == "VLTI" else 1.0 for s in stations]
    array = array_table(arrname, stations, site.geocentric_offsets(stations),
                        tel_names=[f"T{k + 1}" for k in range(len(stations))], diameter=diam,
                        array_xyz=site.geocentric_position())
    wave = wavelength_table(insname, exp.wavelength, exp.bandwidth)
    date_obs = Time(mjd_mid, format="mjd").to_value("iso", subfmt="date")  # the data tables' DATE-OBS (their MJD)
    v2 = vis2_table(insname, arrname, target_id=1, mjd=mjd_mid, u=cov.u[0], v=cov.v[0],
                    sta_index=[(i + 1, j + 1) for i, j in bl], vis2=res.vis2, vis2err=res.vis2_err,
                    flag=res.vis2_flag, int_time=int_time, date_obs=date_obs)
    t3 = t3_table(insname, arrname, target_id=1, mjd=mjd_mid, u1=cov.t3_u1[0], v1=cov.t3_v1[0], u2=cov.t3_u2[0],
                  v2=cov.t3_v2[0], sta_index=[(i + 1, j + 1, k + 1) for i, j, k in tr], t3phi=res.t3phi,
                  t3phierr=res.t3phi_err, t3amp=res.t3amp, t3amperr=res.t3amp_err, flag=res.t3_flag, int_time=int_time,
                  date_obs=date_obs)
    fl = flux_table(insname, arrname, target_id=1, mjd=mjd_mid, fluxdata=res.flux, fluxerr=res.flux_err,
                    sta_index=np.arange(1, len(stations) + 1), int_time=int_time, calstat="U", date_obs=date_obs)
    primary = {
        "OBJECT": obs.target,
        "INSTRUME": info.instrument or "INS",
        "INSMODE": insname,
        "TELESCOP": arrname,
        "OBSERVER": "UNKNOWN",
        "DATE-OBS": Time(float(exp.mjd[0]), format="mjd").isot,
        "MJD-OBS": float(exp.mjd[0]),
        "RA": info.ra_deg,
        "DEC": info.dec_deg,
        "HIERARCH OIFLOW OBSID": obs.obs_id,
        "HIERARCH OIFLOW SETUP": obs.setup,
        "HIERARCH OIFLOW NIGHT": night,
        "HIERARCH OIFLOW CATEGORY": obs.category or "SCI",
        "HIERARCH OIFLOW NFRAMES": int(res.n_frames),
        "HIERARCH OIFLOW NFRAMES MINUSED": int(res.n_used.min()),
        "HIERARCH OIFLOW ALT": float(np.degrees(cov.altitude[0])),
    }
    primary.update(extra or {})
    return new_oifits(target, [array], [wave], [v2, t3, fl], primary=primary)
