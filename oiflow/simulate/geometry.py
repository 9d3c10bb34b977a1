"""Interferometer geometry: sites, station coordinates and Earth-rotation (u, v) coverage.

Station positions are local horizontal offsets (East, North, Up) in metres from the array
reference. Projection to the sky plane follows Thompson, Moran & Swenson (2017, §4.1): with
latitude φ, hour angle H and declination δ, a local baseline (E, N, U) becomes the equatorial
vector (X towards H = 0 on the equator, Y towards East, Z towards the pole)::

    X = −sin φ · N + cos φ · U,   Y = E,   Z = cos φ · N + sin φ · U
    u =  sin H · X + cos H · Y                         (East)
    v = −sin δ cos H · X + sin δ sin H · Y + cos δ · Z (North)
    w =  cos δ cos H · X − cos δ sin H · Y + sin δ · Z (towards the source)

A baseline (i, j) is r_j − r_i (see :mod:`oiflow`). Hour angles come from astropy's apparent
sidereal time at the site (offline, with the IERS table bundled with astropy).

Sources of the coordinates:

* VLTI: stations in the (P, Q) frame of the platform from A. Mérand / G. Duvert (2014), rotated
  by −18.984° to (East, North); AT/UT heights above the reference 4.5397 m / 13.044 m (as in
  the JMMC Aspro2 configuration). Site −24.62743941°, −70.40498688°, 2635 m.
* CHARA: (East, North, Up) of S1…W2 relative to S1 from T. ten Brummelaar (2010-12-14); site
  34.2243836944°, −118.0570313111°, 1731.264 m.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from ..observables import baselines as _baselines
from ..observables import triangles as _triangles

@functools.lru_cache(maxsize=32)
def _earth_location(lon_deg: float, lat_deg: float, height_m: float):
    import astropy.units as u
    from astropy.coordinates import EarthLocation

    return EarthLocation.from_geodetic(lon_deg * u.deg, lat_deg * u.deg, height_m * u.m)


# --- VLTI ---------------------------------------------------------------------------------
_VLTI_PQ = {
    "A0": (-32.0010, -48.0130), "A1": (-32.0010, -64.0210),
    "B0": (-23.9910, -48.0190), "B1": (-23.9910, -64.0110), "B2": (-23.9910, -72.0110),
    "B3": (-23.9910, -80.0290), "B4": (-23.9910, -88.0130), "B5": (-23.9910, -96.0120),
    "C0": (-16.0020, -48.0130), "C1": (-16.0020, -64.0110), "C2": (-16.0020, -72.0190),
    "C3": (-16.0020, -80.0100),
    "D0": (0.0100, -48.0120), "D1": (0.0100, -80.0150), "D2": (0.0100, -96.0120),
    "E0": (16.0110, -48.0160),
    "G0": (32.0170, -48.0172), "G1": (32.0200, -112.0100), "G2": (31.9950, -24.0030),
    "H0": (64.0150, -48.0070), "I1": (72.0010, -87.9970),
    "J1": (88.0160, -71.9920), "J2": (88.0160, -96.0050), "J3": (88.0160, 7.9960),
    "J4": (88.0160, 23.9930), "J5": (88.0160, 47.9870), "J6": (88.0160, 71.9900),
    "K0": (96.0020, -48.0060), "L0": (104.0210, -47.9980), "M0": (112.0130, -48.0000),
    "U1": (-16.0000, -16.0000), "U2": (24.0000, 24.0000), "U3": (64.0013, 47.9725), "U4": (112.0000, 8.0000),
}
_VLTI_ORIENTATION_DEG = -18.984
_AT_HEIGHT, _UT_HEIGHT = 4.5397, 13.044


def _vlti_enu() -> dict[str, tuple[float, float, float]]:
    c, s = math.cos(math.radians(_VLTI_ORIENTATION_DEG)), math.sin(math.radians(_VLTI_ORIENTATION_DEG))
    out = {}
    for name, (p, q) in _VLTI_PQ.items():
        up = _UT_HEIGHT if name.startswith("U") else _AT_HEIGHT
        out[name] = (c * p + s * q, -s * p + c * q, up)
    return out


# --- CHARA (East, North, Up) relative to S1 ------------------------------------------------
_CHARA_ENU = {
    "S1": (0.0, 0.0, 0.0),
    "S2": (-5.744414576, 33.585327515, 0.634532856),
    "E1": (125.3331333, 305.9284973, -5.9190997),
    "E2": (70.3891451, 269.7146871, -2.8025644),
    "W1": (-175.0684101, 216.3272464, -10.7975261),
    "W2": (-69.0845925, 199.3424346, 0.4706086),
}


@dataclass(frozen=True)
class Site:
    """An interferometer: geodetic position and its stations (East, North, Up in metres)."""

    name: str
    latitude_deg: float
    longitude_deg: float
    height_m: float
    stations: dict[str, tuple[float, float, float]] = field(repr=False)
    telescope_diameter: dict[str, float] = field(default_factory=dict, repr=False)

    def enu(self, names) -> np.ndarray:
        """(n, 3) East, North, Up of the named stations."""
        try:
            return np.array([self.stations[n] for n in names], float)
        except KeyError as exc:
            raise ConfigError(f"{self.name}: unknown station {exc.args[0]!r}; known: {', '.join(sorted(self.stations))}") from None

    def diameter(self, name: str) -> float:
        return self.telescope_diameter.get(name[:1], self.telescope_diameter.get("*", 1.0))

    @property
    def location(self):
        """The astropy EarthLocation of the site."""
        return _earth_location(self.longitude_deg, self.latitude_deg, self.height_m)

    def geocentric_offsets(self, names) -> np.ndarray:
        """Station offsets rotated from (E, N, U) to Earth-centred (X, Y, Z) axes (OI_ARRAY STAXYZ)."""
        lat, lon = math.radians(self.latitude_deg), math.radians(self.longitude_deg)
        e_hat = np.array([-math.sin(lon), math.cos(lon), 0.0])
        n_hat = np.array([-math.sin(lat) * math.cos(lon), -math.sin(lat) * math.sin(lon), math.cos(lat)])
        u_hat = np.array([math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat)])
        enu = self.enu(names)
        return enu[:, :1] * e_hat + enu[:, 1:2] * n_hat + enu[:, 2:3] * u_hat

    def geocentric_position(self) -> tuple[float, float, float]:
        loc = self.location
        return (float(loc.x.value), float(loc.y.value), float(loc.z.value))


SITES: dict[str, Site] = {
    "VLTI": Site("VLTI", -24.62743941, -70.40498688, 2635.0, _vlti_enu(), {"A": 1.8, "B": 1.8, "C": 1.8, "D": 1.8,
                 "E": 1.8, "G": 1.8, "H": 1.8, "I": 1.8, "J": 1.8, "K": 1.8, "L": 1.8, "M": 1.8, "U": 8.2}),
    "CHARA": Site("CHARA", 34.2243836944, -118.0570313111, 1731.264, dict(_CHARA_ENU), {"*": 1.0}),
}

#: standard configurations (VLTI AT quadruplets as offered from ESO P110 on, the UTs, CHARA)
CONFIGURATIONS: dict[str, tuple[str, list[str]]] = {
    "small": ("VLTI", ["A0", "B2", "D0", "C1"]),
    "medium": ("VLTI", ["K0", "G2", "D0", "J3"]),
    "large": ("VLTI", ["A0", "G1", "J2", "K0"]),
    "UT": ("VLTI", ["U1", "U2", "U3", "U4"]),
    "CHARA": ("CHARA", ["S1", "S2", "E1", "E2", "W1", "W2"]),
}


def get_site(name: str) -> Site:
    try:
        return SITES[name.upper()]
    except KeyError:
        raise ConfigError(f"unknown interferometer {name!r}; known: {', '.join(SITES)}") from None


def resolve_stations(array: str | list[str], facility: str = "VLTI") -> tuple[Site, list[str]]:
    """A configuration name (``"large"``) or an explicit station list → (site, stations)."""
    if isinstance(array, str):
        if array in CONFIGURATIONS:
            fac, names = CONFIGURATIONS[array]
            return get_site(fac), list(names)
        names = [s for s in array.replace(",", "-").split("-") if s]
    else:
        names = list(array)
    site = get_site(facility)
    site.enu(names)  # validates
    return site, names


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


def night_of(mjd: float, longitude_deg: float) -> str:
    """The night a UTC time belongs to: the local date at the start of the night (the local
    solar day counted from noon), e.g. 2023-03-16T01:00 UT at Paranal → '2023-03-15'."""
    from datetime import datetime, timedelta, timezone

    t = datetime(1858, 11, 17, tzinfo=timezone.utc) + timedelta(days=float(mjd))
    local = t + timedelta(hours=longitude_deg / 15.0 - 12.0)
    return local.date().isoformat()
