"""Calibrator diameters: catalogue files (CSV or FITS), the run configuration, and an optional
JSDC lookup (:mod:`oiflow.calibrate.jsdc`).

Catalogue columns (case-insensitive): ``name``, ``ra_deg``/``ra``, ``dec_deg``/``dec`` (degrees)
and, per photometric band B, a uniform-disk diameter and its error in mas: ``ud_B_mas`` /
``e_ud_B_mas`` (also accepted: ``ud_B`` / ``e_ud_B``, and the JSDC names ``UDDB`` with
``e_LDD``). A missing error is set to 30% of the diameter (as pndrs does).

Matching (CALIBRATION.md §5): first by name (case, spaces, '_' and '-' ignored), then by position
(great circle < 5″, else < 10″). Values given in the run configuration
(``calibrate.calibrators: {NAME: {diameter_mas, error_mas}}``) take precedence over the file.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CalibrationError, ConfigError

#: photometric bands (µm ranges) used to pick the catalogue column for a set of wavelengths
BANDS = {"J": (1.05, 1.40), "H": (1.40, 1.90), "K": (1.90, 2.60), "L": (2.60, 4.20), "M": (4.20, 5.50), "N": (7.0, 14.0)}


def band_of(wavelength_m) -> str:
    """The band containing the median wavelength."""
    lam = float(np.median(np.asarray(wavelength_m, float))) * 1e6
    for name, (lo, hi) in BANDS.items():
        if lo <= lam < hi:
            return name
    raise CalibrationError(f"no photometric band for wavelength {lam:.3f} µm")


def normalise_name(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", str(name)).upper()


def angular_separation_deg(ra1, dec1, ra2, dec2):
    """Great-circle distance (degrees), haversine formula."""
    r1, d1, r2, d2 = (np.radians(np.asarray(x, float)) for x in (ra1, dec1, ra2, dec2))
    a = np.sin((d2 - d1) / 2) ** 2 + np.cos(d1) * np.cos(d2) * np.sin((r2 - r1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(a, 0, 1))))


@dataclass
class Diameter:
    name: str
    diameter_mas: float
    error_mas: float
    band: str
    source: str  # "config", the catalogue file name, "JSDC"


@dataclass
class DiameterCatalog:
    """Rows of a calibrator catalogue: name, position and per-band (diameter, error) in mas."""

    names: list[str] = field(default_factory=list)
    ra_deg: np.ndarray = field(default_factory=lambda: np.zeros(0))
    dec_deg: np.ndarray = field(default_factory=lambda: np.zeros(0))
    diameters: dict[str, np.ndarray] = field(default_factory=dict)  # band → (N,)
    errors: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = "catalogue"

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def from_rows(cls, rows: list[dict], source: str) -> "DiameterCatalog":
        if not rows:
            return cls(source=source)
        keys = {k.lower(): k for k in rows[0].keys()}

        def col(*cands):
            for c in cands:
                if c.lower() in keys:
                    return keys[c.lower()]
            return None

        kname, kra, kdec = col("name", "star", "target"), col("ra_deg", "ra", "raj2000"), col("dec_deg", "dec", "dej2000")
        if kname is None:
            raise ConfigError(f"{source}: calibrator catalogue needs a 'name' column (has {', '.join(rows[0])})")

        def num(v):
            try:
                x = float(v)
            except (TypeError, ValueError):
                return np.nan
            return x

        names = [str(r[kname]).strip() for r in rows]
        ra = np.array([num(r[kra]) if kra else np.nan for r in rows])
        dec = np.array([num(r[kdec]) if kdec else np.nan for r in rows])
        diam, err = {}, {}
        for band in BANDS:
            b = band.lower()
            kd = col(f"ud_{b}_mas", f"ud_{b}", f"udd{b}", f"uddiam{b}")
            if kd is None:
                continue
            ke = col(f"e_ud_{b}_mas", f"e_ud_{b}", f"e_udd{b}", "e_ldd", "e_diam")
            d = np.array([num(r[kd]) for r in rows])
            e = np.array([num(r[ke]) for r in rows]) if ke else np.full(len(rows), np.nan)
            e = np.where(np.isfinite(e) & (e > 0), e, 0.3 * d)
            diam[band], err[band] = d, e
        if not diam:
            raise ConfigError(f"{source}: no diameter column found (expected e.g. ud_h_mas, ud_k_mas)")
        return cls(names, ra, dec, diam, err, source)

    @classmethod
    def from_file(cls, path: str | Path) -> "DiameterCatalog":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"calibrator catalogue not found: {path}")
        if path.suffix.lower() in (".fits", ".fit", ".fts") or path.name.lower().endswith(".fits.gz"):
            from astropy.table import Table

            t = Table.read(path)
            rows = [{c: row[c] for c in t.colnames} for row in t]
        else:
            with open(path, newline="") as f:
                lines = [ln for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
            rows = list(csv.DictReader(lines))
        return cls.from_rows(rows, path.name)

    def lookup(self, name: str, ra_deg: float | None, dec_deg: float | None, band: str) -> Diameter | None:
        if band not in self.diameters or not self.names:
            return None
        key = normalise_name(name)
        idx = [k for k, n in enumerate(self.names) if normalise_name(n) == key]
        if not idx and ra_deg is not None and dec_deg is not None and np.any(np.isfinite(self.ra_deg)):
            sep = angular_separation_deg(ra_deg, dec_deg, self.ra_deg, self.dec_deg) * 3600.0
            sep = np.where(np.isfinite(sep), sep, np.inf)
            for radius in (5.0, 10.0):
                if np.min(sep) < radius:
                    idx = [int(np.argmin(sep))]
                    break
        for k in idx:
            d, e = self.diameters[band][k], self.errors[band][k]
            if np.isfinite(d) and d >= 0:
                return Diameter(name, float(d), float(e), band, self.source)
        return None


def diameters_from_config(calibrators: dict[str, dict[str, float]]) -> dict[str, tuple[float, float]]:
    out = {}
    for name, vals in (calibrators or {}).items():
        try:
            d = float(vals["diameter_mas"])
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"calibrate.calibrators.{name}: needs diameter_mas (and optionally error_mas)") from None
        e = float(vals.get("error_mas", 0.3 * d))
        out[normalise_name(name)] = (d, e)
    return out


class DiameterSource:
    """Config values, then the catalogue file, then (optionally) the JSDC lookup."""

    def __init__(self, catalog: DiameterCatalog | None = None, config_values: dict | None = None, jsdc=None):
        self.catalog = catalog
        self.config_values = diameters_from_config(config_values or {})
        self.jsdc = jsdc

    def lookup(self, name: str, ra_deg: float | None, dec_deg: float | None, band: str) -> Diameter | None:
        key = normalise_name(name)
        if key in self.config_values:
            d, e = self.config_values[key]
            return Diameter(name, d, e, band, "config")
        if self.catalog is not None:
            found = self.catalog.lookup(name, ra_deg, dec_deg, band)
            if found is not None:
                return found
        if self.jsdc is not None and ra_deg is not None and dec_deg is not None and math.isfinite(ra_deg):
            return self.jsdc.lookup(name, ra_deg, dec_deg, band)
        return None
