"""Reading raw exposures of the ABCD layout (:mod:`oiflow.simulate.raw_layout`).

:func:`read_raw_header` reads only the primary header (for planning a night);
:func:`read_raw` loads the frames too: decoded from the file's bytes with numpy
(:mod:`oiflow.oifits.rawfits`, the scanner of the OIFITS reader) for plain images and tables,
with astropy for anything else (compressed files, scaled images, unusual columns).
Unreadable or inconsistent files raise :class:`~oiflow.errors.ReductionError` naming the file
and what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..errors import OIFitsError, ReductionError
from ..oifits import rawfits
from ..simulate import raw_layout as L
from ..site import header_position


@dataclass
class RawInfo:
    """What the planner needs from a raw file's primary header."""

    path: Path
    dpr_type: str
    catg: str
    mode: str
    mjd: float
    target: str = ""
    ra_deg: float = 0.0
    dec_deg: float = 0.0
    category: str = ""  # SCI | CAL for OBJECT exposures
    beams: tuple[int, ...] = ()  # open beams, 0-based
    stations: tuple[str, ...] = ()
    station_enu: np.ndarray | None = None  # (n, 3)
    site: tuple[float, float, float] | None = None  # lat, lon (deg), height (m): oiflow.site.header_position
    array: str = ""
    instrument: str = ""
    dit: float = 0.0

    @property
    def setup(self) -> str:
        return self.mode

    @property
    def longitude(self) -> float | None:
        """The observatory's longitude (deg East), None when the header does not say."""
        return None if self.site is None else self.site[1]


@dataclass
class RawExposure:
    info: RawInfo
    frames: np.ndarray  # (T, P, C) float64 ADU
    mjd: np.ndarray  # (T,)
    opd: np.ndarray  # (T,)
    wavelength: np.ndarray  # (C,)
    bandwidth: np.ndarray  # (C,)
    output_pairs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), int))  # (P, 2) 0-based


def _get(h, key, path, cast=str):
    if key not in h:
        raise ReductionError(f"{Path(path).name}: missing header keyword {key.replace('HIERARCH ', '')}")
    try:
        return cast(h[key])
    except (TypeError, ValueError):
        raise ReductionError(f"{Path(path).name}: header keyword {key.replace('HIERARCH ', '')} has a bad value {h[key]!r}") from None


def info_from_header(h: fits.Header, path: str | Path) -> RawInfo:
    path = Path(path)
    dpr_type = _get(h, L.KW_TYPE, path).strip().upper()
    if dpr_type not in L.TYPES:
        raise ReductionError(f"{path.name}: unknown DPR TYPE {dpr_type!r} (expected one of {', '.join(L.TYPES)})")
    ntel = int(h.get(L.KW_NTEL, 4))
    beams = tuple(i for i in range(ntel) if bool(h.get(L.KW_SHUT.format(i=i + 1), False)))
    stations = tuple(str(h.get(L.KW_STATION.format(i=i + 1), f"T{i + 1}")).strip() for i in range(ntel))
    enu = np.array([[float(h.get(k.format(i=i + 1), 0.0)) for k in (L.KW_TX, L.KW_TY, L.KW_TZ)] for i in range(ntel)])
    obs_name = str(h.get(L.KW_OBS_NAME, "")).strip().upper()
    catg = str(h.get(L.KW_CATG, "")).strip().upper()
    category = ""
    if dpr_type == "OBJECT":
        if obs_name.startswith("SCI_") or catg == "SCIENCE":
            category = "SCI"
        elif obs_name.startswith("CAL_") or catg == "CALIB":
            category = "CAL"
    return RawInfo(
        path=path, dpr_type=dpr_type, catg=catg, mode=_get(h, L.KW_MODE, path).strip(),
        mjd=_get(h, "MJD-OBS", path, float),
        target=str(h.get(L.KW_TARG, h.get("OBJECT", ""))).strip(),
        ra_deg=float(h.get("RA", 0.0)), dec_deg=float(h.get("DEC", 0.0)), category=category, beams=beams,
        stations=stations, station_enu=enu,
        site=header_position(h), array=str(h.get(L.KW_ARRAY, "")).strip(), instrument=str(h.get("INSTRUME", "")).strip(),
        dit=float(h.get(L.KW_DIT, 0.0)),
    )


def read_raw_header(path: str | Path) -> RawInfo:
    try:
        h = fits.getheader(path, 0)
    except Exception as exc:  # astropy raises OSError, TypeError, ValueError … on damaged files
        raise ReductionError(f"{Path(path).name}: unreadable raw file ({type(exc).__name__}: {exc})") from None
    return info_from_header(h, path)


class _NeedsAstropy(Exception):
    """The file holds something the numpy decoding leaves to astropy."""


def _columns(data: bytes, hdu) -> dict[str, np.ndarray]:
    cols = rawfits.table_columns(data, hdu)
    if cols is None:
        raise _NeedsAstropy(hdu.label)
    return {c.name.strip().upper(): c.array for c in cols}


def _read_with_numpy(path: Path, info: RawInfo | None):
    """(info, frames, mjd, opd, wave, band, pairs) decoded by :mod:`rawfits`."""
    if path.name.endswith(".gz"):
        raise _NeedsAstropy("compressed")
    data = path.read_bytes()
    hdus = rawfits.scan(data, path)
    info = info or info_from_header(hdus[0].header, path)
    byname: dict = {}
    for h in hdus[1:]:
        byname.setdefault(h.extname, h)
    try:
        frames = rawfits.image_data(data, byname[L.EXT_DATA])
    except ValueError:
        raise _NeedsAstropy("scaled image") from None
    if frames is None:
        raise _NeedsAstropy("empty image")
    frames = np.asarray(frames, dtype=np.float64)
    ft = _columns(data, byname[L.EXT_FRAMES])
    wt = _columns(data, byname[L.EXT_WAVE])
    mjd, opd = np.asarray(ft["TIME"], float), np.asarray(ft["OPD"], float)
    wave, band = np.asarray(wt["EFF_WAVE"], float), np.asarray(wt["EFF_BAND"], float)
    pairs = np.zeros((0, 2), int)
    if L.EXT_OUTPUTS in byname:
        ot = _columns(data, byname[L.EXT_OUTPUTS])
        pairs = np.stack([np.asarray(ot["TEL1"], int), np.asarray(ot["TEL2"], int)], axis=1) - 1
    return info, frames, mjd, opd, wave, band, pairs


def _read_with_astropy(path: Path, info: RawInfo | None):
    with fits.open(path, memmap=False) as hdul:
        h = hdul[0].header
        info = info or info_from_header(h, path)
        frames = np.asarray(hdul[L.EXT_DATA].data, dtype=np.float64)
        ft = hdul[L.EXT_FRAMES].data
        mjd = np.asarray(ft["TIME"], float)
        opd = np.asarray(ft["OPD"], float)
        wt = hdul[L.EXT_WAVE].data
        wave = np.asarray(wt["EFF_WAVE"], float)
        band = np.asarray(wt["EFF_BAND"], float)
        pairs = np.zeros((0, 2), int)
        if L.EXT_OUTPUTS in hdul:
            ot = hdul[L.EXT_OUTPUTS].data
            pairs = np.stack([np.asarray(ot["TEL1"], int), np.asarray(ot["TEL2"], int)], axis=1) - 1
    return info, frames, mjd, opd, wave, band, pairs


def read_raw(path: str | Path, info: RawInfo | None = None) -> RawExposure:
    """Load one exposure (frames as float64)."""
    path = Path(path)
    try:
        try:
            info, frames, mjd, opd, wave, band, pairs = _read_with_numpy(path, info)
        except (_NeedsAstropy, OIFitsError):  # astropy decides (and words the error for a damaged file)
            info, frames, mjd, opd, wave, band, pairs = _read_with_astropy(path, info)
    except ReductionError:
        raise
    except KeyError as exc:
        raise ReductionError(f"{path.name}: missing HDU or column {exc}") from None
    except Exception as exc:
        raise ReductionError(f"{path.name}: unreadable raw file ({type(exc).__name__}: {exc})") from None
    if frames.ndim != 3:
        raise ReductionError(f"{path.name}: {L.EXT_DATA} must be a 3-D cube (frames, outputs, channels), got shape {frames.shape}")
    if frames.shape[0] != mjd.size or frames.shape[2] != wave.size:
        raise ReductionError(f"{path.name}: {L.EXT_DATA} shape {frames.shape} does not match {mjd.size} frame times "
                             f"and {wave.size} wavelengths")
    if not np.all(np.isfinite(frames)):
        bad = int(np.count_nonzero(~np.isfinite(frames)))
        raise ReductionError(f"{path.name}: {bad} non-finite pixel values in {L.EXT_DATA}")
    return RawExposure(info, frames, mjd, opd, wave, band, pairs)
