"""Real data: conventions checked on the spotted-disk series (true images known), plausible
images of the 2008 Beauty-Contest objects (slow)."""

import warnings

import numpy as np
import pytest
from astropy.io import fits

from oiflow.backend import get_xp
from oiflow.image.data import Selection, imaging_data
from oiflow.image.metric import nominal_resolution, quality
from oiflow.image.objective import Objective
from oiflow.image.reconstruct import image_settings, reconstruct
from oiflow.oifits import read_oifits
from oiflow.units import MAS

SPOT = "imaging/oitoolsjl_spotdisk"
PIX = 0.1  # mas: the pixel of the OITOOLS.jl spotted-disk demo (64×64 images)


def _spot(shared_data, k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        oi = read_oifits(shared_data / SPOT / f"4masdiskspotchangemove{k}.oifits", warn=False)
    truth = fits.getdata(shared_data / SPOT / f"4masdiskspotchangemove{k}.fits").astype(float)
    return imaging_data([oi], Selection()), truth


@pytest.mark.parametrize("k", [1, 3])
def test_true_images_fit_the_data_in_our_convention(shared_data, k):
    """The published true image (stored image[iy, ix], 0.1 mas pixels) fits its data with
    χ²_red ≈ 1 on oiflow's grid (East left, North up); mirrored or rotated it does not."""
    data, truth = _spot(shared_data, k)
    obj = Objective(data, image_settings(dict(npix=64, pixel_size_mas=PIX)), get_xp("numpy"))

    def chi2(img):
        obj(img.ravel() / img.sum() * img.size)
        return {t: v / len(data.groups[0].terms[t]) for t, v in obj.last["terms"].items()}

    good = chi2(truth)
    assert good["vis2"] == pytest.approx(1.0, abs=0.15) and good["t3phi"] == pytest.approx(1.0, abs=0.15)
    for wrong in (truth[:, ::-1], truth[::-1, :], truth[::-1, ::-1]):
        assert chi2(wrong)["t3phi"] > 100


@pytest.mark.slow
def test_spotted_disk_reconstruction_scores_against_the_truth(shared_data):
    """From a uniform-disk start, 1000 iterations (≈15 s): score ≥ 0.99 (beam on both) and the
    true orientation scores best. The data have V² errors ~2e-5, so χ² is still far from 1
    (≈14 measured) after 1000 iterations: a limit of the present optimiser, reported as such."""
    data, truth = _spot(shared_data, 1)
    res = reconstruct(data, dict(npix=64, pixel_size_mas=PIX, mu=1e4, maxiter=1000, initial="ud"))
    beam = nominal_resolution(data.max_frequency)
    score = quality(res.image, truth, PIX * MAS, beam)
    assert score > 0.99
    assert score > max(quality(res.image, w, PIX * MAS, beam) for w in (truth[:, ::-1], truth[::-1, :]))
    assert res.chi2 < 30


@pytest.mark.slow
@pytest.mark.parametrize("name, mu", [("obj1-H", 1e4), ("obj2-H", 1e4), ("binary", 1e3)])
def test_beauty_contest_2008_objects(shared_data, tmp_path, name, mu):
    """Plausible images: a fit near χ²_red ≈ 1, flux inside the 15 mas taper of the contest.
    The binary (two stars of 1.2 and 0.75 mas) needs a lower μ than the extended objects:
    at μ = 1e4 total variation smooths the point-like stars (χ²_red 2.15 measured)."""
    from oiflow.image import reconstruct_files

    src = shared_data / "imaging/contests_oifitsjl" / f"contest-2008-{name}.oifits"
    res = reconstruct_files([src], tmp_path / f"{name}.fits", dict(npix=128, pixel_size_mas=0.15, mu=mu, maxiter=500))
    assert res.chi2 < 2.0, res.chi2_terms
    n = res.image.shape[0]
    iy, ix = np.indices(res.image.shape)
    r = np.hypot(iy - n // 2, ix - n // 2) * 0.15
    assert res.image[r < 7.5].sum() > 0.8
