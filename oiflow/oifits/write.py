"""Writing OIFITS: standard-conformant OIFITS2 by default, OIFITS1 on request.

Known columns get the standard format (NWAVE repeats from the data, strings at least the
standard width, wider when the values need it so nothing is truncated) and the canonical unit;
unknown columns and keywords are written as they were read. Missing mandatory v2 content is
filled in from the data (main-header keywords, DATE-OBS, ARRNAME, OI_ARRAY FOV/FOVTYPE,
OI_FLUX CALSTAT) and every such fill is recorded in a HISTORY card. Files are written
atomically with CHECKSUM/DATASUM.

The FITS encoding is cfitsio's (through ``fitsio``): the writer decides which keywords and
columns a file holds (:class:`_Cards`, :class:`_Column`), cfitsio formats the cards, the
tables and the checksums. HDUs that are not OI tables (kept from the input as astropy HDUs)
are encoded by astropy and appended. Why cfitsio and not astropy, which reads: writing the 20
L1 files of the reducer benchmark takes astropy 15× longer than cfitsio, which alone would put
the reduction at 13× the time of reading its raw files (goal ≤ 3×; README, I/O benchmarks).
cfitsio writes floating-point keyword values with 15 significant digits.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import os
import re
import warnings
from dataclasses import dataclass

import fitsio
import numpy as np
from .astropy_fits import fits

from .. import PROCSOFT
from ..errors import OIFitsError, OIFitsWarning
from ..provenance import Provenance, write_bytes_atomic
from .model import ArrayTable, DataTable, FluxTable, OIFits, OITable, VisTable
from .schema import MAIN_HEADER_V2, NUMPY_DTYPES, TABLES, V1, V2

_TFORM = re.compile(r"^\s*(\d*)\s*([A-Z])(.*)$")

# order of tables in a written file
_ORDER = ("OI_TARGET", "OI_ARRAY", "OI_WAVELENGTH", "OI_CORR", "OI_INSPOL", "OI_VIS", "OI_VIS2", "OI_T3", "OI_FLUX")


def _fits_format(code: str, repeat: int) -> str:
    return f"{repeat}{code}"


@dataclass
class _Column:
    """A column as written: name, TFORM, data (nrows first), TUNIT and TDIM."""

    name: str
    format: str
    array: np.ndarray
    unit: str | None = None
    dim: str | None = None


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
        return _Column(name, f"{width}A", np.asarray(arr, dtype=str), coldef.unit)
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
    return _Column(name, _fits_format(code, repeat), a, coldef.unit, dim)


def _unknown_column(name: str, arr: np.ndarray, fmt: str | None, unit: str | None):
    a = np.asarray(arr)
    if a.dtype.kind == "U":
        width = _string_width(a, 1)
        return _Column(name, f"{width}A", a, unit or None)
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
    return _Column(name, f"{repeat}{code}", a.reshape(a.shape[0], -1) if a.ndim > 1 else a, unit or None, dim)


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
    from astropy.time import Time  # here: astropy.time (and astropy.units) cost 0.1–0.3 s of every writer's import

    return Time(float(mjd.min()), format="mjd").to_value("iso", subfmt="date")


def _set_card(header, card: fits.Card) -> None:
    """Copy a card (long keywords are written as HIERARCH keywords)."""
    key = card.keyword
    if len(key) > 8 or " " in key:
        key = f"HIERARCH {key}"
    header.set(key, card.value, card.comment)


def _table_columns(oi: OIFits, table: OITable, version: int, history: list[str]) -> tuple[int, list[_Column]]:
    """The columns of ``table`` as written (standard formats, v2 additions)."""
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
                col = _known_column(tabledef, name, columns[name], nrows, nwave, version)
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
    return nrows, cols


def _table_keywords(oi: OIFits, table: OITable, version: int, history: list[str], header) -> None:
    """Add the keywords of ``table`` to ``header`` (a :class:`_Cards`)."""
    tabledef = TABLES[table.EXTNAME]
    label = table.label
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


def _utc_now() -> str:
    """DATE of a written file (UTC, to the second)."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def _primary_keywords(oi: OIFits, version: int, history: list[str], provenance: Provenance | None, header) -> None:
    """Add the main-header keywords to ``header`` (a :class:`_Cards`)."""
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
    header["DATE"] = (_utc_now(), "file creation date (UTC)")
    if provenance is not None:
        provenance.apply_to_header(header)
    elif not header.get("PROCSOFT"):
        header["PROCSOFT"] = PROCSOFT
    for line in history:
        header.add_history(f"oiflow: {line}")


def _single_or_multi(values) -> str:
    vals = sorted({str(v).strip() for v in values if str(v).strip()})
    if not vals:
        return "UNKNOWN"
    return vals[0] if len(vals) == 1 else "MULTI"


def _fill_main_header(oi: OIFits, header, history: list[str]) -> None:
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


def _kept_tables(oi: OIFits, version: int) -> list[OITable]:
    """The tables written, in the standard order (OIFITS2-only tables dropped from OIFITS1, with a warning)."""
    if version not in (V1, V2):
        raise OIFitsError(f"unknown OIFITS version {version}; use 1 or 2")
    kept = []
    for table in sorted(oi.tables, key=lambda t: _ORDER.index(t.EXTNAME)):
        if version not in TABLES[table.EXTNAME].versions:
            warnings.warn(f"{table.label}: OIFITS2-only table dropped when writing OIFITS1", OIFitsWarning, stacklevel=4)
            continue
        kept.append(table)
    return kept


@contextlib.contextmanager
def _errors_name(oi: OIFits, table: OITable):
    """Errors raised while encoding ``table`` name the file and the table."""
    try:
        yield
    except OIFitsError as exc:
        raise OIFitsError(exc.message, file=oi.path, hdu=exc.hdu or table.label, column=exc.column) from None


def to_hdulist(oi: OIFits, version: int = V2, provenance: Provenance | None = None) -> fits.HDUList:
    """The astropy HDUList of what :func:`write_oifits` writes (the same bytes, decoded)."""
    return fits.HDUList.fromstring(encode_oifits(oi, version, provenance))


def write_oifits(oi: OIFits, path: str | os.PathLike, *, version: int = V2,
                 provenance: Provenance | None = None, overwrite: bool = True) -> str:
    """Write ``oi`` to ``path`` atomically (OIFITS2 unless ``version=1``); returns the path."""
    if not overwrite and os.path.exists(path):
        raise OIFitsError("output exists and overwrite is False", file=path)
    write_bytes_atomic(encode_oifits(oi, version, provenance), path)
    return str(path)


def encode_oifits(oi: OIFits, version: int = V2, provenance: Provenance | None = None) -> bytes:
    """The bytes of the OIFITS file of ``oi`` (tables in the standard order, CHECKSUM/DATASUM)."""
    history: list[str] = []
    tables = []
    for table in _kept_tables(oi, version):
        with _errors_name(oi, table):
            nrows, cols = _table_columns(oi, table, version, history)
            cards = _Cards()
            _table_keywords(oi, table, version, history, cards)
        tables.append((table, nrows, cols, cards))
    primary = _Cards()
    _primary_keywords(oi, version, history, provenance, primary)
    f = fitsio.FITS("mem://", "rw")
    try:
        f.write(oi.primary_data)
        hdu = f[0]
        for _ in range(2):  # cfitsio's two COMMENT cards citing the FITS paper: not ours to add
            hdu.delete_key("COMMENT")
        _write_cards(hdu, primary, oi, "PRIMARY")
        hdu.write_checksum()
        for table, nrows, cols, cards in tables:
            with _errors_name(oi, table):
                f.write_table(_records(nrows, cols), units=[c.unit or "" for c in cols], extname=table.EXTNAME)
                hdu = f[-1]
                _write_cards(hdu, cards, oi, table.label)
                hdu.write_checksum()
        blob = f.read_raw()
    finally:
        f.close()
    if oi.extra_hdus:
        blob += _encode_with_astropy(oi.extra_hdus)
    return blob


# -- what the writer hands cfitsio --------------------------------------------------------------
_COMMENTARY = frozenset(("", "COMMENT", "HISTORY"))
#: keywords cfitsio writes from the data: copies from the input would contradict them
_RESERVED = re.compile(r"^(XTENSION|BITPIX|NAXIS\d*|PCOUNT|GCOUNT|TFIELDS|THEAP|CHECKSUM|DATASUM|SIMPLE|EXTEND|GROUPS"
                       r"|T(TYPE|FORM|UNIT|DIM|NULL|SCAL|ZERO|DISP|BCOL)\d+)$")


class _Cards:
    """The keywords of one header under construction, in order, with astropy ``Header``
    semantics for what the writer and :meth:`Provenance.apply_to_header` call:
    ``h[key] = value | (value, comment)``, ``set``, ``append(card, end=True)``,
    ``add_history``, ``get``, ``remove``, ``in``. A new keyword goes before the trailing
    commentary cards, a commentary card at the end, an existing keyword is updated in place.
    It holds (keyword, value, comment); cfitsio formats them."""

    def __init__(self):
        self.cards: list[list] = []  # [keyword (HIERARCH prefix removed), value, comment]
        self._by_norm: dict[str, list] = {}  # upper-case keyword → its card (commentary cards excluded)

    @staticmethod
    def _norm(key: str) -> str:
        key = key.strip()
        return (key[9:].strip() if key[:9].upper() == "HIERARCH " else key).upper()

    def __contains__(self, key: str) -> bool:
        return self._norm(key) in self._by_norm

    def get(self, key: str, default=None):
        card = self._by_norm.get(self._norm(key))
        return default if card is None else card[1]

    def __getitem__(self, key: str):
        card = self._by_norm.get(self._norm(key))
        if card is None:
            raise KeyError(key)
        return card[1]

    def __setitem__(self, key: str, value) -> None:
        comment = None
        if isinstance(value, tuple):
            value, comment = (value[0], None) if len(value) == 1 else value[:2]
        norm = self._norm(key)
        card = self._by_norm.get(norm)
        if card is not None:
            card[1] = value
            if comment is not None:
                card[2] = comment
            return
        keyword = key.strip()
        keyword = keyword[9:].strip() if keyword[:9].upper() == "HIERARCH " else keyword
        if norm in _COMMENTARY:
            self.cards.append([norm, value, comment])
            return
        card = [keyword, value, comment]
        self.cards.insert(self._append_position(), card)
        self._by_norm[norm] = card

    def set(self, key: str, value=None, comment=None) -> None:
        card = self._by_norm.get(self._norm(key))
        if card is not None:
            value = card[1] if value is None else value
            comment = card[2] if comment is None else comment
        self[key] = (value, comment)

    def append(self, card: fits.Card, end: bool = False) -> None:
        self[card.keyword] = (card.value, card.comment)

    def add_history(self, text: str) -> None:
        self["HISTORY"] = text

    def remove(self, key: str, ignore_missing: bool = False) -> None:
        card = self._by_norm.pop(self._norm(key), None)
        if card is None:
            if not ignore_missing:
                raise KeyError(key)
            return
        del self.cards[next(i for i, c in enumerate(self.cards) if c is card)]

    def _append_position(self) -> int:
        """Where astropy's ``Header.append`` puts a new keyword: before the trailing commentary cards."""
        idx = len(self.cards)
        while idx > 0 and self.cards[idx - 1][0].upper() in _COMMENTARY:
            idx -= 1
        return idx


def _plain(value):
    """A header value as the Python type cfitsio's keyword writers take."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _write_cards(hdu, cards: _Cards, oi: OIFits, label: str) -> None:
    for keyword, value, comment in cards.cards:
        norm = keyword.upper()
        if norm == "COMMENT":
            hdu.write_comment(str(value))
        elif norm == "HISTORY":
            hdu.write_history(str(value))
        elif norm == "":
            hdu.write_key(None, None, comment=str(value))
        elif _RESERVED.match(norm):
            continue  # structure: written by cfitsio from the data
        else:
            value = _plain(value)
            if isinstance(value, float) and not np.isfinite(value):
                raise OIFitsError(f"keyword {keyword} = {value}: FITS headers cannot hold NaN or infinity",
                                  file=oi.path, hdu=label, card=keyword)
            if not isinstance(value, (bool, int, float, str)) and value is not None:
                value = str(value)
            name = keyword if len(keyword) <= 8 and " " not in keyword else f"HIERARCH {keyword}"
            try:
                hdu.write_key(name, value, comment or "")
            except Exception as exc:
                raise OIFitsError(f"cannot write keyword ({exc.__class__.__name__}: {exc})", file=oi.path,
                                  hdu=label, card=keyword) from None


def _records(nrows: int, cols: list[_Column]) -> np.ndarray:
    """The table as one numpy record array (strings as ASCII bytes, logicals as bool)."""
    names, formats, values = [], [], []
    for col in cols:
        a = np.asarray(col.array)
        m = _TFORM.match(col.format)
        code, repeat = m.group(2), int(m.group(1) or 1)
        if code == "A":
            try:
                a = np.char.encode(np.asarray(a, dtype=str), "ascii")
            except UnicodeEncodeError:
                raise OIFitsError("non-ASCII characters: FITS strings are ASCII", column=col.name) from None
            fmt = f"S{max(repeat, 1)}"
        else:
            dtype = np.dtype(bool) if code == "L" else _NATIVE[code]
            if code == "L" and a.dtype.kind != "b":
                raise OIFitsError(f"logical column holds {a.dtype} values", column=col.name)
            shape = (repeat,) if col.dim is None else tuple(int(x) for x in col.dim.strip("()").split(","))[::-1]
            a = a.astype(dtype, copy=False).reshape((nrows, *shape) if repeat != 1 else (nrows,))
            fmt = (dtype, shape) if repeat != 1 else dtype
        names.append(col.name)
        formats.append(fmt)
        values.append(a)
    rec = np.zeros(nrows, dtype=np.dtype({"names": names, "formats": formats}))
    for name, a in zip(names, values):
        rec[name] = a
    return rec


_NATIVE = {"B": np.dtype("u1"), **{k: np.dtype(v) for k, v in NUMPY_DTYPES.items()}}


def _encode_with_astropy(hdus) -> bytes:
    """Extensions that are not OI tables, encoded by astropy (after an empty primary HDU of one block)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        fits.HDUList([fits.PrimaryHDU(), *[h.copy() for h in hdus]]).writeto(buf, checksum=True)
    return buf.getvalue()[2880:]
