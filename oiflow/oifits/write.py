"""Writing OIFITS: standard-conformant OIFITS2 by default, OIFITS1 on request.

Known columns get the standard format (NWAVE repeats from the data, strings at least the
standard width, wider when the values need it so nothing is truncated) and the canonical unit;
unknown columns and keywords are written as they were read. Missing mandatory v2 content is
filled in from the data (main-header keywords, DATE-OBS, ARRNAME, OI_ARRAY FOV/FOVTYPE,
OI_FLUX CALSTAT) and every such fill is recorded in a HISTORY card. Files are written
atomically with CHECKSUM/DATASUM.

Two encoders share that logic. The fast one (used by :func:`write_oifits`) collects the cards in
:class:`_Header`, which follows astropy's ``Header`` rules for the calls made here (where a new
card goes, how an existing one is updated), formats them as astropy does, packs each table as
one big-endian numpy record array and computes the checksums with numpy
(:mod:`~oiflow.oifits.rawfits`, shared with the reader's verification). What it does not
handle is left to astropy: cards it cannot format one at a time (``Card``), HDUs that are not OI
tables, and whole files with primary data, unusual column types or reserved keywords in a
table header (``BinTableHDU.from_columns`` and ``writeto``, as :func:`to_hdulist` always does).
Both give the same bytes (tests/test_oifits_write_fast.py).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import os
import re
import warnings

from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from astropy.time import Time

from .. import PROCSOFT
from ..errors import OIFitsError, OIFitsWarning
from ..provenance import Provenance, write_bytes_atomic, write_hdulist_atomic
from . import rawfits
from .model import ArrayTable, DataTable, FluxTable, OIFits, OITable, VisTable, WavelengthTable
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

    def to_astropy(self) -> fits.Column:
        return fits.Column(name=self.name, format=self.format, array=self.array, unit=self.unit, dim=self.dim)


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
    return Time(float(mjd.min()), format="mjd").to_value("iso", subfmt="date")


def _set_card(header, card: fits.Card) -> None:
    """Copy a card, keeping long (HIERARCH) keywords long without astropy's VerifyWarning."""
    key = card.keyword
    if len(key) > 8 or " " in key:
        key = f"HIERARCH {key}"
    header.set(key, card.value, card.comment)


def _table_hdu(oi: OIFits, table: OITable, version: int, history: list[str]) -> fits.BinTableHDU:
    nrows, cols = _table_columns(oi, table, version, history)
    hdu = fits.BinTableHDU.from_columns([c.to_astropy() for c in cols], nrows=nrows)
    _table_keywords(oi, table, version, history, hdu.header)
    return hdu


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
    """Add the keywords of ``table`` to ``header`` (an astropy ``Header`` after its structural
    cards, or a :class:`_Header`)."""
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


def _primary_hdu(oi: OIFits, version: int, history: list[str], provenance: Provenance | None) -> fits.PrimaryHDU:
    hdu = fits.PrimaryHDU(data=oi.primary_data)
    _primary_keywords(oi, version, history, provenance, hdu.header)
    return hdu


def _primary_keywords(oi: OIFits, version: int, history: list[str], provenance: Provenance | None, header) -> None:
    """Add the main-header keywords to ``header`` (astropy ``Header`` or :class:`_Header`)."""
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


def to_hdulist(oi: OIFits, version: int = V2, provenance: Provenance | None = None) -> fits.HDUList:
    """Build the astropy HDUList of ``oi`` (what :func:`write_oifits` writes, apart from CHECKSUM/DATASUM)."""
    with warnings.catch_warnings():
        # copying ESO HIERARCH cards makes astropy announce each one; they are written as read
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        return _to_hdulist(oi, version, provenance)


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


def _to_hdulist(oi: OIFits, version: int, provenance: Provenance | None) -> fits.HDUList:
    history: list[str] = []
    table_hdus = []
    for table in _kept_tables(oi, version):
        with _errors_name(oi, table):
            table_hdus.append(_table_hdu(oi, table, version, history))
    primary = _primary_hdu(oi, version, history, provenance)
    extras = [h.copy() for h in oi.extra_hdus]
    return fits.HDUList([primary, *table_hdus, *extras])


# -- the fast encoder -----------------------------------------------------------------------

class _Unsupported(Exception):
    """Something the fast encoder leaves to astropy."""


_COMMENTARY = frozenset(("", "COMMENT", "HISTORY", "END"))
_FSC_KEYWORD = re.compile(r"^[A-Z0-9_-]{0,8}$")
_HIERARCH_KEYWORD = re.compile(r"^[ -<>-~]+$")  # printable ASCII without '='
_PRINTABLE = re.compile(r"[ -~]*\Z")
#: keywords the encoder writes itself: a table or main header that holds one goes to astropy
_RESERVED = re.compile(r"^(XTENSION|BITPIX|NAXIS\d*|PCOUNT|GCOUNT|TFIELDS|THEAP|CHECKSUM|DATASUM|SIMPLE|EXTEND|GROUPS"
                       r"|T(TYPE|FORM|UNIT|DIM|NULL|SCAL|ZERO|DISP|BCOL)\d+)$")


class _Card:
    __slots__ = ("keyword", "norm", "hierarch", "value", "comment", "image")

    def __init__(self, keyword: str, hierarch: bool, value, comment: str | None, image: str | None = None):
        self.keyword, self.norm, self.hierarch = keyword, keyword.upper(), hierarch
        self.value, self.comment, self.image = value, comment, image


def _parse_keyword(key: str) -> tuple[str, bool]:
    """(keyword, is HIERARCH) as astropy's ``Card`` makes them."""
    if not isinstance(key, str) or "." in key:
        raise _Unsupported(f"keyword {key!r}")  # record-valued keyword cards: astropy's business
    key = key.rstrip()
    upper = key.upper()
    if len(key) <= 8 and _FSC_KEYWORD.match(upper):
        return upper, False
    if not _HIERARCH_KEYWORD.match(key):
        raise _Unsupported(f"keyword {key!r}")
    return (key[9:].strip(), True) if upper[:9] == "HIERARCH " else (key, True)


def _differs(old, new) -> bool:
    """astropy's test for whether setting a card's value changes it."""
    if isinstance(old, str) and isinstance(new, str):
        return old.rstrip() != new.rstrip()
    if isinstance(old, bool) or isinstance(new, bool):
        return old is not new
    return old != new or not isinstance(new, type(old))


class _Header:
    """The cards of one header under construction, with astropy ``Header`` semantics for what the
    writer and :meth:`Provenance.apply_to_header` call: ``h[key] = value | (value, comment)``,
    ``set``, ``append(card, end=True)``, ``add_history``, ``get``, ``remove``, ``in``. A new
    card goes before the trailing commentary cards, a commentary card at the end, an existing
    keyword is updated in place. Anything else raises :class:`_Unsupported`."""

    def __init__(self):
        self.cards: list[_Card] = []

    def _index(self, norm: str) -> int | None:
        for i, c in enumerate(self.cards):
            if c.norm == norm:
                return i
        return None

    @staticmethod
    def _norm(key: str) -> str:
        key = key.strip()
        return (key[9:].strip() if key[:9].upper() == "HIERARCH " else key).upper()

    def __contains__(self, key: str) -> bool:
        return self._index(self._norm(key)) is not None

    def get(self, key: str, default=None):
        norm = self._norm(key)
        if norm in _COMMENTARY:
            raise _Unsupported(f"get({key!r})")
        i = self._index(norm)
        if i is None:
            return default
        v = self.cards[i].value
        return v.rstrip() if isinstance(v, str) else v

    def __getitem__(self, key: str):
        v = self.get(key, _MISSING)
        if v is _MISSING:
            raise KeyError(key)
        return v

    def __setitem__(self, key: str, value) -> None:
        comment = None
        if isinstance(value, tuple):
            if len(value) == 1:
                value = value[0]
            elif len(value) == 2:
                value, comment = value
                comment = "" if comment is None else comment
            else:
                raise _Unsupported("card tuple")
        if value is None:
            raise _Unsupported("undefined value")
        if isinstance(value, np.bool_):
            value = bool(value)
        keyword, hierarch = _parse_keyword(key)
        norm = keyword.upper()
        if norm not in _COMMENTARY:
            i = self._index(norm)
            if i is not None:
                card = self.cards[i]
                if card.image is not None:
                    raise _Unsupported("update of a copied card")
                if _differs(card.value, value):
                    card.value = value
                if comment is not None:
                    card.comment = comment
                return
        self._insert(_Card(keyword, hierarch, value, comment))

    def set(self, key: str, value=None, comment=None) -> None:
        norm = self._norm(key)
        i = self._index(norm) if norm not in _COMMENTARY else None
        if i is not None:
            card = self.cards[i]
            comment = card.comment if comment is None else comment
            value = card.value if value is None else value
        self[key] = (value, comment)

    def append(self, card: fits.Card, end: bool = False) -> None:
        if not isinstance(card, fits.Card) or card.field_specifier is not None:
            raise _Unsupported("append")
        keyword = card.keyword
        c = _Card(keyword, len(keyword) > 8 or " " in keyword, card.value, card.comment, card.image)
        if end:
            self.cards.append(c)
        else:
            self._insert(c)

    def add_history(self, text: str) -> None:
        self["HISTORY"] = text

    def remove(self, key: str, ignore_missing: bool = False) -> None:
        i = self._index(self._norm(key))
        if i is None:
            if not ignore_missing:
                raise KeyError(key)
            return
        del self.cards[i]

    def _insert(self, card: _Card) -> None:
        self.cards.insert(self._append_position(card.norm in _COMMENTARY), card)

    def _append_position(self, commentary: bool) -> int:
        """Where astropy's ``Header.append`` puts a new card: at the end for commentary, else
        before the trailing commentary cards."""
        idx = len(self.cards)
        if not commentary:
            while idx > 0 and self.cards[idx - 1].norm in _COMMENTARY:
                idx -= 1
        return idx


_MISSING = object()


def _format_float(value) -> str:
    text = str(value).replace("e", "E")
    if len(text) > 20:
        e = text.find("E")
        text = text[:20] if e < 0 else text[: 20 - (len(text) - e)] + text[e:]
    return text


def _value_field(value) -> str | None:
    """The value as astropy writes it, or None where astropy should be asked."""
    if isinstance(value, str):
        if not _PRINTABLE.match(value):
            return None
        if value == "":
            return "''"
        quoted = "'{:8}'".format(value.replace("'", "''"))
        return f"{quoted:20}"
    if isinstance(value, (bool, np.bool_)):
        return f"{'T' if value else 'F':>20}"
    if isinstance(value, (int, np.integer)):
        return f"{value:>20d}"
    if isinstance(value, (float, np.floating)) and np.isfinite(value):
        return f"{_format_float(value):>20}"
    return None


def _astropy_image(card: _Card) -> str:
    key = f"HIERARCH {card.keyword}" if card.hierarch else card.keyword
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        return fits.Card(key, card.value, card.comment).image


def _card_image(card: _Card) -> str:
    """The 80-character image(s) of a card, formatted as astropy formats a new card."""
    if card.image is not None:
        return card.image
    if card.norm in _COMMENTARY:
        text = str(card.value)
        if not _PRINTABLE.match(text):
            return _astropy_image(card)
        key = f"{card.keyword:8}"
        return "".join(f"{key}{text[i:i + 72]:72}" for i in range(0, max(len(text), 1), 72))
    field = _value_field(card.value)
    comment = card.comment
    if field is None or (comment and not _PRINTABLE.match(comment)):
        return _astropy_image(card)
    if card.hierarch:
        key = f"HIERARCH {card.keyword} "
    else:
        key = f"{card.keyword:8}"
    if len(card.keyword) > 8:
        field = field.strip()
    tail = f" / {comment}" if comment else ""
    if card.hierarch and len(key) + 2 + len(field) == 81:
        key = key[:-1]
    image = f"{key}= {field}{tail}"
    if len(image) > 80:
        return _astropy_image(card)  # long strings (CONTINUE cards), comments astropy truncates
    return f"{image:80}"


def _checksum_timestamp() -> str:
    """The time in the comments of CHECKSUM/DATASUM (local time, as astropy writes it)."""
    return _dt.datetime.now().isoformat()[:19]


_BIG_ENDIAN = {"B": "u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8", "C": ">c8", "M": ">c16"}
_NATIVE = {"B": np.dtype("u1"), **{k: np.dtype(v) for k, v in NUMPY_DTYPES.items()}}


def _encode_table_data(nrows: int, cols: list[_Column]) -> tuple[list[tuple[str, object, str | None]], bytes]:
    """(TTYPE/TFORM/TUNIT/TDIM cards, the table's bytes) for plain fixed-size columns."""
    cards, formats, values = [], [], []
    for k, col in enumerate(cols, start=1):
        m = _TFORM.match(col.format)
        if not m or m.group(3).strip() or m.group(2) not in "LBIJKEDCMA":
            raise _Unsupported(f"column format {col.format}")
        repeat, code = int(m.group(1) or 1), m.group(2)
        a = col.array
        if code == "A":
            if a.dtype.kind != "U" or a.ndim != 1 or (col.dim and col.dim.strip()):
                raise _Unsupported(f"string column {col.name}")
            try:
                a = np.char.encode(a, "ascii")
            except UnicodeEncodeError:
                raise _Unsupported(f"non-ASCII strings in {col.name}") from None
            if a.dtype.itemsize > repeat:
                raise _Unsupported(f"strings wider than {col.format}")
            fmt = f"S{repeat}"
        else:
            if code == "L":
                if a.dtype.kind != "b":
                    raise _Unsupported(f"logical column {col.name} of {a.dtype}")
                a = np.where(a, np.uint8(ord("T")), np.uint8(ord("F")))
                dtype = "u1"
            else:
                if a.dtype.newbyteorder("=") != _NATIVE[code]:
                    raise _Unsupported(f"column {col.name}: {a.dtype} for {code}")
                dtype = _BIG_ENDIAN[code]
            if a.size != nrows * repeat:
                raise _Unsupported(f"column {col.name} has {a.size} values")
            a = a.reshape((nrows, repeat) if repeat > 1 else nrows)
            fmt = (dtype, (repeat,)) if repeat > 1 else dtype
        if a.shape[0] != nrows:
            raise _Unsupported(f"column {col.name} has {a.shape[0]} rows")
        formats.append(fmt)
        values.append(a)
        cards += [(f"TTYPE{k}", col.name, None), (f"TFORM{k}", col.format, None)]
        if col.unit:
            cards.append((f"TUNIT{k}", col.unit, None))
        if col.dim:
            cards.append((f"TDIM{k}", col.dim, None))
    rec = np.zeros(nrows, dtype=np.dtype({"names": [f"c{k}" for k in range(len(cols))], "formats": formats}))
    for k, a in enumerate(values):
        rec[f"c{k}"] = a
    width = rec.dtype.itemsize
    structural = [("XTENSION", "BINTABLE", "binary table extension"), ("BITPIX", 8, "array data type"),
                  ("NAXIS", 2, "number of array dimensions"), ("NAXIS1", width, "length of dimension 1"),
                  ("NAXIS2", nrows, "length of dimension 2"), ("PCOUNT", 0, "number of group parameters"),
                  ("GCOUNT", 1, "number of groups"), ("TFIELDS", len(cols), "number of table fields")]
    return structural + cards, rec.tobytes()


_PRIMARY_STRUCTURAL = [("SIMPLE", True, "conforms to FITS standard"), ("BITPIX", 8, "array data type"),
                       ("NAXIS", 0, "number of array dimensions"), ("EXTEND", True, None)]


def _pad(data: bytes, fill: bytes) -> bytes:
    return data + fill * (-len(data) % rawfits.BLOCK)


def _encode_hdu(structural, header: _Header, data: bytes, stamp: str) -> bytes:
    """Header and data of one HDU with DATASUM and CHECKSUM where astropy puts them (before the
    trailing commentary cards)."""
    if any(c.norm not in _COMMENTARY and _RESERVED.match(c.norm) for c in header.cards):
        raise _Unsupported("header holds structural or checksum keywords")
    data = _pad(data, b"\0")
    datasum = rawfits.bytes_sum(data)
    at = header._append_position(False)
    fixed = [_card_image(_Card(k, False, v, c)) for k, v, c in structural]
    images = [_card_image(c) for c in header.cards]
    checksum_card = _card_image(_Card("CHECKSUM", False, "0" * 16, f"HDU checksum updated {stamp}"))
    datasum_card = _card_image(_Card("DATASUM", False, str(datasum), f"data unit checksum updated {stamp}"))
    before = "".join(fixed + images[:at])
    text = before + checksum_card + datasum_card + "".join(images[at:]) + f"{'END':80}"
    head = _pad(text.encode("ascii"), b" ")
    checksum = rawfits.encode_checksum(rawfits.add_sums(rawfits.bytes_sum(head), datasum))
    start = len(before) + 11  # CHECKSUM= '
    head = head[:start] + checksum.encode("ascii") + head[start + 16:]
    return head + data


def _encode_fast(oi: OIFits, version: int, provenance: Provenance | None) -> bytes:
    """The file's bytes, or :class:`_Unsupported` for what is left to astropy."""
    if oi.primary_data is not None:
        raise _Unsupported("primary data")
    history: list[str] = []
    tables = []
    for table in _kept_tables(oi, version):
        with _errors_name(oi, table):
            nrows, cols = _table_columns(oi, table, version, history)
            header = _Header()
            _table_keywords(oi, table, version, history, header)
        tables.append((nrows, cols, header))
    primary = _Header()
    _primary_keywords(oi, version, history, provenance, primary)
    stamp = _checksum_timestamp()
    parts = [_encode_hdu(_PRIMARY_STRUCTURAL, primary, b"", stamp)]
    for nrows, cols, header in tables:
        structural, data = _encode_table_data(nrows, cols)
        parts.append(_encode_hdu(structural, header, data, stamp))
    if oi.extra_hdus:
        parts.append(_encode_with_astropy(oi.extra_hdus))
    return b"".join(parts)


def _encode_with_astropy(hdus) -> bytes:
    """Extensions that are not OI tables, encoded by astropy (after an empty primary HDU of one block)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        fits.HDUList([fits.PrimaryHDU(), *[h.copy() for h in hdus]]).writeto(buf, checksum=True)
    return buf.getvalue()[rawfits.BLOCK:]


def _try_fast(oi: OIFits, version: int, provenance: Provenance | None) -> bytes | None:
    """The fast encoding, or None when astropy must write the file. Warnings are issued once:
    here on success or error, by the astropy path otherwise."""
    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            return _encode_fast(oi, version, provenance)
    except _Unsupported:
        caught.clear()
        return None
    finally:
        for w in caught:
            if not issubclass(w.category, fits.verify.VerifyWarning):
                warnings.warn(w.message, w.category, stacklevel=3)


def write_oifits(oi: OIFits, path: str | os.PathLike, *, version: int = V2,
                 provenance: Provenance | None = None, overwrite: bool = True) -> str:
    """Write ``oi`` to ``path`` atomically (OIFITS2 unless ``version=1``); returns the path."""
    if not overwrite and os.path.exists(path):
        raise OIFitsError("output exists and overwrite is False", file=path)
    blob = _try_fast(oi, version, provenance)
    if blob is not None:
        write_bytes_atomic(blob, path)
        return str(path)
    hdul = to_hdulist(oi, version=version, provenance=provenance)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        write_hdulist_atomic(hdul, path, checksum=True)
    return str(path)
