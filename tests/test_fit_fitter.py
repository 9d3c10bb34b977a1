"""The fitter on synthetic data with known truth: parameters recovered within their errors,
pulls with unit variance over 50 noise realisations, and every observable / model feature.

The simulator (:func:`oiflow.simulate.synthetic.from_template`) computes monochromatic values at
EFF_WAVE while the AX Cir template keeps its wide channels (R ≈ 18): fits of those data model
them as they were made, without bandwidth smearing (``smearing=False``)."""

import math

import numpy as np
import pytest

from oiflow.fit import fit_files, fit_model, load_data, parse_model
from oiflow.fit.analytic import binary, gaussian, point, shift_phasor, uniform_disk
from oiflow.fit.evaluate import ModelEvaluator
from oiflow.oifits import read_oifits
from oiflow.oifits.build import flux_table, vis_table
from oiflow.simulate.synthetic import from_template, synthetic_oifits
from oiflow.units import MAS

TRUTH = {"star.diameter": 0.8, "comp.flux": 0.05, "comp.x": 5.0, "comp.y": -12.0}
MODEL = {"star": {"type": "ud", "diameter": 0.7}, "comp": {"type": "point", "flux": 0.04, "x": 5.3, "y": -11.8}}


def truth_vis(u, v, w):
    return binary(u, v, TRUTH["comp.flux"], TRUTH["comp.x"] * MAS, TRUTH["comp.y"] * MAS, TRUTH["star.diameter"] * MAS)


@pytest.fixture(scope="module")
def axcir_template(shared_data):
    return read_oifits(shared_data / "oifits" / "real" / "pionier" / "AXCir.oifits", warn=False)


def test_binary_truth_recovered_within_errors(axcir_template):
    oi = from_template(axcir_template, truth_vis, seed=11)
    res = fit_files([oi], MODEL, smearing=False)
    assert res.success and 0.8 < res.chi2_red < 1.2
    for name, truth in TRUTH.items():
        assert abs(res.values[name] - truth) < 3 * res.errors_raw[name], name
    d = res.to_dict()["derived"]
    assert d["separation_mas"] == pytest.approx(math.hypot(5, -12), abs=3 * d["separation_mas_error"])
    assert d["position_angle_deg"] == pytest.approx(math.degrees(math.atan2(5, -12)) % 360,
                                                    abs=3 * d["position_angle_deg_error"])
    assert d["flux_ratio"] == pytest.approx(0.05, abs=3 * d["flux_ratio_error"])


def test_pulls_have_unit_variance_over_50_seeds(axcir_template):
    """(fit − truth)/σ_raw over 50 noise realisations: the error bars are honest.

    With 50 samples the standard deviation of the pulls has a spread of ≈ 1/√100 = 0.1, the
    mean ≈ 1/√50 = 0.14; we accept std in [0.75, 1.25] and |mean| < 0.45 (about 2.5 and 3 σ)."""
    data0 = load_data([from_template(axcir_template, truth_vis, seed=0)], ["v2", "t3phi"])
    pulls = {k: [] for k in TRUTH}
    for seed in range(50):
        oi = from_template(axcir_template, truth_vis, seed=1000 + seed)
        res = fit_model(MODEL, load_data([oi], ["v2", "t3phi"]), smearing=False)
        for k, t in TRUTH.items():
            pulls[k].append((res.values[k] - t) / res.errors_raw[k])
    assert data0.n_data == 1500
    for k, p in pulls.items():
        p = np.array(p)
        assert 0.75 < p.std(ddof=1) < 1.25, (k, p.std(ddof=1))
        assert abs(p.mean()) < 0.45, (k, p.mean())


def test_scaled_errors_follow_chi2_and_correlation_is_reported(axcir_template):
    oi = from_template(axcir_template, truth_vis, seed=3)
    for t in oi.tables:  # errors in the file overestimated by 2: χ²_red ≈ 1/4, scaled errors ≈ raw/2
        for col in ("VIS2ERR", "T3PHIERR"):
            if col in t.columns:
                t.columns[col] = t.columns[col] * 2
    res = fit_files([oi], MODEL, smearing=False)
    assert res.chi2_red == pytest.approx(0.25, rel=0.15)
    for k in TRUTH:
        assert res.errors[k] == pytest.approx(res.errors_raw[k] * math.sqrt(res.chi2_red))
    corr = np.array(res.to_dict()["correlation"]["matrix"])
    np.testing.assert_allclose(np.diag(corr), 1.0)
    assert corr[0, 1] < -0.3  # diameter and companion flux are anti-correlated (as PMOIRED finds: −65 %)


def test_tied_parameters_and_chromatic_flux_recovered():
    xyz = [[0, 0, 0], [60, 10, 0], [25, 80, 0], [-40, 55, 0]]
    wave = np.linspace(1.45e-6, 2.4e-6, 10)
    ref = 1.9e-6
    # star (UD 1.0 mas) + Gaussian envelope of FWHM = 4 × star diameter with spectral index 2
    def vis(u, v, w):
        fe = 0.4 * (w / ref) ** 2.0
        return (uniform_disk(u, v, 1.0 * MAS) + fe * gaussian(u, v, 4.0 * MAS)) / (1 + fe)
    oi = synthetic_oifits(vis, station_xyz=xyz, wavelength=wave, u=None, v=None, seed=2, vis2_err=0.003)
    spec = {"star": {"type": "ud", "diameter": 1.2},
            "env": {"type": "gaussian", "fwhm": "=4 * star.diameter", "flux": 0.3, "spectral_index": 0.0},
            "options": {"reference_wavelength_um": 1.9}}
    res = fit_files([oi], spec, ["v2"])
    assert res.values["env.fwhm"] == pytest.approx(4 * res.values["star.diameter"])
    assert abs(res.values["star.diameter"] - 1.0) < 3 * res.errors_raw["star.diameter"]
    assert abs(res.values["env.spectral_index"] - 2.0) < 3 * res.errors_raw["env.spectral_index"]
    assert abs(res.values["env.flux"] - 0.4) < 3 * res.errors_raw["env.flux"]
    assert "env.fwhm" in res.to_dict()["parameters"] and res.errors["env.fwhm"] > 0
    assert res.to_dict()["reference_wavelength_um"] == pytest.approx(1.9)


def test_blackbody_temperature_changes_the_flux_ratio_with_wavelength():
    m = parse_model({"star": {"type": "point", "temperature": {"value": 6000, "fixed": True}},
                     "dust": {"type": "point", "flux": 0.5, "temperature": 1500, "x": 3.0},
                     "options": {"reference_wavelength_um": 2.0}})
    from oiflow.fit.evaluate import component_flux

    vals = m.values()
    w = np.array([1.5e-6, 2.0e-6, 3.0e-6])
    ratio = component_flux(m.components[1], vals, w, 2e-6, np) / component_flux(m.components[0], vals, w, 2e-6, np)
    assert ratio[1] == pytest.approx(0.5)
    assert ratio[0] < 0.5 < ratio[2]  # the cooler component is redder


def test_image_component_equals_the_analytic_gaussian(tmp_path):
    from astropy.io import fits

    n, pix = 129, 0.1  # mas
    idx = np.arange(n) - n // 2
    x_east = -idx[None, :] * pix
    y_north = idx[:, None] * pix
    fwhm = 2.5
    sig = fwhm / (2 * math.sqrt(2 * math.log(2)))
    # the Gaussian centred 1 mas East: in the image, left of the centre
    img = np.exp(-((x_east - 1.0) ** 2 + y_north**2) / (2 * sig**2))
    hdu = fits.PrimaryHDU(img)
    hdu.header["CDELT1"] = -pix / 3.6e6
    hdu.header["CDELT2"] = pix / 3.6e6
    path = tmp_path / "blob.fits"
    hdu.writeto(path)
    oi = synthetic_oifits(lambda u, v, w: gaussian(u, v, fwhm * MAS) * shift_phasor(u, v, 1.0 * MAS, 0.0),
                          station_xyz=[[0, 0, 0], [30, 5, 0], [10, 40, 0]], wavelength=[1.6e-6, 2.2e-6],
                          u=None, v=None, noise=False)
    data = load_data([oi], ["v2", "t3phi"])
    ev_img = ModelEvaluator(parse_model({"img": {"type": "image", "file": str(path)}, "dummy": {
        "type": "point", "flux": {"value": 0.0, "fixed": True}, "x": 1.0}}), data)
    ev_gau = ModelEvaluator(parse_model({"g": {"type": "gaussian", "fwhm": fwhm, "x": {"value": 1.0, "fixed": True}}}), data)
    a = ev_img.visibility(ev_img.model.values())
    b = ev_gau.visibility(ev_gau.model.values())
    np.testing.assert_allclose(a, b, atol=2e-6)
    # the component's x, y move the image: x = −1 mas brings the blob back to the centre
    ev_back = ModelEvaluator(parse_model({"img": {"type": "image", "file": str(path), "x": -1.0}}), data)
    centred = gaussian(ev_back.U, ev_back.V, fwhm * MAS)
    np.testing.assert_allclose(ev_back.visibility(ev_back.model.values()), centred, atol=2e-6)


def test_differential_visibility_phase_ignores_per_row_offsets():
    """VISPHI with an arbitrary phase offset per baseline (an uncalibrated piston): the
    differential-phase fit still finds the binary."""
    rng = np.random.default_rng(4)
    wave = np.linspace(2.0e-6, 2.4e-6, 40)
    xyz = np.array([[0, 0, 0], [90, 20, 0], [40, 110, 0], [-60, 80, 0]], float)
    tables_u, tables_v = [], []
    for hour in range(4):  # earth rotation: rotate the array a little
        a = math.radians(20 * hour)
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        p = xyz[:, :2] @ rot.T
        for i in range(4):
            for j in range(i + 1, 4):
                tables_u.append(p[j, 0] - p[i, 0])
                tables_v.append(p[j, 1] - p[i, 1])
    u = np.array(tables_u)
    v = np.array(tables_v)
    U, V = u[:, None] / wave, v[:, None] / wave
    vis = binary(U, V, 0.2, 3.0 * MAS, 4.0 * MAS)
    perr = 0.01
    phi = np.angle(vis) + rng.uniform(-3, 3, size=(u.size, 1)) + perr * rng.standard_normal(vis.shape)
    oi = synthetic_oifits(lambda uu, vv, w: binary(uu, vv, 0.2, 3.0 * MAS, 4.0 * MAS), u=u, v=v, wavelength=wave,
                          sta_index=[(1, 2)] * u.size, seed=1)
    oi.tables.append(vis_table("SIM", "SIM", target_id=1, mjd=60000.0, u=u, v=v, sta_index=[(1, 2)] * u.size,
                               visamp=np.abs(vis), visamperr=0.01, visphi=phi, visphierr=perr))
    res = fit_files([oi], {"a": {"type": "point"}, "b": {"type": "point", "flux": 0.15, "x": 2.5, "y": 4.4}},
                    ["visphi"])
    assert abs(res.values["b.x"] - 3.0) < 3 * res.errors_raw["b.x"]
    assert abs(res.values["b.y"] - 4.0) < 3 * res.errors_raw["b.y"]
    assert abs(res.values["b.flux"] - 0.2) < 3 * res.errors_raw["b.flux"]
    assert 0.8 < res.chi2_red < 1.25


def test_flux_spectrum_shape_constrains_the_spectral_index():
    wave = np.linspace(1.5e-6, 2.5e-6, 30)
    ref = 2.0e-6
    total = 1.0 + 0.3 * (wave / ref) ** 3.0
    rng = np.random.default_rng(9)
    err = 0.005 * total
    rows = np.array([7.0 * total, 0.2 * total]) + err * rng.standard_normal((2, wave.size)) * np.array([[7.0], [0.2]])
    oi = synthetic_oifits(lambda u, v, w: (uniform_disk(u, v, 1.0 * MAS) + 0.3 * (w / ref) ** 3 * point(u, v))
                          / (1 + 0.3 * (w / ref) ** 3),
                          station_xyz=[[0, 0, 0], [50, 0, 0], [0, 50, 0], [40, 40, 0]], wavelength=wave,
                          u=None, v=None, seed=5, vis2_err=0.01)
    # two rows with arbitrary scales (uncalibrated spectra): only the shape is fitted
    oi.tables.append(flux_table("SIM", "SIM", target_id=1, mjd=60000.0, fluxdata=rows,
                                fluxerr=np.array([7.0 * err, 0.2 * err])))
    spec = {"star": {"type": "ud", "diameter": 1.0}, "hot": {"type": "point", "flux": 0.25, "spectral_index": 1.0},
            "options": {"reference_wavelength_um": 2.0}}
    res = fit_files([oi], spec, ["v2", "flux"])
    assert abs(res.values["hot.spectral_index"] - 3.0) < 3 * res.errors_raw["hot.spectral_index"]
    assert res.errors_raw["hot.spectral_index"] < 0.2


def test_bandwidth_smearing_sampling_matches_the_exact_band_average(axcir_template):
    """The fitter's sampled smearing and the companion search's exact (sinc) band average agree."""
    from oiflow.backend import get_xp
    from oiflow.fit.companion import BinaryContext, _binary_observables, _Device, _terms

    data = load_data([axcir_template], ["v2", "t3phi"])
    xp = get_xp("numpy")
    dev = _Device(BinaryContext.from_data(data, True), xp)
    # the exact form takes the primary's V_UD as constant across a channel; the sampled one does
    # not: they agree to the midpoint rule's error (≈ (excursion/n)²/24 ≈ 3e-5 with 64 samples)
    # for an unresolved primary, to 5e-4 (the V² errors here are 0.02) at 0.82 mas
    for diameter, tol in ((0.01, 5e-5), (0.82, 5e-4)):
        p = np.array([[6.2, -28.5, 0.3, diameter]])  # a bright companion: the f² and f³ terms matter
        # the vectorised model is frequency-major: (data, node)
        v2_exact, cp_exact = (m[:, 0] for m, _ in _binary_observables(_terms(p, dev, False), p[:, 2], dev, False))
        spec = {"star": {"type": "ud", "diameter": diameter}, "c": {"type": "point", "flux": 0.3, "x": 6.2, "y": -28.5},
                "options": {"bandwidth_smearing": True, "n_smear": 64}}
        ev = ModelEvaluator(parse_model(spec), data)
        v2_s, cp_s = ev.observables(ev.model.values())
        np.testing.assert_allclose(v2_s, v2_exact, atol=tol)
        np.testing.assert_allclose(np.angle(np.exp(1j * (cp_s - cp_exact))), 0, atol=tol)
    # and smearing matters here: without it V² differs by far more
    ev0 = ModelEvaluator(parse_model({**spec, "options": {}}), data)
    assert np.max(np.abs(ev0.observables(ev0.model.values())[0] - v2_exact)) > 0.02


def test_bootstrap_and_mcmc_give_sensible_spreads(axcir_template):
    oi = from_template(axcir_template, truth_vis, seed=21)
    res = fit_files([oi], MODEL, bootstrap=30, mcmc={"nsteps": 150, "nwalkers": 16}, seed=1, smearing=False)
    for k in TRUTH:
        b, m = res.bootstrap[k], res.mcmc[k]
        # independent noise per point: bootstrap and MCMC spreads agree with the covariance errors
        assert 0.5 < b["std"] / res.errors_raw[k] < 2.0, (k, b["std"], res.errors_raw[k])
        assert 0.6 < m["std"] / res.errors_raw[k] < 1.6, (k, m["std"], res.errors_raw[k])
        assert abs(m["median"] - res.values[k]) < res.errors_raw[k]
    assert res.bootstrap["comp.x"]["n_observations"] == 50
    assert "bootstrap" in res.to_dict() and "mcmc" in res.to_dict()
