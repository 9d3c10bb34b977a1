"""What OImaging writes for its engines (MiRA, BSMEM, WISARD) in IMAGE-OI INPUT PARAM: each
regularisation name mapped to the regulariser that does it (and said when it is not the same
thing) or refused by name; initial and prior images placed by their WCS; the data selection
keywords honoured; the two OImaging example inputs imaged from what the file says. Also the
names of `oiflow image`: its --help keeps its defaults and `-r tv` is said to be hyperbolic."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from astropy.io import fits

from oiflow.config import ImageTarget
from oiflow.errors import ImagingError
from oiflow.image.imageoi import image_from_hdu, param_notes, settings_from_params
from oiflow.units import DEG, MAS

FKV = "imaging/oimaging/2004-FKV1137-L1L2-example.image-oi.fits"
MIRC = "imaging/oimaging/Bin_Ary--MIRC_H_with_img.fits"
CLUSTER = "imaging/oitools/A-CLUSTER__2T3T__1-PHASEREF__SIMPLE_nsr0.05__20160812_193521_1.image-oi.oifits"


@pytest.mark.parametrize("name, regularizer", [
    ("hyperbolic", "hyperbolic"), ("compactness", "compactness"),  # MiRA
    ("mem_prior", "mem"),  # BSMEM
    ("TOTVAR", "hyperbolic"), ("L1L2", "hyperbolic"), ("L1L2WHITE", "l1"),  # WISARD
    ("tv", "hyperbolic"), ("smooth", "smooth"), ("l1", "l1")])  # oiflow's own
def test_regularisation_names_map_to_the_regulariser_doing_them(name, regularizer):
    assert settings_from_params({"RGL_NAME": name})[0]["regularization"] == regularizer


def test_a_name_done_by_another_regulariser_is_said():
    notes = param_notes({"RGL_NAME": "L1L2", "FLUXERR": 0.001})
    assert notes[0].startswith("RGL_NAME: regularization 'L1L2' → hyperbolic: WISARD's L1L2 (the l1-l2 potential "
                               "of the image gradient")
    assert notes[1].startswith("FLUXERR = 0.001: the total flux is a strict constraint")
    assert param_notes({"RGL_NAME": "hyperbolic", "FLUXERR": 0.0}) == []  # MiRA's own name, MiRA's default


@pytest.mark.parametrize("params, match", [
    ({"RGL_NAME": "SOFT_SUPPORT"}, "RGL_NAME 'SOFT_SUPPORT' is not supported: WISARD's SOFT_SUPPORT"),
    ({"RGL_NAME": "PSD"}, "RGL_NAME 'PSD' is not supported: WISARD's PSD"),
    ({"RGL_NAME": "BOGUS"}, "RGL_NAME 'BOGUS' is not supported"),
    ({"V2A": 2.0}, "V2A = 2.0 is not supported: oiflow does not rescale error bars"),
    ({"T3PHIB": 1.0}, "T3PHIB = 1.0 is not supported"),
    ({"SMEAR_FN": "sinc"}, "SMEAR_FN = 'sinc' is not supported: oiflow does not model bandwidth smearing")])
def test_what_oiflow_cannot_do_is_refused_by_name(params, match):
    with pytest.raises(ImagingError, match=match):
        settings_from_params(params)


def test_engine_keywords_oiflow_does():
    fields = settings_from_params({"RGL_NAME": "compactness", "RGL_GAMM": 20 * MAS / DEG, "V2A": 1.0, "V2B": 0.0,
                                   "SMEAR_FN": "none", "WAVE_MIN": 1.5e-6, "WAVE_MAX": 1.0, "USE_VIS": "PHI",
                                   "USE_VIS2": False, "USE_T3": "ALL", "FLUX": 2.0, "AUTO_WGT": True})[0]
    assert fields == {"regularization": "compactness", "prior_fwhm_mas": pytest.approx(20.0), "wave_min": 1.5e-6,
                      "use_vis": "phi", "use_vis2": False, "use_t3": "all", "flux": 2.0, "mu": "auto"}


def test_crval_is_an_offset_within_the_field():
    """IMAGE-OI's CRVAL is an offset from the phase centre: CRPIX = 1 with CRVAL = −half the field
    puts the phase centre in the middle (oitools' A-CLUSTER sample); an absolute RA (WISARD's
    output writes 335.68°) is not an offset and is ignored."""
    hdu = fits.PrimaryHDU(np.ones((80, 80)))
    hdu.header.update(CDELT1=1e-9, CDELT2=1e-9, CRPIX1=1.0, CRPIX2=1.0, CRVAL1=-40e-9, CRVAL2=-40e-9)
    img = image_from_hdu(hdu)
    assert (img.crpix1, img.crpix2) == (pytest.approx(41.0), pytest.approx(41.0))
    hdu.header.update(CRPIX1=32.0, CRVAL1=335.684326)
    assert image_from_hdu(hdu).crpix1 == 32.0


def test_uv_max_selects_the_data(shared_data, tmp_path):
    from oiflow.image import reconstruct_files

    inp = tmp_path / "in.fits"
    with fits.open(shared_data / MIRC) as h:
        h["IMAGE-OI INPUT PARAM"].header["UV_MAX"] = 1.0e8  # waves (cycles/rad)
        h["IMAGE-OI INPUT PARAM"].header["MAXITER"] = 20
        h.writeto(inp)
    res = reconstruct_files([inp], tmp_path / "out.fits", plots=False)
    assert res.excluded["uv_range"] > 0
    assert all(np.all(t.spatial_frequency <= 1.0e8) for g in res.data.groups for t in g.terms.values())
    assert fits.getheader(tmp_path / "out.fits", "IMAGE-OI INPUT PARAM")["UV_MAX"] == 1.0e8


def test_prior_image_by_hduname_with_mem_prior(shared_data, tmp_path):
    """BSMEM's mem_prior with RGL_PRIO naming an image HDU: oiflow's MEM against that prior,
    which is copied into the output under its name."""
    from oiflow.image import reconstruct_files

    inp = tmp_path / "in.fits"
    with fits.open(shared_data / MIRC) as h:
        prior = fits.ImageHDU(h["IMAGE-OI INITIAL IMAGE"].data, h["IMAGE-OI INITIAL IMAGE"].header.copy())
        prior.header["HDUNAME"] = prior.header["EXTNAME"] = "MY PRIOR"
        h.append(prior)
        h["IMAGE-OI INPUT PARAM"].header.update(RGL_NAME="mem_prior", RGL_PRIO="MY PRIOR", MAXITER=30)
        h.writeto(inp)
    res = reconstruct_files([inp], tmp_path / "out.fits", plots=False)
    assert res.regularization == "mem"
    with fits.open(tmp_path / "out.fits") as out:
        assert out["IMAGE-OI INPUT PARAM"].header["RGL_PRIO"] == "MY PRIOR" and out["MY PRIOR"].data.shape == (128, 128)
        assert out["IMAGE-OI INPUT PARAM"].header["RGL_NAME"] == "mem"


def test_bsmem_input_from_oimaging_fits_with_what_the_file_says(shared_data, tmp_path):
    """Bin_Ary--MIRC_H_with_img.fits (BSMEM's input: RGL_WGT = 100, MAXITER = 200, V², T3, 8
    channels, its 128² initial image): χ²_red ≤ 2 (measured 0.98)."""
    from oiflow.cli.image_cmds import ci_main

    out = tmp_path / "out.fits"
    rc = ci_main([str(shared_data / MIRC), str(out)])
    h = fits.getheader(out, "IMAGE-OI OUTPUT PARAM")
    assert h["CHISQ"] <= 2.0 and h["CHISQV2"] <= 2.0 and h["CHISQCP"] <= 2.0 and h["CHISQT3A"] <= 2.0
    assert rc == (0 if h["VERDICT"] == "ok" else 1) and h["CONVERGE"] is (h["VERDICT"] == "ok")
    with fits.open(shared_data / MIRC) as inp:  # all its unflagged V² (WAVE_MIN = 0, WAVE_MAX = 1: no limit)
        v2 = inp["OI_VIS2"].data
        usable = int((~v2["FLAG"] & np.isfinite(v2["VIS2DATA"]) & (v2["VIS2ERR"] > 0)).sum())
    assert fits.getdata(out).shape == (128, 128) and h["NV2"] == usable > 0


def test_wisard_input_from_oimaging_fits_with_what_the_file_says(shared_data, tmp_path):
    """2004-FKV1137-L1L2-example.image-oi.fits (WISARD's input: L1L2, AUTO_WGT, MAXITER = 200,
    V², T3 and VIS): χ²_red ≤ 2 from what the file says."""
    from oiflow.image import reconstruct_files

    res = reconstruct_files([shared_data / FKV], tmp_path / "out.fits", plots=False)
    assert res.chi2 <= 2.0 and all(v <= 2.0 for v in res.chi2_terms.values()), res.chi2_terms
    assert res.verdict.status in ("ok", "maxiter")  # the file's MAXITER = 200 may stop it before converging


def test_wisard_input_places_its_initial_image_where_the_data_put_the_object(shared_data, tmp_path):
    """Its initial image is a Dirac with CRPIX = 1, CRVAL = 0: read literally it starts 9 mas
    off, and the absolute phases (USE_VIS = T) then keep χ²_red at 7.4 (MiRA 2.5.1 too, with
    -regul=hyperbolic -mu=1e3). Moved to the VISPHI photocentre, the same settings fit."""
    from oiflow.image import reconstruct_files

    res = reconstruct_files([shared_data / FKV], tmp_path / "out.fits", {"mu": 1e3}, plots=False)
    assert any(m.startswith("initial image 'TriggerHighFrequencies.fits': photocentre moved by (-31, ")
               for m in res.messages)
    assert set(res.chi2_terms) == {"vis2", "t3phi", "t3amp", "visamp", "visphi"}  # USE_VIS = USE_T3 = T
    assert res.chi2 <= 2.0 and res.chi2_terms["visphi"] <= 2.0, res.chi2_terms


def test_a_field_smaller_than_the_fringes_is_said_and_marked(shared_data, tmp_path):
    """oitools' A-CLUSTER sample declares CDELT = 1.2e-9 deg (a 0.35 mas field for 3 mas fringes;
    the numbers look like radians): imaged as declared, said, and marked poor-fit."""
    from oiflow.cli.image_cmds import ci_main

    rc = ci_main([str(shared_data / CLUSTER), str(tmp_path / "out.fits")])  # converges (~150 iterations): poor-fit alone
    h = fits.getheader(tmp_path / "out.fits", "IMAGE-OI OUTPUT PARAM")
    assert rc == 1 and h["VERDICT"] == "poor-fit" and h["CONVERGE"] is False
    assert fits.getheader(tmp_path / "out.fits", "IMAGE-OI INPUT PARAM")["RGL_NAME"] == "mem"  # mem_prior


def test_ci_says_what_it_does_differently(shared_data, tmp_path, capsys):
    from oiflow.cli.image_cmds import ci_main

    ci_main(["-maxiter=5 -mu=1e3", str(shared_data / FKV), str(tmp_path / "out.fits")])
    printed = capsys.readouterr().out
    assert "note: RGL_NAME: regularization 'L1L2' → hyperbolic" in printed and "note: FLUXERR = 0.001" in printed


# -- the names of `oiflow image` ------------------------------------------------------------------

def test_image_help_shows_its_defaults():
    from typer.testing import CliRunner

    from oiflow.cli import app

    text = " ".join(CliRunner().invoke(app, ["image", "--help"], env={"COLUMNS": "200"}).output.split())
    d = ImageTarget()
    for shown in (f"(default {d.npix})", f"(default {d.pixel_size_mas:g})", f"(default {d.regularization})",
                  f"(default {d.mu})", f"(default {d.device})", f"(default {d.maxiter})", f"(default {d.initial})",
                  f"(default {d.restarts})", f"(default {d.use_t3})", f"(default {d.use_vis})",
                  f"(default {d.polychromatic})", "hyperbolic (alias tv: smoothed total variation)"):
        assert shown in text, shown
    assert "x.png and x.residuals.png" in text and "verdict" in text


@pytest.mark.parametrize("name, note, runs", [
    ("tv", "regularization 'tv' → hyperbolic: total variation", "tv (smoothed: hyperbolic, τ = 0.001 × object mean pixel)"),
    ("totvar", "regularization 'totvar' → hyperbolic", "totvar (smoothed: hyperbolic, τ = 0.001 × object mean pixel)"),
    ("l1l2", "regularization 'l1l2' → hyperbolic: WISARD's L1L2", "l1l2 (hyperbolic, τ = 0.001 × object mean pixel)"),
    ("hyperbolic", None, "(hyperbolic, τ = 0.001 × object mean pixel)")])
def test_a_regularisation_alias_is_said_by_name(shared_data, tmp_path, capsys, name, note, runs):
    """The result line and the product (OUTPUT PARAM RGL_DESC) say what ran for the name asked,
    with its threshold τ; RGL_NAME stays the name OImaging knows."""
    from oiflow.cli import main

    main(["image", str(shared_data / "imaging/contests_oifitsjl/contest-2008-binary.oifits"), "--out",
          str(tmp_path / "x.fits"), "--npix", "32", "--pixel-size", "0.45", "--mu", "1e3", "--maxiter", "5",
          "-r", name, "-q"])
    out, err = capsys.readouterr()
    assert note is None or note in " ".join(err.split())
    assert f"μ = 1e+03 {runs if runs.startswith('(') else '(' + runs + ')'};" in out.splitlines()[0]
    params = fits.getheader(tmp_path / "x.fits", "IMAGE-OI OUTPUT PARAM")
    assert params["RGL_NAME"] == "hyperbolic"
    desc = runs[1:-1] if runs.startswith("(") else runs
    assert params["RGL_DESC"] == desc.replace("τ", "tau").replace("×", "x")


def test_oimaging_input_copied_untouched(shared_data, tmp_path):
    """The input file is never modified (the engine reads it, writes another)."""
    from oiflow.cli.image_cmds import ci_main

    inp = tmp_path / "in.fits"
    shutil.copy(shared_data / MIRC, inp)
    before = inp.read_bytes()
    ci_main(["-maxiter=5", str(inp), str(tmp_path / "out.fits")])
    assert inp.read_bytes() == before


def test_ci_option_naming_what_oiflow_cannot_do_is_refused(shared_data, tmp_path, capsys):
    from oiflow.cli.image_cmds import ci_main

    assert ci_main(["-regul=SOFT_SUPPORT", str(shared_data / MIRC), str(tmp_path / "out.fits")]) == 1
    assert "RGL_NAME 'SOFT_SUPPORT' is not supported: WISARD's SOFT_SUPPORT" in capsys.readouterr().err
    assert not (tmp_path / "out.fits").exists()


def test_data_photocentre_from_absolute_phases():
    """A source 1.5 mas East and 0.6 mas South: φ = −2π(u x + v y) on the baselines where it
    is unresolved gives its position back; without VISPHI the position is free (the centre)."""
    from oiflow.image.data import DataGroup, ImagingData, Selection, Term
    from oiflow.image.files import data_photocentre

    rng = np.random.default_rng(3)
    u, v = rng.uniform(-3e7, 3e7, 60), rng.uniform(-3e7, 3e7, 60)
    x0, y0 = 1.5 * MAS, -0.6 * MAS
    phase = np.angle(np.exp(-2j * np.pi * (u * x0 + v * y0)))
    amp = np.exp(-np.hypot(u, v) / 4e7)  # the longer baselines resolve the source
    legs = np.arange(60)[:, None]
    rho = np.hypot(u, v)
    terms = {"visphi": Term(legs, phase, np.full(60, 0.05), rho, np.full(60, 2e-6)),
             "visamp": Term(legs, amp, np.full(60, 0.02), rho, np.full(60, 2e-6))}
    data = ImagingData([DataGroup(2e-6, u, v, terms)], "SIM", Selection(use_vis="all"), {}, {"visphi": 60, "visamp": 60})
    x, y = data_photocentre(data)
    assert x / MAS == pytest.approx(1.5, abs=1e-6) and y / MAS == pytest.approx(-0.6, abs=1e-6)
    del terms["visphi"]
    assert data_photocentre(data) == (0.0, 0.0)
