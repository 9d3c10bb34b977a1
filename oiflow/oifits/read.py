"""Reading OIFITS v1/v2 files: astropy decodes, :mod:`~oiflow.oifits.fitsfile` checks the structure.

Real files break the OIFITS standard in many small ways (see tests/data/oifits/MANIFEST.md); the
reader loads them, records what is off in ``OIFits.read_findings`` and emits
:class:`OIFitsWarning`. It raises :class:`OIFitsError` (naming file, HDU, card, column) when
the input cannot be used as it stands: damaged FITS structure (never a shortened read), not
FITS, no OI_TARGET / OI_WAVELENGTH / data table, or an OI table without the columns that give
it meaning. :func:`load_oifits` reads what can be read and lists every such reason, for the
validator.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from .astropy_fits import fits

from ..errors import OIFitsError, OIFitsWarning
from . import fitsfile
from .findings import Finding, Severity
from .model import TABLE_CLASSES, OIFits, OITable
from .schema import COLUMN_ALIASES, TABLES

_STRUCTURAL = re.compile(
    r"^(XTENSION|BITPIX|NAXIS\d*|PCOUNT|GCOUNT|TFIELDS|THEAP|EXTNAME|CHECKSUM|DATASUM|SIMPLE|EXTEND"
    r"|T(TYPE|FORM|UNIT|DIM|NULL|SCAL|ZERO|DISP)\d+)$"
)

#: columns without which a table cannot be interpreted (reading fails, naming the column)
_ESSENTIAL = {
    "OI_TARGET": (("TARGET_ID",), ("TARGET",)),
    "OI_ARRAY": (("STA_INDEX",),),
    "OI_WAVELENGTH": (("EFF_WAVE",),),
    "OI_VIS2": (("VIS2DATA",), ("UCOORD",), ("VCOORD",), ("STA_INDEX",)),
    "OI_VIS": (("VISAMP", "VISPHI", "RVIS"), ("UCOORD",), ("VCOORD",), ("STA_INDEX",)),
    "OI_T3": (("T3PHI", "T3AMP"), ("U1COORD",), ("V1COORD",), ("U2COORD",), ("V2COORD",), ("STA_INDEX",)),
    "OI_FLUX": (("FLUXDATA",),),
    "OI_CORR": (("IINDX",), ("JINDX",), ("CORR",)),
    "OI_INSPOL": (("INSNAME",),),
}

_TFORM = re.compile(r"^\s*(\d*)\s*([A-Z])")


def _strip_header(header: fits.Header, findings: list[Finding] | None = None, path=None, label=None) -> fits.Header:
    """The header without structural cards; cards astropy cannot parse are dropped and reported."""
    out = fits.Header()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for card in header.cards:
            if _STRUCTURAL.match(card.keyword or ""):
                continue
            try:
                _ = card.value
                out.append(card, end=True)
            except Exception as exc:
                if findings is not None:
                    findings.append(Finding(Severity.ERROR, "FITS_VERIFY",
                                            f"unparsable card {card.keyword!r} dropped ({exc.__class__.__name__})",
                                            label, card.keyword, file=path))
    return out


def _column_array(data, index: int, fmt: str) -> np.ndarray:
    """Column ``index`` of astropy's FITS_rec as a plain numpy array (strings decoded and
    right-stripped, logicals as bool, variable-length columns as an object array)."""
    col = data.field(index)
    m = _TFORM.match(fmt or "")
    code = m.group(2) if m else ""
    if code == "A":
        arr = np.asarray(col)
        if arr.dtype.kind == "S":
            arr = np.char.decode(arr, "latin-1")
        return np.char.rstrip(arr.astype(str))
    if code in ("P", "Q"):
        return np.asarray(list(col), dtype=object)
    arr = np.array(col, copy=True)
    if code == "L":
        arr = arr.astype(bool)
    return arr


def _shape_column(tabledef, name: str, arr: np.ndarray, nrows: int) -> np.ndarray:
    """Give array columns their canonical shape: (nrows, nwave) for NWAVE columns, etc.
    Zero-row tables keep the per-row size the file declares."""
    if arr.dtype.kind in "UO":
        return arr
    coldef = tabledef.column(name) if tabledef else None
    if coldef is None:
        return arr
    per_row = int(np.prod(arr.shape[1:])) if arr.ndim > 1 else 1
    if coldef.repeat == "NWAVE":
        return arr.reshape(nrows, per_row)
    if coldef.repeat == "NWAVE2":
        if arr.ndim == 3:
            return arr
        flat = arr.reshape(nrows, per_row)
        n = int(round(np.sqrt(per_row))) if per_row else 0
        return flat.reshape(nrows, n, n) if n * n == per_row else flat
    if isinstance(coldef.repeat, int) and coldef.repeat > 1:
        return arr.reshape(nrows, per_row)
    if arr.ndim > 1 and arr.shape[1:] == (1,):
        return arr.reshape(nrows)
    return arr


def _parse_table(hdu, index: int, path: str | None, findings: list[Finding]) -> OITable:
    """An OI table from an astropy BinTableHDU."""
    data = hdu.data
    nrows = int(hdu.header.get("NAXIS2", 0) or 0)

    def columns():
        for k, col in enumerate(hdu.columns):
            unit = (col.unit or "").strip() if isinstance(col.unit, str) else ""
            yield col.name, str(col.format), unit, (
                lambda k=k, c=col: _column_array(data, k, str(c.format)) if data is not None else np.zeros(0))

    return _table_from_columns(hdu.header, columns(), nrows, index, path, findings)


def _table_from_columns(fits_header, cols, nrows: int, index: int, path, findings) -> OITable:
    extname = str(fits_header.get("EXTNAME", "")).strip().upper()
    cls = TABLE_CLASSES[extname]
    tabledef = TABLES[extname]
    label = f"{extname}#{index}"
    header = _strip_header(fits_header, findings, path, label)
    columns, units, formats = {}, {}, {}
    aliases = COLUMN_ALIASES.get(extname, {})
    cols = list(cols)
    present = {name.strip().upper() for name, *_ in cols}
    for raw_name, fmt, unit, get_array in cols:
        name = raw_name.strip().upper()
        std_name = aliases.get(name, name)
        if std_name != name:
            if std_name in present:
                std_name = name  # both present: keep the alias as an extra column
            else:
                findings.append(Finding(Severity.WARNING, "COLUMN_ALIAS",
                                        f"pre-standard column {name} read as {std_name}", label, name, file=path))
        if std_name in columns:
            findings.append(Finding(Severity.ERROR, "DUPLICATE_COLUMN", f"column {std_name} appears twice; first kept",
                                    label, std_name, file=path))
            continue
        try:
            arr = get_array()
            if arr.shape and arr.shape[0] != nrows:
                raise OIFitsError(f"column has {arr.shape[0]} rows, table has {nrows}")
            arr = _shape_column(tabledef, std_name, arr, nrows)
        except OIFitsError as exc:
            raise OIFitsError(exc.message, file=path, hdu=label, column=std_name) from None
        except Exception as exc:
            raise OIFitsError(f"cannot read column ({exc.__class__.__name__}: {exc})", file=path, hdu=label,
                              column=std_name) from None
        columns[std_name] = arr
        units[std_name] = unit
        formats[std_name] = fmt
    for alternatives in _ESSENTIAL.get(extname, ()):
        if not any(a in columns for a in alternatives):
            raise OIFitsError(f"{extname} lacks mandatory column {' or '.join(alternatives)}", file=path, hdu=label,
                              column=alternatives[0])
    _check_numeric(extname, tabledef, columns, nrows, path, label)
    return cls(header, columns, units, formats, hdu_index=index)


#: columns every computation uses: they must hold numbers (indices: finite integers)
_NUMERIC = {
    "OI_TARGET": ("TARGET_ID", "RAEP0", "DECEP0"),
    "OI_ARRAY": ("STA_INDEX", "STAXYZ", "DIAMETER"),
    "OI_WAVELENGTH": ("EFF_WAVE", "EFF_BAND"),
    "OI_CORR": ("IINDX", "JINDX", "CORR"),
    "OI_INSPOL": ("TARGET_ID", "MJD_OBS", "MJD_END", "STA_INDEX"),
    "OI_VIS2": ("TARGET_ID", "MJD", "INT_TIME", "TIME", "VIS2DATA", "VIS2ERR", "UCOORD", "VCOORD", "STA_INDEX", "FLAG"),
    "OI_VIS": ("TARGET_ID", "MJD", "INT_TIME", "TIME", "VISAMP", "VISAMPERR", "VISPHI", "VISPHIERR", "UCOORD", "VCOORD",
               "STA_INDEX", "FLAG"),
    "OI_T3": ("TARGET_ID", "MJD", "INT_TIME", "TIME", "T3AMP", "T3AMPERR", "T3PHI", "T3PHIERR", "U1COORD", "V1COORD",
              "U2COORD", "V2COORD", "STA_INDEX", "FLAG"),
    "OI_FLUX": ("TARGET_ID", "MJD", "INT_TIME", "FLUXDATA", "FLUXERR", "STA_INDEX", "FLAG"),
}
_INDEX_COLUMNS = ("TARGET_ID", "STA_INDEX", "IINDX", "JINDX")


def _check_numeric(extname: str, tabledef, columns: dict, nrows: int, path, label) -> None:
    for name in _NUMERIC.get(extname, ()):
        arr = columns.get(name)
        if arr is None:
            continue
        kind = arr.dtype.kind
        if kind not in "biuf" or (name == "FLAG" and kind not in "biu"):
            raise OIFitsError(f"column holds {arr.dtype} values, expected {'logical' if name == 'FLAG' else 'numbers'}",
                              file=path, hdu=label, column=name)
        if name in _INDEX_COLUMNS and kind == "f" and not np.all(np.isfinite(arr) & (arr == np.round(arr))):
            raise OIFitsError("index column holds non-integer values", file=path, hdu=label, column=name)
        coldef = tabledef.column(name)
        if coldef is not None and isinstance(coldef.repeat, int) and nrows:
            per_row = arr.size // nrows
            if per_row != coldef.repeat:
                raise OIFitsError(f"column has {per_row} values per row, the standard says {coldef.repeat}",
                                  file=path, hdu=label, column=name)


def read_oifits(source: str | os.PathLike | fits.HDUList, *, warn: bool = True) -> OIFits:
    """Read an OIFITS v1 or v2 file (a path or an open astropy HDUList).

    Raises :class:`OIFitsError` (naming file, HDU, card, column) for input that cannot be used
    as it stands: damaged FITS structure (:mod:`~oiflow.oifits.fitsfile`), an OI table whose
    columns cannot be interpreted, an OI_* HDU that is not a binary table, no OI_TARGET /
    OI_WAVELENGTH / data table. Anything else off the standard is recorded in
    ``read_findings`` (and emitted as :class:`OIFitsWarning` when ``warn``).
    """
    loaded = load_oifits(source)
    if loaded.fatal:
        raise loaded.fatal[0]
    oi = loaded.oi
    if warn:
        for f in oi.read_findings:
            if f.severity != Severity.INFO:
                warnings.warn(f"{Path(oi.path).name if oi.path else '<memory>'}: {f.rule}: {f.message} [{f.location()}]",
                              OIFitsWarning, stacklevel=2)
    return oi


@dataclass
class Loaded:
    """What :func:`load_oifits` could read of a file: the OI tables that could be interpreted,
    every finding (``oi.read_findings``) and ``fatal``, the reasons :func:`read_oifits` refuses
    the file (empty when it is usable). The validator reports all of it."""

    oi: OIFits
    fatal: list[OIFitsError] = field(default_factory=list)
    is_fits: bool = True  # False: not FITS at all (no HDU could be read)


def load_oifits(source: str | os.PathLike | fits.HDUList) -> Loaded:
    """Read as much of ``source`` as can be read. Raises :class:`OIFitsError` only when a path
    cannot be opened at all (missing, a directory, no permission)."""
    if isinstance(source, fits.HDUList):
        path = getattr(source, "filename", lambda: None)() or None
        ff = fitsfile.from_hdulist(source, path)
    else:
        path = str(source)
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise OIFitsError("no such file", file=path) from None
        except IsADirectoryError:
            raise OIFitsError("is a directory, not a FITS file", file=path) from None
        except OSError as exc:
            raise OIFitsError(f"cannot read file ({exc.strerror or exc})", file=path) from None
        ff = fitsfile.open_fits(data, path)
    oi = OIFits(path=path)
    findings = list(ff.findings)
    fatal: list[OIFitsError] = []
    if ff.error() is not None:
        fatal.append(ff.error())
    for index, hdu in enumerate(ff.hdus):
        if index in ff.damaged:
            continue  # its FITS_STRUCTURE findings say why
        try:
            _add_hdu(oi, index, hdu, path, findings)
        except OIFitsError as exc:
            label = fitsfile.hdu_label(index, hdu.header)
            err = OIFitsError(exc.message, file=path, hdu=exc.hdu if exc.hdu is not None else label,
                              column=exc.column, rows=exc.rows, card=exc.card)
            fatal.append(err)
            findings.append(Finding(Severity.ERROR, "OI_TABLE_UNREADABLE", exc.message, err.hdu, exc.column,
                                    file=path, card=exc.card))
        except Exception as exc:
            label = fitsfile.hdu_label(index, hdu.header)
            fatal.append(OIFitsError(f"cannot read HDU ({exc.__class__.__name__}: {exc})", file=path, hdu=label))
            findings.append(Finding(Severity.ERROR, "OI_TABLE_UNREADABLE",
                                    f"cannot read HDU ({exc.__class__.__name__}: {exc})", label, file=path))
    if ff.hdus:  # a FITS file: say what an OIFITS file lacks
        fatal += _missing_tables(oi, path)
    _note_read_issues(oi, findings, path)
    oi.read_findings = findings
    return Loaded(oi, fatal, bool(ff.hdus))


def _add_hdu(oi: OIFits, index: int, hdu, path: str | None, findings: list[Finding]) -> None:
    if index == 0:
        oi.primary_header = _strip_header(hdu.header, findings, path, "PRIMARY")
        data = getattr(hdu, "data", None)
        if data is not None and getattr(data, "size", 0):
            oi.primary_data = np.array(data)
        return
    extname = str(hdu.header.get("EXTNAME", "")).strip().upper()
    if extname in TABLE_CLASSES:
        if not isinstance(hdu, fits.BinTableHDU):
            raise OIFitsError(f"{extname} is not a binary table (XTENSION = {hdu.header.get('XTENSION')!r})",
                              hdu=f"{extname}#{index}", card="XTENSION")
        oi.tables.append(_parse_table(hdu, index, path, findings))
    else:
        oi.extra_hdus.append(hdu.copy())


def _missing_tables(oi: OIFits, path: str | None) -> list[OIFitsError]:
    out = []
    if not oi.targets:
        out.append(OIFitsError("no OI_TARGET table: not an OIFITS file", file=path, hdu="OI_TARGET"))
    if not oi.wavelengths:
        out.append(OIFitsError("no OI_WAVELENGTH table: not an OIFITS file", file=path, hdu="OI_WAVELENGTH"))
    if not oi.data_tables:
        out.append(OIFitsError("no data table (OI_VIS, OI_VIS2, OI_T3 or OI_FLUX)", file=path, hdu="OI_VIS2"))
    return out


def _note_read_issues(oi: OIFits, findings: list[Finding], path: str | None) -> None:
    """Issues worth a reader warning (the validator reports the full set)."""
    if not oi.arrays:
        findings.append(Finding(Severity.WARNING, "NO_OI_ARRAY", "no OI_ARRAY table: station names and positions unknown",
                                file=path))
    for t in oi.tables:
        if t.nrows == 0:
            findings.append(Finding(Severity.WARNING, "EMPTY_TABLE", f"{t.EXTNAME} has no rows", t.label, file=path))
    for t in oi.flux:
        if t.revn is None:
            findings.append(Finding(Severity.WARNING, "OI_REVN_MISSING", "OI_FLUX without OI_REVN", t.label, file=path))
    for w in oi.wavelengths:
        wave = w.eff_wave
        if wave.size > 1 and np.any(np.diff(wave) < 0):
            sev = "decreasing" if np.all(np.diff(wave) < 0) else "non-monotonic"
            findings.append(Finding(Severity.INFO, "EFF_WAVE_ORDER", f"EFF_WAVE is {sev}", w.label, "EFF_WAVE", file=path))
