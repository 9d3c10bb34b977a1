"""Where an interferometer is: sites and stations, the longitude of an array, and the night of a time.

The one home of three conventions that the simulator, the reducer, the calibrator, the
catalogue, ``oiflow inspect`` and the product tree all follow:

**Night.** The night a UTC time belongs to is the local date at its start: the date of the
local mean solar time counted from noon, i.e. the UTC date of ``MJD + longitude/360 − 0.5``
(:func:`night_of`). 2023-03-16T01:00 UT at Paranal (−70.4°) is night 2023-03-15;
2022-02-27T12:30 UT at Mt Wilson (−118.06°) is night 2022-02-26. With no known longitude the day
boundary is noon UTC (longitude 0).

**Longitude of an array** (:func:`array_longitude`, degrees East):

1. OI_ARRAY ARRAYX/Y/Z (ITRF, geocentric metres) when they are a point on the Earth (geodetic
   height within ±100 km: real files carry ESO's ARRAYX/Y/Z 28 km above Paranal), converted by
   astropy's :meth:`~astropy.coordinates.EarthLocation.from_geocentric`;
2. unless the array's name (ARRNAME, or the data table's) is a known site (:data:`SITES`) whose
   longitude differs by more than :data:`MAX_LONGITUDE_MISMATCH_DEG`: then the coordinates are
   not those of that array (GRAVITY files of 2016 carry ARRAYX and ARRAYY swapped, which puts
   the VLTI at +160.4°) and the known site wins;
3. else, without usable coordinates, the known site the name matches (``VLTI``, ``CHARA_2004Jan``,
   ``ESO-VLTI-A1234``: a site name or alias as one of the name's words);
4. else None (unknown: the night falls back to noon UTC).

Raw frame headers give the observatory's position by :func:`header_position` (ESO ``GEOLAT``/
``GEOLON``/``GEOELEV``, FITS ``OBSGEO-B/L/H``, then the array or telescope name as in 3).

**Sites.** :data:`SITES` holds the geodetic position of each array (for the night and for
the simulator's Earth-rotation geometry, :mod:`oiflow.simulate.geometry`) and, where known, its
stations as local (East, North, Up) offsets in metres from the array reference. Sources:

* VLTI: site −24.62743941°, −70.40498688°, 2635 m (GEOLAT/GEOLON of VLTI raw headers; the same
  in astropy-data ``sites.json`` "paranal"); stations in the (P, Q) frame of the platform from
  A. Mérand / G. Duvert (2014), rotated by −18.984° to (East, North); AT/UT heights above the
  reference 4.5397 m / 13.044 m (as in the JMMC Aspro2 configuration).
* CHARA: (East, North, Up) of S1…W2 relative to S1 and the site 34.2243836944°,
  −118.0570313111°, 1731.264 m, from T. ten Brummelaar (2010-12-14).
* NPOI (Anderson Mesa), IOTA (Mt Hopkins, Whipple Observatory), PTI (Palomar), KI (Keck):
  positions of astropy-data ``coordinates/sites.json`` ("lowell", "flwo", "Palomar", "keck";
  IRAF observatory database), without stations. astropy's ``EarthLocation.of_site`` downloads
  that file, so the few positions oiflow needs are kept here.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigError

#: a geocentric position is a point on the Earth when its geodetic height is within this (m)
MAX_HEIGHT_M = 100e3
#: ARRAYX/Y/Z whose longitude is further than this from the named known site are not that site's
MAX_LONGITUDE_MISMATCH_DEG = 1.0
#: raw-header keywords of the observatory's geodetic (latitude deg, longitude deg East, height m),
#: in this order: ESO's interferometer and telescope keywords, then the FITS standard's (WCS paper III)
POSITION_KEYWORDS = (
    ("HIERARCH ESO ISS GEOLAT", "HIERARCH ESO ISS GEOLON", "HIERARCH ESO ISS GEOELEV"),
    ("HIERARCH ESO TEL GEOLAT", "HIERARCH ESO TEL GEOLON", "HIERARCH ESO TEL GEOELEV"),
    ("OBSGEO-B", "OBSGEO-L", "OBSGEO-H"),
)
#: raw-header keywords naming the array or telescope, in this order
ARRAY_NAME_KEYWORDS = ("HIERARCH ESO ISS ARRAY", "ARRNAME", "TELESCOP")

_MJD0 = np.datetime64("1858-11-17", "D")


@functools.lru_cache(maxsize=32)
def _earth_location(lon_deg: float, lat_deg: float, height_m: float):
    import astropy.units as u
    from astropy.coordinates import EarthLocation

    return EarthLocation.from_geodetic(lon_deg * u.deg, lat_deg * u.deg, height_m * u.m)


# --- VLTI stations --------------------------------------------------------------------------
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


# --- CHARA stations: (East, North, Up) relative to S1 -----------------------------------------
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
    """An interferometer: geodetic position (degrees, metres) and its stations (East, North, Up in
    metres from the array reference; empty where oiflow does not know them)."""

    name: str
    latitude_deg: float
    longitude_deg: float
    height_m: float
    stations: dict[str, tuple[float, float, float]] = field(default_factory=dict, repr=False)
    telescope_diameter: dict[str, float] = field(default_factory=dict, repr=False)
    aliases: tuple[str, ...] = ()

    def enu(self, names) -> np.ndarray:
        """(n, 3) East, North, Up of the named stations."""
        try:
            return np.array([self.stations[n] for n in names], float)
        except KeyError as exc:
            known = ", ".join(sorted(self.stations))
            raise ConfigError(f"{self.name}: unknown station {exc.args[0]!r}; known: {known}") from None

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
        """ITRF (X, Y, Z) of the site in metres (OI_ARRAY ARRAYX/Y/Z)."""
        loc = self.location
        return (float(loc.x.value), float(loc.y.value), float(loc.z.value))


SITES: dict[str, Site] = {
    "VLTI": Site("VLTI", -24.62743941, -70.40498688, 2635.0, _vlti_enu(),
                 {"A": 1.8, "B": 1.8, "C": 1.8, "D": 1.8, "E": 1.8, "G": 1.8, "H": 1.8, "I": 1.8, "J": 1.8,
                  "K": 1.8, "L": 1.8, "M": 1.8, "U": 8.2}, aliases=("PARANAL",)),
    "CHARA": Site("CHARA", 34.2243836944, -118.0570313111, 1731.264, dict(_CHARA_ENU), {"*": 1.0}),
    "NPOI": Site("NPOI", 35.09666666666667, -111.535, 2198.0),
    "IOTA": Site("IOTA", 31.680944444444446, -110.8775, 2320.0),
    "PTI": Site("PTI", 33.356, -116.863, 1706.0),
    "KI": Site("KI", 19.828333333333333, -155.47833333333332, 4160.0, aliases=("KECK",)),
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
    """The site called ``name`` exactly (case-insensitive; a configuration's facility)."""
    try:
        return SITES[name.upper()]
    except KeyError:
        raise ConfigError(f"unknown interferometer {name!r}; known: {', '.join(SITES)}") from None


def known_site(name: str | None) -> Site | None:
    """The site whose name or alias is one of the words of ``name`` (an ARRNAME or TELESCOP:
    ``CHARA_2004Jan``, ``ESO-VLTI-A1234``, ``VLTI_1``), or None."""
    words = set(re.split(r"[^A-Z0-9]+", str(name or "").upper()))
    for site in SITES.values():
        if site.name in words or words.intersection(site.aliases):
            return site
    return None


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


# --- longitude --------------------------------------------------------------------------------


def geocentric_longitude(x, y, z) -> float | None:
    """Geodetic longitude (deg East, in (−180, 180]) of ITRF coordinates in metres, or None when
    they are not a point on the Earth (missing, non-finite, zero, or a geodetic height beyond
    ±:data:`MAX_HEIGHT_M`)."""
    try:
        xyz = tuple(float(v) for v in (x, y, z))
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in xyz) or math.hypot(xyz[0], xyz[1]) == 0.0:
        return None
    return _geocentric_longitude(*xyz)


@functools.lru_cache(maxsize=256)
def _geocentric_longitude(x: float, y: float, z: float) -> float | None:
    import astropy.units as u
    from astropy.coordinates import EarthLocation

    geo = EarthLocation.from_geocentric(x, y, z, unit=u.m).to_geodetic()
    if abs(float(geo.height.to_value(u.m))) > MAX_HEIGHT_M:
        return None
    return float(geo.lon.wrap_at(180 * u.deg).deg)


def _longitude_difference(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def array_longitude(names, xyz=(None, None, None)) -> float | None:
    """Longitude (deg East) of an array from its ITRF position ``xyz`` and its ``names`` (ARRNAME,
    a data table's ARRNAME, TELESCOP: one name or several, the first known one counts); None
    when unknown. The rule is in the module docstring."""
    names = [names] if isinstance(names, str) or names is None else list(names)
    site = next((s for s in map(known_site, names) if s is not None), None)
    lon = geocentric_longitude(*xyz)
    if lon is not None and (site is None or _longitude_difference(lon, site.longitude_deg) <= MAX_LONGITUDE_MISMATCH_DEG):
        return lon
    return site.longitude_deg if site is not None else None


def longitude_of(oi, table) -> float | None:
    """Longitude (deg East) of the array that took ``table`` (a data table of the OIFITS ``oi``):
    its OI_ARRAY's ARRAYX/Y/Z and ARRNAME, the table's ARRNAME, the primary header's TELESCOP."""
    array = oi.array_of(table)
    xyz = (None, None, None) if array is None else tuple(array.keyword(k) for k in ("ARRAYX", "ARRAYY", "ARRAYZ"))
    names = [array.arrname if array is not None else None, getattr(table, "arrname", None),
             oi.primary_header.get("TELESCOP")]
    return array_longitude(names, xyz)


def header_position(header) -> tuple[float, float, float] | None:
    """(latitude deg, longitude deg East, height m) of the observatory of a raw frame's header:
    the first set of :data:`POSITION_KEYWORDS` with a latitude and a longitude (height 0 when
    absent), else the known site named by one of :data:`ARRAY_NAME_KEYWORDS`; None when neither."""
    for lat_key, lon_key, height_key in POSITION_KEYWORDS:
        try:
            lat, lon = float(header[lat_key]), float(header[lon_key])
            height = float(header.get(height_key, 0.0) or 0.0)
        except (KeyError, TypeError, ValueError):
            continue
        if math.isfinite(lat) and math.isfinite(lon) and math.isfinite(height) and abs(lat) <= 90.0:
            return lat, lon, height
    site = next((s for s in (known_site(header.get(k)) for k in ARRAY_NAME_KEYWORDS) if s is not None), None)
    return None if site is None else (site.latitude_deg, site.longitude_deg, site.height_m)


def header_longitude(header) -> float | None:
    """Longitude (deg East) of the observatory of a raw frame's header (:func:`header_position`)."""
    position = header_position(header)
    return None if position is None else position[1]


# --- night ------------------------------------------------------------------------------------


def nights_of(mjd, longitude_deg: float | None) -> np.ndarray:
    """The nights (``YYYY-MM-DD``, local date at the start of the night; see the module docstring)
    of UTC times ``mjd`` (days) at ``longitude_deg`` (deg East; None: noon UTC as the day
    boundary). Non-finite times give ""."""
    t = np.asarray(mjd, float)
    shifted = t + (longitude_deg or 0.0) / 360.0 - 0.5
    ok = np.isfinite(shifted) & (np.abs(shifted) < 3e6)  # datetime64[D] holds ±8000 years of MJD
    day = np.floor(np.where(ok, shifted, 0.0)).astype(np.int64)
    dates = (_MJD0 + day.astype("timedelta64[D]")).astype(str)
    return np.where(ok, dates, "").astype(object)


def night_of(mjd: float, longitude_deg: float | None) -> str:
    """The night of one UTC time ``mjd`` at ``longitude_deg`` (see :func:`nights_of`)."""
    return str(nights_of(np.asarray([mjd], float), longitude_deg)[0])
