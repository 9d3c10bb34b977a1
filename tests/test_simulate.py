"""Simulator: station geometry, Earth-rotation (u, v), sky models, raw frames and nights."""

import math

import numpy as np
import pytest
from astropy.io import fits

from oiflow.errors import ConfigError
from oiflow.fit import analytic
from oiflow.simulate.frames import Combiner, object_exposure
from oiflow.simulate.geometry import hour_angle, project_baselines, uv_coverage, uv_tracks
from oiflow.simulate.night import NightConfig, simulate_night
from oiflow.simulate.sky import model_visibilities, sky_visfunc
from oiflow.site import CONFIGURATIONS, get_site, resolve_stations
from oiflow.units import MAS

from night_factory import night_config


def test_vlti_station_positions_and_baseline_lengths():
    vlti = get_site("VLTI")
    np.testing.assert_allclose(vlti.enu(["U1"])[0, :2], [-9.925, -20.335], atol=2e-3)
    np.testing.assert_allclose(vlti.enu(["U4"])[0, :2], [103.306, 43.999], atol=2e-3)
    u1, u4 = vlti.enu(["U1", "U4"])
    assert np.hypot(*(u4 - u1)[:2]) == pytest.approx(130.23, abs=0.02)  # UT1-UT4, the longest UT baseline
    # standard AT quadruplets: largest ground baseline of small / medium / large ≈ 34 / 104 / 130 m
    for name, longest in (("small", 34.1), ("medium", 104.0), ("large", 129.2)):
        site, sta = resolve_stations(name)
        enu = site.enu(sta)
        d = max(np.hypot(*(enu[j] - enu[i])[:2]) for i in range(4) for j in range(i + 1, 4))
        assert d == pytest.approx(longest, abs=1.0), name
    chara = get_site("CHARA")
    s1, e1 = chara.enu(["S1", "E1"])
    assert np.hypot(*(e1 - s1)[:2]) == pytest.approx(330.7, abs=0.3)  # CHARA's longest baseline
    assert set(CONFIGURATIONS) >= {"small", "medium", "large", "UT", "CHARA"}
    with pytest.raises(ConfigError, match="unknown station"):
        vlti.enu(["Z9"])


def test_projection_at_zenith_and_circular_polar_tracks():
    lat = math.radians(-24.6)
    # a source at the zenith on the meridian sees the ground baseline unchanged: u = East, v = North
    u, v, w = project_baselines(np.array([[10.0, 20.0, 0.0]]), np.array([0.0]), lat, lat)
    np.testing.assert_allclose([u[0, 0], v[0, 0], w[0, 0]], [10.0, 20.0, 0.0], atol=1e-12)
    # the celestial pole (visible from the south): (u, v) tracks are circles of radius the
    # baseline's projection on the equatorial plane
    site, sta = resolve_stations("large")
    ha, uu, vv = uv_tracks(site, sta, math.radians(-90.0), (-6, 6), 13)
    radius = np.hypot(uu, vv)
    np.testing.assert_allclose(radius, np.broadcast_to(radius[0], radius.shape), rtol=1e-12)
    # projected baselines are never longer than the ground baselines (horizontal + height)
    cov = uv_coverage(site, sta, math.radians(124.0), math.radians(-38.0), 60019.1 + np.arange(5) * 0.02)
    enu = site.enu(sta)
    ground = np.array([np.linalg.norm(enu[j] - enu[i]) for i in range(4) for j in range(i + 1, 4)])
    assert np.all(np.hypot(cov.u, cov.v) <= ground[None, :] + 1e-9)
    assert cov.u.shape == (5, 6) and cov.t3_u1.shape == (5, 4)


def test_uv_orientation_of_baselines_and_triangles():
    site, sta = resolve_stations("large")
    cov = uv_coverage(site, sta, math.radians(124.0), math.radians(-38.0), 60019.1)
    # baseline (i, j) is r_j − r_i; triangle (i, j, k) has (u1, v1) = ij and (u2, v2) = jk
    u = dict(zip([(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)], cov.u[0]))
    np.testing.assert_allclose(cov.t3_u1[0], [u[(0, 1)], u[(0, 1)], u[(0, 2)], u[(1, 2)]], atol=1e-9)
    np.testing.assert_allclose(cov.t3_u2[0], [u[(1, 2)], u[(1, 3)], u[(2, 3)], u[(2, 3)]], atol=1e-9)


def test_hour_angle_agrees_with_a_gmst_formula():
    site = get_site("VLTI")
    mjd = 60019.2
    ha = hour_angle(0.0, mjd, site)[0]
    d = mjd + 2400000.5 - 2451545.0
    gmst_h = (18.697374558 + 24.06570982441908 * d) % 24.0  # USNO approximation (~0.1 s)
    lst = math.radians(gmst_h * 15.0 + site.longitude_deg)
    diff = (ha - lst + math.pi) % (2 * math.pi) - math.pi
    assert abs(math.degrees(diff)) < 0.02  # 0.02° = 5 s of time: UT1−UTC and equation of the equinoxes


def test_sky_models_use_the_analytic_components():
    u = np.array([2e7, -3e7, 5e7])
    v = np.array([1e7, 4e7, -2e7])
    vis = sky_visfunc({"type": "uniform_disk", "diameter_mas": 2.0})(u, v, None)
    np.testing.assert_allclose(vis, analytic.uniform_disk(u, v, 2.0 * MAS, np), atol=1e-14)
    # binary: secondary at PA 60° (from North through East), separation 4.5 mas
    vb = sky_visfunc({"type": "binary", "flux_ratio": 0.3, "separation_mas": 4.5, "pa_deg": 60.0})(u, v, None)
    x, y = 4.5 * MAS * math.sin(math.radians(60)), 4.5 * MAS * math.cos(math.radians(60))
    np.testing.assert_allclose(vb, (1 + 0.3 * np.exp(-2j * np.pi * (u * x + v * y))) / 1.3, atol=1e-12)
    # a composite of two points is the same binary
    vc = sky_visfunc({"type": "composite", "components": [
        {"type": "point", "flux": 1.0}, {"type": "point", "flux": 0.3, "x_mas": x / MAS, "y_mas": y / MAS}]})(u, v, None)
    np.testing.assert_allclose(vc, vb, atol=1e-12)
    # an image of one pixel 3 px East of the centre: East is left (ix decreasing)
    img = np.zeros((32, 32))
    img[16, 13] = 1.0
    vi = sky_visfunc({"type": "image", "array": img.tolist(), "pixel_size_mas": 0.5})(u, v, None)
    np.testing.assert_allclose(vi, np.exp(-2j * np.pi * u * 1.5 * MAS), atol=1e-12)
    with pytest.raises(ConfigError, match="unknown sky model"):
        sky_visfunc({"type": "torus"})


def test_model_visibilities_shape():
    vis = model_visibilities({"type": "gaussian", "fwhm_mas": 1.0}, np.ones((3, 6)) * 50, np.zeros((3, 6)),
                             [1.6e-6, 1.7e-6])
    assert vis.shape == (3, 6, 2)
    assert np.all(np.abs(vis) < 1) and np.all(np.diff(np.abs(vis), axis=-1) > 0)  # less resolved at longer λ


def test_object_frames_follow_the_v2pm_forward_model():
    rng = np.random.default_rng(3)
    comb = Combiner.ideal(np.array([1.6e-6, 1.7e-6])).perturbed(rng)
    vis = np.full((6, 2), 0.5 + 0.2j)
    flux = np.full((4, 2), 1000.0)
    exp = object_exposure(comb, vis, flux, 7, 0.01, 60000.0, rng, noise=False, piston_rms_m=0.0, injection_rms=0.0)
    x = np.concatenate([flux, np.full((6, 2), 1000 * 0.5), np.full((6, 2), 1000 * 0.2)])  # (16, C)
    expected = np.einsum("cpk,kc->pc", comb.v2pm(), x) + comb.dark_level + comb.bias
    np.testing.assert_allclose(exp.frames, np.broadcast_to(expected, exp.frames.shape), rtol=1e-12)
    assert np.all(comb.coherence <= 2 * np.sqrt(comb.transmission[:, [0, 0, 0, 1, 1, 2]] *
                                                 comb.transmission[:, [1, 2, 3, 2, 3, 3]]) + 1e-15)


def test_simulated_night_is_deterministic_and_complete(tmp_path):
    cfg = night_config(seed=5, order=["HD_CAL_A", "SCI_DISK", "HD_CAL_B"], n_frames=8, n_channels=3)
    t1 = simulate_night(cfg, tmp_path / "a")
    t2 = simulate_night(cfg, tmp_path / "b")
    assert len(t1["files"]) == 1 + 4 + 6 + 3
    for name in t1["files"]:
        a = fits.getdata(tmp_path / "a" / name, "IMAGING_DATA")
        b = fits.getdata(tmp_path / "b" / name, "IMAGING_DATA")
        np.testing.assert_array_equal(a, b)
    h = fits.getheader(tmp_path / "a" / t1["observations"][1]["file"])
    assert h["HIERARCH ESO DPR TYPE"] == "OBJECT" and h["HIERARCH ESO OBS NAME"] == "SCI_SCI_DISK"
    assert h["HIERARCH ESO ISS CONF STATION3"] == "J2"
    assert (tmp_path / "a" / "truth.json").is_file()
    assert t1["observations"][0]["vis2_sky"] == t2["observations"][0]["vis2_sky"]
    # the truth's V² is |V_sky · V_inst|²
    o = t1["observations"][1]
    np.testing.assert_allclose(o["vis2_raw"], np.array(o["vis2_sky"]) * np.array(o["tf_vis2"]), rtol=1e-12)


def test_night_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("night: 2023-03-15\ntargets: {}\nsequence: {order: [NOPE]}\n")
    with pytest.raises(ConfigError, match="unknown targets: NOPE"):
        NightConfig.from_yaml(bad)
    with pytest.raises(ConfigError, match="not found"):
        NightConfig.from_yaml(tmp_path / "missing.yaml")
