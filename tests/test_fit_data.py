"""Assembling observables: bad input is refused with errors that say where; NaN points are
excluded and not counted; OI_CORR is used."""

import numpy as np
import pytest

from oiflow.errors import DataError
from oiflow.fit import fit_files, load_data
from oiflow.fit.analytic import uniform_disk
from oiflow.oifits.model import CorrTable, Vis2Table
from oiflow.simulate.synthetic import synthetic_oifits
from oiflow.units import MAS

XYZ = [[0, 0, 0], [40, 10, 0], [20, 60, 0], [-30, 45, 0]]
WAVE = np.linspace(1.5e-6, 1.8e-6, 6)


def star(d_mas=2.0, seed=1, **kw):
    return synthetic_oifits(lambda u, v, w: uniform_disk(u, v, d_mas * MAS), station_xyz=XYZ, wavelength=WAVE, u=None, v=None,
                            seed=seed, **kw)


def test_v2_from_a_file_without_oi_vis2_is_a_clear_error(shared_data):
    path = shared_data / "oifits" / "real" / "midi" / "NGC5128_MIDI_2005.oifits"  # OI_VIS only
    with pytest.raises(DataError, match=r"V² \(v2\) was requested but no input has usable OI_VIS2"):
        fit_files([path], {"s": {"type": "ud", "diameter": 10.0}}, observables=["v2"])


def test_nan_points_are_excluded_and_not_counted():
    oi = star()
    n_all = load_data([oi], ["v2", "t3phi"]).n_data
    t = next(t for t in oi.tables if isinstance(t, Vis2Table))
    t.columns["VIS2DATA"][0, :3] = np.nan
    t.columns["VIS2DATA"][2, 1] = np.nan
    data = load_data([oi], ["v2", "t3phi"])
    assert data.n_data == n_all - 4
    assert np.all(np.isfinite(data.block("v2").value))
    res = fit_files([oi], {"s": {"type": "ud", "diameter": 1.5}})
    assert res.n_data == n_all - 4 and res.to_dict()["n_data"] == n_all - 4


def test_zero_and_negative_errors_name_the_rows():
    oi = star()
    t = next(t for t in oi.tables if isinstance(t, Vis2Table))
    t.columns["VIS2ERR"][1, 2] = 0.0
    t.columns["VIS2ERR"][4, 0] = -0.01
    with pytest.raises(DataError, match=r"OI_VIS2.*column VIS2ERR rows 2, 5 \(1-based\)"):
        load_data([oi], ["v2"])
    # a flagged point with a bad error is simply not used
    t.columns["FLAG"][1, 2] = True
    t.columns["FLAG"][4, 0] = True
    assert load_data([oi], ["v2"]).n_data == t.columns["VIS2DATA"].size - 2


def test_negative_error_in_a_real_malformed_file(shared_data):
    path = shared_data / "oifits" / "malformed" / "oifitslib_v2_bad_neg_error.fits"
    with pytest.raises(DataError, match="OI_T3.*T3PHIERR rows"):
        load_data([path], ["v2", "t3phi"])


def test_unknown_observable_and_file_without_requested_data():
    with pytest.raises(DataError, match="unknown observable"):
        load_data([star()], ["v3"])
    with pytest.raises(DataError, match="visphi"):
        load_data([star()], ["visphi"])


def test_triangle_baselines_share_the_vis2_frequencies():
    data = load_data([star()], ["v2", "t3phi", "t3amp"])
    assert len(data.freq_u) == data.block("v2").value.size  # 6 baselines × 6 channels, no more
    b = data.block("t3phi")
    # the bispectrum rebuilt from the stored frequencies matches the file's (u1+u2) geometry
    u3 = np.where(b.conj[:, 2], -1, 1) * data.freq_u[b.freq[:, 2]] * data.freq_wave[b.freq[:, 2]]
    oi = star()
    v = oi.view("t3")
    np.testing.assert_allclose(np.sort(u3), np.sort(v.u + v.u2), atol=1e-3)


def _with_corr(oi, rho):
    """Give the V² of ``oi`` a correlation ``rho`` between neighbouring channels (OI_CORR)."""
    t = next(t for t in oi.tables if isinstance(t, Vis2Table))
    nrow, nw = t.columns["VIS2DATA"].shape
    n = nrow * nw
    t.header["CORRNAME"] = "C1"
    t.columns["CORRINDX_VIS2DATA"] = np.arange(nrow) * nw + 1
    ii, jj, cc = [], [], []
    for r in range(nrow):
        for c in range(nw - 1):
            ii.append(r * nw + c + 1)
            jj.append(r * nw + c + 2)
            cc.append(rho)
    oi.tables.append(CorrTable({"EXTNAME": "OI_CORR", "OI_REVN": 1, "CORRNAME": "C1", "NDATA": n},
                               {"IINDX": np.array(ii), "JINDX": np.array(jj), "CORR": np.array(cc)}))
    return oi


def test_oi_corr_is_used_through_whitening():
    rho = 0.4
    oi = _with_corr(star(seed=3), rho)
    data = load_data([oi], ["v2"])
    assert len(data.corr) == 1
    sel, w = data.corr[0]
    nw = WAVE.size
    c = np.eye(nw) + rho * (np.eye(nw, k=1) + np.eye(nw, k=-1))
    block = w[:nw, :nw]
    np.testing.assert_allclose(np.linalg.inv(block.T @ block), c, atol=1e-12)  # W = L⁻¹ with C = L Lᵀ
    # correlated noise drawn with that matrix: the whitened χ²_red is ≈ 1, the naive one is not
    rng = np.random.default_rng(5)
    L = np.linalg.cholesky(c)
    t = next(t for t in oi.tables if isinstance(t, Vis2Table))
    u = t.columns["UCOORD"][:, None] / WAVE
    v = t.columns["VCOORD"][:, None] / WAVE
    truth = np.abs(uniform_disk(u, v, 2.0 * MAS)) ** 2
    chis = []
    for _ in range(40):
        t.columns["VIS2DATA"] = truth + 0.01 * (rng.standard_normal(truth.shape) @ L.T)
        t.columns["VIS2ERR"] = np.full(truth.shape, 0.01)
        chis.append(fit_files([oi], {"s": {"type": "ud", "diameter": 2.0}}, ["v2"]).chi2_red)
    assert abs(np.mean(chis) - 1.0) < 0.1  # 40 × 35 dof: σ(mean) ≈ 0.04
