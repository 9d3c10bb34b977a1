"""Reading OIFITS v1/v2 files, tolerantly.

Real files break the standard in many small ways (see shared MANIFEST.md); the reader loads
them, records what is off in ``OIFits.read_findings`` and emits :class:`OIFitsWarning`. It raises
:class:`OIFitsError` (naming file, HDU and column) only when the input cannot be used at all:
not FITS, truncated, no OI_TARGET / OI_WAVELENGTH / data table, or a data table without the
columns that give it meaning.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..errors import OIFitsError, OIFitsWarning
from . import rawfits
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


def _column_array(data, name: str, fmt: str, nrows: int) -> np.ndarray:
    col = data[name]
    m = _TFORM.match(fmt or "")
    code = m.group(2) if m else ""
    if code == "A":
        arr = np.asarray(col, dtype=str)
        return np.char.rstrip(arr)
    if code in ("P", "Q"):
        return np.asarray(list(col), dtype=object)
    arr = np.array(col, copy=True)
    if code == "L":
        arr = arr.astype(bool)
    if nrows and arr.shape and arr.shape[0] != nrows:
        raise OIFitsError(f"column has {arr.shape[0]} rows, table has {nrows}", column=name)
    return arr


def _shape_column(tabledef, name: str, arr: np.ndarray, nrows: int) -> np.ndarray:
    """Give array columns their canonical shape: (nrows, nwave) for NWAVE columns, etc."""
    if arr.dtype.kind in "UO":
        return arr
    coldef = tabledef.column(name) if tabledef else None
    if coldef is None:
        return arr
    if coldef.repeat == "NWAVE":
        return arr.reshape(nrows, -1) if arr.size or nrows == 0 else arr.reshape(nrows, 0)
    if coldef.repeat == "NWAVE2":
        if arr.ndim == 3:
            return arr
        flat = arr.reshape(nrows, -1)
        n = int(round(np.sqrt(flat.shape[1]))) if flat.shape[1] else 0
        return flat.reshape(nrows, n, n) if n * n == flat.shape[1] else flat
    if isinstance(coldef.repeat, int) and coldef.repeat > 1:
        return arr.reshape(nrows, -1)
    if arr.ndim > 1 and arr.shape[1:] == (1,):
        return arr.reshape(nrows)
    return arr


def _parse_table(hdu, index: int, path: str | None, findings: list[Finding]) -> OITable:
    """An OI table from an astropy BinTableHDU (the general path)."""
    data = hdu.data
    nrows = int(hdu.header.get("NAXIS2", 0) or 0)

    def columns():
        for col in hdu.columns:
            unit = (col.unit or "").strip() if isinstance(col.unit, str) else ""
            yield col.name, str(col.format), unit, (
                lambda c=col: _column_array(data, c.name, c.format, nrows) if data is not None else np.zeros(0))

    return _table_from_columns(hdu.header, columns(), nrows, index, path, findings)


def _table_from_raw(raw: rawfits.RawHDU, cols: list, index: int, path, findings) -> OITable:
    """An OI table from columns decoded by :mod:`rawfits` (the fast path)."""
    nrows = int(raw.header.get("NAXIS2", 0) or 0)
    return _table_from_columns(raw.header, ((c.name, c.format, c.unit, lambda c=c: c.array) for c in cols), nrows,
                               index, path, findings)


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
            if nrows and arr.shape and arr.shape[0] != nrows:
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


_CHECKSUM_MSG = re.compile(r"(Checksum|Datasum) verification failed for HDU \(?'?([^',)]*)'?,?\s*(\d*)")


def _record_astropy_warnings(caught, findings: list[Finding], path: str | None) -> None:
    for w in caught:
        msg = str(w.message).strip()
        m = _CHECKSUM_MSG.search(msg)
        if m:
            kind, name, ver = m.groups()
            rule = "CHECKSUM_HDU" if kind == "Checksum" else "CHECKSUM_DATA"
            findings.append(Finding(Severity.ERROR if rule == "CHECKSUM_DATA" else Severity.WARNING, rule,
                                    f"{kind.upper()} verification failed ({'data corrupted' if rule == 'CHECKSUM_DATA' else 'header or data modified after writing'})",
                                    name or None, file=path))
        elif "truncated" in msg.lower():
            raise OIFitsError(f"truncated file: {msg.splitlines()[0]}", file=path)
        else:
            findings.append(Finding(Severity.WARNING, "FITS_VERIFY", msg.splitlines()[0][:200], file=path))


def read_oifits(source: str | os.PathLike | fits.HDUList, *, warn: bool = True) -> OIFits:
    """Read an OIFITS v1 or v2 file (a path or an open astropy HDUList).

    Raises :class:`OIFitsError` for unusable input; anything else that is off the standard is
    recorded in ``read_findings`` (and emitted as :class:`OIFitsWarning` when ``warn``).
    """
    findings: list[Finding] = []
    if isinstance(source, fits.HDUList):
        path = getattr(source, "filename", lambda: None)() or None
        hdul, own = source, False
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
        if len(data) < 2880:
            raise OIFitsError(f"truncated or empty file ({len(data)} bytes, a FITS file has at least 2880)",
                              file=path, hdu=0)
        return _build_raw(data, path, findings, warn)
    try:
        return _build(hdul, path, findings, warn)
    finally:
        if own:
            hdul.close()


def _build(hdul: fits.HDUList, path: str | None, findings: list[Finding], warn: bool) -> OIFits:
    oi = OIFits(path=path)
    n_hdu = len(hdul)
    for index in range(n_hdu):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                hdu = hdul[index]
                if index == 0:
                    oi.primary_header = _strip_header(hdu.header, findings, path, "PRIMARY")
                    if hdu.data is not None and getattr(hdu.data, "size", 0):
                        oi.primary_data = np.array(hdu.data)
                    continue
                extname = str(hdu.header.get("EXTNAME", "")).strip().upper()
                if extname in TABLE_CLASSES and isinstance(hdu, fits.BinTableHDU):
                    oi.tables.append(_parse_table(hdu, index, path, findings))
                else:
                    if extname in TABLE_CLASSES:
                        findings.append(Finding(Severity.ERROR, "NOT_A_BINTABLE", f"{extname} is not a binary table",
                                                f"{extname}#{index}", file=path))
                    _ = hdu.data  # load now: the file is closed after reading
                    oi.extra_hdus.append(hdu.copy())
            _record_astropy_warnings(caught, findings, path)
        except OIFitsError as exc:
            if exc.file is None:
                exc = OIFitsError(exc.message, file=path, hdu=exc.hdu if exc.hdu is not None else index,
                                  column=exc.column, rows=exc.rows)
            raise exc from None
        except Exception as exc:
            raise OIFitsError(f"cannot read HDU ({exc.__class__.__name__}: {exc})", file=path, hdu=index) from None

    return _finish(oi, path, findings, warn)


def _build_raw(data: bytes, path: str, findings: list[Finding], warn: bool) -> OIFits:
    """Read from the file's bytes: numpy for plain binary tables, astropy for everything else."""
    hdus = rawfits.scan(data, path)
    oi = OIFits(path=path)
    fallback: list = []

    def astropy_hdu(i: int):
        if not fallback:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fallback.append(fits.open(io.BytesIO(data), memmap=False, lazy_load_hdus=True))
        return fallback[0][i]

    try:
        for raw in hdus:
            index = raw.index
            try:
                hdu_ok, data_ok = rawfits.verify_checksums(data, raw)
                if data_ok is False:
                    findings.append(Finding(Severity.ERROR, "CHECKSUM_DATA", "DATASUM verification failed (data corrupted)",
                                            raw.label, file=path))
                if hdu_ok is False:
                    findings.append(Finding(Severity.WARNING, "CHECKSUM_HDU",
                                            "CHECKSUM verification failed (header or data modified after writing)",
                                            raw.label, file=path))
                _record_astropy_warnings(raw.caught, findings, path)
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    if index == 0:
                        oi.primary_header = _strip_header(raw.header, findings, path, "PRIMARY")
                        try:
                            oi.primary_data = rawfits.image_data(data, raw)
                        except ValueError:
                            pdata = astropy_hdu(0).data
                            oi.primary_data = None if pdata is None or not getattr(pdata, "size", 0) else np.array(pdata)
                        continue
                    extname = raw.extname
                    is_bintable = str(raw.header.get("XTENSION", "")).strip() == "BINTABLE"
                    if extname in TABLE_CLASSES and is_bintable:
                        cols = rawfits.table_columns(data, raw)
                        if cols is None:
                            oi.tables.append(_parse_table(astropy_hdu(index), index, path, findings))
                        else:
                            oi.tables.append(_table_from_raw(raw, cols, index, path, findings))
                    else:
                        if extname in TABLE_CLASSES:
                            findings.append(Finding(Severity.ERROR, "NOT_A_BINTABLE", f"{extname} is not a binary table",
                                                    f"{extname}#{index}", file=path))
                        hdu = astropy_hdu(index)
                        _ = hdu.data  # load now: the buffer is released after reading
                        oi.extra_hdus.append(hdu.copy())
                _record_astropy_warnings(caught, findings, path)
            except OIFitsError as exc:
                if exc.file is None:
                    exc = OIFitsError(exc.message, file=path, hdu=exc.hdu if exc.hdu is not None else index,
                                      column=exc.column, rows=exc.rows)
                raise exc from None
            except Exception as exc:
                raise OIFitsError(f"cannot read HDU ({exc.__class__.__name__}: {exc})", file=path, hdu=index) from None
    finally:
        for h in fallback:
            h.close()
    return _finish(oi, path, findings, warn)


def _finish(oi: OIFits, path: str | None, findings: list[Finding], warn: bool) -> OIFits:
    if not oi.targets:
        raise OIFitsError("no OI_TARGET table: not an OIFITS file", file=path, hdu="OI_TARGET")
    if not oi.wavelengths:
        raise OIFitsError("no OI_WAVELENGTH table: not an OIFITS file", file=path, hdu="OI_WAVELENGTH")
    if not oi.data_tables:
        raise OIFitsError("no data table (OI_VIS, OI_VIS2, OI_T3 or OI_FLUX)", file=path, hdu="OI_VIS2")
    _note_read_issues(oi, findings, path)
    oi.read_findings = findings
    if warn:
        for f in findings:
            if f.severity != Severity.INFO:
                warnings.warn(f"{Path(path).name if path else '<memory>'}: {f.rule}: {f.message} [{f.location()}]",
                              OIFitsWarning, stacklevel=3)
    return oi


def _note_read_issues(oi: OIFits, findings: list[Finding], path: str | None) -> None:
    """Issues worth a reader warning (the validator reports the full set)."""
    if not oi.arrays:
        findings.append(Finding(Severity.WARNING, "NO_OI_ARRAY", "no OI_ARRAY table: station names and positions unknown",
                                file=path))
    for t in oi.flux:
        if t.revn is None:
            findings.append(Finding(Severity.WARNING, "OI_REVN_MISSING", "OI_FLUX without OI_REVN", t.label, file=path))
    for w in oi.wavelengths:
        wave = w.eff_wave
        if wave.size > 1 and np.any(np.diff(wave) < 0):
            sev = "decreasing" if np.all(np.diff(wave) < 0) else "non-monotonic"
            findings.append(Finding(Severity.INFO, "EFF_WAVE_ORDER", f"EFF_WAVE is {sev}", w.label, "EFF_WAVE", file=path))
