"""Damaged OIFITS files (built here from corpus files) are errors naming file, HDU and card, never
a shortened read; values a fit cannot use are validator findings naming table, column and rows.

Each test is one defect of issue 13, found by a mutation fuzz of the previous hand-written reader.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fits_bytes import layout, set_card, set_cell
from oiflow.cli import main
from oiflow.errors import OIFitsError
from oiflow.oifits import read_oifits
from oiflow.oifits.model import TABLE_CLASSES
from oiflow.oifits.validate import validate

AXCIR = "real/pionier/AXCir.oifits"  # 8 HDUs: OI_TARGET, OI_WAVELENGTH, OI_ARRAY, 2 OI_VIS2, 2 OI_T3
GRAVITY = "real/gravity/GRAVITY.2016-01-09_singlesci_calibrated.fits"  # OIFITS1 with OI_FLUX, 12 tables
BIGTEST = "sim/oifitslib_bigtest2_v2_corr_inspol.fits"  # every OIFITS2 table


@pytest.fixture
def corpus(shared_data):
    def load(name):
        raw = (shared_data / "oifits" / name).read_bytes()
        return raw, layout(raw)
    return load


def _write(tmp_path, data: bytes, name="damaged.fits"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _refused(path, hdu, card, match=None) -> OIFitsError:
    """read_oifits refuses the file naming it, the HDU and the card; validate reports it unreadable."""
    with pytest.raises(OIFitsError, match=match) as exc:
        read_oifits(path)
    assert (exc.value.file, exc.value.hdu, exc.value.card) == (str(path), hdu, card), str(exc.value)
    rep = validate(path)
    assert rep.verdict == "unreadable" and rep.unreadable == str(exc.value)
    assert any(f.rule == "FITS_STRUCTURE" and f.hdu == hdu and f.card == card for f in rep.errors)
    return exc.value


def test_truncation_inside_a_header_block_is_an_error_not_fewer_tables(tmp_path, corpus):
    raw, hdus = corpus(GRAVITY)
    assert len(hdus) == 13
    seventh = hdus[7]  # the old scanner stopped here and returned the 6 tables before it
    p = _write(tmp_path, raw[: seventh.header_start + 1000])
    _refused(p, "HDU#7", "END", match="header of HDU 7 unreadable")


def test_damaged_xtension_card(tmp_path, corpus):
    raw, hdus = corpus(AXCIR)
    vis2 = hdus[4]
    p = _write(tmp_path, raw[:vis2.header_start] + b"XTENSIOM" + raw[vis2.header_start + 8:])
    _refused(p, "OI_VIS2#4", "XTENSION", match="not a standard extension type")
    p = _write(tmp_path, set_card(raw, vis2, "XTENSION", "'BINTABEL'"), "bintabel.fits")
    _refused(p, "OI_VIS2#4", "XTENSION")


@pytest.mark.parametrize("card, value, hdu, named, match", [
    ("NAXIS", "3", 2, "NAXIS", "NAXIS = 3 not allowed here"),
    ("BITPIX", "16", 2, "BITPIX", r"BITPIX = 16 not allowed here \(expected 8\)"),
    ("PCOUNT", "-3", 2, "PCOUNT", "out of range"),
    ("GCOUNT", "2", 2, "GCOUNT", "expected 1"),
    ("TFIELDS", "2.5", 2, "TFIELDS", "not an integer"),
    ("TFIELDS", "3", 2, "TFORM3", "TFORM3 missing or invalid"),
    ("NAXIS2", "1.5", 4, "NAXIS2", r"NAXIS2 = 1\.5 is not an integer"),
    ("NAXIS1", "60", 4, "NAXIS1", "add up to"),
])
def test_bad_mandatory_card(tmp_path, corpus, card, value, hdu, named, match):
    raw, hdus = corpus(AXCIR)
    p = _write(tmp_path, set_card(raw, hdus[hdu], card, value))
    _refused(p, f"{hdus[hdu].extname}#{hdu}", named, match=match)


@pytest.mark.parametrize("card, value", [("NAXIS2", "0"), ("PCOUNT", "5000"), ("NAXIS1", "10000")])
def test_wrong_declared_data_size_never_drops_later_tables(tmp_path, corpus, card, value):
    """A size that does not lead to the next header: the HDU after it is damaged, an error."""
    raw, hdus = corpus(AXCIR)
    p = _write(tmp_path, set_card(raw, hdus[2], card, value))
    with pytest.raises(OIFitsError) as exc:
        read_oifits(p)
    assert exc.value.file == str(p) and exc.value.hdu and exc.value.card, str(exc.value)
    assert validate(p).verdict == "unreadable"


def test_negative_size_does_not_send_the_reader_backwards(tmp_path, corpus):
    """NAXIS1 = -10 gave astropy a negative data size: it found the same HDUs again and again (the
    fuzz ran out of memory). Reading stops at the HDU whose size is unknown."""
    raw, hdus = corpus(AXCIR)
    p = _write(tmp_path, set_card(raw, hdus[3], "NAXIS1", "-10"))
    _refused(p, "OI_ARRAY#3", "NAXIS1", match=r"NAXIS1 = -10 out of range")
    from oiflow.oifits.read import load_oifits

    assert [t.label for t in load_oifits(p).oi.tables] == ["OI_TARGET#1", "OI_WAVELENGTH#2"]


def test_non_integer_naxis2_is_refused_by_astropy_too(tmp_path, corpus):
    from astropy.io import fits

    raw, hdus = corpus(AXCIR)
    p = _write(tmp_path, set_card(raw, hdus[4], "NAXIS2", "1.5"))
    with pytest.raises(Exception):
        with fits.open(p, lazy_load_hdus=False) as h:
            _ = [x.data for x in h]
    _refused(p, "OI_VIS2#4", "NAXIS2")


def test_bytes_after_the_last_hdu_and_size_not_a_multiple_of_2880(tmp_path, corpus):
    raw, hdus = corpus(AXCIR)
    _refused(_write(tmp_path, raw + b"\0" * 2880, "zeros.fits"), "HDU#8", None, match="bytes after the last")
    _refused(_write(tmp_path, raw + b"garbage" * 100, "garbage.fits"), "HDU#8", "END")
    cut = _write(tmp_path, raw[:-1], "cut1.fits")  # the data are all there; the padding is not
    _refused(cut, "OI_T3#7", None, match="not a multiple of 2880")
    short = _write(tmp_path, raw[: hdus[7].data_start + 100], "short.fits")
    _refused(short, "OI_T3#7", "NAXIS2", match="truncated: the header declares")


def test_zero_row_table_reads_with_a_warning(tmp_path, corpus):
    raw, hdus = corpus(AXCIR)
    t3 = hdus[6]
    head = set_card(raw, t3, "NAXIS2", "0")[t3.header_start:t3.data_start]
    p = _write(tmp_path, raw[:t3.header_start] + head + raw[t3.data_start + t3.data_span:])
    with pytest.warns(Warning, match="EMPTY_TABLE"):
        oi = read_oifits(p)
    empty = next(t for t in oi.tables if t.hdu_index == 6)
    assert empty.nrows == 0 and empty["T3PHI"].shape == (0, 3) and empty["STA_INDEX"].shape == (0, 3)
    assert [t.nrows for t in oi.t3] == [0, 160]
    assert len(oi.view("t3")) == 160 * 3
    rep = validate(p)
    assert any(f.rule == "EMPTY_TABLE" and f.hdu == "OI_T3#6" for f in rep.warnings)
    assert "VALIDATOR_INTERNAL" not in rep.rules()


def test_oifits1_with_oifits2_tables_and_no_target_reports_both(tmp_path, corpus):
    raw, hdus = corpus(GRAVITY)
    target = next(h for h in hdus if h.extname == "OI_TARGET")
    p = _write(tmp_path, raw[:target.header_start] + raw[target.data_start + target.data_span:])
    with pytest.raises(OIFitsError, match="no OI_TARGET"):
        read_oifits(p)
    rep = validate(p)
    assert rep.verdict == "unreadable" and "OI_TARGET" in rep.unreadable
    assert {"OIFITS_OI_TARGET_EXIST", "UNKNOWN_TABLE"} <= rep.rules("error")
    assert {f.hdu.split("#")[0] for f in rep.errors if f.rule == "UNKNOWN_TABLE"} == {"OI_FLUX"}


@pytest.mark.parametrize("column, rule", [("UCOORD", "UNUSABLE_POINT"), ("VCOORD", "UNUSABLE_POINT"),
                                          ("MJD", "UNUSABLE_POINT"), ("VIS2ERR", "UNUSABLE_POINT")])
@pytest.mark.parametrize("value", [np.nan, np.inf, 1e308])
def test_damaged_location_time_or_error_is_an_error_naming_column_and_rows(tmp_path, corpus, column, rule, value):
    raw, hdus = corpus(AXCIR)
    p = _write(tmp_path, set_cell(raw, hdus[4], column, 7, 0, value))
    rep = validate(p)
    if column == "MJD" and np.isfinite(value):  # a finite MJD outside 1933–2150: a range warning
        assert any(f.rule == "GENERIC_MJD_RANGE" and f.column == "MJD" and 7 in f.rows for f in rep.warnings)
        return
    if column == "VIS2ERR" and np.isfinite(value):  # a huge but finite error bar: a damaged number
        assert any(f.rule == "NUMERIC_VALUE" and f.column == "VIS2ERR" and f.rows == [7] for f in rep.warnings)
        return
    hits = [f for f in rep.errors if f.rule == rule and f.column == column and f.hdu == "OI_VIS2#4"]
    assert hits and hits[0].rows == [7], [(f.rule, f.location()) for f in rep.errors]


def _float_columns(where):
    return [c.name for c in where.hdu.columns if str(c.format)[-1:] in "ED"]


@pytest.mark.parametrize("name", [AXCIR, BIGTEST])
def test_nan_inf_huge_in_every_float_column_is_named(tmp_path, corpus, name):
    """The fuzz found 50 of 160 such injections without a finding naming the column."""
    raw, hdus = corpus(name)
    values = [np.nan, np.inf, -1e308]
    missed, tried = [], 0
    for where in hdus[1:]:
        if where.extname not in TABLE_CLASSES or not where.hdu.header["NAXIS2"]:
            continue
        flag = where.hdu.data["FLAG"] if "FLAG" in where.hdu.columns.names else None
        rows = [r for r in range(where.hdu.header["NAXIS2"]) if flag is None or not np.all(flag[r])]
        if not rows:
            continue
        row = rows[0]
        element = 0 if flag is None else int(np.flatnonzero(~np.asarray(flag[row]).ravel())[0])
        for k, col in enumerate(_float_columns(where)):
            size = int(np.prod(where.hdu.data.dtype.fields[col][0].shape or (1,)))
            value = values[(tried + k) % 3]
            with np.errstate(over="ignore"):
                data = set_cell(raw, where, col, row, min(element, size - 1), value)
            p = _write(tmp_path, data)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rep = validate(p)
            tried += 1
            if not any(f.column == col and f.hdu == f"{where.extname}#{where.index}" for f in rep.findings):
                missed.append((where.extname, where.index, col, value))
    assert tried > 40
    assert missed == []


def test_cli_validate_names_file_hdu_and_card(tmp_path, corpus, capsys):
    raw, hdus = corpus(AXCIR)
    bad = _write(tmp_path, set_card(raw, hdus[4], "NAXIS2", "1.5"))
    code = main(["validate", str(bad)])
    out = capsys.readouterr().out
    assert code == 2
    lines = out.splitlines()
    assert lines[0].startswith(f"{bad}: UNREADABLE") and "HDU OI_VIS2#4; card NAXIS2" in lines[0]
    assert any("FITS_STRUCTURE" in line and "OI_VIS2#4 card NAXIS2" in line for line in lines[1:])
    code = main(["validate", "--json", str(bad), str(tmp_path / "absent.fits")])
    reports = __import__("json").loads(capsys.readouterr().out)
    assert code == 2 and [r["verdict"] for r in reports] == ["unreadable", "unreadable"]
    assert {(f["rule"], f["hdu"], f["card"]) for f in reports[0]["findings"]} >= {("FITS_STRUCTURE", "OI_VIS2#4",
                                                                                    "NAXIS2")}
    nan_u = _write(tmp_path, set_cell(raw, hdus[4], "UCOORD", 3, 0, np.nan), "nan_u.fits")
    assert main(["validate", str(nan_u)]) == 1
    out = capsys.readouterr().out
    assert "UNUSABLE_POINT" in out and "OI_VIS2#4 UCOORD rows 3" in out
