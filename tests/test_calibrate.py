"""Calibration L1 → L2: transfer function, interpolation, error propagation, calibrator
diameters, truth recovery on simulated nights, and bad input."""

import math
import warnings

import numpy as np
import pytest
from scipy.optimize import least_squares
from scipy.special import jv

from oiflow.calibrate import DiameterCatalog, calibrate_night, interpolate
from oiflow.calibrate.diameters import DiameterSource, band_of
from oiflow.calibrate.transfer_function import tf_vis2_points, ud_vis2
from oiflow.config import CalibrateConfig
from oiflow.errors import CalibrationError, CalibrationWarning, ConfigError
from oiflow.fit.analytic import uniform_disk
from oiflow.oifits import read_oifits
from oiflow.provenance import Provenance
from oiflow.simulate.night import write_calibrator_catalogue
from oiflow.simulate.sky import sky_visfunc
from oiflow.units import MAS

from night_factory import reduced_night


@pytest.fixture(scope="module")
def calibrated_pulls(tmp_path_factory):
    raw, l1, truth, _, cfg = reduced_night("pulls")
    out = tmp_path_factory.mktemp("L2")
    cat = write_calibrator_catalogue(cfg, out.parent / "cal.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("error", CalibrationWarning)
        result = calibrate_night(sorted(l1.glob("*.fits")), out, CalibrateConfig(diameters=cat))
    return result, truth, out, cat


# --- truth recovery --------------------------------------------------------------------------
def test_uniform_disk_diameter_recovered_within_one_percent(calibrated_pulls):
    result, truth, out, _ = calibrated_pulls
    assert result.failures == []
    oi = read_oifits(out / "SCI_DISK_2023-03-15.fits")
    v = oi.view("vis2")
    ok = v.usable
    u, w = v.u[ok] / v.wavelength[ok], v.v[ok] / v.wavelength[ok]

    def resid(p):
        return (np.abs(uniform_disk(u, w, p[0] * MAS, np)) ** 2 - v.value[ok]) / v.error[ok]

    fit = least_squares(resid, [1.5])
    chi2r = np.sum(fit.fun**2) / (ok.sum() - 1)
    true = truth["targets"]["SCI_DISK"]["model"]["diameter_mas"]
    assert abs(fit.x[0] - true) / true < 0.01, fit.x[0]
    assert 0.3 < chi2r < 2.0
    # calibrated V² against the true V² of the disk
    pull = (v.value[ok] - np.abs(uniform_disk(u, w, true * MAS, np)) ** 2) / v.error[ok]
    assert abs(pull.mean()) < 0.3 and 0.5 < pull.std() < 1.4


def test_binary_closure_phases_keep_sign_and_size(calibrated_pulls):
    result, truth, out, _ = calibrated_pulls
    t3 = read_oifits(out / "SCI_BINARY_2023-03-15.fits").view("t3")
    vf = sky_visfunc(truth["targets"]["SCI_BINARY"]["model"])
    lam = t3.wavelength
    bis = vf(t3.u / lam, t3.v / lam, lam) * vf(t3.u2 / lam, t3.v2 / lam, lam) * vf(t3.u3 / lam, t3.v3 / lam, lam)
    true = np.angle(bis)
    assert np.degrees(np.abs(true)).max() > 30  # a strongly asymmetric target
    d = np.angle(np.exp(1j * (t3.value - true)))
    pull = d / t3.error
    assert abs(pull.mean()) < 0.2 and 0.7 < pull.std() < 1.4
    strong = np.abs(true) > 3 * t3.error
    assert strong.sum() > 100 and np.all(np.sign(t3.value[strong]) == np.sign(true[strong]))
    assert np.sqrt(np.mean(t3.value**2)) / np.sqrt(np.mean(true**2)) == pytest.approx(1.0, abs=0.05)
    # the instrumental closure phase (a few degrees) was there at L1 and is gone at L2
    raw_cp = np.array([o["t3phi_raw_deg"] for o in truth["observations"] if o["target"] == "SCI_BINARY"])
    sky_cp = np.array([o["t3phi_sky_deg"] for o in truth["observations"] if o["target"] == "SCI_BINARY"])
    instr = np.abs(np.angle(np.exp(1j * np.radians(raw_cp - sky_cp)))).mean()
    assert instr > np.radians(2.0)
    by_triangle = [np.mean(d[t3.sta_index[:, 0] * 100 + t3.sta_index[:, 1] * 10 + t3.sta_index[:, 2] == k])
                   for k in (123, 124, 134, 234)]
    assert np.max(np.abs(by_triangle)) < 0.1 * instr  # no systematic offset left on any triangle
    # calibrated T3AMP of the binary against the truth
    amp_pull = (t3.amp - np.abs(bis)) / t3.amp_error
    assert abs(np.nanmean(amp_pull)) < 0.5


def test_point_source_calibrates_to_unit_v2():
    raw, l1, truth, result, cfg = reduced_night("point")
    assert result.failures == []
    cat = write_calibrator_catalogue(cfg, l1.parent / "cal.csv")
    res = calibrate_night(sorted(l1.glob("*.fits")), l1.parent / "L2", CalibrateConfig(diameters=cat))
    v = read_oifits(res.products[0]).view("vis2")
    assert res.products[0].name == "SCI_POINT_2023-03-15.fits" and len(v) == 2 * 6 * 4
    pull = (v.value - 1.0) / v.error
    assert np.all(np.abs(pull) < 3.5) and 0.5 < np.sqrt(np.mean(pull**2)) < 1.3
    # the points share their TF (3 calibrator visits): their mean is 1 within one (correlated) error
    wmean = np.sum(v.value / v.error**2) / np.sum(1 / v.error**2)
    assert abs(wmean - 1.0) < np.median(v.error)
    t3 = read_oifits(res.products[0]).view("t3")
    assert np.all(np.abs(t3.value) < 4 * t3.error)


# --- bad input ---------------------------------------------------------------------------------
def test_calibrator_missing_from_catalogue_is_warned_and_excluded(tmp_path):
    raw, l1, truth, _, cfg = reduced_night("pulls")
    cat = tmp_path / "only_a.csv"
    cat.write_text("name,ra_deg,dec_deg,ud_h_mas,e_ud_h_mas\nHD_CAL_A,118.0,-35.0,0.55,0.04\n")
    with pytest.warns(CalibrationWarning, match="HD_CAL_B"):
        result = calibrate_night(sorted(l1.glob("*.fits")), tmp_path / "L2", CalibrateConfig(diameters=cat))
    assert result.failures == [] and len(result.products) == 2
    h = read_oifits(result.products[0]).primary_header
    assert h["HIERARCH OIFLOW NCAL"] == 1 and h["HIERARCH OIFLOW CAL1 NAME"] == "HD_CAL_A"
    assert "HIERARCH OIFLOW CAL2 NAME" not in h


def test_setup_without_usable_calibrator_fails_alone(tmp_path):
    _, l1a, _, _, cfg = reduced_night("pulls")
    _, l1b, truth_b, _, _ = reduced_night("other_setup")
    cat = write_calibrator_catalogue(cfg, tmp_path / "cal.csv")  # knows HD_CAL_A/B, not CAL_X
    files = sorted(l1a.glob("*.fits")) + sorted(l1b.glob("*.fits"))
    out = tmp_path / "L2"
    with pytest.warns(CalibrationWarning, match="CAL_X"):
        result = calibrate_night(files, out, CalibrateConfig(diameters=cat))
    assert sorted(p.name for p in result.products) == ["SCI_BINARY_2023-03-15.fits", "SCI_DISK_2023-03-15.fits"]
    failed = dict(result.failures)
    sci_y = [o["obs_id"] + ".fits" for o in truth_b["observations"] if o["target"] == "SCI_Y"]
    assert sorted(failed) == sorted(sci_y)
    assert all("setup SIMABCD_H-3CH" in why and "no usable calibrator" in why for why in failed.values())
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted([p.name for p in result.products] + [p.name for p in result.plots])


def test_no_calibrator_at_all_is_an_error_for_the_setup(tmp_path):
    _, l1, _, _, _ = reduced_night("pulls")
    sci = [p for p in sorted(l1.glob("*.fits")) if "CAL" not in p.name]
    result = calibrate_night(sci, tmp_path / "L2", CalibrateConfig())
    assert result.products == [] and len(result.failures) == len(sci)
    assert "no calibrator observed" in result.failures[0][1]
    assert not (tmp_path / "L2").exists() or list((tmp_path / "L2").iterdir()) == []


def test_l2_level_provenance_and_header(calibrated_pulls):
    result, truth, out, cat = calibrated_pulls
    oi = read_oifits(out / "SCI_DISK_2023-03-15.fits")
    prov = Provenance.from_header(oi.primary_header)
    assert prov.level == 2 and prov.stage == "calibrate"
    names = {i.name for i in prov.inputs}
    sci = {o["obs_id"] + ".fits" for o in truth["observations"] if o["target"] == "SCI_DISK"}
    cals = {o["obs_id"] + ".fits" for o in truth["observations"] if o["category"] == "CAL"}
    assert names == sci | cals | {cat.name}
    h = oi.primary_header
    assert h["HIERARCH OIFLOW TFMODE"] == "smooth" and h["HIERARCH OIFLOW NCAL"] == 2
    assert {h["HIERARCH OIFLOW CAL1 NAME"], h["HIERARCH OIFLOW CAL2 NAME"]} == {"HD_CAL_A", "HD_CAL_B"}
    assert h["HIERARCH OIFLOW CAL1 DIAM"] == pytest.approx(0.55)
    assert list(oi.target["CATEGORY"]) == ["SCI"] and oi.target_names() == {1: "SCI_DISK"}
    assert oi.flux == [] and len(oi.vis2) == 1 and oi.vis2[0].nrows == 5 * 6
    assert 0 < h["HIERARCH OIFLOW SYSERR VIS2"] < 0.05
    assert result.plots[0].name == "tf_SIMABCD_H-16CH.png" and result.plots[0].stat().st_size > 10000


@pytest.mark.parametrize("mode", ["nearest", "linear", "average", "linfit"])
def test_every_interpolation_mode_calibrates_the_point_source(mode, tmp_path):
    raw, l1, truth, _, cfg = reduced_night("point")
    cat = write_calibrator_catalogue(cfg, tmp_path / "cal.csv")
    res = calibrate_night(sorted(l1.glob("*.fits")), tmp_path / "L2", CalibrateConfig(diameters=cat, interpolation=mode))
    v = read_oifits(res.products[0]).view("vis2")
    assert read_oifits(res.products[0]).primary_header["HIERARCH OIFLOW TFMODE"] == mode
    assert np.all(np.isfinite(v.value)) and np.abs(np.median(v.value) - 1) < 0.03


# --- transfer-function pieces (CALIBRATION.md §7) -------------------------------------------------
def test_diameter_error_propagates_as_the_analytic_derivative():
    theta, sig = 0.9, 0.01  # mas
    u = np.array([40.0, 80.0, 120.0, 60.0])
    v = np.array([10.0, -30.0, 5.0, 50.0])
    lam = 1.65e-6
    v2 = ud_vis2(theta, u, v, lam)
    tf, err, err_diam = tf_vis2_points(0.8 * v2, 1e-9 * v2, theta, sig, u, v, lam)
    np.testing.assert_allclose(tf, 0.8, rtol=1e-12)
    # d(V²)/dθ for V = 2 J1(x)/x, x = π θ B/λ: dV/dx = −2 J2(x)/x
    x = math.pi * theta * MAS * np.hypot(u, v) / lam
    vis = 2 * jv(1, x) / x
    dv2_dtheta = 2 * vis * (-2 * jv(2, x) / x) * x / theta
    expected = 0.8 * np.abs(dv2_dtheta) * sig / v2  # σ_TF = TF · σ_V²UD / V²UD
    np.testing.assert_allclose(err_diam, expected, rtol=2e-3)
    np.testing.assert_allclose(err, np.hypot(1e-9 * v2 / v2, err_diam), rtol=1e-6)


def test_linear_drift_is_removed_exactly_by_linear_modes():
    t_cal = 60019.0 + np.array([0.0, 0.05, 0.11, 0.2, 0.26])
    tf = 0.7 - 0.3 * (t_cal - 60019.0)  # a linear drift of the TF in time
    err = np.full(t_cal.size, 0.01)
    t_sci = 60019.0 + np.array([0.02, 0.08, 0.15, 0.23])
    truth = 0.7 - 0.3 * (t_sci - 60019.0)
    for mode in ("linear", "linfit"):
        val, e = interpolate(t_cal, tf, err, t_sci, mode)
        np.testing.assert_allclose(val, truth, atol=1e-12)
        assert np.all(e > 0) and np.all(e < 0.011)
    val, _ = interpolate(t_cal, tf, err, t_sci, "average")
    assert np.max(np.abs(val - truth)) > 0.01  # the night average does not follow the drift


def test_interpolation_modes_and_phase_wrapping():
    t = np.array([0.0, 0.1, 0.2])
    y = np.array([1.0, 2.0, 4.0])
    e = np.array([0.1, 0.1, 0.2])
    val, err = interpolate(t, y, e, [0.09, 0.16], "nearest")
    np.testing.assert_allclose(val, [2.0, 4.0])
    np.testing.assert_allclose(err, [0.1, 0.2])
    val, err = interpolate(t, y, e, [0.05], "average")
    w = 1 / e**2
    assert val[0] == pytest.approx(np.sum(w * y) / np.sum(w))
    # scatter much larger than the errors: the error grows towards the RMS of the points (errMode 0)
    assert err[0] > 3 * np.sqrt(1 / np.sum(w))
    # consistent points: the error is the formal error of the weighted mean
    val, err = interpolate(t, np.ones(3), e, [0.1], "average")
    assert err[0] == pytest.approx(np.sqrt(1 / np.sum(w)))
    # phases average across ±π, not through 0
    ph = np.radians([179.0, -179.0, 178.0])
    val, _ = interpolate(t, ph, np.full(3, 0.01), [0.1], "smooth", window_h=100.0, phase=True)
    assert abs(val[0]) == pytest.approx(np.radians(180 - 2 / 3), abs=1e-3)  # mean of 179°, 181°, 178°
    val, _ = interpolate(t[:2], ph[:2], np.full(2, 0.01), [0.05], "linear", phase=True)
    assert abs(np.degrees(val[0])) == pytest.approx(180.0, abs=1e-9)
    with pytest.raises(CalibrationError, match="no usable"):
        interpolate([], [], [], [0.0])
    with pytest.raises(CalibrationError, match="unknown TF interpolation"):
        interpolate(t, y, e, [0.0], "spline")


# --- diameters --------------------------------------------------------------------------------------
def test_catalogue_csv_and_fits_matching(tmp_path):
    csv = tmp_path / "cat.csv"
    csv.write_text("# comment line\nname,ra_deg,dec_deg,ud_h_mas,e_ud_h_mas,ud_k_mas\n"
                   "HD 1234,10.0,-20.0,0.80,0.05,0.81\nHD_999,200.0,10.0,1.2,,1.21\n")
    cat = DiameterCatalog.from_file(csv)
    d = cat.lookup("hd-1234", None, None, "H")
    assert (d.diameter_mas, d.error_mas, d.source) == (0.8, 0.05, "cat.csv")
    d = cat.lookup("SOME_OTHER_NAME", 10.0 + 3.0 / 3600 / math.cos(math.radians(20)), -20.0, "H")  # 3″ away
    assert d is not None and d.diameter_mas == 0.8
    assert cat.lookup("FAR", 10.01, -20.0, "H") is None  # 34″ away
    assert cat.lookup("HD_999", None, None, "H").error_mas == pytest.approx(0.36)  # 30% default
    assert cat.lookup("HD 1234", None, None, "K").error_mas == pytest.approx(0.3 * 0.81)
    from astropy.table import Table

    Table({"name": ["HD 1234"], "ra": [10.0], "dec": [-20.0], "UDDH": [0.8], "e_LDD": [0.04]}).write(tmp_path / "c.fits")
    d = DiameterCatalog.from_file(tmp_path / "c.fits").lookup("HD1234", None, None, "H")
    assert (d.diameter_mas, d.error_mas) == (0.8, 0.04)
    src = DiameterSource(cat, {"HD 1234": {"diameter_mas": 0.7, "error_mas": 0.01}})
    assert src.lookup("HD_1234", None, None, "H").source == "config"  # config beats the file
    assert band_of([1.5e-6, 1.8e-6]) == "H" and band_of([2.2e-6]) == "K"
    with pytest.raises(ConfigError, match="not found"):
        DiameterCatalog.from_file(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("name,ra\nX,1\n")
    with pytest.raises(ConfigError, match="no diameter column"):
        DiameterCatalog.from_file(bad)
