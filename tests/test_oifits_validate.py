"""Validator rules on small synthetic files: a clean file validates clean, and each defect fires
its rule at the documented severity."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.io import fits

from oiflow.oifits import read_oifits, write_oifits
from oiflow.oifits.build import (
    array_table,
    flux_table,
    new_oifits,
    t3_table,
    target_table,
    vis2_table,
    vis_table,
    wavelength_table,
)
from oiflow.oifits.model import CorrTable, InspolTable
from oiflow.oifits.validate import ValidationReport, validate

WAVE = np.array([1.55e-6, 1.65e-6, 1.75e-6])


def make_oi():
    rng = np.random.default_rng(1)
    n = 6
    sta = np.array([[1, 2], [1, 3], [1, 4], [2, 3], [2, 4], [3, 4]])
    xyz = [[0, 0, 0], [30, 10, 0], [10, 60, 0], [-40, 20, 0]]
    mjd = 58000.1 + np.arange(n) * 0.01
    v2 = vis2_table("PIO", "VLTI", target_id=1, mjd=mjd, u=rng.normal(0, 50, n), v=rng.normal(0, 50, n),
                    sta_index=sta, vis2=rng.uniform(0.2, 0.9, (n, 3)), vis2err=0.02)
    t3 = t3_table("PIO", "VLTI", target_id=1, mjd=mjd[:4], u1=[30, 30, 10, 40], v1=[10, 10, 60, 10],
                  u2=[-20, 10, -50, 20], v2=[50, 10, -40, 5], sta_index=[[1, 2, 3], [1, 2, 4], [1, 3, 4], [2, 3, 4]],
                  t3phi=rng.normal(0, 0.05, (4, 3)), t3phierr=0.02, t3amp=0.5, t3amperr=0.05)
    vis = vis_table("PIO", "VLTI", target_id=1, mjd=mjd, u=rng.normal(0, 50, n), v=rng.normal(0, 50, n),
                    sta_index=sta, visamp=rng.uniform(0.3, 0.9, (n, 3)), visamperr=0.02, visphi=0.0, visphierr=0.01,
                    amptyp="absolute", phityp="absolute")
    fl = flux_table("PIO", "VLTI", target_id=1, mjd=mjd[:4], fluxdata=np.full((4, 3), 100.0), fluxerr=1.0,
                    sta_index=[1, 2, 3, 4])
    return new_oifits(target_table(["HD_1"], ra_deg=[10.0], dec_deg=[-20.0]),
                      [array_table("VLTI", ["A0", "B1", "C2", "D3"], xyz)], [wavelength_table("PIO", WAVE)],
                      [v2, t3, vis, fl], primary={"OBSERVER": "test", "ORIGIN": "oiflow tests"})


def written(tmp_path, oi, version=2, name="x.fits") -> ValidationReport:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = write_oifits(oi, tmp_path / name, version=version)
        return validate(path)


def has(rep, rule, severity=None, column=None):
    return any(f.rule == rule and (severity is None or f.severity.value == severity)
               and (column is None or f.column == column) for f in rep.findings)


def test_built_file_is_clean(tmp_path):
    rep = written(tmp_path, make_oi())
    assert rep.errors == [], [(f.rule, f.message) for f in rep.errors]
    assert rep.warnings == [], [(f.rule, f.message) for f in rep.warnings]
    assert rep.verdict == "clean" and rep.ok
    d = rep.to_dict()
    assert d["verdict"] == "clean" and d["errors"] == 0 and d["version"] == 2


def test_in_memory_validation(tmp_path):
    """In memory the main-header keywords the writer fills in are still missing; nothing else."""
    rep = validate(make_oi())
    assert [(f.rule, f.hdu) for f in rep.errors] == [("GENERIC_KEYWORD_MANDATORY", "PRIMARY")]
    assert "TELESCOP" in rep.errors[0].message


def _mutate(oi, kind, column, func):
    t = next(t for t in oi.tables if t.EXTNAME == kind)
    t.columns[column] = func(np.array(t.columns[column]))
    return oi


@pytest.mark.parametrize("kind,column,func,rule,severity", [
    ("OI_VIS2", "VIS2ERR", lambda a: np.where(np.arange(a.size).reshape(a.shape) == 4, -0.1, a),
     "GENERIC_COL_VAL_POSITIVE", "error"),
    ("OI_VIS2", "VIS2ERR", lambda a: np.where(np.arange(a.size).reshape(a.shape) == 4, 0.0, a), "ERR_ZERO", "warning"),
    ("OI_VIS2", "VIS2DATA", lambda a: np.where(np.arange(a.size).reshape(a.shape) == 4, np.nan, a),
     "UNFLAGGED_NAN", "warning"),
    ("OI_VIS2", "VIS2DATA", lambda a: a + 2.0, "RANGE_VIS", "warning"),
    ("OI_T3", "T3PHI", lambda a: a + 300.0, "RANGE_ANGLE", "warning"),
    ("OI_VIS2", "TARGET_ID", lambda a: a + 5, "TARGET_ID_REF", "error"),
    ("OI_VIS2", "STA_INDEX", lambda a: np.where(a == 4, 9, a), "STA_INDEX_REF", "error"),
    ("OI_T3", "STA_INDEX", lambda a: np.array([[1, 1, 2]] + a[1:].tolist(), dtype=a.dtype),
     "GENERIC_STA_INDEX_UNIQ", "error"),
    ("OI_VIS2", "MJD", lambda a: a - 58000.0, "GENERIC_MJD_RANGE", "warning"),
    ("OI_VIS2", "INT_TIME", lambda a: a * 0, "RANGE_POSITIVE_STRICT", "warning"),
    ("OI_TARGET", "TARGET_ID", lambda a: np.array([0], dtype=a.dtype), "TARGET_ID_REF", "error"),
    ("OI_ARRAY", "STA_INDEX", lambda a: np.array([1, 1, 3, 4], dtype=a.dtype), "OI_ARRAY_STA_INDEX_UNIQ", "error"),
    ("OI_TARGET", "VELTYP", lambda a: np.array(["FAST"]), "GENERIC_COL_VAL_ACCEPTED_STR", "error"),
    ("OI_WAVELENGTH", "EFF_WAVE", lambda a: a[::-1].copy(), "EFF_WAVE_ORDER", "warning"),
    ("OI_WAVELENGTH", "EFF_WAVE", lambda a: a * 1e6, "OI_WAVELENGTH_EFF_WAVE", "warning"),
])
def test_column_defects(tmp_path, kind, column, func, rule, severity):
    rep = written(tmp_path, _mutate(make_oi(), kind, column, func))
    assert has(rep, rule, severity), [(f.rule, f.severity.value, f.message) for f in rep.findings]


def test_flagged_negative_error_is_info(tmp_path):
    oi = make_oi()
    t = oi.vis2[0]
    t.columns["VIS2ERR"][0, 0] = -1
    t.columns["FLAG"][0, 0] = True
    rep = written(tmp_path, oi)
    assert rep.errors == [] and has(rep, "GENERIC_COL_ERR_FLAGGED", "info", "VIS2ERR")


@pytest.mark.parametrize("table,key,value,rule,severity", [
    ("OI_VIS2", "INSNAME", "OTHER", "INSNAME_REF", "error"),
    ("OI_VIS2", "ARRNAME", "CHARA", "ARRNAME_REF", "error"),
    ("OI_VIS2", "CORRNAME", "C1", "CORRNAME_REF", "error"),
    ("OI_VIS2", "DATE-OBS", "1800-01-01", "GENERIC_DATE_OBS_RANGE", "warning"),
    ("OI_VIS2", "DATE-OBS", "01/02/2003", "GENERIC_DATE_OBS_STANDARD", "warning"),
    ("OI_ARRAY", "FRAME", "ECLIPTIC", "GENERIC_KEYWORD_VAL_ACCEPTED_STR", "error"),
    ("OI_ARRAY", "FRAME", "Geocentric", "GENERIC_KEYWORD_VAL_ACCEPTED_STR", "warning"),
    ("OI_ARRAY", "ARRAYX", 0.0, "OI_ARRAY_XYZ", "warning"),
    ("OI_VIS", "PHITYP", "differential", "OI_VIS_VISREFMAP", None),  # the writer adds VISREFMAP: see below
    ("OI_FLUX", "CALSTAT", "X", "GENERIC_KEYWORD_VAL_ACCEPTED_STR", "error"),
])
def test_keyword_defects(tmp_path, table, key, value, rule, severity):
    oi = make_oi()
    t = next(t for t in oi.tables if t.EXTNAME == table)
    t.header[key] = value
    if rule == "OI_VIS_VISREFMAP":
        # in memory: missing VISREFMAP is an error; written: the writer supplies it
        assert has(validate(oi), rule, "error")
        assert not has(written(tmp_path, oi), rule)
        return
    rep = written(tmp_path, oi)
    assert has(rep, rule, severity), [(f.rule, f.severity.value, f.message) for f in rep.findings]


def test_duplicate_insname_and_arrname(tmp_path):
    oi = make_oi()
    oi.tables.append(oi.wavelengths[0].copy())
    oi.tables.append(oi.arrays[0].copy())
    rep = validate(oi)
    assert has(rep, "INSNAME_UNIQ", "error") and has(rep, "ARRNAME_UNIQ", "error")


def test_oifits2_tables_in_oifits1_file(tmp_path):
    oi = make_oi()
    path = tmp_path / "v1.fits"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_oifits(oi, path, version=1)  # drops OI_FLUX, as OIFITS1 has none
    with fits.open(path) as h:
        flux = fits.BinTableHDU.from_columns(
            [fits.Column("TARGET_ID", "I", array=[1]), fits.Column("MJD", "D", array=[58000.1]),
             fits.Column("INT_TIME", "D", array=[1.0]), fits.Column("FLUXDATA", "3D", array=[[1.0, 1, 1]]),
             fits.Column("FLUXERR", "3D", array=[[0.1, 0.1, 0.1]]), fits.Column("FLAG", "3L", array=[[0, 0, 0]])])
        flux.header["EXTNAME"] = "OI_FLUX"
        flux.header["OI_REVN"] = 1
        flux.header["INSNAME"] = "PIO"
        flux.header["DATE-OBS"] = "2017-09-04"
        flux.header["CALSTAT"] = "C"
        fits.HDUList([h[0].copy(), *[x.copy() for x in h[1:]], flux]).writeto(tmp_path / "mixed.fits")
    rep = validate(tmp_path / "mixed.fits")
    assert rep.version == 1
    assert has(rep, "UNKNOWN_TABLE", "error")


def test_main_header_v2(tmp_path):
    path = tmp_path / "x.fits"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_oifits(make_oi(), path)
    with fits.open(path, mode="update") as h:
        del h[0].header["OBSERVER"]
        h[0].header["INSMODE"] = ""
    rep = validate(path)
    f = next(f for f in rep.errors if f.rule == "GENERIC_KEYWORD_MANDATORY" and f.hdu == "PRIMARY")
    assert "OBSERVER" in f.message and "INSMODE" in f.message


def test_wrong_nwave_repeat_and_wrong_type(tmp_path):
    path = tmp_path / "x.fits"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_oifits(make_oi(), path)
    with fits.open(path) as h:
        hdus = [x.copy() for x in h]
    i = next(k for k, x in enumerate(hdus) if x.header.get("EXTNAME") == "OI_ARRAY")
    cols = [c if c.name != "TEL_NAME" else fits.Column("TEL_NAME", "4A", array=hdus[i].data["TEL_NAME"])
            for c in hdus[i].columns]
    cols = [c if c.name != "DIAMETER" else fits.Column("DIAMETER", "1J", unit="m", array=[2, 2, 2, 2]) for c in cols]
    new = fits.BinTableHDU.from_columns(cols, header=hdus[i].header)
    hdus[i] = new
    fits.HDUList(hdus).writeto(tmp_path / "y.fits")
    rep = validate(tmp_path / "y.fits")
    assert any(f.rule == "GENERIC_COL_FORMAT" and f.severity.value == "error" and f.column == "TEL_NAME" for f in rep.findings)
    assert any(f.rule == "GENERIC_COL_FORMAT" and f.column == "DIAMETER" for f in rep.findings)


def test_units(tmp_path):
    path = tmp_path / "x.fits"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_oifits(make_oi(), path)
    with fits.open(path, mode="update") as h:
        for hdu in h[1:]:
            if hdu.header["EXTNAME"] == "OI_VIS2":
                k = hdu.columns.names.index("INT_TIME") + 1
                hdu.header[f"TUNIT{k}"] = "sec"
            if hdu.header["EXTNAME"] == "OI_T3":
                k = hdu.columns.names.index("T3PHI") + 1
                hdu.header[f"TUNIT{k}"] = "rad"
    rep = validate(path)
    assert has(rep, "GENERIC_COL_UNIT", "warning", "INT_TIME")
    assert has(rep, "GENERIC_COL_UNIT", "error", "T3PHI")


def test_checksums(tmp_path):
    path = tmp_path / "x.fits"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_oifits(make_oi(), path)
    assert not validate(path).rules() & {"CHECKSUM_HDU", "CHECKSUM_DATA"}
    raw = bytearray(path.read_bytes())
    # change one header value (the OI_VIS2 DATE-OBS day) without updating CHECKSUM: header-only mismatch
    pos = raw.index(b"DATE-OBS= '2017-09-04'", raw.index(b"OI_VIS2"))
    raw[pos + 19] = ord("5")
    (tmp_path / "hdr.fits").write_bytes(bytes(raw))
    rep = validate(tmp_path / "hdr.fits")
    assert has(rep, "CHECKSUM_HDU", "warning") and not has(rep, "CHECKSUM_DATA")
    # flip a data byte: datasum mismatch -> error
    raw = bytearray(path.read_bytes())
    hdus = [0]
    with fits.open(path) as h:
        info = h.fileinfo(next(k for k, x in enumerate(h) if x.header.get("EXTNAME") == "OI_VIS2"))
    raw[info["datLoc"] + 20] ^= 0x55
    (tmp_path / "data.fits").write_bytes(bytes(raw))
    rep = validate(tmp_path / "data.fits")
    assert any(f.rule == "CHECKSUM_DATA" and f.hdu.startswith("OI_VIS2") and f.severity.value == "error"
               for f in rep.findings)
    _ = hdus


def _corr(oi, ndata, iindx, jindx):
    c = CorrTable(fits.Header([("OI_REVN", 1), ("CORRNAME", "C1"), ("NDATA", ndata)]),
                  {"IINDX": np.array(iindx, np.int32), "JINDX": np.array(jindx, np.int32),
                   "CORR": np.full(len(iindx), 0.1)})
    oi.tables.insert(3, c)
    return oi


def test_oi_corr_rules(tmp_path):
    oi = _corr(make_oi(), 18, [1, 3, 20], [2, 2, 21])
    t = oi.vis2[0]
    t.header["CORRNAME"] = "C1"
    t.columns["CORRINDX_VIS2DATA"] = np.array([1, 4, 7, 10, 13, 17], np.int32)  # last one runs past NDATA
    rep = written(tmp_path, oi)
    for rule in ("OI_CORR_JINDEX_SUP", "OI_CORR_IJINDEX_MAX", "GENERIC_CORRINDX_MAX"):
        assert has(rep, rule, "error"), rule
    t.columns["CORRINDX_VIS2DATA"] = np.array([1, 3, 7, 10, 13, 16], np.int32)  # 1..3 and 3..5 overlap
    rep = written(tmp_path, oi, name="y.fits")
    assert has(rep, "GENERIC_CORRINDX_UNIQ", "error") and not has(rep, "GENERIC_CORRINDX_MAX")


def test_corrindx_without_corrname(tmp_path):
    oi = make_oi()
    oi.vis2[0].columns["CORRINDX_VIS2DATA"] = np.arange(1, 19, 3, dtype=np.int32)
    assert has(written(tmp_path, oi), "OI_VIS2_CORRINDX", "error")


def _inspol(oi, insname="PIO", t0=58000.0, t1=58001.0, label=""):
    n = 4
    j = np.ones((n, 3), np.complex64)
    p = InspolTable(fits.Header([("OI_REVN", 1), ("NPOL", 1), ("ORIENT", "NORTH"), ("MODEL", "test"),
                                 ("ARRNAME", "VLTI")]),
                    {"TARGET_ID": np.ones(n, np.int16), "INSNAME": np.array([insname] * n),
                     "MJD_OBS": np.full(n, t0), "MJD_END": np.full(n, t1), "JXX": j, "JYY": j, "JXY": j * 0,
                     "JYX": j * 0, "STA_INDEX": np.arange(1, n + 1, dtype=np.int16)})
    oi.tables.insert(3, p)
    return oi


def test_oi_inspol_rules(tmp_path):
    oi = _inspol(make_oi())
    assert written(tmp_path, oi).errors == []
    oi = _inspol(_inspol(make_oi()), t0=58002.0, t1=58001.0)
    rep = written(tmp_path, oi, name="y.fits")
    assert has(rep, "OI_INSPOL_INSNAME_UNIQ", "error")
    assert has(rep, "OI_INSPOL_MJD_DIFF", "error")
    oi = _inspol(make_oi(), t0=59000.0, t1=59001.0)
    assert has(written(tmp_path, oi, name="z.fits"), "OI_INSPOL_MJD_RANGE", "warning")


def test_flux_calstat_rules(tmp_path):
    oi = make_oi()
    oi.flux[0].header["CALSTAT"] = "C"  # calibrated flux with ARRNAME and STA_INDEX
    rep = validate(oi)
    assert sum(f.rule == "OI_FLUX_CALSTAT" for f in rep.errors) == 2


def test_nan_read_back(tmp_path):
    """NaNs on flagged points are legal; on unflagged ones they are warnings."""
    oi = make_oi()
    oi.vis2[0].columns["VIS2DATA"][2, 1] = np.nan
    oi.vis2[0].columns["FLAG"][2, 1] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        back = read_oifits(write_oifits(oi, tmp_path / "n.fits"))
    assert np.isnan(back.vis2[0]["VIS2DATA"][2, 1]) and back.vis2[0]["FLAG"][2, 1]
    assert not has(validate(back), "UNFLAGGED_NAN")
