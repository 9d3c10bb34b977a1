"""Byte-level comparison of FITS files with named header cards masked.

astropy locates the HDUs (``fileinfo``: header start, data start and padded data size) and parses
the cards (a long-string card and its CONTINUE cards form one card, as astropy reads them); the
comparison is on the bytes as stored: every card's text, the header's padding after END, and the
data area with its padding. Two files are equal under a mask when every HDU has the same card
texts after masking, blank header padding, and the SAME DATA BYTES.

Mask actions, by keyword (``HIERARCH A B`` keywords are written out in full):

* ``"value"``: the card must be there on both sides; its value and comment are ignored;
* ``"comment"``: the value must be equal; only the comment is ignored;
* ``"card"``: the card (and its CONTINUE cards) is dropped wherever it is present.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

BLOCK = 2880
CARD = 80


@dataclass
class HDUBytes:
    groups: list[tuple[str, str]]  # (keyword, the card's text with its CONTINUE cards)
    header_padding: bytes  # after END, up to the end of the last header block
    data: bytes  # the data area with its padding


def card_keyword(card: fits.Card) -> str:
    return f"HIERARCH {card.keyword}" if card.image.startswith("HIERARCH ") else card.keyword


def split_hdus(raw: bytes) -> list[HDUBytes]:
    if len(raw) % BLOCK:
        raise AssertionError(f"file size {len(raw)} is not a multiple of {BLOCK}")
    hdus = []
    with fits.open(io.BytesIO(raw), memmap=False) as hdul:
        for hdu in hdul:
            info = hdu.fileinfo()
            groups = [(card_keyword(c), c.image) for c in hdu.header.cards]
            through_end = sum(len(text) for _, text in groups) + CARD
            header = raw[info["hdrLoc"]:info["datLoc"]]
            assert header[through_end - CARD:through_end] == b"END".ljust(CARD), "cards re-rendered by astropy"
            hdus.append(HDUBytes(groups, header[through_end:], raw[info["datLoc"]:info["datLoc"] + info["datSpan"]]))
        end = info["datLoc"] + info["datSpan"]
    if end != len(raw):
        raise AssertionError(f"{len(raw) - end} bytes after the last HDU")
    return hdus


def _value_of(text: str) -> str:
    """The value part of a card group (string values joined across CONTINUE cards)."""
    body = text.split("=", 1)[1] if "=" in text[:CARD] else text[10:]
    strings = re.findall(r"'((?:[^']|'')*)'", body)
    if strings:
        return "".join(s.rstrip("&") for s in strings)
    return body.split("/", 1)[0].strip()


def masked(groups: list[tuple[str, str]], mask: dict[str, str]) -> list[str]:
    out = []
    for key, text in groups:
        action = mask.get(key)
        if action == "card":
            continue
        if action == "value":
            out.append(f"{key} = <masked>")
        elif action == "comment":
            out.append(f"{key} = {_value_of(text)} / <masked>")
        else:
            out.append(text)
    return out


def fits_differences(a: Path, b: Path, mask: dict[str, str]) -> list[str]:
    """What differs between FITS files ``a`` and ``b`` under ``mask`` (empty: equal)."""
    ha, hb = split_hdus(Path(a).read_bytes()), split_hdus(Path(b).read_bytes())
    diffs = []
    if len(ha) != len(hb):
        return [f"{len(ha)} HDUs vs {len(hb)}"]
    for i, (x, y) in enumerate(zip(ha, hb)):
        mx, my = masked(x.groups, mask), masked(y.groups, mask)
        if mx != my:
            only_x = [c.rstrip() for c in mx if c not in my]
            only_y = [c.rstrip() for c in my if c not in mx]
            diffs.append(f"HDU {i} header: {only_x} vs {only_y}")
        for name, pad in (("a", x.header_padding), ("b", y.header_padding)):
            if pad.strip(b" "):
                diffs.append(f"HDU {i}: header padding of {name} is not blank")
        if x.data != y.data:
            first = next((k for k, (p, q) in enumerate(zip(x.data, y.data)) if p != q), min(len(x.data), len(y.data)))
            diffs.append(f"HDU {i} data: {len(x.data)} vs {len(y.data)} bytes, first difference at byte {first}")
    return diffs


def card_value(path: Path, keyword: str, hdu: int = 0) -> str | None:
    for key, text in split_hdus(Path(path).read_bytes())[hdu].groups:
        if key == keyword:
            return _value_of(text).strip()
    return None


def differing_keywords(a: Path, b: Path) -> set[str]:
    """Keywords whose cards differ (or are present on one side only) in any HDU, with no mask."""
    ha, hb = split_hdus(Path(a).read_bytes()), split_hdus(Path(b).read_bytes())
    out: set[str] = set()
    for x, y in zip(ha, hb):
        gx: dict[str, list[str]] = {}
        gy: dict[str, list[str]] = {}
        for key, text in x.groups:
            gx.setdefault(key, []).append(text)
        for key, text in y.groups:
            gy.setdefault(key, []).append(text)
        out |= {k for k in gx.keys() | gy.keys() if gx.get(k) != gy.get(k)}
    return out


# -- damaging FITS files (tests of the reader's structure checks) --------------------------------
@dataclass
class Layout:
    """Where one HDU of a pristine file sits: its header, its data, the astropy HDU."""

    index: int
    header_start: int
    data_start: int
    data_span: int  # with padding
    extname: str
    hdu: object  # the astropy HDU, data loaded


def layout(raw: bytes) -> list[Layout]:
    """The HDUs of an undamaged file, located by astropy."""
    out = []
    with fits.open(io.BytesIO(raw), memmap=False) as hdul:
        for i, hdu in enumerate(hdul):
            info = hdu.fileinfo()
            _ = hdu.data
            out.append(Layout(i, info["hdrLoc"], info["datLoc"], info["datSpan"],
                              str(hdu.header.get("EXTNAME", "PRIMARY" if i == 0 else "")).strip().upper(), hdu))
    return out


def set_card(raw: bytes, where: Layout, keyword: str, value: str) -> bytes:
    """``raw`` with the card ``keyword`` of one HDU's header replaced by ``KEYWORD = value``
    (``value`` as it should appear in the file, e.g. ``"1.5"`` or ``"'BINTABEL'"``); the header
    keeps its length, so only that card changes."""
    for pos in range(where.header_start, where.data_start, CARD):
        if raw[pos:pos + 8].decode("ascii", "replace").strip() == keyword:
            card = f"{keyword:8}= {value:>20}".ljust(CARD)[:CARD].encode("ascii")
            return raw[:pos] + card + raw[pos + CARD:]
    raise KeyError(f"{keyword} not in HDU {where.index}")


def set_cell(raw: bytes, where: Layout, column: str, row: int, element: int, value: float) -> bytes:
    """``raw`` with one element of one cell of a binary table overwritten (big-endian, in the
    column's own type): the rest of the file, its structure included, is unchanged."""
    data = where.hdu.data
    field_dtype, offset = data.dtype.fields[column][:2]
    base = field_dtype.base
    width = where.hdu.header["NAXIS1"]
    pos = where.data_start + row * width + offset + element * base.itemsize
    packed = np.array([value]).astype(base.newbyteorder(">")).tobytes()
    return raw[:pos] + packed + raw[pos + len(packed):]
