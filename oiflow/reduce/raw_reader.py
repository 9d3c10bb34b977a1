"""Reading raw exposures of the ABCD layout (:mod:`oiflow.simulate.raw_layout`).

:func:`read_raw_header` reads only the primary header (for planning a night);
:func:`read_raw` loads the frames too, with astropy, through the strict opening of
:func:`oiflow.oifits.fitsfile.open_fits` (a truncated file or a damaged structural card is an
error, never fewer frames). Unreadable or inconsistent files raise
:class:`~oiflow.errors.ReductionError` naming the file, and the HDU and card where the FITS
structure is damaged.
"""

from __future__ import annotations

import gzip
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..errors import ReductionError
from ..oifits.fitsfile import open_fits
from ..simulate import raw_layout as L
from ..site import header_position

_MISSING = object()
_SIMPLE = b"SIMPLE  ="

#: primary headers read (:func:`primary_header`): (path, device, inode, size, mtime_ns) → header
_HEADERS: OrderedDict = OrderedDict()
_HEADERS_KEPT = 512
_HEADERS_LOCK = threading.Lock()

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
    value = h.get(key, _MISSING)
    if value is _MISSING:
        raise ReductionError(f"{Path(path).name}: missing header keyword {key.replace('HIERARCH ', '')}")
    try:
        return cast(value)
    except (TypeError, ValueError):
        raise ReductionError(f"{Path(path).name}: header keyword {key.replace('HIERARCH ', '')} "
                             f"has a bad value {value!r}") from None


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


def primary_header(path: str | Path) -> fits.Header:
    """A raw file's primary header alone, parsed by astropy's ``Header.fromfile`` (the HDU
    machinery of ``fits.open`` costs as much again, for nothing a planner uses), read once per
    version of the file: the last :data:`_HEADERS_KEPT` are kept by path, inode, size and
    modification time (planning a night asks for each header twice: its instrument, then its
    plan). The file must start with the SIMPLE card; the structure of the whole file is checked
    when :func:`read_raw` reads it. A ReductionError names the file; the header returned is
    shared: read it, do not modify it."""
    path = Path(path)
    try:
        st = path.stat()
        key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        with _HEADERS_LOCK:
            h = _HEADERS.get(key)
            if h is not None:
                _HEADERS.move_to_end(key)
                return h
        with (gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")) as f:
            if f.read(len(_SIMPLE)) != _SIMPLE:
                raise ValueError("no SIMPLE card at the start: not a FITS file")
            f.seek(0)
            h = fits.Header.fromfile(f)
    except Exception as exc:  # astropy raises OSError, TypeError, ValueError … on damaged files
        raise ReductionError(f"{path.name}: unreadable raw file ({type(exc).__name__}: {exc})") from None
    with _HEADERS_LOCK:
        _HEADERS[key] = h
        while len(_HEADERS) > _HEADERS_KEPT:
            _HEADERS.popitem(last=False)
    return h


def read_raw_header(path: str | Path) -> RawInfo:
    """What the planner needs from a raw file, from its primary header (:func:`primary_header`)."""
    return info_from_header(primary_header(path), Path(path))


def _hdus(path: Path) -> dict:
    """The file's HDUs by EXTNAME (the primary as ``""``), read by astropy after the structure checks."""
    try:
        data = path.read_bytes()
        if path.name.endswith(".gz"):
            data = gzip.decompress(data)
    except (OSError, EOFError) as exc:
        raise ReductionError(f"{path.name}: unreadable raw file ({getattr(exc, 'strerror', None) or exc})") from None
    ff = open_fits(data, path)
    err = ff.error()
    if err is not None:
        raise ReductionError(f"{path.name}: damaged FITS file: {err}")
    byname: dict = {}
    for i, hdu in enumerate(ff.hdus):
        byname.setdefault("" if i == 0 else str(hdu.header.get("EXTNAME", "")).strip().upper(), hdu)
    return byname


def _read(path: Path, info: RawInfo | None):
    hdus = _hdus(path)
    info = info or info_from_header(hdus[""].header, path)
    frames = np.asarray(hdus[L.EXT_DATA].data, dtype=np.float64)
    ft = hdus[L.EXT_FRAMES].data
    mjd = np.asarray(ft["TIME"], float)
    opd = np.asarray(ft["OPD"], float)
    wt = hdus[L.EXT_WAVE].data
    wave = np.asarray(wt["EFF_WAVE"], float)
    band = np.asarray(wt["EFF_BAND"], float)
    pairs = np.zeros((0, 2), int)
    if L.EXT_OUTPUTS in hdus:
        ot = hdus[L.EXT_OUTPUTS].data
        pairs = np.stack([np.asarray(ot["TEL1"], int), np.asarray(ot["TEL2"], int)], axis=1) - 1
    return info, frames, mjd, opd, wave, band, pairs


def read_raw(path: str | Path, info: RawInfo | None = None) -> RawExposure:
    """Load one exposure (frames as float64)."""
    path = Path(path)
    try:
        info, frames, mjd, opd, wave, band, pairs = _read(path, info)
    except ReductionError:
        raise
    except KeyError as exc:
        raise ReductionError(f"{path.name}: missing HDU or column {exc}") from None
    except Exception as exc:
        raise ReductionError(f"{path.name}: unreadable raw file ({type(exc).__name__}: {exc})") from None
    if frames.ndim != 3:
        raise ReductionError(f"{path.name}: {L.EXT_DATA} must be a 3-D cube (frames, outputs, channels), "
                             f"got shape {frames.shape}")
    if frames.shape[0] != mjd.size or frames.shape[2] != wave.size:
        raise ReductionError(f"{path.name}: {L.EXT_DATA} shape {frames.shape} does not match {mjd.size} frame times "
                             f"and {wave.size} wavelengths")
    if not np.all(np.isfinite(frames)):
        bad = int(np.count_nonzero(~np.isfinite(frames)))
        raise ReductionError(f"{path.name}: {bad} non-finite pixel values in {L.EXT_DATA}")
    return RawExposure(info, frames, mjd, opd, wave, band, pairs)
