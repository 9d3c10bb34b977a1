"""Byte-level comparison of FITS files with named header cards masked (no astropy: the raw blocks).

A file is split into HDUs: header cards (80 bytes each; a long-string card and its CONTINUE cards
form one group), the header's blank padding, and the data area with its padding (read from
BITPIX, NAXISn, PCOUNT, GCOUNT). Two files are equal under a mask when every HDU has the same
card groups after masking, blank header padding, and the SAME DATA BYTES.

Mask actions, by keyword (``HIERARCH A B`` keywords are written out in full):

* ``"value"``: the card must be there on both sides; its value and comment are ignored;
* ``"comment"``: the value must be equal; only the comment is ignored;
* ``"card"``: the card (and its CONTINUE cards) is dropped wherever it is present.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

BLOCK = 2880
CARD = 80


@dataclass
class HDUBytes:
    groups: list[tuple[str, str]]  # (keyword, the card group's text)
    header_padding: bytes  # after END, up to the end of the last header block
    data: bytes  # the data area with its padding


def card_keyword(card: str) -> str:
    if card.startswith("HIERARCH "):
        return "HIERARCH " + " ".join(card[9:].split("=", 1)[0].split())
    return card[:8].strip()


def _data_size(cards: list[str]) -> int:
    values = {}
    for card in cards:
        key = card[:8].strip()
        if key in ("BITPIX", "NAXIS", "PCOUNT", "GCOUNT") or re.fullmatch(r"NAXIS\d+", key):
            values[key] = int(card[10:].split("/", 1)[0])
    naxis = values.get("NAXIS", 0)
    if naxis == 0:
        return 0
    n = math.prod(values[f"NAXIS{k}"] for k in range(1, naxis + 1))
    return abs(values["BITPIX"]) // 8 * values.get("GCOUNT", 1) * (values.get("PCOUNT", 0) + n)


def split_hdus(raw: bytes) -> list[HDUBytes]:
    if len(raw) % BLOCK:
        raise AssertionError(f"file size {len(raw)} is not a multiple of {BLOCK}")
    hdus, pos = [], 0
    while pos < len(raw):
        cards: list[str] = []
        while True:
            if pos >= len(raw):
                raise AssertionError("header without END")
            block = raw[pos:pos + BLOCK].decode("ascii")
            pos += BLOCK
            cut = None
            for k in range(0, BLOCK, CARD):
                card = block[k:k + CARD]
                if card[:8] == "END     ":
                    cut = k
                    break
                cards.append(card)
            if cut is not None:
                padding = block[cut + CARD:].encode("ascii")
                break
        groups: list[tuple[str, str]] = []
        for card in cards:
            if card.startswith("CONTINUE") and groups:
                groups[-1] = (groups[-1][0], groups[-1][1] + card)
            else:
                groups.append((card_keyword(card), card))
        size = _data_size(cards)
        padded = -(-size // BLOCK) * BLOCK
        hdus.append(HDUBytes(groups, padding, raw[pos:pos + padded]))
        pos += padded
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
