"""Optional online lookup of calibrator diameters in the JMMC Stellar Diameters Catalogue
(JSDC v2, VizieR II/346/jsdc_v2) with astroquery, with a local JSON cache so that a night is
only ever queried once and reprocessing works offline.

``astroquery`` is an optional dependency (``pip install 'oiflow[catalogs]'``), imported only when
a query is actually needed. The answer kept for a star is the nearest JSDC entry within the
search radius: name, position, UDD<band>, LDD and e_LDD (mas). The UD error is e_LDD scaled by
UDD/LDD (30% of the diameter when JSDC gives no error).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ..errors import CalibrationError
from ..provenance import write_json_atomic
from .diameters import BANDS, Diameter, angular_separation_deg

log = logging.getLogger(__name__)

CATALOG = "II/346/jsdc_v2"
COLUMNS = ["Name", "RAJ2000", "DEJ2000", "LDD", "e_LDD"] + [f"UDD{b}" for b in "BVRIJHKLMN"]


def _default_query(ra_deg: float, dec_deg: float, radius_arcsec: float):
    """Query VizieR (network). Returns an astropy Table or None."""
    try:
        from astroquery.vizier import Vizier  # lazy: optional dependency
    except ImportError:
        raise CalibrationError("JSDC lookup needs astroquery (pip install astroquery); "
                               "or give the diameters in a catalogue file") from None
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    viz = Vizier(columns=COLUMNS, catalog=CATALOG, row_limit=5)
    res = viz.query_region(SkyCoord(ra_deg * u.deg, dec_deg * u.deg), radius=radius_arcsec * u.arcsec)
    return res[0] if len(res) else None


def _sexa_or_deg(value, hours: bool) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        import astropy.units as u
        from astropy.coordinates import Angle

        return float(Angle(str(value), unit=u.hourangle if hours else u.deg).degree)


class JSDCLookup:
    """``lookup(name, ra, dec, band)`` with a JSON cache file (key: position rounded to 0.1″)."""

    def __init__(self, cache_file: str | Path, query=None, radius_arcsec: float = 5.0, offline: bool = False):
        self.cache_file = Path(cache_file)
        self.query = query or _default_query
        self.radius = radius_arcsec
        self.offline = offline
        self._cache: dict | None = None

    @staticmethod
    def key(ra_deg: float, dec_deg: float) -> str:
        return f"{ra_deg:.5f}{dec_deg:+.5f}"

    def _load(self) -> dict:
        if self._cache is None:
            self._cache = json.loads(self.cache_file.read_text()) if self.cache_file.is_file() else {}
        return self._cache

    def fetch(self, ra_deg: float, dec_deg: float) -> dict | None:
        cache = self._load()
        k = self.key(ra_deg, dec_deg)
        if k in cache:
            return cache[k]
        if self.offline:
            return None
        table = self.query(ra_deg, dec_deg, self.radius)
        entry = None
        if table is not None and len(table):
            ra = np.array([_sexa_or_deg(x, True) for x in table["RAJ2000"]])
            de = np.array([_sexa_or_deg(x, False) for x in table["DEJ2000"]])
            sep = angular_separation_deg(ra_deg, dec_deg, ra, de) * 3600.0
            best = int(np.argmin(sep))
            if sep[best] <= self.radius:
                row = table[best]
                entry = {"name": str(row["Name"]).strip(), "ra_deg": float(ra[best]), "dec_deg": float(de[best])}
                for col in table.colnames:
                    if col.startswith("UDD") or col in ("LDD", "e_LDD"):
                        val = row[col]
                        entry[col] = None if np.ma.is_masked(val) or not np.isfinite(float(val)) else float(val)
        cache[k] = entry  # negative answers are cached too
        write_json_atomic(cache, self.cache_file)
        return entry

    def lookup(self, name: str, ra_deg: float, dec_deg: float, band: str) -> Diameter | None:
        if band not in BANDS:
            return None
        entry = self.fetch(ra_deg, dec_deg)
        if not entry:
            return None
        ud = entry.get(f"UDD{band}")
        if ud is None or not ud > 0:
            return None
        ldd, e_ldd = entry.get("LDD"), entry.get("e_LDD")
        err = e_ldd * ud / ldd if (e_ldd and ldd) else 0.3 * ud
        return Diameter(name, float(ud), float(err), band, f"JSDC {entry.get('name', '')}".strip())
