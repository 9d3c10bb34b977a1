"""P2VM.md §7 unit tests of the native reducer: exact recovery without noise, debiasing,
closure-phase invariance to telescope pistons, bootstrap errors against the empirical scatter."""

from pathlib import Path

import numpy as np
import pytest

from oiflow.observables import baselines, closure_phase, triangle_baselines
from oiflow.reduce.estimators import compute_observables, select_frames
from oiflow.reduce.p2vm import P2VMCalibration, invert_frames, p2vm_from_exposures
from oiflow.reduce.raw_reader import RawExposure, RawInfo
from oiflow.simulate.frames import Combiner, dark_exposure, flat_exposure, object_exposure, p2vm_exposure

WAVE = np.linspace(1.55e-6, 1.80e-6, 5)
TB = triangle_baselines(4)


def _raw(exp, comb, name):
    info = RawInfo(Path(name), exp.kind, "CALIB", comb.mode, float(exp.mjd[0]), beams=tuple(exp.meta.get("beams", [])))
    opd = exp.opd if exp.opd is not None else np.zeros(exp.frames.shape[0])
    return RawExposure(info, np.asarray(exp.frames, float), exp.mjd, opd, comb.wavelength, comb.bandwidth)


def _measured_p2vm(comb, rng, noise):
    dark = _raw(dark_exposure(comb, 20, 0.01, 60000.0, rng, noise=noise), comb, "dark")
    flats = {b: _raw(flat_exposure(comb, b, 20, 0.01, 60000.0, rng, noise=noise, flux_rms=0.0), comb, f"flat{b}")
             for b in range(4)}
    scans = {p: _raw(p2vm_exposure(comb, p, 64, 0.01, 60000.0, rng, noise=noise, flux_rms=0.0), comb, f"p2vm{p}")
             for p in baselines(4)}
    if not noise:  # a noise-free dark has no variance; the pipeline needs a positive one
        dark.frames = dark.frames + np.array([-1.0, 1.0] * 10)[:, None, None]
    return p2vm_from_exposures(comb.mode, dark, flats, scans)


def _normalised_v2pm(comb):
    """The true V2PM with the flux of each telescope defined as its total over the outputs (the
    normalisation the pipeline measures): T_i → T_i/s_i, c_ij → c_ij/√(s_i s_j), s_i = Σ_p T_pi."""
    v = comb.v2pm().copy()
    s = comb.transmission.sum(axis=0).T  # (C, 4)
    v[:, :, :4] /= s[:, None, :]
    for b, (i, j) in enumerate(baselines(4)):
        v[:, :, 4 + b] /= np.sqrt(s[:, i] * s[:, j])[:, None]
        v[:, :, 10 + b] /= np.sqrt(s[:, i] * s[:, j])[:, None]
    return v


def _true_p2vm(comb):
    nout, nc = comb.n_outputs, comb.n_channels
    dark = np.full((nout, nc), comb.bias + comb.dark_level)
    var = np.full((nout, nc), comb.read_noise**2 + comb.dark_level)
    v2pm = comb.v2pm()
    return P2VMCalibration(comb.mode, comb.wavelength, comb.bandwidth, dark, var, v2pm, np.linalg.pinv(v2pm))


def _sky(rng):
    amp = rng.uniform(0.3, 0.9, (6, 1)) * np.linspace(1.0, 0.9, WAVE.size)
    return amp * np.exp(1j * rng.uniform(-np.pi, np.pi, (6, WAVE.size)))


def _cp(vis):
    return np.array([closure_phase(vis[a], vis[b], vis[c], np) for a, b, c in TB])


@pytest.fixture(scope="module")
def combiner():
    return Combiner.ideal(WAVE).perturbed(np.random.default_rng(11))


def test_noise_free_calibration_and_exact_recovery(combiner):
    """(a) Measured V2PM equals the true one; V² and closure phases to machine precision."""
    rng = np.random.default_rng(1)
    cal = _measured_p2vm(combiner, rng, noise=False)
    np.testing.assert_allclose(cal.v2pm, _normalised_v2pm(combiner), atol=1e-9)
    vis = _sky(rng)
    exp = object_exposure(combiner, vis, np.full((4, WAVE.size), 3000.0), 12, 0.01, 60000.0, rng, noise=False)
    cf = invert_frames(exp.frames, cal)
    assert np.max(cf.chi2) < 1e-12
    res = compute_observables(cf, debias=False, nboot=5)  # no noise: nothing to debias
    np.testing.assert_allclose(res.vis2, np.abs(vis) ** 2, rtol=1e-9)
    np.testing.assert_allclose(res.t3phi, _cp(vis), atol=1e-9)
    np.testing.assert_allclose(res.t3amp, np.abs(np.array([vis[a] * vis[b] * vis[c] for a, b, c in TB])), rtol=1e-9)


def test_measured_p2vm_with_noise_is_close_to_the_truth(combiner):
    cal = _measured_p2vm(combiner, np.random.default_rng(2), noise=True)
    truth = _normalised_v2pm(combiner)
    scale = np.abs(truth).max()
    assert np.max(np.abs(cal.v2pm - truth)) < 0.01 * scale
    assert np.all(cal.condition < 100)


def test_debiased_v2_is_unbiased_and_raw_power_is_biased(combiner):
    """(b) Mean over realisations: debiased V² = truth within 3σ of the mean; without debiasing
    the excess equals the predicted noise bias Σσ²/ΣF_iF_j."""
    rng = np.random.default_rng(3)
    cal = _true_p2vm(combiner)
    vis = np.full((6, WAVE.size), 0.35 + 0.0j)
    flux = np.full((4, WAVE.size), 600.0)  # faint: the bias is large compared with the noise
    v2, raw, bias_pred = [], [], []
    for k in range(60):
        cf = invert_frames(object_exposure(combiner, vis, flux, 30, 0.01, 60000.0, rng).frames, cal)
        v2.append(compute_observables(cf, nboot=2, seed=k).vis2)
        raw.append(compute_observables(cf, nboot=2, seed=k, debias=False).vis2)
        ii = [i for i, _ in baselines(4)]
        jj = [j for _, j in baselines(4)]
        bias_pred.append((cf.var_re + cf.var_im).sum(0) / (cf.flux[:, ii] * cf.flux[:, jj]).sum(0))
    v2, raw, bias_pred = np.array(v2), np.array(raw), np.array(bias_pred)
    truth = 0.35**2
    sem = v2.std() / np.sqrt(v2.size)
    assert abs(v2.mean() - truth) < 3 * sem
    excess = raw.mean() - truth
    assert excess > 20 * sem  # the un-debiased estimator is clearly biased upwards …
    assert excess == pytest.approx(bias_pred.mean(), rel=0.05)  # … by the predicted amount


def test_closure_phase_is_piston_invariant_and_coherent_phase_is_not(combiner):
    """(c) Random telescope pistons leave T3PHI unchanged but scramble the coherent VISPHI."""
    cal = _true_p2vm(combiner)
    vis = _sky(np.random.default_rng(4))
    flux = np.full((4, WAVE.size), 5000.0)
    still = compute_observables(invert_frames(object_exposure(combiner, vis, flux, 60, 0.01, 60000.0,
                                                              np.random.default_rng(5), piston_rms_m=0.0).frames, cal))
    moving = compute_observables(invert_frames(object_exposure(combiner, vis, flux, 60, 0.01, 60000.0,
                                                               np.random.default_rng(5), piston_rms_m=5e-6).frames, cal))
    for res in (still, moving):
        d = np.angle(np.exp(1j * (res.t3phi - _cp(vis))))
        assert np.all(np.abs(d) < 4 * res.t3phi_err)
    # coherent estimator: exact phase without pistons, destroyed with them
    dphi = np.angle(np.exp(1j * (still.visphi - np.angle(vis))))
    assert np.max(np.abs(dphi)) < np.deg2rad(2.0)
    assert np.median(moving.visamp / np.abs(vis)) < 0.5
    assert np.median(still.visamp / np.abs(vis)) == pytest.approx(1.0, abs=0.02)


def test_bootstrap_errors_match_the_empirical_scatter(combiner):
    """(d) Mean bootstrap error / scatter of repeated simulations within 20%."""
    rng = np.random.default_rng(6)
    cal = _true_p2vm(combiner)
    vis = _sky(np.random.default_rng(7))
    flux = np.full((4, WAVE.size), 1500.0)
    v2, e2, cp, ecp = [], [], [], []
    for k in range(80):
        res = compute_observables(invert_frames(object_exposure(combiner, vis, flux, 40, 0.01, 60000.0, rng).frames,
                                                cal), nboot=40, seed=k)
        v2.append(res.vis2)
        e2.append(res.vis2_err)
        cp.append(res.t3phi)
        ecp.append(res.t3phi_err)
    ratio_v2 = np.mean(e2, axis=0) / np.std(v2, axis=0, ddof=1)
    dcp = np.angle(np.exp(1j * (np.array(cp) - _cp(vis))))
    ratio_cp = np.mean(ecp, axis=0) / np.sqrt(np.mean(dcp**2, axis=0))
    # per point the empirical scatter of 80 realisations is itself uncertain by ~8%
    assert 0.8 < np.median(ratio_v2) < 1.2
    assert 0.8 < np.median(ratio_cp) < 1.2
    assert np.all((ratio_v2 > 0.6) & (ratio_v2 < 1.5))


def test_frame_selection():
    snr = np.array([[1.0, 5.0], [3.0, 4.0], [2.0, 6.0], [4.0, 1.0]])
    keep = select_frames(snr, min_snr=2.0)
    np.testing.assert_array_equal(keep, snr >= 2.0)
    keep = select_frames(snr, keep_fraction=0.5)
    np.testing.assert_array_equal(keep.sum(axis=0), [2, 2])
    assert keep[3, 0] and keep[1, 0] and keep[0, 1] and keep[2, 1]


def test_too_few_frames_are_flagged(combiner):
    cal = _true_p2vm(combiner)
    vis = _sky(np.random.default_rng(8))
    exp = object_exposure(combiner, vis, np.full((4, WAVE.size), 800.0), 20, 0.01, 60000.0, np.random.default_rng(9))
    res = compute_observables(invert_frames(exp.frames, cal), min_snr=1e9)
    assert res.vis2_flag.all() and res.t3_flag.all()
