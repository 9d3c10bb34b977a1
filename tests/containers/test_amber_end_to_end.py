"""A simulated AMBER night reduced end to end by the REAL amdlib (esorex AMBER recipes in the amber
image, through the amdlib backend and the docker runner), compared with the truth.

The night (oiflow.simulate.amber_raw.simulate_amber_night): VLTI A0-G1-K0, a 1.0 mas uniform-disk
calibrator, a binary (flux ratio 0.3, 4.5 mas at PA 60°), the calibrator again; 100 frames each,
photon + read noise, atmospheric pistons and injection fluctuations; the sky visibilities come
from oiflow.simulate.sky → oiflow.fit.analytic, closure phases from oiflow.observables.

What is compared, and the tolerances (measured by hand with other seeds while writing these tests:
seeds 1-8 for L2 — pull means within ±0.17, standard deviations 0.86-1.14, largest |pull| 3.5 out of
192 V² / 64 T3 points —, seeds 1-5 and 7 for L1):

* L1 (amber_SciCal, one row per frame): V² against sky × instrumental V²; the per-frame pulls
  with amdlib's VIS2ERR have a standard deviation in [0.85, 1.05] (amdlib's errors are right to
  ~5%); the frame-averaged V² per baseline and channel agree within their errors (pulls: mean
  within ±0.3, standard deviation below 1.3, none beyond 4.5σ). amdlib's T3PHIERR overestimates
  the frame-to-frame scatter: pull standard deviation in [0.5, 0.8] (measured 0.59-0.67). L1
  closure phases carry the P2VM's own calibration error (common to all observations, removed by
  the calibration): within 1° of the truth per channel.
* L2 (amber_trf + amber_calibrate): frame-averaged calibrated V² and closure phases against the
  sky, with errors = scatter of the mean ⊕ the calibrator's (the transfer function's) error of the
  mean: pull mean within ±0.3 (V²) / ±0.45 (T3), standard deviation in [0.75, 1.25] (V²) /
  [0.7, 1.3] (T3), none beyond 4.5σ.
* Against oiflow's native reducer: the same night (same targets, times, stations A0-G1-K0 plus J2)
  simulated in the native ABCD format over the same K band (8 channels), reduced and calibrated
  in-process (oiflow.reduce.reduce_night, oiflow.calibrate.calibrate_night); amdlib's L2, interpolated
  to the native channels, agrees on the three common baselines and the common triangle: every
  |difference| < 4σ (σ: both errors in quadrature), pull standard deviation < 1.5, and a mean
  offset below 1σ (the two calibrations' transfer-function errors are common to all channels;
  measured with seeds 1-5 and 7: means within ±0.33 (V²) and ±0.72 (T3), std 0.68-0.87 (V²), 0.28-1.36 (T3)).
* Orientation: amdlib's (u, v) is the projection of r_i − r_j (the reverse of OIFITS/oiflow) and its
  closure phases are those of the sky at its own (u, v) (see amber_raw's docstring for the lamp
  quadrature-sign convention this rests on).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from astropy.io import fits

from oiflow.config import ReduceConfig
from oiflow.observables import t3_from_visfunc, vis2
from oiflow.provenance import Provenance, sha256_file
from oiflow.reduce.backends import AmdlibBackend
from oiflow.reduce.backends.amdlib import write_sof
from oiflow.reduce.backends.base import BackendResult
from oiflow.simulate.amber_raw import simulate_amber_night
from oiflow.simulate.night import NightConfig
from oiflow.simulate.sky import sky_visfunc

pytestmark = pytest.mark.container

NIGHT = {
    "night": "2023-03-15", "seed": 7, "facility": "VLTI", "array": ["A0", "G1", "K0"],
    "instrument": {"n_frames": 100, "dit_s": 0.05},
    "targets": {
        "HD_CAL": {"ra_deg": 118.0, "dec_deg": -35.0, "category": "CAL",
                   "model": {"type": "uniform_disk", "diameter_mas": 1.0}, "diameter_error_mas": 0.05},
        "SCI_BIN": {"ra_deg": 124.0, "dec_deg": -38.0, "category": "SCI",
                    "model": {"type": "binary", "flux_ratio": 0.3, "separation_mas": 4.5, "pa_deg": 60.0}},
    },
    "sequence": {"start_ut_h": 24.5, "slot_min": 12, "order": ["HD_CAL", "SCI_BIN", "HD_CAL"]},
}
BASELINES = [(1, 2), (1, 3), (2, 3)]  # truth.json order


@pytest.fixture(scope="module")
def night(tmp_path_factory, docker_runner, amber_image):
    d = tmp_path_factory.mktemp("amber-night")
    truth = simulate_amber_night(NightConfig.validate_dict(NIGHT), d / "raw")
    res = AmdlibBackend().reduce_night(d / "raw", d / "L1", ReduceConfig(image=amber_image), docker_runner)
    return d, truth, res


def _read(path):
    """(wavelengths, {STA_INDEX: (V² masked (frames, C), VIS2ERR, u, v)}, T3 table) of an amdlib OIFITS."""
    with fits.open(path) as hdul:
        lam = np.asarray(hdul["OI_WAVELENGTH"].data["EFF_WAVE"], float)
        v2 = hdul["OI_VIS2"].data
        t3 = hdul["OI_T3"].data
        out = {}
        for sta in BASELINES:
            rows = np.all(v2["STA_INDEX"] == sta, axis=1)
            mask = v2["FLAG"][rows]
            out[sta] = (np.ma.masked_array(v2["VIS2DATA"][rows], mask), np.ma.masked_array(v2["VIS2ERR"][rows], mask),
                        np.asarray(v2["UCOORD"][rows], float), np.asarray(v2["VCOORD"][rows], float))
        t3 = {c: np.array(t3[c]) for c in ("T3PHI", "T3PHIERR", "FLAG", "U1COORD", "V1COORD", "U2COORD", "V2COORD")}
    return lam, out, t3


def _mean_err(x):
    return x.mean(0), x.std(0) / np.sqrt(x.count(0))


def _sky_vis2(model, u, v, lam):
    """Sky V² at each frame's own (u, v) (metres), averaged over the frames: (C,)."""
    vf = sky_visfunc(model)
    return vis2(vf(u[:, None] / lam, v[:, None] / lam, np.broadcast_to(lam, (u.size, lam.size)))).mean(0)


def _sky_t3phi_deg(model, t3, lam):
    """Closure phase of the sky at the product's own triangle coordinates (frames, C), degrees."""
    vf = sky_visfunc(model)
    shape = (t3["U1COORD"].size, lam.size)
    wave = np.broadcast_to(lam, shape)
    args = [np.broadcast_to(t3[c][:, None], shape) / wave for c in ("U1COORD", "V1COORD", "U2COORD", "V2COORD")]
    return np.degrees(np.angle(t3_from_visfunc(lambda u, v: vf(u, v, wave), *args)))


def _t3_residual(model, t3, lam):
    d = (t3["T3PHI"] - _sky_t3phi_deg(model, t3, lam) + 180.0) % 360.0 - 180.0
    return np.ma.masked_array(d, t3["FLAG"]), np.ma.masked_array(t3["T3PHIERR"], t3["FLAG"])


def _obs(truth, category):
    return [o for o in truth["observations"] if o["category"] == category]


def test_amdlib_reduces_the_simulated_night(night):
    d, truth, res = night
    assert res.failures == []
    assert [p.name for p in res.products] == [f"{o['obs_id']}.fits" for o in truth["observations"]]
    (sci,) = _obs(truth, "SCI")
    assert [p.name for p in res.calibrated] == [f"{sci['obs_id']}_calibrated.fits"]
    raw_sha = {f: sha256_file(d / "raw" / f) for f in truth["files"]}
    for p in res.products:
        prov = Provenance.from_header(fits.getheader(p))
        assert prov.level == 1 and prov.stage == "reduce"
        assert (prov.inputs[0].name, prov.inputs[0].sha256) == (p.name, raw_sha[p.name])
        assert prov.inputs[1].name == "p2vm.fits"
        assert fits.getheader(p)["HIERARCH ESO PRO CATG"] in ("CALIB_REDUCED", "SCIENCE_REDUCED")
    prov = Provenance.from_header(fits.getheader(res.calibrated[0]))
    assert prov.level == 2 and prov.stage == "calibrate"
    assert fits.getheader(res.calibrated[0])["HIERARCH ESO PRO CATG"] == "SCIENCE_CALIBRATED"
    # the transfer function is that of the calibrator observed closest in time, from the PBL-swapped copy
    sof = (d / "L1" / "amdlib" / "sof" / f"calibrate_{sci['obs_id']}.sof").read_text().split()
    assert sof[1::2] == ["SCIENCE_REDUCED", "AMBER_TRF_K"] and "OBS001_HD_CAL" in sof[2]
    assert fits.getheader(sof[2])["HIERARCH OIFLOW PBLSWAP"] is True  # TRF header inherited from the swapped copy


def test_amdlib_uv_is_the_reversed_projected_baseline(night):
    d, truth, res = night
    for o, product in zip(truth["observations"], res.products):
        _, rows, t3 = _read(product)
        for b, sta in enumerate(BASELINES):
            _, _, u, v = rows[sta]
            # amdlib projects r_i − r_j; the truth is r_j − r_i (frames span 5 s: < 0.05 m of rotation)
            np.testing.assert_allclose(u, -o["u"][b], atol=0.05)
            np.testing.assert_allclose(v, -o["v"][b], atol=0.05)
        np.testing.assert_allclose(t3["U1COORD"], -o["u"][0], atol=0.05)  # (1,2)
        np.testing.assert_allclose(t3["U2COORD"], -o["u"][2], atol=0.05)  # (2,3)


def test_l1_vis2_agrees_with_sky_times_instrument(night):
    d, truth, res = night
    for o, product in zip(truth["observations"], res.products):
        lam, rows, _ = _read(product)
        model = truth["targets"][o["target"]]["model"]
        frame_pulls, mean_pulls = [], []
        for b, sta in enumerate(BASELINES):
            v2, err, u, v = rows[sta]
            expected = _sky_vis2(model, u, v, lam) * np.asarray(o["tf_vis2"][b])
            frame_pulls.append(((v2 - expected) / err).compressed())
            m, e = _mean_err(v2)
            mean_pulls.append(((m - expected) / e).compressed())
        fp, mp = np.concatenate(frame_pulls), np.concatenate(mean_pulls)
        assert fp.size > 0.95 * 3 * 100 * lam.size  # (almost) nothing flagged
        assert 0.85 < fp.std() < 1.05, (o["obs_id"], fp.std())
        assert abs(mp.mean()) < 0.3 and mp.std() < 1.3 and np.abs(mp).max() < 4.5, (o["obs_id"], mp.mean(), mp.std())


def test_l1_closure_phases_and_amdlib_t3phierr(night):
    d, truth, res = night
    for o, product in zip(truth["observations"], res.products):
        lam, _, t3 = _read(product)
        resid, err = _t3_residual(truth["targets"][o["target"]]["model"], t3, lam)
        # amdlib's per-frame T3PHIERR is conservative by ~1.5x (measured 0.59-0.67, seeds 1-5 and 7)
        assert 0.5 < (resid / err).compressed().std() < 0.8
        m, e = _mean_err(resid)
        assert np.max(np.abs(m)) < 1.0, (o["obs_id"], np.max(np.abs(m)))  # P2VM closure error + noise


def _l2_pulls(d, truth, res):
    """Pulls of the science target's frame-averaged calibrated V² (3 baselines × C) and closure
    phases (C) against the sky; errors: scatter of the mean ⊕ the transfer function's (the
    calibrator's frame-mean) error."""
    (sci,) = _obs(truth, "SCI")
    model = truth["targets"][sci["target"]]["model"]
    sof = (d / "L1" / "amdlib" / "sof" / f"calibrate_{sci['obs_id']}.sof").read_text().split()
    cal_obs = next(o for o in truth["observations"] if o["obs_id"] in sof[2])
    (l2,) = [p for p in res.calibrated if p.name == f"{sci['obs_id']}_calibrated.fits"]
    lam, rows, t3 = _read(l2)
    _, cal_rows, cal_t3 = _read(d / "L1" / f"{cal_obs['obs_id']}.fits")
    pulls = []
    for sta in BASELINES:
        v2, _, u, v = rows[sta]
        m, e = _mean_err(v2)
        mc, ec = _mean_err(cal_rows[sta][0])
        err = np.sqrt(e**2 + (m * ec / mc) ** 2)  # science scatter ⊕ transfer-function error of the mean
        pulls.append(((m - _sky_vis2(model, u, v, lam)) / err).compressed())
    resid, _ = _t3_residual(model, t3, lam)
    m, e = _mean_err(resid)
    cal_resid, _ = _t3_residual(truth["targets"][cal_obs["target"]]["model"], cal_t3, lam)
    _, ec = _mean_err(cal_resid)
    assert np.abs(_sky_t3phi_deg(model, t3, lam)).min() > 5.0  # a real closure signal, not noise around 0
    return np.concatenate(pulls), (m / np.sqrt(e**2 + ec**2)).compressed(), lam.size


def test_l2_vis2_and_closure_phases_agree_with_the_truth(night):
    p, pt, nwave = _l2_pulls(*night)
    assert p.size > 0.95 * 3 * nwave and pt.size > 0.95 * nwave
    assert abs(p.mean()) < 0.3 and 0.75 < p.std() < 1.25 and np.abs(p).max() < 4.5, (p.mean(), p.std())
    assert abs(pt.mean()) < 0.45 and 0.7 < pt.std() < 1.3 and np.abs(pt).max() < 4.5, (pt.mean(), pt.std())


@pytest.mark.slow
def test_l2_pulls_over_seeds(tmp_path, docker_runner, amber_image):
    """Four more nights (other seeds): the calibrated V² and closure-phase pulls, pooled, have unit
    variance (measured while writing: pooled std 0.93 (V²) and 0.99 (T3) over seeds 1-8)."""
    pv, pt = [], []
    for seed in (11, 12, 13, 14):
        spec = copy.deepcopy(NIGHT)
        spec["seed"] = seed
        d = tmp_path / f"seed{seed}"
        truth = simulate_amber_night(NightConfig.validate_dict(spec), d / "raw")
        res = AmdlibBackend().reduce_night(d / "raw", d / "L1", ReduceConfig(image=amber_image), docker_runner)
        assert res.failures == []
        a, b, _ = _l2_pulls(d, truth, res)
        pv.append(a)
        pt.append(b)
    pv, pt = np.concatenate(pv), np.concatenate(pt)
    print(f"pooled L2 pulls: V2 mean {pv.mean():.3f} std {pv.std():.3f} ({pv.size}), "
          f"T3 mean {pt.mean():.3f} std {pt.std():.3f} ({pt.size})")
    assert abs(pv.mean()) < 0.15 and 0.85 < pv.std() < 1.15, (pv.mean(), pv.std())
    assert abs(pt.mean()) < 0.2 and 0.85 < pt.std() < 1.15, (pt.mean(), pt.std())


def test_amber_trf_pairs_pbl13_with_baseline_23(night, docker_runner, amber_image, tmp_path):
    """What the real amber_trf does with an untouched CALIB_REDUCED: the expected calibrator V² of
    its baseline 2 (stations 2-3) uses PBL13 and that of baseline 3 (stations 1-3) uses PBL23."""
    from scipy.special import j1

    d, truth, res = night
    cal = _obs(truth, "CAL")[0]
    product = d / "L1" / "amdlib" / f"scical_{cal['obs_id']}" / "amber_0000.fits"
    database = d / "raw" / "AMBER.CALIB_DATABASE_K.fits"
    sof = write_sof([(product, "CALIB_REDUCED"), (database, "CALIB_DATABASE_K")], tmp_path / "sof" / "trf.sof")
    prods = AmdlibBackend().run_recipe(docker_runner, ReduceConfig(image=amber_image), "amber_trf", sof,
                                       [product.parent, database.parent], tmp_path / "trf", BackendResult())
    ((trf, catg),) = prods
    assert catg == "AMBER_TRF_K"
    fixed = next((d / "L1" / "amdlib" / "trf").glob(f"trf_*{cal['obs_id']}*.fits"))
    lam = np.mean(_read(product)[0])
    theta = truth["targets"][cal["target"]]["model"]["diameter_mas"] * math.pi / 180 / 3600e3

    def ud_v2(length):
        x = math.pi * theta * length / lam
        return (2 * j1(x) / x) ** 2

    length = {sta: math.hypot(cal["u"][b], cal["v"][b]) for b, sta in enumerate(BASELINES)}
    tf = {sta: cal["tf_vis2"][b][0] for b, sta in enumerate(BASELINES)}
    raw_h, fixed_h = fits.getheader(trf), fits.getheader(fixed)
    # QC TRFV2 CEN BASn: the transfer function at the band centre, baselines in amdlib's order 12, 23, 31
    for n, sta in ((1, (1, 2)), (2, (2, 3)), (3, (1, 3))):
        assert fixed_h[f"HIERARCH ESO QC TRFV2 CEN BAS{n}"] == pytest.approx(tf[sta], rel=0.01)
    other = {(2, 3): (1, 3), (1, 3): (2, 3)}
    for n, sta in ((2, (2, 3)), (3, (1, 3))):
        swapped = tf[sta] * ud_v2(length[sta]) / ud_v2(length[other[sta]])
        assert raw_h[f"HIERARCH ESO QC TRFV2 CEN BAS{n}"] == pytest.approx(swapped, rel=0.01)
        assert abs(swapped / tf[sta] - 1) > 0.01  # the two differ by more than the tolerance
    assert raw_h["HIERARCH ESO QC TRFV2 CEN BAS1"] == pytest.approx(tf[(1, 2)], rel=0.01)


def test_l2_agrees_with_the_native_reducer(night, tmp_path):
    from oiflow.calibrate.night import calibrate_night
    from oiflow.config import CalibrateConfig
    from oiflow.oifits import read_oifits
    from oiflow.reduce import reduce_night
    from oiflow.simulate.night import simulate_night

    d, truth, res = night
    spec = copy.deepcopy(NIGHT)
    spec["array"] = ["A0", "G1", "K0", "J2"]  # the native simulator combines 4 telescopes
    spec["instrument"].update({"mode": "K-8CH", "wavelength_min_um": 2.26, "wavelength_max_um": 2.42, "n_channels": 8})
    native_truth = simulate_night(NightConfig.validate_dict(spec), tmp_path / "raw")
    (sci,) = _obs(truth, "SCI")
    native_sci = next(o for o in native_truth["observations"] if o["obs_id"].endswith("SCI_BIN"))
    np.testing.assert_allclose(np.asarray(native_sci["u"])[[0, 1, 3]], sci["u"], atol=1e-9)  # same (u, v)
    reduced = reduce_night(tmp_path / "raw", tmp_path / "L1", ReduceConfig())
    assert reduced.failures == []
    calibrated = calibrate_night(reduced.products, tmp_path / "L2",
                                 CalibrateConfig(calibrators={"HD_CAL": {"diameter_mas": 1.0, "error_mas": 0.05}}))
    (l2,) = calibrated.products
    native = read_oifits(l2)
    nv2, nt3 = native.vis2[0], native.t3[0]
    wave = native.wavelength_of(nv2).eff_wave

    sof = (d / "L1" / "amdlib" / "sof" / f"calibrate_{sci['obs_id']}.sof").read_text().split()
    cal_obs = next(o for o in truth["observations"] if o["obs_id"] in sof[2])
    lam, rows, t3 = _read(res.calibrated[0])
    _, cal_rows, cal_t3 = _read(d / "L1" / f"{cal_obs['obs_id']}.fits")
    pulls = []
    for sta in BASELINES:
        m, e = _mean_err(rows[sta][0])
        mc, ec = _mean_err(cal_rows[sta][0])
        err = np.sqrt(e**2 + (m * ec / mc) ** 2)
        k = int(np.flatnonzero(np.all(nv2["STA_INDEX"] == sta, axis=1))[0])
        pulls.append((np.interp(wave, lam, m) - nv2["VIS2DATA"][k]) / np.hypot(np.interp(wave, lam, err), nv2["VIS2ERR"][k]))
    p = np.concatenate(pulls)
    assert np.abs(p).max() < 4.0 and p.std() < 1.5 and abs(p.mean()) < 1.0, (p.mean(), p.std(), np.abs(p).max())
    # closure phase of stations (1, 2, 3): amdlib's orientation is the reverse of oiflow's
    m, e = _mean_err(np.ma.masked_array(t3["T3PHI"], t3["FLAG"]))
    _, ec = _mean_err(np.ma.masked_array(cal_t3["T3PHI"], cal_t3["FLAG"]))
    k = int(np.flatnonzero(np.all(nt3["STA_INDEX"] == (1, 2, 3), axis=1))[0])
    diff = (np.interp(wave, lam, m) + nt3["T3PHI"][k] + 180.0) % 360.0 - 180.0
    pt = diff / np.hypot(np.interp(wave, lam, np.sqrt(e**2 + ec**2)), nt3["T3PHIERR"][k])
    assert np.abs(pt).max() < 4.0 and pt.std() < 1.5 and abs(pt.mean()) < 1.0, (pt.mean(), pt.std(), np.abs(pt).max())
    assert np.abs(nt3["T3PHI"][k]).min() > 5.0  # a real closure signal, not noise around zero
