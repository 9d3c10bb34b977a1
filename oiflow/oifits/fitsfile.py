"""Opening a FITS file with astropy, strictly.

astropy reads what it can and warns about the rest: a truncated file is padded ("File may have
been truncated"), bytes it cannot parse after an HDU end the file ("Error validating header for
HDU #n … extra bytes after the last HDU"), a mandatory card with a bad value is found only by
``verify``. A reader that keeps going from there returns fewer tables or rows than the file
declares, without an error. :func:`open_fits` turns all of that into ``FITS_STRUCTURE`` error
findings naming the file, the HDU and the header card:

* the file's size is not a multiple of 2880, or it ends before the data an HDU declares;
* bytes after the last HDU astropy could read (a damaged or truncated header, a damaged
  ``XTENSION`` card, a declared data size that does not lead to the next header);
* a header astropy cannot parse (the HDU is named; so is the card when the failure names one);
* a mandatory card missing, not an integer, or out of its range (FITS 4.0 §4.4.1, §7.2, §7.3):
  ``SIMPLE``, ``XTENSION``, ``BITPIX``, ``NAXIS``, ``NAXISn``, ``PCOUNT``, ``GCOUNT``, ``TFIELDS``,
  ``TFORMn``;
* mandatory cards out of the standard's order (what astropy's ``verify`` checks of them; its
  parse of every other card is left out: it costs more than reading the file);
* binary-table fields whose widths (``TFORMn``, as astropy parses them) do not add up to ``NAXIS1``.

astropy's checksum verification gives ``CHECKSUM_DATA`` (error: the data changed) and
``CHECKSUM_HDU`` (warning: the header was edited) findings; its other header warnings become
``FITS_VERIFY`` warnings. astropy decodes everything; this module only decides what its
tolerance means.
"""

from __future__ import annotations

import io
import itertools
import re
import warnings
from dataclasses import dataclass, field

from .astropy_fits import fits

from ..errors import OIFitsError
from .findings import Finding, Severity

BLOCK = 2880
STRUCTURE = "FITS_STRUCTURE"

_BITPIX = (8, 16, 32, 64, -32, -64)
_MISSING = object()
#: the cards that fix where the next HDU starts (with NAXISn)
_SIZE_CARDS = {"BITPIX", "PCOUNT", "GCOUNT"}
_KNOWN_CLASSES = (fits.PrimaryHDU, fits.ImageHDU, fits.BinTableHDU, fits.TableHDU, fits.CompImageHDU)
_STRUCTURAL = re.compile(r"^(SIMPLE|XTENSION|BITPIX|NAXIS\d*|PCOUNT|GCOUNT|TFIELDS|TFORM\d+|THEAP|END)$")
_QUOTED_CARD = re.compile(r"'([A-Z][A-Z0-9_-]{0,7})'")


def hdu_label(index: int, header) -> str:
    """How findings name an HDU: ``PRIMARY`` or ``EXTNAME#index`` (``HDU#index`` without EXTNAME)."""
    if index == 0:
        return "PRIMARY"
    try:
        name = header.get("EXTNAME", "") if header is not None else ""
    except Exception:  # an EXTNAME card astropy cannot parse
        name = ""
    name = name.strip().upper() if isinstance(name, str) else ""
    return f"{name or 'HDU'}#{index}"


@dataclass
class FitsFile:
    """The HDUs astropy read from a file, and what is wrong with the file's structure."""

    path: str | None
    hdus: list = field(default_factory=list)  # astropy HDUs, data loaded (the file can be closed)
    findings: list[Finding] = field(default_factory=list)
    damaged: set[int] = field(default_factory=set)  # indices of HDUs whose structure is damaged

    @property
    def structure_errors(self) -> list[Finding]:
        return [f for f in self.findings if f.rule == STRUCTURE]

    def error(self) -> OIFitsError | None:
        """The first structural error as the exception a reader raises (None when the structure is sound)."""
        errs = self.structure_errors
        if not errs:
            return None
        f = errs[0]
        more = f" (and {len(errs) - 1} more structural problem{'s' if len(errs) > 2 else ''})" if len(errs) > 1 else ""
        return OIFitsError(f.message + more, file=self.path, hdu=f.hdu, card=f.card)


def open_fits(data: bytes, path=None) -> FitsFile:
    """Read every HDU of ``data`` (the bytes of one FITS file) with astropy and check its structure.

    Never raises for the content: problems are findings (``FITS_STRUCTURE`` errors for damage).
    """
    out = FitsFile(None if path is None else str(path))
    size = len(data)
    if size < BLOCK or not data.startswith(b"SIMPLE  ="):
        what = (f"truncated or empty file ({size} bytes, a FITS file has at least {BLOCK})" if size < BLOCK
                else "not a FITS file (no SIMPLE card at the start)")
        out.findings.append(_structure(out.path, "PRIMARY", "SIMPLE", what))
        return out
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hdul = fits.open(io.BytesIO(data), memmap=False, lazy_load_hdus=True)
    except Exception as exc:  # the primary header itself
        _unreadable_header(out, data, 0, 0, exc)
        return out
    stopped = False
    index = 0
    end = 0  # where the next HDU starts
    while True:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                hdu = hdul[index]
            except IndexError:
                hdu = None
            except Exception as exc:  # astropy could not build the HDU from its header
                _unreadable_header(out, data, end, index, exc)
                stopped = True
                hdu = None
            if hdu is not None and not hasattr(hdu, "fileinfo"):  # astropy's _CorruptedHDU: size unknown
                out.findings.append(_structure(out.path, hdu_label(index, hdu.header), "NAXIS",
                                               "astropy cannot determine the data size of this HDU (corrupted "
                                               "size cards)"))
                stopped = True
                hdu = None
            if hdu is not None:
                info = hdu.fileinfo()
                if info["hdrLoc"] < end or info["datSpan"] < 0:  # a negative size sends astropy backwards
                    stopped = True
                end = max(end, info["datLoc"] + info["datSpan"])
                label = hdu_label(index, hdu.header)
                bad, size_unknown = _check_cards(out, index, hdu, label)
                stopped |= size_unknown  # where the next HDU starts is unknown: what astropy finds there is not one
                sound = not bad and _check_data_size(out, label, hdu, info, size)
                if sound:
                    _verify_checksums(out, label, hdu)
                    sound = _load_data(out, label, hdu)
                if not sound:
                    out.damaged.add(index)
        for w in caught:
            stopped |= _record_warning(out, w, index, hdu)
        if hdu is None:
            break
        out.hdus.append(hdu)
        index += 1
        if stopped:
            break
    hdul.close()  # the data of every sound HDU are in memory
    if size % BLOCK:
        out.findings.append(_structure(out.path, _last_label(out), None,
                                       f"file size {size} bytes is not a multiple of {BLOCK} (truncated or padded)"))
    if not stopped and out.hdus and end < size:
        out.findings.append(_structure(out.path, f"HDU#{len(out.hdus)}", None,
                                       f"{size - end} bytes after the last readable HDU (from byte {end}): "
                                       "not a FITS extension"))
    return out


def from_hdulist(hdul: fits.HDUList, path=None) -> FitsFile:
    """The checks of :func:`open_fits` that need no bytes (mandatory cards, row widths,
    astropy's warnings) on an HDUList opened by the caller."""
    out = FitsFile(None if path is None else str(path))
    for index, hdu in enumerate(hdul):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            label = hdu_label(index, hdu.header)
            if _check_cards(out, index, hdu, label)[0] or not _load_data(out, label, hdu):
                out.damaged.add(index)
        for w in caught:
            _record_warning(out, w, index, hdu)
        out.hdus.append(hdu)
    return out


def _last_label(out: FitsFile) -> str | None:
    return hdu_label(len(out.hdus) - 1, out.hdus[-1].header) if out.hdus else None


def _load_data(out: FitsFile, label: str, hdu) -> bool:
    """Read the HDU's data now (the file is released after opening); False when astropy cannot."""
    try:
        _ = hdu.data
        return True
    except Exception as exc:
        out.findings.append(_structure(out.path, label, _card_in(str(exc)),
                                       f"data unreadable ({exc.__class__.__name__}: {_first_line(exc)})"))
        return False


def _verify_checksums(out: FitsFile, label: str, hdu) -> None:
    """CHECKSUM/DATASUM by astropy (on the bytes as stored: before the data are decoded).
    A failed DATASUM is an error (the data changed), a failed CHECKSUM alone a warning (the
    header was edited after writing). An HDU without these cards costs two look-ups."""
    try:
        data_ok = hdu.verify_datasum() if "DATASUM" in hdu.header else 2
        hdu_ok = hdu.verify_checksum() if "CHECKSUM" in hdu.header else 2
    except Exception as exc:  # a damaged size: reported by the structure checks
        out.findings.append(Finding(Severity.WARNING, "FITS_VERIFY",
                                    f"checksums not verified ({exc.__class__.__name__}: {_first_line(exc)})", label,
                                    file=out.path))
        return
    if data_ok == 0:
        out.findings.append(Finding(Severity.ERROR, "CHECKSUM_DATA", "DATASUM verification failed (data corrupted)",
                                    label, file=out.path))
    if hdu_ok == 0:
        out.findings.append(Finding(Severity.WARNING, "CHECKSUM_HDU",
                                    "CHECKSUM verification failed (header or data modified after writing)",
                                    label, file=out.path))


# -- findings ---------------------------------------------------------------------------------
def _structure(path, hdu, card, message) -> Finding:
    return Finding(Severity.ERROR, STRUCTURE, message, hdu, file=path, card=card)


def _first_line(exc) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else exc.__class__.__name__


def _card_in(text: str) -> str | None:
    """The structural card a message of astropy's names (``'NAXIS2' card …``), if any."""
    for m in _QUOTED_CARD.finditer(text):
        if _STRUCTURAL.match(m.group(1)):
            return m.group(1)
    for word in ("XTENSION", "END"):
        if word in text:
            return word
    return None


def _record_warning(out: FitsFile, w, index: int, hdu) -> bool:
    """A finding for one astropy warning; True when astropy stopped reading the file there."""
    msg = str(w.message).strip()
    label = hdu_label(index, hdu.header) if hdu is not None else f"HDU#{index}"
    if msg.startswith("Error validating header for HDU"):
        m = re.search(r"HDU #(\d+)", msg)
        bad = int(m.group(1)) if m else index
        reason = msg.splitlines()[1].strip() if len(msg.splitlines()) > 1 else msg
        card = "END" if ("2880" in reason or "END" in reason) else (_card_in(reason) or "XTENSION")
        out.findings.append(_structure(out.path, f"HDU#{bad}", card,
                                       f"header of HDU {bad} unreadable ({reason}): the file ends there for astropy; "
                                       "damaged header or extra bytes after the last HDU"))
        return True
    if "truncated" in msg.lower() or "extra padding" in msg.lower():
        return False  # reported by the size checks, with the HDU
    out.findings.append(Finding(Severity.WARNING, "FITS_VERIFY", msg.splitlines()[0][:200], label, file=out.path,
                                card=_card_in(msg)))
    return False


def _unreadable_header(out: FitsFile, data: bytes, start: int, index: int, exc: Exception) -> None:
    """An HDU astropy failed to build: name the card (our checks on the raw header) when we can."""
    header = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = fits.Header.fromfile(io.BytesIO(data[start:]), padding=False)
    except Exception:  # noqa: BLE001 - the header does not even parse: the finding below names astropy's error
        header = None
    problems = _card_problems(index, header) if header is not None else []
    label = hdu_label(index, header) if header is not None else f"HDU#{index}"
    if problems:
        for card, message in problems:
            out.findings.append(_structure(out.path, label, card, message))
        return
    out.findings.append(_structure(out.path, label, _card_in(str(exc)),
                                   f"header unreadable ({exc.__class__.__name__}: {_first_line(exc)})"))


# -- the mandatory cards -------------------------------------------------------------------------
def _int_card(value, key: str, lo: int | None = 0, hi: int | None = None, allowed=None) -> str | None:
    """Why ``value``, the value of card ``key`` (``_MISSING`` when absent), is not a valid count
    (None when it is)."""
    if value is _MISSING:
        return f"mandatory card {key} missing"
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{key} = {value!r} is not an integer"
    if allowed is not None and value not in allowed:
        return f"{key} = {value} not allowed here (expected {' or '.join(str(a) for a in allowed)})"
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        return f"{key} = {value} out of range [{lo}, {hi if hi is not None else '∞'}]"
    return None


def _card_problems(index: int, header, values: dict | None = None) -> list[tuple[str, str]]:
    """(card, message) for every mandatory card of ``header`` that is missing or invalid;
    ``values`` (when given) receives the value of every mandatory card read."""
    try:
        return _mandatory_card_problems(index, header, {} if values is None else values)
    except Exception as exc:  # a card astropy cannot parse ("Unparsable card (TFORM3)")
        return [(_card_in(str(exc)) or _parenthesised_card(str(exc)),
                 f"unparsable mandatory card ({exc.__class__.__name__}: {_first_line(exc)})")]


def _parenthesised_card(text: str) -> str | None:
    m = re.search(r"\(([A-Z][A-Z0-9_-]{0,7})\)", text)
    return m.group(1) if m else None


def _mandatory_card_problems(index: int, header, values: dict) -> list[tuple[str, str]]:
    """The checks of :func:`_card_problems`; each card is looked up once (into ``values``)."""
    problems: list[tuple[str, str]] = []

    def value(key):
        values[key] = header.get(key, _MISSING)
        return values[key]

    def need(key, **kw):
        why = _int_card(value(key), key, **kw)
        if why:
            problems.append((key, why))
        return why is None

    if index == 0:
        simple = value("SIMPLE")
        if simple is not True:
            problems.append(("SIMPLE", f"SIMPLE = {None if simple is _MISSING else simple!r}: "
                                       "the file does not declare itself FITS"))
        xtension = None
    else:
        raw = value("XTENSION")
        raw = None if raw is _MISSING else raw
        xtension = raw.strip().upper() if isinstance(raw, str) else raw
        if xtension not in ("BINTABLE", "IMAGE", "TABLE"):
            problems.append(("XTENSION", f"XTENSION = {raw!r} is not a standard extension type"))
    table = xtension in ("BINTABLE", "TABLE")
    need("BITPIX", lo=None, allowed=(8,) if table else _BITPIX)
    if need("NAXIS", hi=999, allowed=(2,) if table else None):
        for k in range(1, values["NAXIS"] + 1):
            need(f"NAXIS{k}")
    if index > 0:
        need("PCOUNT", allowed=None if xtension == "BINTABLE" else (0,))
        need("GCOUNT", allowed=(1,))
    if table:
        need("TFIELDS", hi=999)  # each TFORMn: astropy's parse of the columns (_row_width_problems)
    return problems


def _check_cards(out: FitsFile, index: int, hdu, label: str) -> tuple[bool, bool]:
    """Structural findings for the mandatory cards of one HDU (named ``label``): (any problem,
    the data size itself is unknown — a bad BITPIX, NAXIS, NAXISn, PCOUNT or GCOUNT value — so
    that where the next HDU starts is unknown too)."""
    values: dict = {}
    problems = _card_problems(index, hdu.header, values)
    size_unknown = any(card is None or card in _SIZE_CARDS or card.startswith("NAXIS") for card, _ in problems)
    if index > 0 and not isinstance(hdu, _KNOWN_CLASSES) and not any(c == "XTENSION" for c, _ in problems):
        problems.insert(0, ("XTENSION", f"astropy could not read the HDU as an extension ({type(hdu).__name__})"))
    try:
        if not problems:
            problems = _order_problems(index, hdu.header, values)
        if not problems and isinstance(hdu, fits.BinTableHDU):
            problems = _row_width_problems(hdu, values)
    except Exception as exc:  # a structural card astropy cannot parse ("Unparsable card (TFORM3)")
        problems = [(_card_in(str(exc)) or _parenthesised_card(str(exc)),
                     f"unparsable card ({exc.__class__.__name__}: {_first_line(exc)})")]
    for card, message in problems:
        out.findings.append(_structure(out.path, label, card, message))
    return bool(problems), size_unknown


def _row_width_problems(hdu, values: dict) -> list[tuple[str, str]]:
    """A binary table's fields (TFORMn, as astropy parses them) must fill NAXIS1 exactly
    (``values``: the mandatory cards, checked)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            width, error = hdu.columns.dtype.itemsize, None
        except Exception as exc:
            width, error = None, exc
    problems = []
    for w in caught:  # "Invalid keyword for column 3: Column format option (TFORMn) …"
        m = re.search(r"column (\d+): Column format", str(w.message))
        if m:
            problems.append((f"TFORM{m.group(1)}", f"TFORM{m.group(1)} missing or invalid (astropy: "
                                                   f"{_first_line(w.message)})"))
    if error is not None and not problems:
        problems.append((_tform_named(hdu.header, str(error)), f"column formats unreadable "
                                                                 f"({error.__class__.__name__}: {_first_line(error)})"))
    if problems or width is None:
        return problems
    if width != values["NAXIS1"]:
        return [("NAXIS1", f"NAXIS1 = {values['NAXIS1']} bytes per row, but the TFORMn of the "
                           f"{values['TFIELDS']} columns add up to {width}")]
    return []


def _tform_named(header, message: str) -> str:
    """The TFORMn card whose value an astropy error message quotes (TFORM1 when none does)."""
    for k in range(1, header["TFIELDS"] + 1):
        value = header.get(f"TFORM{k}")
        if isinstance(value, str) and value.strip() and value.strip() in message:
            return f"TFORM{k}"
    return "TFORM1"


def _order_problems(index: int, header, values: dict) -> list[tuple[str, str]]:
    """The mandatory cards must open the header in the standard's order (SIMPLE or XTENSION,
    BITPIX, NAXIS, NAXIS1 … NAXISn, then PCOUNT, GCOUNT for extensions and TFIELDS for tables):
    the position check of astropy's ``verify``, without parsing every other card's value
    (``values``: the mandatory cards, checked; only the keywords of the first cards are read)."""
    expected = ["SIMPLE" if index == 0 else "XTENSION", "BITPIX", "NAXIS"]
    expected += [f"NAXIS{k}" for k in range(1, values["NAXIS"] + 1)]
    if index > 0:
        expected += ["PCOUNT", "GCOUNT"]
        if values["XTENSION"].strip().upper() in ("BINTABLE", "TABLE"):
            expected.append("TFIELDS")
    first = list(itertools.islice(header.keys(), len(expected)))
    for pos, key in enumerate(expected):
        found = first[pos] if pos < len(first) else None
        if found != key:
            return [(key, f"{key} must be card {pos + 1} of the header (found {ascii(found) if found else 'nothing'} there)")]
    return []


def _check_data_size(out: FitsFile, label: str, hdu, info: dict, file_size: int) -> bool:
    """The data the header declares must be in the file; False when they are not. ``info``:
    astropy's ``fileinfo()`` of the HDU, whose data span (the declared size, padded to the
    block) settles it without reading the header again when it ends inside the file."""
    data_start = info["datLoc"]
    if data_start + info["datSpan"] <= file_size and not isinstance(hdu, fits.CompImageHDU):
        return True
    declared = getattr(hdu, "size", 0) or 0
    if data_start + declared <= file_size:
        return True
    card = "NAXIS2" if isinstance(hdu, fits.BinTableHDU) else f"NAXIS{hdu.header.get('NAXIS', '')}"
    out.findings.append(_structure(out.path, label, card,
                                   f"truncated: the header declares {declared} data bytes, the file holds "
                                   f"{max(file_size - data_start, 0)}"))
    return False
