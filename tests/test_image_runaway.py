"""Regression (issue 12): the cases where the automatic regularisation weight ran away (μ =
1e10–1e15, a flat or garbage image marked converged), run as the commands were written. μ now
stays within its bounds, the reported χ²_red is that of the image written to the file, and where
the data are not fitted to their error bars ImageResult says so (``mu_rule["reached"]`` False and
a message). The verdicts and exit codes built on these are tested with the IMAGE-OI output.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from oiflow.backend import get_xp
from oiflow.errors import ImagingError
from oiflow.image.data import Selection, imaging_data
from oiflow.image.metric import nominal_resolution, quality
from oiflow.image.mu_rule import MU_SPAN, acceptance
from oiflow.image.mu_search import CHI2_SIGMAS
from oiflow.image.objective import Objective
from oiflow.image.reconstruct import image_settings, reconstruct
from oiflow.units import MAS

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def captured(monkeypatch):
    """The ImageResult of every reconstruct_files call the commands make."""
    import oiflow.image as image

    results = []
    original = image.reconstruct_files

    def spy(*args, **kwargs):
        results.append(original(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(image, "reconstruct_files", spy)
    return results


def _written_chi2(result, out: Path) -> float:
    """χ²_red of the image stored in ``out`` against the data the reconstruction used."""
    img = np.asarray(fits.getdata(out, 0), float)
    assert img.shape == result.image.shape
    s = result.settings
    obj = Objective(result.data, image_settings(dict(npix=s.npix, pixel_size_mas=s.pixel_size_mas)), get_xp("numpy"))
    obj(img.ravel() / img.sum() * img.size)
    return obj.last["chi2_red"]


def _check_bounded_and_honest(result, out: Path):
    rule = result.mu_rule
    lo, hi = rule["bounds"]
    assert lo <= result.mu <= hi and hi / lo == pytest.approx(MU_SPAN[1] / MU_SPAN[0])
    assert result.mu < 1e9  # the runaway weights were 1e10–1e15
    assert _written_chi2(result, out) == pytest.approx(result.chi2, rel=1e-4)
    accept = acceptance(result.settings.chi2_target, result.ndata, CHI2_SIGMAS)
    assert rule["accept"] == pytest.approx(accept)
    fitted = result.chi2 <= 1.1 * accept  # the optimisation after the search may move χ²_red by a few %
    if not fitted:  # a poor fit is never silent
        assert rule["reached"] is False
        assert any("not reached" in m for m in result.messages)
    return fitted


def test_contest_binary_with_the_defaults(captured, tmp_path):
    """`oiflow image data-samples/oifits/contest-2008-binary.oifits --out x.fits` gave μ = 2.6e10
    and χ²_red 10310; now it fits the data."""
    from oiflow.cli import main

    out = tmp_path / "x.fits"
    assert main(["image", str(REPO / "data-samples/oifits/contest-2008-binary.oifits"), "--out", str(out), "-q"]) == 0
    (res,) = captured
    assert _check_bounded_and_honest(res, out)
    assert res.chi2 < 1.5 and res.mu_rule["reached"]


def test_all_of_t3_on_a_sparse_snapshot(captured, tmp_path):
    """`--use-t3 all` on one PIONIER snapshot (6 baselines) gave μ = 1.3e14 and χ²_red 2110."""
    from oiflow.cli import main

    out = tmp_path / "x.fits"
    src = REPO / "data-samples/oifits/alfCenA_PIONI.2016-05-31T00_55_19.fits"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["image", str(src), "--out", str(out), "--use-t3", "all", "-q"]) == 0
    (res,) = captured
    assert set(res.chi2_terms) == {"vis2", "t3phi", "t3amp"}
    assert _check_bounded_and_honest(res, out)
    assert res.chi2 < 2.0


def test_spotted_disk_says_why_it_is_not_fitted(captured, tmp_path, shared_data):
    """The OITOOLS.jl spotted disk (error bars ~1e-4 on V²): μ ran to 3e15 and returned a flat
    image. Within the default MAXITER (1000, everything included) the optimiser does not reach
    χ²_red ≈ 1 here (the true image does fit; 4000 iterations reach ≈ 1.3): the verdict says so —
    maxiter, with the poor fit of each observable, χ²_red still falling at the end and the μ
    rule's sentence — the file is written and marked, the exit status is 1, and the image is
    the disk (a smooth start chosen by the data), not a blob."""
    from oiflow.cli import main

    spot = shared_data / "imaging/oitoolsjl_spotdisk"
    out = tmp_path / "x.fits"
    assert main(["image", str(spot / "4masdiskspotchangemove1.oifits"), "--out", str(out), "--npix", "64",
                 "--pixel-size", "0.1", "-q"]) == 1
    (res,) = captured
    assert not _check_bounded_and_honest(res, out)
    assert res.niter <= 1000 and res.start in ("gaussian", "ud")
    v = res.verdict
    assert v.status == "maxiter" and fits.getheader(out, "IMAGE-OI OUTPUT PARAM")["VERDICT"] == "maxiter"
    reasons = " ".join(v.reasons)
    assert "for V² (4680 points)" in reasons and "for T3 phase (6240 points)" in reasons
    assert "stopped at MAXITER = 1000 before converging (χ²_red still falling:" in reasons
    assert "not reached" in reasons
    truth = fits.getdata(spot / "4masdiskspotchangemove1.fits").astype(float)
    beam = nominal_resolution(res.data.max_frequency)
    # 0.35 before (the flat image of the runaway μ), 0.65 from the point start, MiRA 0.11–0.33 with its defaults
    assert quality(res.image, truth, 0.1 * MAS, beam, blur="truth") > 0.85


def test_oimaging_example_through_the_engine(captured, tmp_path, shared_data):
    """`oiflow-image-ci` on OImaging's example input gave μ = 4.6e10 and χ²_red 1972. Now it fits
    (χ²_red ≈ 0.5); the file's MAXITER = 200 bounds the whole reconstruction and stops it before
    the convergence test: verdict maxiter, exit status 1, said in the file."""
    from oiflow.cli.image_cmds import ci_main

    out = tmp_path / "out.fits"
    rc = ci_main([str(shared_data / "imaging/oimaging/2004-FKV1137-L1L2-example.image-oi.fits"), str(out)])
    (res,) = captured
    assert _check_bounded_and_honest(res, out)
    assert res.chi2 < 2  # 1972 before; 7.6 with the hand-set -mu=1e4 -regul=hyperbolic
    assert res.niter <= 200 and rc == (0 if res.verdict.ok else 1)
    assert fits.getheader(out, "IMAGE-OI OUTPUT PARAM")["VERDICT"] == res.verdict.status


@pytest.mark.parametrize("n", [1, 2])
def test_too_few_points_is_a_clear_error(n):
    """The data level refuses them (DataError, tests/test_image_robust.py); reconstruct keeps its
    own guard for data built otherwise (ImagingError, not an IndexError)."""
    from oiflow.fit.analytic import uniform_disk
    from oiflow.image.data import ImagingData
    from oiflow.simulate.synthetic import synthetic_oifits

    oi = synthetic_oifits(lambda u, v, w: uniform_disk(u, v, 2 * MAS, np), u=np.linspace(20, 80, 3), v=np.zeros(3),
                          wavelength=[1.6e-6], vis2_err=0.02)
    full = imaging_data([oi], Selection())
    (group,) = full.groups
    term = group.terms["vis2"]
    few = type(term)(term.legs[:n], term.data[:n], term.error[:n], term.spatial_frequency[:n], term.wavelength[:n])
    data = ImagingData([type(group)(group.wavelength, group.u, group.v, {"vis2": few})], full.target, full.selection,
                       {}, {"vis2": n})
    with pytest.raises(ImagingError, match=f"{n} data point"):
        reconstruct(data, dict(npix=32, pixel_size_mas=0.5))


@pytest.mark.parametrize("n", [3, 6])
def test_few_points_image_within_bounds(n):
    """The old sweep raised IndexError (`lo = reached[0]`) on some curves of few points."""
    from oiflow.fit.analytic import uniform_disk
    from oiflow.simulate.synthetic import synthetic_oifits

    oi = synthetic_oifits(lambda u, v, w: uniform_disk(u, v, 2 * MAS, np), u=np.linspace(20, 80, n), v=np.zeros(n),
                          wavelength=[1.6e-6], vis2_err=0.02)
    res = reconstruct(imaging_data([oi], Selection()), dict(npix=32, pixel_size_mas=0.5))
    lo, hi = res.mu_rule["bounds"]
    assert lo <= res.mu <= hi and np.isfinite(res.chi2)
    assert res.mu_rule["reached"] is not None
