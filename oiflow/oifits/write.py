"""Writing OIFITS: standard-conformant OIFITS2 by default, OIFITS1 on request.

Known columns get the standard format (NWAVE repeats from the data, strings at least the
standard width, wider when the values need it so nothing is truncated) and the canonical unit;
unknown columns and keywords are written as they were read. Missing mandatory v2 content is
filled in from the data (main-header keywords, DATE-OBS, ARRNAME, OI_ARRAY FOV/FOVTYPE,
OI_FLUX CALSTAT) and every such fill is recorded in a HISTORY card. Files are written
atomically with CHECKSUM/DATASUM.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import warnings

import numpy as np
from astropy.io import fits
from astropy.time import Time

from .. import PROCSOFT
from ..errors import OIFitsError, OIFitsWarning
from ..provenance import Provenance, write_hdulist_atomic
from .model import ArrayTable, DataTable, FluxTable, OIFits, OITable, VisTable, WavelengthTable
from .schema import MAIN_HEADER_V2, NUMPY_DTYPES, TABLES, V1, V2

_TFORM = re.compile(r"^\s*(\d*)\s*([A-Z])(.*)$")

# order of tables in a written file
_ORDER = ("OI_TARGET", "OI_ARRAY", "OI_WAVELENGTH", "OI_CORR", "OI_INSPOL", "OI_VIS", "OI_VIS2", "OI_T3", "OI_FLUX")


def _fits_format(code: str, repeat: int) -> str:
    return f"{repeat}{code}"


def _string_width(values: np.ndarray, minimum: int) -> int:
    if values.size == 0:
        return max(minimum, 1)
    longest = int(max(len(str(v).encode("utf-8")) for v in values.ravel()))
    return max(minimum, longest, 1)


def _known_column(tabledef, name: str, arr: np.ndarray, nrows: int, nwave: int | None, version: int):
    coldef = tabledef.column(name)
    code = coldef.code
    if code == "A":
        width = _string_width(arr, coldef.repeat if isinstance(coldef.repeat, int) else 1)
        return fits.Column(name=name, format=f"{width}A", array=np.asarray(arr, dtype=str), unit=coldef.unit), None
    dtype = NUMPY_DTYPES[code]
    a = np.asarray(arr)
    if code in "IJ" and a.dtype.kind == "f":
        dtype = a.dtype  # never truncate non-integers silently: keep the float (validator flags the format)
        code = "D"
    elif code == "E" and a.dtype == np.float64:
        code, dtype = "D", "float64"  # keep double precision where the file had it
    elif code == "C" and a.dtype == np.complex128:
        code, dtype = "M", "complex128"
    a = a.astype(dtype, copy=False)
    if coldef.repeat == "NWAVE":
        a = a.reshape(nrows, -1)
        repeat = a.shape[1]
        dim = None
    elif coldef.repeat == "NWAVE2":
        a = a.reshape(nrows, -1)
        repeat = a.shape[1]
        n = int(round(np.sqrt(repeat)))
        dim = f"({n},{n})" if n * n == repeat and n > 0 else None
    elif isinstance(coldef.repeat, int) and coldef.repeat > 1:
        a = a.reshape(nrows, -1)
        repeat = a.shape[1]
        dim = None
    else:
        repeat = 1
        dim = None
    col = fits.Column(name=name, format=_fits_format(code, repeat), array=a, unit=coldef.unit, dim=dim)
    return col, None


def _unknown_column(name: str, arr: np.ndarray, fmt: str | None, unit: str | None):
    a = np.asarray(arr)
    if a.dtype.kind == "U":
        width = _string_width(a, 1)
        return fits.Column(name=name, format=f"{width}A", array=a, unit=unit or None)
    if a.dtype.kind == "O":
        raise OIFitsError("variable-length columns are not supported by the writer", column=name)
    m = _TFORM.match(fmt or "")
    code = m.group(2) if m else None
    by_dtype = {"b": "L", "i": {2: "I", 4: "J", 8: "K", 1: "B"}, "f": {4: "E", 8: "D"}, "c": {8: "C", 16: "M"}, "u": {1: "B"}}
    kind = a.dtype.kind
    if kind == "b":
        code = "L"
    elif kind in ("i", "u", "f", "c"):
        code = by_dtype[kind].get(a.dtype.itemsize, code or "D") if isinstance(by_dtype[kind], dict) else code
    repeat = int(np.prod(a.shape[1:])) if a.ndim > 1 else 1
    dim = None
    if a.ndim > 2:
        dim = "(" + ",".join(str(s) for s in reversed(a.shape[1:])) + ")"
    return fits.Column(name=name, format=f"{repeat}{code}", array=a.reshape(a.shape[0], -1) if a.ndim > 1 else a,
                       unit=unit or None, dim=dim)


def _default_fov_arcsec(oi: OIFits, diameter: np.ndarray) -> np.ndarray:
    """λ/D (FWHM, arcsec) with λ the median wavelength of the file: the photometric FOV of a
    single-mode instrument, used when an OIFITS1 OI_ARRAY has no FOV column."""
    waves = np.concatenate([w.eff_wave for w in oi.wavelengths]) if oi.wavelengths else np.array([2.2e-6])
    lam = float(np.nanmedian(waves)) if waves.size else 2.2e-6
    d = np.where(np.asarray(diameter, dtype=float) > 0, np.asarray(diameter, dtype=float), 1.8)
    return np.degrees(lam / d) * 3600.0


def _date_obs_from_mjd(mjd) -> str:
    mjd = np.asarray(mjd, dtype=float)
    mjd = mjd[np.isfinite(mjd) & (mjd > 0)]
    if mjd.size == 0:
        return "2000-01-01"
    return Time(float(mjd.min()), format="mjd").to_value("iso", subfmt="date")


def _set_card(header: fits.Header, card: fits.Card) -> None:
    """Copy a card, keeping long (HIERARCH) keywords long without astropy's VerifyWarning."""
    key = card.keyword
    if len(key) > 8 or " " in key:
        key = f"HIERARCH {key}"
    header.set(key, card.value, card.comment)


def _table_hdu(oi: OIFits, table: OITable, version: int, history: list[str]) -> fits.BinTableHDU:
    tabledef = TABLES[table.EXTNAME]
    nrows = table.nrows
    nwave = None
    if isinstance(table, DataTable):
        try:
            nwave = oi.wavelength_of(table).nwave
        except OIFitsError:
            nwave = table.nwave
    columns = dict(table.columns)
    label = table.label

    # v2 additions
    if version == V2 and isinstance(table, ArrayTable):
        if "FOV" not in columns:
            columns["FOV"] = _default_fov_arcsec(oi, columns.get("DIAMETER", np.full(nrows, 1.8)))
            history.append(f"{label}: FOV set to lambda/D (FWHM), absent from the input")
        if "FOVTYPE" not in columns:
            columns["FOVTYPE"] = np.full(nrows, "FWHM")

    if version == V2 and isinstance(table, VisTable):
        differential = "differential" in (str(table.keyword("AMPTYP", "") or ""), str(table.keyword("PHITYP", "") or ""))
        if differential and "VISREFMAP" not in columns and nrows and nwave:
            # GRAVITY/MATISSE differential quantities are referred to the whole band; the standard
            # needs that choice spelled out in VISREFMAP (every channel is a reference channel)
            columns["VISREFMAP"] = np.ones((nrows, nwave, nwave), dtype=bool)
            history.append(f"{label}: VISREFMAP absent for differential visibilities; set to all channels "
                           "(band-average reference)")

    cols = []
    known = [c.name for c in tabledef.columns_for(version)]
    for name in known:
        if name in columns:
            try:
                col, _ = _known_column(tabledef, name, columns[name], nrows, nwave, version)
            except Exception as exc:
                raise OIFitsError(f"cannot write column ({exc})", hdu=label, column=name) from None
            cols.append(col)
    for name, arr in columns.items():
        if name in known:
            continue
        if tabledef.column(name) is not None:
            if version == V1:
                warnings.warn(f"{label}: OIFITS2-only column {name} dropped when writing OIFITS1", OIFitsWarning, stacklevel=4)
                continue
        cols.append(_unknown_column(name, arr, table.formats.get(name), table.units.get(name)))
    hdu = fits.BinTableHDU.from_columns(cols, nrows=nrows)
    header = hdu.header
    header["EXTNAME"] = table.EXTNAME
    header["OI_REVN"] = tabledef.revn[version]
    dropped = set()
    if version == V1:
        dropped.add("CORRNAME")  # OI_CORR does not exist in OIFITS1
    if isinstance(table, FluxTable) and table.calstat == "U" and (table.keyword("FOVTYPE") or table.keyword("FOV")):
        dropped.update(("FOV", "FOVTYPE"))  # defined for calibrated spectra only
        history.append(f"{label}: FOV/FOVTYPE removed (only defined for calibrated flux, CALSTAT='C')")
    for card in table.header.cards:
        if card.keyword in ("OI_REVN", "EXTNAME", "") or card.keyword in dropped:
            continue
        if card.keyword in ("COMMENT", "HISTORY"):
            header.append(card, end=True)
        else:
            _set_card(header, card)
    if isinstance(table, DataTable):
        if not table.keyword("DATE-OBS"):
            header["DATE-OBS"] = _date_obs_from_mjd(table.get("MJD", np.array([])))
            history.append(f"{label}: DATE-OBS derived from MJD")
        calibrated_flux = isinstance(table, FluxTable) and table.calstat == "C"
        if version == V2 and not table.arrname and not calibrated_flux:
            if len(oi.arrays) == 1:
                header["ARRNAME"] = oi.arrays[0].arrname
                history.append(f"{label}: ARRNAME set to the file's only OI_ARRAY")
            elif not oi.arrays:
                raise OIFitsError("OIFITS2 needs an OI_ARRAY for every data table; the input has none "
                                  "(write version=1 instead)", hdu=label, column="ARRNAME")
        if isinstance(table, FluxTable) and version == V2 and not table.calstat:
            header["CALSTAT"] = "U"
            history.append(f"{label}: CALSTAT absent, set to 'U' (uncalibrated)")
    return hdu


def _primary_hdu(oi: OIFits, version: int, history: list[str], provenance: Provenance | None) -> fits.PrimaryHDU:
    hdu = fits.PrimaryHDU(data=oi.primary_data)
    header = hdu.header
    for card in oi.primary_header.cards:
        if card.keyword in ("", "SIMPLE", "BITPIX", "EXTEND") or card.keyword.startswith("NAXIS"):
            continue
        if card.keyword in ("COMMENT", "HISTORY"):
            header.append(card, end=True)
        else:
            _set_card(header, card)
    if version == V2:
        header["CONTENT"] = ("OIFITS2", "This file is an OIFITS2 container")
        _fill_main_header(oi, header, history)
    else:
        header.remove("CONTENT", ignore_missing=True)
    header["DATE"] = (_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"), "file creation date (UTC)")
    if provenance is not None:
        provenance.apply_to_header(header)
    elif not header.get("PROCSOFT"):
        header["PROCSOFT"] = PROCSOFT
    for line in history:
        header.add_history(f"oiflow: {line}")
    return hdu


def _single_or_multi(values) -> str:
    vals = sorted({str(v).strip() for v in values if str(v).strip()})
    if not vals:
        return "UNKNOWN"
    return vals[0] if len(vals) == 1 else "MULTI"


def _fill_main_header(oi: OIFits, header: fits.Header, history: list[str]) -> None:
    fills = {
        "ORIGIN": lambda: "oiflow",
        "TELESCOP": lambda: _single_or_multi(a.arrname for a in oi.arrays),
        "INSTRUME": lambda: _single_or_multi(re.split(r"[_(\s]", w.insname)[0] for w in oi.wavelengths),
        "OBSERVER": lambda: "UNKNOWN",
        "INSMODE": lambda: _single_or_multi(w.insname for w in oi.wavelengths),
        "OBJECT": lambda: _single_or_multi(oi.target_names().values()),
        "DATE-OBS": lambda: _date_obs_from_mjd(np.concatenate(
            [np.asarray(t.get("MJD", np.zeros(0)), float).ravel() for t in oi.data_tables] or [np.zeros(0)])),
    }
    for key in (*MAIN_HEADER_V2, "DATE-OBS"):
        if key in ("CONTENT", "DATE"):
            continue
        val = header.get(key)
        if val is None or (isinstance(val, str) and not val.strip()):
            header[key] = fills[key]()
            history.append(f"main header {key} absent or empty, set to {header[key]!r}")


def to_hdulist(oi: OIFits, version: int = V2, provenance: Provenance | None = None) -> fits.HDUList:
    """Build the astropy HDUList that :func:`write_oifits` writes."""
    with warnings.catch_warnings():
        # copying ESO HIERARCH cards makes astropy announce each one; they are written as read
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        return _to_hdulist(oi, version, provenance)


def _to_hdulist(oi: OIFits, version: int, provenance: Provenance | None) -> fits.HDUList:
    if version not in (V1, V2):
        raise OIFitsError(f"unknown OIFITS version {version}; use 1 or 2")
    history: list[str] = []
    table_hdus = []
    ordered = sorted(oi.tables, key=lambda t: _ORDER.index(t.EXTNAME))
    for table in ordered:
        if version not in TABLES[table.EXTNAME].versions:
            warnings.warn(f"{table.label}: OIFITS2-only table dropped when writing OIFITS1", OIFitsWarning, stacklevel=3)
            continue
        try:
            table_hdus.append(_table_hdu(oi, table, version, history))
        except OIFitsError as exc:
            raise OIFitsError(exc.message, file=oi.path, hdu=exc.hdu or table.label, column=exc.column) from None
    primary = _primary_hdu(oi, version, history, provenance)
    extras = [h.copy() for h in oi.extra_hdus]
    return fits.HDUList([primary, *table_hdus, *extras])


def write_oifits(oi: OIFits, path: str | os.PathLike, *, version: int = V2,
                 provenance: Provenance | None = None, overwrite: bool = True) -> str:
    """Write ``oi`` to ``path`` atomically (OIFITS2 unless ``version=1``); returns the path."""
    if not overwrite and os.path.exists(path):
        raise OIFitsError("output exists and overwrite is False", file=path)
    hdul = to_hdulist(oi, version=version, provenance=provenance)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        write_hdulist_atomic(hdul, path, checksum=True)
    return str(path)
