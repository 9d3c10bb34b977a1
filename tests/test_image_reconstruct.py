"""Reconstructions against a known truth, orientation, selection, polychromatic mode, backends."""

import copy
from pathlib import Path

import numpy as np
import pytest

from oiflow.backend import get_xp
from oiflow.fit.analytic import binary
from oiflow.image.data import Selection, imaging_data
from oiflow.image.initial import fit_gaussian_fwhm, gaussian
from oiflow.image.metric import nominal_resolution, quality
from oiflow.image.mu_rule import acceptance
from oiflow.image.mu_search import CHI2_SIGMAS
from oiflow.image.objective import Objective
from oiflow.image.reconstruct import image_settings, reconstruct
from oiflow.oifits import read_oifits
from oiflow.simulate.synthetic import from_template
from oiflow.units import MAS

from image_helpers import simulate_on, spotted_star

XP = get_xp("numpy")
N, PIX = 64, 0.3  # 19 mas field, the Beauty-Contest 2008 data need pixels ≤ 0.47 mas


@pytest.fixture(scope="module")
def truth_case(shared_data):
    """Spotted star observed with the 2008 Beauty-Contest (CHARA, obj1 H band) coverage and error bars."""
    truth = spotted_star(N, PIX)
    oi = simulate_on(shared_data / "imaging/contests_oifitsjl/contest-2008-obj1-H.oifits", truth, PIX)
    data = imaging_data([oi], Selection())
    settings = dict(npix=N, pixel_size_mas=PIX, regularization="tv", mu=1e4, maxiter=300)
    result = reconstruct(data, settings)
    return truth, data, result


def _chi2_of(image, data, xp=XP):
    obj = Objective(data, image_settings(dict(npix=N, pixel_size_mas=PIX)), xp)
    obj(image.ravel() / image.sum() * image.size)
    return {k: v / len(data.groups[0].terms[k]) for k, v in obj.last["terms"].items()}


def test_truth_reconstruction_fits_as_well_as_the_truth_and_scores_high(truth_case):
    truth, data, res = truth_case
    ref = _chi2_of(truth, data)  # χ² of the true image: what noise alone gives (CP errors reach π here)
    assert ref["vis2"] == pytest.approx(1.0, abs=0.15)
    for term in ("vis2", "t3phi"):
        assert abs(res.chi2_terms[term] - ref[term]) < 0.2, (term, res.chi2_terms, ref)
    beam = nominal_resolution(data.max_frequency)
    score = quality(res.image, truth, PIX * MAS, beam)
    featureless = quality(gaussian(N, PIX * MAS, fit_gaussian_fwhm(data, N * PIX * MAS / 2)), truth, PIX * MAS, beam)
    # Threshold: 0.95. A featureless source with the right size (best-fit Gaussian) scores ~0.71, the
    # truth mirrored through the centre ~0.6; 0.95 needs the disk edge and both spots in place at
    # the resolution λ/2B (the metric blurs both images with that beam).
    assert featureless < 0.8
    assert score > 0.95, score
    assert abs(res.image.sum() - 1.0) < 1e-9 and res.image.min() >= 0


def test_orientation_rotated_image_scores_and_fits_worse(truth_case):
    truth, data, res = truth_case
    beam = nominal_resolution(data.max_frequency)
    rotated = res.image[::-1, ::-1]
    assert quality(rotated, truth, PIX * MAS, beam) < quality(res.image, truth, PIX * MAS, beam) - 0.2
    # V² cannot tell a 180° rotation, closure phases can
    rot = _chi2_of(rotated, data)
    assert rot["vis2"] == pytest.approx(res.chi2_terms["vis2"], rel=1e-6)
    assert rot["t3phi"] > 3 * res.chi2_terms["t3phi"]


def test_flags_are_honoured_and_negative_v2_kept(shared_data):
    truth = spotted_star(N, PIX)
    oi = simulate_on(shared_data / "imaging/contests_oifitsjl/contest-2008-obj1-H.oifits", truth, PIX)
    v2 = oi.vis2[0]
    assert (v2["VIS2DATA"] < 0).sum() > 10  # the data have negative V² (noise at the visibility nulls)
    full = imaging_data([oi], Selection())
    assert full.used["vis2"] == v2["VIS2DATA"].size  # negative values are kept
    flagged = copy.deepcopy(oi)
    flagged.vis2[0].columns["FLAG"][:10, :] = True
    flagged.vis2[0].columns["VIS2DATA"][:10, :] = 50.0  # garbage under the flags
    flagged.t3[0].columns["FLAG"][:5, :] = True
    sel = imaging_data([flagged], Selection())
    nw = v2["VIS2DATA"].shape[1]
    assert sel.used["vis2"] == full.used["vis2"] - 10 * nw
    assert sel.excluded["vis2_flagged"] == 10 * nw and sel.excluded["t3phi_flagged"] == 5 * nw
    assert np.max(sel.groups[0].terms["vis2"].data) < 2.0


def test_wavelength_and_observable_selection(shared_data):
    oi = simulate_on(shared_data / "imaging/contests_oifitsjl/contest-2008-obj1-H.oifits", spotted_star(N, PIX), PIX)
    waves = oi.wavelengths[0].eff_wave
    d = imaging_data([oi], Selection(wave_min=float(waves[2]), wave_max=float(waves[4]), use_t3="none"))
    assert set(d.used) == {"vis2"} and d.used["vis2"] == 75 * 3
    assert d.excluded["wavelength_range"] == 75 * 5


def test_auto_mu_reaches_the_target_chi2(shared_data):
    truth = spotted_star(32, 0.6)
    oi = simulate_on(shared_data / "imaging/contests_oifitsjl/contest-2008-obj1-K.oifits", truth, 0.6,
                     vis2_err=0.02, t3phi_err=np.deg2rad(5.0))
    data = imaging_data([oi], Selection())
    res = reconstruct(data, dict(npix=32, pixel_size_mas=0.6, mu="auto", chi2_target=1.0))
    accept = acceptance(1.0, data.ndata, CHI2_SIGMAS)  # 1 + 2√(2/N): within 2σ of the target
    assert res.mu_curve and res.mu > 0 and res.mu_rule["reached"]
    assert res.chi2 <= accept * 1.05
    # the chosen μ is the largest of the final grid's solves that fits
    larger = [c for c in res.mu_curve if c["mu"] > res.mu * 1.0001 and c["npix"] == 32]
    assert larger and all(c["chi2_red"] > accept for c in larger)


def test_polychromatic_channels_with_spectral_regulariser(shared_data):
    truth = spotted_star(32, 0.6)
    oi = simulate_on(shared_data / "imaging/contests_oifitsjl/contest-2008-obj1-K.oifits", truth, 0.6)
    sel = Selection(wave_max=float(oi.wavelengths[0].eff_wave[2]) * 1.0001)
    data = imaging_data([oi], sel, polychromatic="channels")
    assert len(data.groups) == 3
    base = dict(npix=32, pixel_size_mas=0.6, mu=1e4, maxiter=60, polychromatic="channels")
    free = reconstruct(data, base)
    tied = reconstruct(data, {**base, "spectral_mu": 1e9})
    assert free.image.shape == (3, 32, 32)
    diff = lambda img: float(np.sum((img[1:] - img[:-1]) ** 2))  # noqa: E731
    assert diff(tied.image) < 0.2 * diff(free.image)
    np.testing.assert_allclose(tied.image.sum(axis=(1, 2)), 1.0, atol=1e-9)


def test_array_api_strict_reconstruction_matches_numpy(shared_data):
    """The whole reconstruction (optimiser included) runs on the array API: the GPU code path."""
    truth = spotted_star(24, 0.8)
    oi = simulate_on(shared_data / "imaging/contests_oifitsjl/contest-2008-obj1-K.oifits", truth, 0.8)
    data = imaging_data([oi], Selection(wave_max=float(oi.wavelengths[0].eff_wave[0]) * 1.0001))
    s = dict(npix=24, pixel_size_mas=0.8, mu=1e3, maxiter=15, transform="dft")
    a = reconstruct(data, s, backend="numpy")
    b = reconstruct(data, s, backend="array_api_strict")
    assert b.backend == "array_api_strict" and b.transform == "dft"
    assert b.niter == a.niter
    np.testing.assert_allclose(b.image, a.image, atol=1e-9 * a.image.max())
    assert b.chi2 == pytest.approx(a.chi2, rel=1e-8)


def test_gpu_request_without_gpu_falls_back_with_a_message(shared_data, monkeypatch):
    import oiflow.backend as backend

    monkeypatch.setattr(backend, "gpu_available", lambda: (False, "no CUDA device (test)"))
    truth = spotted_star(24, 0.8)
    oi = simulate_on(shared_data / "imaging/contests_oifitsjl/contest-2008-obj1-K.oifits", truth, 0.8)
    data = imaging_data([oi], Selection())
    res = reconstruct(data, dict(npix=24, pixel_size_mas=0.8, mu=1e3, maxiter=3, device="gpu"))
    assert res.backend == "numpy"
    assert any("GPU requested but unavailable" in m for m in res.messages)


@pytest.mark.parametrize("kind", ["gaussian", "ud", "random", "model"])
def test_initial_images(shared_data, kind):
    from oiflow.image.initial import initial_image

    oi = simulate_on(shared_data / "imaging/contests_oifitsjl/contest-2008-obj1-K.oifits", spotted_star(32, 0.6), 0.6)
    data = imaging_data([oi], Selection())
    img = initial_image(kind, 32, 0.6 * MAS, data=data,
                        components=[{"type": "ud", "diameter_mas": 4.0}, {"type": "point", "flux": 0.2, "x_mas": 3.0}])
    assert img.shape == (32, 32) and img.min() >= 0 and img.sum() == pytest.approx(1.0)
    if kind == "model":  # the point 3 mas East sits 5 pixels LEFT of the centre
        assert img[16, 16 - 5] == pytest.approx(0.2 / 1.2, rel=1e-6)


def test_multilevel_start_is_as_good_as_the_single_level(shared_data):
    """levels=2: a coarse grid (pixels ×2) prepares the start and stops early (relative decrease
    below 1e-4 or maxiter // 2 iterations); the final image scores at least as well as the
    single-level reconstruction with the same total iteration budget (MAXITER bounds both grids
    together)."""
    truth = spotted_star(64, 0.25)
    oi = simulate_on(shared_data / "imaging/contests_oifitsjl/contest-2008-obj1-K.oifits", truth, 0.25)
    data = imaging_data([oi], Selection())
    beam = nominal_resolution(data.max_frequency)
    base = dict(npix=64, pixel_size_mas=0.25, mu=1e4, maxiter=600, ftol=1e-4, initial="dirac")  # the grids alone
    single = reconstruct(data, {**base, "levels": 1})
    multi = reconstruct(data, {**base, "levels": 2})
    phases = [h["phase"] for h in multi.history]
    assert phases.count("coarse 32px") <= 300 and phases[-1] in ("optimise", "recentre")
    assert multi.niter <= 600
    assert multi.converged
    s_single = quality(single.image, truth, 0.25 * MAS, beam)
    s_multi = quality(multi.image, truth, 0.25 * MAS, beam)
    assert s_multi > 0.99 and s_multi >= s_single - 0.002, (s_multi, s_single)
    assert multi.chi2_terms["vis2"] == pytest.approx(1.0, abs=0.1)


@pytest.fixture(scope="module")
def sparse_binary():
    """A 4.5 mas binary (PA 60°, flux ratio 0.3) seen through one PIONIER snapshot (6 baselines)."""
    tpl = read_oifits(Path(__file__).parents[1] / "data-samples/oifits/alfCenA_PIONI.2016-05-31T00_55_19.fits", warn=False)
    sep, pa = 4.5 * MAS, np.deg2rad(60.0)
    oi = from_template(tpl, lambda u, v, w: binary(u, v, 0.3, sep * np.sin(pa), sep * np.cos(pa)), seed=1,
                       vis2_err=0.02, t3phi_err=np.deg2rad(2.0))
    return imaging_data([oi], Selection())


def test_auto_mu_on_two_grids_fits_as_well_as_on_one(sparse_binary):
    # Regression: μ chosen on the coarse grid alone (scaled to the final pixels) left χ²_red ≈ 176
    # here; the second sweep on the final grid brings it back to the noise level, as one grid does.
    data = sparse_binary
    base = dict(npix=64, pixel_size_mas=0.25, regularization="tv", mu="auto", maxiter=300)
    one = reconstruct(data, {**base, "levels": 1})
    two = reconstruct(data, {**base, "levels": 2})
    # the rule accepts χ²_red up to 1 + 2√(2/N) (1.37 for these 59 points); the optimisation that
    # follows the search (whose solves stop before convergence) may move it by a few per cent
    accept = acceptance(1.0, data.ndata, CHI2_SIGMAS)
    assert one.mu_rule["reached"] and two.mu_rule["reached"]
    assert one.chi2 < 1.1 * accept, one.chi2
    assert two.chi2 < 1.1 * accept, two.chi2
    assert {c["npix"] for c in two.mu_curve} == {32, 64}
    # V² and closure phases leave the position free: the image is shown with its photocentre at
    # the centre (recenter=True, the default), within RECENTER_MIN_SHIFT = 2 pixels
    iy, ix = np.indices(two.image.shape)
    for img in (one.image, two.image):
        cy, cx = (iy * img).sum() / img.sum(), (ix * img).sum() / img.sum()
        assert abs(cy - 32) < 2.5 and abs(cx - 32) < 2.5, (cy, cx)


def test_auto_mu_with_an_unreachable_target_keeps_the_largest_mu_near_the_plateau(sparse_binary):
    data = sparse_binary
    res = reconstruct(data, dict(npix=64, pixel_size_mas=0.25, regularization="tv", mu="auto", maxiter=300,
                                 levels=1, chi2_target=0.05))
    chi2 = [c["chi2_red"] for c in res.mu_curve]
    plateau = 1.1 * min(chi2)
    assert min(chi2) > 0.05  # the target is out of reach
    assert res.chi2 <= plateau * 1.02
    # no larger μ of the sweep reached the plateau target
    assert all(c["chi2_red"] > plateau for c in res.mu_curve if c["mu"] > res.mu * 1.0001)


def test_linear_weights_match_scipy_map_coordinates():
    """The resampling between grids (numpy only) equals scipy.ndimage.map_coordinates(order=1,
    mode="constant") on a grid, edges and points outside included."""
    from scipy.ndimage import map_coordinates

    from oiflow.image.grids import linear_weights

    rng = np.random.default_rng(3)
    for n_from, k in ((64, (np.arange(32) - 16) * 2.0 + 32), (32, (np.arange(64) - 32) * 0.5 + 16),
                      (10, np.array([-0.5, -1e-12, 0.0, 0.3, 8.99, 9.0, 9.2, 11.0]))):
        img = rng.random((n_from, n_from))
        W = linear_weights(k, n_from)
        yy, xx = np.meshgrid(k, k, indexing="ij")
        ref = map_coordinates(img, [yy, xx], order=1, mode="constant", cval=0.0)
        np.testing.assert_allclose(W @ img @ W.T, ref, atol=1e-14)
