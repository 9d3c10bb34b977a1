"""IMAGE-OI input/output, engine outputs read tolerantly, the engine command and `oiflow image`."""

import shutil

import numpy as np
import pytest
from astropy.io import fits

from oiflow.image.imageoi import (FINAL_HDUNAME, read_fits_image, read_imageoi_output, read_input_params,
                                  settings_from_params)
from oiflow.image.metric import Beam, beam_from_uv, quality
from oiflow.units import MAS

from image_helpers import simulate_on, spotted_star


def test_read_imageoi_input_with_legacy_logicals(shared_data):
    path = shared_data / "imaging/oimaging/2004-FKV1137-L1L2-example.image-oi.fits"
    with fits.open(path) as hdul:
        params = read_input_params(hdul)
        fields, images = settings_from_params(params, hdul)
    assert params["USE_VIS"] is True and params["USE_T3"] is True  # legacy logicals in this sample
    assert fields["use_vis"] == "all" and fields["use_t3"] == "all" and fields["use_vis2"] is True
    assert fields["target"] == "FKV1137" and fields["maxiter"] == 200 and fields["mu"] == "auto"
    assert fields["regularization"] == "hyperbolic"  # WISARD's L1L2: the l1-l2 potential of the gradient
    init = images["initial"]  # found by HDUNAME in the primary HDU
    assert init.name == "TriggerHighFrequencies.fits" and init.shape == (64, 64)
    assert fields["npix"] == 64 and fields["pixel_size_mas"] == pytest.approx(0.3, rel=1e-6)
    assert not init.east_left  # this sample has CDELT1 > 0: East right, flipped when resampled
    assert (init.crpix1, init.crpix2) == (1.0, 1.0)  # CRPIX = 1 and CRVAL = 0: the phase centre on a corner


def test_string_use_values_and_errors():
    assert settings_from_params({"USE_VIS": "PHI", "USE_T3": "amp", "RGL_WGT": 5.0, "AUTO_WGT": False})[0] == {
        "use_vis": "phi", "use_t3": "amp", "mu": 5.0}
    from oiflow.errors import ImagingError

    with pytest.raises(ImagingError, match="RGL_NAME"):
        settings_from_params({"RGL_NAME": "BOGUS"})


def test_read_engine_outputs_tolerantly(shared_data):
    bsmem = read_imageoi_output(shared_data / "imaging/oitools/2004-FKV1137-L1L2-example.image-oi-BSMEM.fits")
    assert bsmem["software"] == "BSMEM" and bsmem["output"]["LAST_IMG"] == "OUTPUT50"
    assert bsmem["image"].name == "OUTPUT50" and bsmem["image"].pixel_size / MAS == pytest.approx(0.3, rel=1e-6)
    mirc = read_imageoi_output(shared_data / "imaging/oimaging/Bin_Ary--MIRC_H_with_img.fits")
    assert mirc["image"].name == "OUTPUT19" and mirc["image"].shape == (128, 128)
    assert mirc["software"] == "BSMEM"  # guessed from INITFLUX, as OImaging does
    # as an initial image, on another grid (flux conserved)
    img = read_fits_image(shared_data / "imaging/oitools/2004-FKV1137-L1L2-example.image-oi-BSMEM.fits")
    res = img.resample(32, 0.6 * MAS)
    assert res.shape == (32, 32) and res.sum() == pytest.approx(np.nansum(img.data), rel=0.02)


def test_wisard_style_string_converge(tmp_path):
    out = tmp_path / "wisard.fits"
    img = fits.PrimaryHDU(np.ones((8, 8)))
    img.header["HDUNAME"] = "T_8x8_10"
    img.header["CDELT1"] = -1e-7
    img.header["CDELT2"] = 1e-7
    par = fits.BinTableHDU.from_columns([fits.Column(name="DUMMY", format="1J", array=[1])])
    par.header["EXTNAME"] = "IMAGE-OI OUTPUT PARAM"
    par.header["LAST_IMG"] = "T_8x8_10"
    par.header["CONVERGE"] = "true"
    par.header["SOFTWARE"] = "WISARD"
    fits.HDUList([img, par]).writeto(out)
    r = read_imageoi_output(out)
    assert r["output"]["CONVERGE"] is True and r["software"] == "WISARD" and r["image"].east_left


@pytest.fixture(scope="module")
def reconstructed(shared_data, tmp_path_factory):
    from oiflow.image import reconstruct_files
    from oiflow.oifits import write_oifits

    d = tmp_path_factory.mktemp("img")
    oi = simulate_on(shared_data / "imaging/contests_oifitsjl/contest-2008-obj1-K.oifits", spotted_star(32, 0.6), 0.6)
    src = d / "sim.oifits"
    write_oifits(oi, src)
    out = d / "out" / "sim.image.fits"
    res = reconstruct_files([src], out, dict(npix=32, pixel_size_mas=0.6, mu=1e4, maxiter=40))
    return src, out, res


def test_output_layout(reconstructed):
    from oiflow.oifits import read_oifits
    from oiflow.provenance import Provenance

    src, out, res = reconstructed
    with fits.open(out) as hdul:
        prim = hdul[0]
        assert prim.header["HDUNAME"] == FINAL_HDUNAME and prim.data.shape == (32, 32)
        assert prim.header["CDELT1"] < 0 < prim.header["CDELT2"] and prim.header["CRPIX1"] == 17
        assert prim.header["CTYPE1"] == "RA---TAN"
        outp = hdul["IMAGE-OI OUTPUT PARAM"].header
        assert outp["LAST_IMG"] == FINAL_HDUNAME and outp["SOFTWARE"] == "oiflow"
        assert outp["NITER"] == res.niter and outp["CHISQ"] == pytest.approx(res.chi2)
        assert isinstance(outp["CONVERGE"], bool) and outp["PROCSOFT"].startswith("oiflow")
        assert outp["FLUX"] == pytest.approx(1.0)
        inp = hdul["IMAGE-OI INPUT PARAM"].header
        assert inp["USE_T3"] == "PHI" and inp["USE_VIS"] == "NONE" and inp["USE_VIS2"] is True
        assert inp["RGL_WGT"] == pytest.approx(1e4) and inp["INIT_IMG"] == "IMAGE-OI INITIAL IMAGE"
        assert "IMAGE-OI INITIAL IMAGE" in hdul
        prov = Provenance.from_header(prim.header)
        assert prov.stage == "image" and prov.inputs[0].name == "sim.oifits"
    oi = read_oifits(out, warn=False)
    v2, t3 = oi.vis2[0], oi.t3[0]
    assert v2["NS_MODEL_VIS2DATA"].shape == v2["VIS2DATA"].shape
    # the model columns are the model of the fit: their χ² is the reported one
    model_cp = np.deg2rad(t3["NS_MODEL_T3PHI"])
    assert np.all(np.abs(model_cp) <= np.pi + 1e-9)
    chi2_v2 = np.mean(((v2["VIS2DATA"] - v2["NS_MODEL_VIS2DATA"]) / v2["VIS2ERR"]) ** 2)
    assert chi2_v2 == pytest.approx(res.chi2_terms["vis2"], rel=1e-6)
    # quicklooks named after the product
    assert (out.parent / "sim.image.png").stat().st_size > 10000 and (out.parent / "sim.image.residuals.png").exists()
    assert res.png_paths == [str(out.parent / "sim.image.png"), str(out.parent / "sim.image.residuals.png")]
    # read back as an initial image: the final image is found through LAST_IMG, same orientation
    back = read_fits_image(out)
    np.testing.assert_allclose(back.resample(32, 0.6 * MAS), res.image, atol=1e-12)


def test_model_columns_follow_the_conventions(tmp_path):
    """A binary rendered as an image gives the closure phases of the analytic binary model."""
    from oiflow.backend import get_xp
    from oiflow.fit.analytic import binary
    from oiflow.image.imageoi import add_model_columns
    from oiflow.simulate.synthetic import synthetic_oifits

    xp = get_xp("numpy")
    xyz = np.array([[0, 0, 0], [40, 10, 0], [15, 70, 0], [-30, 45, 0]], float)
    vf = lambda u, v, w: binary(u, v, 0.5, 2.0 * MAS, 1.0 * MAS, xp=xp)  # noqa: E731
    oi = synthetic_oifits(vf, u=None, v=None, wavelength=[1.65e-6], station_xyz=xyz, noise=False)
    img = np.zeros((33, 33))
    img[16, 16] = 1.0
    img[16 + 4, 16 - 8] = 0.5  # 2 mas East (left) and 1 mas North at 0.25 mas/pixel
    m = add_model_columns(oi, img, 0.25 * MAS, np.array([1.65e-6]))
    np.testing.assert_allclose(m.t3[0]["NS_MODEL_T3PHI"], oi.t3[0]["T3PHI"], atol=1e-6)
    np.testing.assert_allclose(m.vis2[0]["NS_MODEL_VIS2DATA"], oi.vis2[0]["VIS2DATA"], atol=1e-9)


def test_ci_usage_without_arguments(capsys):
    from oiflow.cli.image_cmds import ci_main

    assert ci_main([]) == 1
    assert "usage: oiflow-image-ci" in capsys.readouterr().err


def test_ci_runs_an_imageoi_input_with_options_in_one_element(shared_data, tmp_path, capsys):
    from oiflow.cli.image_cmds import ci_main

    inp = tmp_path / "in.fits"
    shutil.copy(shared_data / "imaging/oimaging/2004-FKV1137-L1L2-example.image-oi.fits", inp)
    out = tmp_path / "out.fits"
    rc = ci_main(["-recenter -maxiter=15 -mu=1e4 -regul=hyperbolic", str(inp), str(out)])
    with fits.open(out) as hdul:
        assert hdul[0].data.shape == (64, 64)  # the grid of the initial image
        assert hdul["IMAGE-OI INPUT PARAM"].header["INIT_IMG"] == "TriggerHighFrequencies.fits"
        assert "TriggerHighFrequencies.fits" in [h.header.get("HDUNAME") for h in hdul]
        assert hdul["IMAGE-OI INPUT PARAM"].header["RGL_NAME"] == "hyperbolic"
        outp = hdul["IMAGE-OI OUTPUT PARAM"].header
        assert outp["NITER"] == 15
        # 15 iterations do not converge: written, marked and exit 1
        assert outp["VERDICT"] == "maxiter" and outp["CONVERGE"] is False and outp["OPTCONV"] is False
    assert rc == 1
    printed = capsys.readouterr().out
    assert "option -recenter ignored" in printed
    last = printed.splitlines()[-1]  # the verdict is the last line, with every reason
    assert last.startswith("verdict: maxiter (") and "stopped at MAXITER = 15 before converging" in last


def test_ci_failure_leaves_no_output(shared_data, tmp_path):
    from oiflow.cli.image_cmds import ci_main

    inp = tmp_path / "in.fits"
    with fits.open(shared_data / "imaging/oimaging/2004-FKV1137-L1L2-example.image-oi.fits") as hdul:
        hdul["IMAGE-OI INPUT PARAM"].header["RGL_NAME"] = "NOT_A_REGULARIZER"
        hdul.writeto(inp)
    out = tmp_path / "out.fits"
    assert ci_main([str(inp), str(out)]) == 1
    assert not out.exists() and list(tmp_path.iterdir()) == [inp]
    assert ci_main([str(tmp_path / "missing.fits"), str(out)]) == 1
    assert not out.exists()


def test_oiflow_image_command(reconstructed, tmp_path):
    from oiflow.cli import main

    src, _, _ = reconstructed
    out = tmp_path / "cli.fits"
    rc = main(["image", str(src), "--out", str(out), "--npix", "32", "--pixel-size", "0.6", "--mu", "1e4",
               "--maxiter", "10", "--quiet"])
    # 10 iterations: stopped at MAXITER, so exit 1 with the product written and marked
    assert rc == 1 and out.exists() and (tmp_path / "cli.png").exists() and (tmp_path / "cli.residuals.png").exists()
    assert fits.getheader(out, "IMAGE-OI OUTPUT PARAM")["VERDICT"] == "maxiter"
    assert main(["image", str(src), "--out", str(out), "--mu", "lots"]) == 2


def test_quality_metric_properties():
    from oiflow.image.metric import fourier_shift

    img = spotted_star(64, 0.3)
    pix = 0.3 * MAS
    assert quality(img, img, pix, 0.5 * MAS) == pytest.approx(1.0, abs=1e-9)
    shifted = np.clip(fourier_shift(img, 2.5, -1.5), 0, None)
    assert quality(3.0 * shifted, img, pix, 0.5 * MAS) > 0.999  # free shift and flux scale
    assert quality(img[::-1, ::-1], img, pix, 0.5 * MAS) < 0.8
    assert quality(img, img, pix, 0.5 * MAS, blur="truth") < 1.0


def test_beam_of_an_elongated_coverage():
    # frequencies along PA 30° only: the beam is narrow along 30° and long across (PA 120°)
    rho = np.linspace(-2e8, 2e8, 101)
    pa = np.deg2rad(30)
    u, v = rho * np.sin(pa), rho * np.cos(pa)
    u = np.concatenate([u, 1e6 * np.cos(pa) * np.ones(3)])
    v = np.concatenate([v, -1e6 * np.sin(pa) * np.ones(3)])
    b = beam_from_uv(u, v)
    assert isinstance(b, Beam) and b.major > 10 * b.minor
    assert np.rad2deg(b.pa) == pytest.approx(120.0, abs=0.5)


def test_param_tables_are_the_bytes_astropy_writes_for_an_empty_table():
    """IMAGE-OI INPUT/OUTPUT PARAM tables are built without data (no astropy.table import): the
    same bytes as astropy's ``BinTableHDU.from_columns([], nrows=0)`` with the same cards."""
    import io

    from oiflow.image.imageoi import _param_table

    cards = {"NITER": (12, "iterations"), "CHISQ": (1.25, "reduced chi2"), "RGL_NAME": ("hyperbolic", "regul"),
             "CONVERGE": (True, "converged"), "SKIPPED": (float("nan"), "not finite: absent")}
    ours = _param_table("IMAGE-OI OUTPUT PARAM", cards)
    ref = fits.BinTableHDU.from_columns([], nrows=0)
    ref.header["EXTNAME"] = "IMAGE-OI OUTPUT PARAM"
    for key, value in cards.items():
        if key != "SKIPPED":
            ref.header[key] = value
    a, b = io.BytesIO(), io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), ours]).writeto(a, checksum=True)
    fits.HDUList([fits.PrimaryHDU(), ref]).writeto(b, checksum=True)
    assert a.getvalue() == b.getvalue()
    assert "SKIPPED" not in ours.header and ours.header["NITER"] == 12 and ours.header["CONVERGE"] is True
