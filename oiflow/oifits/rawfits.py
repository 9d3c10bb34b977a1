"""A minimal FITS scanner for the OIFITS reader: HDU boundaries, checksums and binary tables
decoded straight from the file's bytes with numpy.

astropy's column machinery (Column/ColDefs/FITS_rec objects, per-card verification) costs more
than the data themselves for the small tables of OIFITS files. Headers are still parsed by
astropy (``Header.fromstring``); data of plain binary tables (fixed-size columns of types
L, B, I, J, K, A, E, D, C, M without TSCAL/TZERO) are read with one ``np.frombuffer`` per table.
Anything else (variable-length arrays, bit columns, scaled columns, images with BSCALE) is
reported as unsupported so the caller can fall back on astropy.

Checksums follow the FITS checksum convention on the bytes as stored: the 32-bit ones'
complement sum of the data blocks must equal DATASUM, and the sum of the whole HDU (header
blocks with their CHECKSUM card, and data blocks) must be -0 (0xFFFFFFFF). The same sums and
the ASCII encoding of a CHECKSUM value (:func:`encode_checksum`) serve the fast writer
(:mod:`oiflow.oifits.write`).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np
from astropy.io import fits

from ..errors import OIFitsError

BLOCK = 2880
CARD = 80
_TFORM = re.compile(r"^\s*(\d*)\s*([LXBIJKAEDCMPQ])(.*)$")
_DTYPES = {"L": "u1", "B": "u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8", "C": ">c8",
           "M": ">c16"}
_SIZES = {"L": 1, "B": 1, "I": 2, "J": 4, "K": 8, "A": 1, "E": 4, "D": 8, "C": 8, "M": 16}


@dataclass
class RawHDU:
    index: int
    header: fits.Header
    header_start: int
    data_start: int
    data_size: int  # bytes of data (without padding)
    padded_size: int
    caught: list  # warnings raised while parsing the header

    @property
    def extname(self) -> str:
        return str(self.header.get("EXTNAME", "")).strip().upper()

    @property
    def label(self) -> str:
        return "PRIMARY" if self.index == 0 else f"{self.extname or 'HDU'}#{self.index}"


def _header_end(buf: memoryview, start: int, path) -> int:
    """Offset just after the header block that holds the END card."""
    pos = start
    n = len(buf)
    while pos + BLOCK <= n:
        block = bytes(buf[pos:pos + BLOCK])
        for k in range(0, BLOCK, CARD):
            if block[k:k + 8] == b"END     ":
                return pos + BLOCK
        pos += BLOCK
    raise OIFitsError(f"truncated file: header of HDU starting at byte {start} has no END card", file=path)


def _data_size(h: fits.Header) -> int:
    naxis = int(h.get("NAXIS", 0) or 0)
    if naxis <= 0:
        return 0
    bitpix = abs(int(h.get("BITPIX", 8)))
    dims = [int(h.get(f"NAXIS{k}", 0) or 0) for k in range(1, naxis + 1)]
    if h.get("GROUPS") is True and dims and dims[0] == 0:
        dims = dims[1:]
    count = int(np.prod(dims, dtype=np.int64)) if dims else 0
    pcount = int(h.get("PCOUNT", 0) or 0)
    gcount = int(h.get("GCOUNT", 1) or 1)
    return bitpix // 8 * gcount * (pcount + count)


def scan(data: bytes, path=None) -> list[RawHDU]:
    """Split a FITS file into HDUs; raises OIFitsError when it is not FITS or is truncated."""
    buf = memoryview(data)
    if len(buf) < BLOCK or bytes(buf[:9]) != b"SIMPLE  =":
        raise OIFitsError("not a FITS file (no SIMPLE card in the first 2880-byte block)", file=path, hdu=0)
    hdus: list[RawHDU] = []
    pos = 0
    while pos + BLOCK <= len(buf):
        if hdus and bytes(buf[pos:pos + 9]) != b"XTENSION=":
            break  # trailing bytes that are not an extension
        end = _header_end(buf, pos, path)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                header = fits.Header.fromstring(bytes(buf[pos:end]).decode("ascii", errors="replace"))
                size = _data_size(header)
            except Exception as exc:
                raise OIFitsError(f"unreadable header ({exc.__class__.__name__}: {exc})", file=path,
                                  hdu=len(hdus)) from None
        padded = -(-size // BLOCK) * BLOCK
        if size < 0 or end + size > len(buf):
            name = str(header.get("EXTNAME", "")).strip() or ("PRIMARY" if not hdus else "?")
            raise OIFitsError(f"truncated file: HDU {name} needs {size} data bytes, {max(len(buf) - end, 0)} present",
                              file=path, hdu=len(hdus))
        hdus.append(RawHDU(len(hdus), header, pos, end, size, padded, list(caught)))
        pos = end + padded
    if not hdus:
        raise OIFitsError("not a FITS file", file=path, hdu=0)
    return hdus


def ones_complement_sum(words: np.ndarray) -> int:
    """32-bit ones' complement sum (end-around carry) of 32-bit words (the FITS checksum sum)."""
    s = int(np.asarray(words).sum(dtype=np.uint64))
    while s >> 32:
        s = (s & 0xFFFFFFFF) + (s >> 32)
    return s


def bytes_sum(data, offset: int = 0, size: int | None = None) -> int:
    """Ones' complement sum of ``size`` bytes (a multiple of 4) of ``data`` read as big-endian words."""
    n = (len(data) - offset if size is None else size) // 4
    return ones_complement_sum(np.frombuffer(data, dtype=">u4", count=n, offset=offset))


def add_sums(*sums: int) -> int:
    """Ones' complement sum of partial sums (header and data of one HDU)."""
    return ones_complement_sum(np.array(sums, dtype=np.uint64))


#: characters the ASCII encoding of a checksum avoids (FITS checksum convention, punctuation)
_EXCLUDED = frozenset((0x3A, 0x3B, 0x3C, 0x3D, 0x3E, 0x3F, 0x40, 0x5B, 0x5C, 0x5D, 0x5E, 0x5F, 0x60))


def encode_checksum(total: int) -> str:
    """The 16-character CHECKSUM value for an HDU whose sum, with CHECKSUM = '0000000000000000',
    is ``total``: the ASCII encoding of its complement, which makes the HDU sum to -0."""
    value = ~total & 0xFFFFFFFF
    asc = [0] * 16
    for i in range(4):
        byte = (value >> (24 - 8 * i)) & 0xFF
        quotient, remainder = byte // 4 + ord("0"), byte % 4
        ch = [quotient + remainder, quotient, quotient, quotient]
        changed = True
        while changed:
            changed = False
            for j in (0, 2):
                if ch[j] in _EXCLUDED or ch[j + 1] in _EXCLUDED:
                    ch[j] += 1
                    ch[j + 1] -= 1
                    changed = True
        for j in range(4):
            asc[4 * j + i] = ch[j]
    return bytes(asc[(k + 15) % 16] for k in range(16)).decode("ascii")


def verify_checksums(data: bytes, hdu: RawHDU) -> tuple[bool | None, bool | None]:
    """(HDU checksum ok, data checksum ok); None where the keyword is absent."""
    h = hdu.header
    has_sum, has_check = "DATASUM" in h, "CHECKSUM" in h
    if not (has_sum or has_check):
        return None, None
    end = min(hdu.data_start + hdu.padded_size, len(data))
    datasum = bytes_sum(data, hdu.data_start, end - hdu.data_start)
    data_ok = None
    if has_sum:
        try:
            data_ok = int(str(h["DATASUM"]).strip() or "0") == datasum
        except ValueError:
            data_ok = False
    hdu_ok = None
    if has_check:
        hdu_ok = add_sums(bytes_sum(data, hdu.header_start, hdu.data_start - hdu.header_start), datasum) == 0xFFFFFFFF
    return hdu_ok, data_ok


@dataclass
class RawColumn:
    name: str
    format: str
    unit: str
    array: np.ndarray


def table_columns(data: bytes, hdu: RawHDU) -> list[RawColumn] | None:
    """Columns of a binary table decoded with numpy, or None when the table needs astropy."""
    h = hdu.header
    if str(h.get("XTENSION", "")).strip() != "BINTABLE":
        return None
    try:
        nfields = int(h.get("TFIELDS", 0))
        width = int(h.get("NAXIS1", 0))
        nrows = int(h.get("NAXIS2", 0))
    except (TypeError, ValueError):
        return None
    specs, offset = [], 0
    for k in range(1, nfields + 1):
        if f"TSCAL{k}" in h or f"TZERO{k}" in h:
            return None
        m = _TFORM.match(str(h.get(f"TFORM{k}", "")))
        if not m:
            return None
        repeat = int(m.group(1)) if m.group(1) else 1
        code = m.group(2)
        if code not in _SIZES or repeat < 1 or (code == "A" and f"TDIM{k}" in h):
            return None
        size = _SIZES[code] * repeat
        specs.append((k, code, repeat, offset))
        offset += size
    if offset != width or nrows * width > hdu.data_size:
        return None
    names, formats, offsets = [], [], []
    for k, code, repeat, off in specs:
        names.append(f"f{k}")
        if code == "A":
            formats.append(f"S{repeat}")
        else:
            formats.append((_DTYPES[code], (repeat,)) if repeat > 1 else _DTYPES[code])
        offsets.append(off)
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": width})
    rec = np.frombuffer(data, dtype=dtype, count=nrows, offset=hdu.data_start)
    cols = []
    for k, code, repeat, _ in specs:
        raw = rec[f"f{k}"]
        if code == "A":
            arr = np.char.rstrip(np.char.decode(raw, "latin-1"))
        elif code == "L":
            arr = raw == ord("T")
        else:
            arr = raw.astype(raw.dtype.newbyteorder("="))
            dim = h.get(f"TDIM{k}")
            if isinstance(dim, str) and repeat > 1:
                try:
                    shape = tuple(int(x) for x in dim.strip().strip("()").split(","))[::-1]
                    if int(np.prod(shape)) == repeat and len(shape) > 1:
                        arr = arr.reshape((nrows, *shape))
                except ValueError:
                    pass
        unit = h.get(f"TUNIT{k}", "")
        cols.append(RawColumn(str(h.get(f"TTYPE{k}", f"COL{k}")), str(h.get(f"TFORM{k}")).strip(),
                              unit.strip() if isinstance(unit, str) else "", arr))
    return cols


def image_data(data: bytes, hdu: RawHDU) -> np.ndarray | None:
    """Primary/IMAGE data as a numpy array (None when empty; raises ValueError when scaled)."""
    h = hdu.header
    naxis = int(h.get("NAXIS", 0) or 0)
    if naxis == 0 or hdu.data_size == 0:
        return None
    if "BSCALE" in h or "BZERO" in h or h.get("GROUPS") is True:
        raise ValueError("scaled or random-groups image")
    dtype = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}[int(h["BITPIX"])]
    shape = tuple(int(h[f"NAXIS{k}"]) for k in range(naxis, 0, -1))
    arr = np.frombuffer(data, dtype=dtype, count=int(np.prod(shape)), offset=hdu.data_start).reshape(shape)
    return arr.astype(arr.dtype.newbyteorder("="))
