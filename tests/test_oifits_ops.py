"""merge / select semantics on real files; inputs are never modified."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from oiflow.errors import DataError
from oiflow.oifits import read_oifits
from oiflow.oifits.ops import merge, select
from oiflow.oifits.validate import validate



def load(shared_data, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_oifits(shared_data / "oifits" / name)


def snapshot(oi):
    return [(t.label, {k: np.array(v, copy=True) for k, v in t.columns.items()}, t.header.tostring()) for t in oi.tables]


def same_snapshot(a, b):
    for (la, ca, ha), (lb, cb, hb) in zip(a, b):
        assert la == lb and ha == hb
        for k in ca:
            assert np.array_equal(ca[k], cb[k]) if ca[k].dtype.kind not in "fc" else np.array_equal(ca[k], cb[k], equal_nan=True)


def test_merge_with_itself_shares_everything(shared_data):
    a = load(shared_data, "real/pionier/AXCir.oifits")
    before = snapshot(a)
    m = merge([a, a])
    same_snapshot(before, snapshot(a))
    assert m.target_names() == {1: "AX_CIR"}
    assert len(m.arrays) == 1 and len(m.wavelengths) == 1
    assert len(m.vis2) == 2 * len(a.vis2) and len(m.view("vis2")) == 2 * len(a.view("vis2"))
    assert validate(m).rules("error") <= {"GENERIC_KEYWORD_MANDATORY"}  # in memory: main header not yet filled


def test_merge_renames_clashing_names_and_repoints(shared_data, tmp_path):
    a = load(shared_data, "real/pionier/FSCMa_PIONI.2017-10-21.fits")
    b = load(shared_data, "real/matisse/FSCMa_2018-12-07_LM_LOW_Chop.fits")
    c = load(shared_data, "sim/oifitslib_bigtest2_v2_corr_inspol.fits")
    m = merge([a, b, c])
    names = m.target_names()
    assert list(names.values()) == ["HD45677", "alp_ori", "alp_tau", "irc_+10216"]  # PIONIER and MATISSE: one star
    arrnames = [x.arrname for x in m.arrays]
    assert arrnames[:2] == ["VLTI", "VLTI_2"] and len(set(arrnames)) == len(arrnames)
    # MATISSE tables now point at the renamed array, whose stations are MATISSE's
    mat = [t for t in m.data_tables if t.insname == "MATISSE"]
    assert mat and {t.arrname for t in mat} == {"VLTI_2"}
    assert set(m.array_of("VLTI_2").station_names().values()) == set(b.arrays[0].station_names().values())
    # views resolve station names through the re-pointed ARRNAME
    v = m.view("vis2")
    sel = v.insname == "MATISSE"
    assert set(v.stations[sel]) == set(b.view("vis2").stations)
    # TARGET_IDs re-indexed: bigtest2's alp_tau (id 2 there) is id 3 here
    t3 = m.view("t3")
    assert set(t3.target[t3.target_id == 3]) == {"alp_tau"}
    from oiflow.oifits import write_oifits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = write_oifits(m, tmp_path / "m.fits")
    assert validate(out).errors == []


def test_merge_matches_targets_by_position(shared_data):
    a = load(shared_data, "real/pionier/FSCMa_PIONI.2017-10-21.fits")
    b = load(shared_data, "real/matisse/FSCMa_2018-12-07_LM_LOW_Chop.fits")
    b.targets[0].columns["TARGET"] = np.array(["FS_CMa"])  # other name, same coordinates (within 0.05")
    assert list(a.target_names().values()) == ["HD45677"]
    assert len(merge([a, b]).target_names()) == 1


def test_select_wavelength_range_slices_channels(shared_data):
    oi = load(shared_data, "real/matisse/AS209_OiXP_2023-05-10_N_LOW.fits")
    before = snapshot(oi)
    sub = select(oi, wave_min=9e-6, wave_max=11e-6)
    same_snapshot(before, snapshot(oi))
    keep = (oi.wavelengths[0].eff_wave >= 9e-6) & (oi.wavelengths[0].eff_wave <= 11e-6)
    assert 0 < keep.sum() < keep.size
    assert np.array_equal(sub.wavelengths[0].eff_wave, oi.wavelengths[0].eff_wave[keep])
    for t_old, t_new in zip(oi.data_tables, sub.data_tables):
        for col in ("VIS2DATA", "T3PHI", "VISAMP", "FLUXDATA", "FLAG"):
            if col in t_old.columns:
                assert np.array_equal(t_new[col], t_old[col][:, keep], equal_nan=col != "FLAG"), (t_old.label, col)
    assert len(sub.view("vis2")) == keep.sum() * sum(t.nrows for t in oi.vis2)


def test_select_target_mjd_baseline_snr(shared_data):
    oi = load(shared_data, "sim/oifitslib_bigtest2_v2_corr_inspol.fits")
    sub = select(oi, target="alp_tau")  # TARGET_IDs of this file start at 0
    assert sub.target_names() == {1: "alp_tau"}
    assert set(sub.view("vis2").target_id) == {1}
    assert len(sub.view("vis2")) == int((oi.view("vis2").target_id == 1).sum()) > 0

    ax = load(shared_data, "real/pionier/AXCir.oifits")
    v = ax.view("vis2")
    mjd_cut = float(np.median(np.unique(v.mjd)))
    sub = select(ax, mjd_max=mjd_cut)
    assert sub.view("vis2").mjd.max() <= mjd_cut and len(sub.view("vis2")) == int((v.mjd <= mjd_cut).sum())

    sub = select(ax, baseline_min=40.0, baseline_max=80.0)
    b = sub.view("vis2").baseline
    assert b.min() >= 40.0 and b.max() <= 80.0
    assert len(b) == int(((v.baseline >= 40) & (v.baseline <= 80)).sum())
    t3 = sub.view("t3")
    assert t3.baseline.max() <= 80.0 and t3.baseline.min() >= 40.0  # longest baseline of each triangle

    snr_cut = float(np.median(v.value / v.error))
    sub = select(ax, min_snr=snr_cut)
    w = sub.view("vis2")
    assert np.array_equal(w.flag, v.flag | ~(v.value / v.error >= snr_cut))
    with pytest.raises(DataError):
        select(ax, min_snr=1e9, drop_flagged=True)  # everything flagged, then dropped


def test_select_drops_corrindx_on_channel_cut(shared_data):
    oi = load(shared_data, "sim/oifitslib_bigtest2_v2_corr_inspol.fits")
    with pytest.warns(Warning, match="CORRINDX"):
        sub = select(oi, wave_min=1.5e-6, wave_max=1.6e-6)
    assert not sub.corrs and all("CORRINDX_VIS2DATA" not in t.columns for t in sub.vis2)
    assert validate(sub).rules("error") <= {"GENERIC_KEYWORD_MANDATORY"}


def test_select_unknown_names(shared_data):
    oi = load(shared_data, "real/pionier/AXCir.oifits")
    with pytest.raises(DataError, match="no target"):
        select(oi, target="Vega")
    with pytest.raises(DataError, match="INSNAME"):
        select(oi, insname="GRAVITY_SC")
