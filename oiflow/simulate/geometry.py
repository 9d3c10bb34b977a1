"""Earth-rotation geometry: hour angles, projected baselines and (u, v) coverage of a site's stations.

Station positions are local horizontal offsets (East, North, Up) in metres from the array
reference. Projection to the sky plane follows Thompson, Moran & Swenson (2017, §4.1): with
latitude φ, hour angle H and declination δ, a local baseline (E, N, U) becomes the equatorial
vector (X towards H = 0 on the equator, Y towards East, Z towards the pole)::

    X = −sin φ · N + cos φ · U,   Y = E,   Z = cos φ · N + sin φ · U
    u =  sin H · X + cos H · Y                         (East)
    v = −sin δ cos H · X + sin δ sin H · Y + cos δ · Z (North)
    w =  cos δ cos H · X − cos δ sin H · Y + sin δ · Z (towards the source)

A baseline (i, j) is r_j − r_i (see :mod:`oiflow`). Hour angles come from astropy's apparent
sidereal time at the site (offline, with the IERS table bundled with astropy). The sites and
their stations (with sources) are :mod:`oiflow.site`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..observables import baselines as _baselines
from ..observables import triangles as _triangles
from ..site import Site


def hour_angle(ra_rad: float, mjd, site: Site) -> np.ndarray:
    """Hour angle (rad) of right ascension ``ra_rad`` at UTC times ``mjd`` at the site."""
    from astropy.time import Time

    t = Time(np.atleast_1d(np.asarray(mjd, float)), format="mjd", scale="utc", location=site.location)
    lst = t.sidereal_time("apparent").radian
    return np.asarray(lst - ra_rad, float)


def project_baselines(enu_baselines, ha_rad, dec_rad: float, latitude_rad: float):
    """Project local baselines (..., 3) [E, N, U] to (u, v, w) metres for hour angles ``ha_rad``.

    ``ha_rad`` of shape (T,) and ``enu_baselines`` (B, 3) give arrays of shape (T, B).
    """
    b = np.asarray(enu_baselines, float)
    e, n, up = b[..., 0], b[..., 1], b[..., 2]
    sl, cl = math.sin(latitude_rad), math.cos(latitude_rad)
    x = -sl * n + cl * up
    y = e
    z = cl * n + sl * up
    h = np.asarray(ha_rad, float)[..., None]
    sh, ch = np.sin(h), np.cos(h)
    sd, cd = math.sin(dec_rad), math.cos(dec_rad)
    u = sh * x + ch * y
    v = -sd * ch * x + sd * sh * y + cd * z
    w = cd * ch * x - cd * sh * y + sd * z
    return u, v, w


def altitude(ha_rad, dec_rad: float, latitude_rad: float) -> np.ndarray:
    """Elevation (rad) of a source at hour angle ``ha_rad`` and declination ``dec_rad``."""
    h = np.asarray(ha_rad, float)
    s = math.sin(latitude_rad) * math.sin(dec_rad) + math.cos(latitude_rad) * math.cos(dec_rad) * np.cos(h)
    return np.arcsin(np.clip(s, -1.0, 1.0))


@dataclass
class UVCoverage:
    """(u, v) in metres for every time (rows) and baseline / triangle (columns)."""

    mjd: np.ndarray  # (T,)
    hour_angle: np.ndarray  # (T,) rad
    stations: list[str]
    u: np.ndarray  # (T, 6) baselines ij, (u, v) = r_j − r_i projected
    v: np.ndarray
    t3_u1: np.ndarray  # (T, 4) triangle ijk: (u1, v1) = ij, (u2, v2) = jk
    t3_v1: np.ndarray
    t3_u2: np.ndarray
    t3_v2: np.ndarray
    altitude: np.ndarray  # (T,) rad

    @property
    def baselines(self) -> list[tuple[int, int]]:
        return _baselines(len(self.stations))

    @property
    def triangles(self) -> list[tuple[int, int, int]]:
        return _triangles(len(self.stations))


def uv_coverage(site: Site, stations: list[str], ra_rad: float, dec_rad: float, mjd) -> UVCoverage:
    """Earth-rotation (u, v) coverage of a target at UTC times ``mjd`` (scalar or array)."""
    enu = site.enu(stations)
    ha = hour_angle(ra_rad, mjd, site)
    lat = math.radians(site.latitude_deg)
    bl = _baselines(len(stations))
    tr = _triangles(len(stations))
    db = np.array([enu[j] - enu[i] for i, j in bl])
    u, v, _ = project_baselines(db, ha, dec_rad, lat)
    d1 = np.array([enu[j] - enu[i] for i, j, k in tr]).reshape(-1, 3)
    d2 = np.array([enu[k] - enu[j] for i, j, k in tr]).reshape(-1, 3)
    u1, v1, _ = project_baselines(d1, ha, dec_rad, lat)
    u2, v2, _ = project_baselines(d2, ha, dec_rad, lat)
    return UVCoverage(np.atleast_1d(np.asarray(mjd, float)), ha, list(stations), u, v, u1, v1, u2, v2,
                      altitude(ha, dec_rad, lat))


def uv_tracks(site: Site, stations: list[str], dec_rad: float, ha_range_h=(-3.0, 3.0), n: int = 25):
    """(u, v) tracks (metres) over a range of hour angles, without times: (ha, u, v) arrays."""
    ha = np.radians(np.linspace(ha_range_h[0], ha_range_h[1], n) * 15.0)
    enu = site.enu(stations)
    db = np.array([enu[j] - enu[i] for i, j in _baselines(len(stations))])
    u, v, _ = project_baselines(db, ha, dec_rad, math.radians(site.latitude_deg))
    return ha, u, v
