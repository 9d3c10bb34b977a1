"""Every fit carries a verdict (oiflow.fit.certify): unconstrained parameters (error inf, named),
bounds, minima checked, poor fits; in the JSON, the CLI's last line and exit code, the catalogue.
One smearing rule for `oiflow fit` and `oiflow companion`; one statement of the error bars
(pulls over seeds); damaged fit inputs refused naming file, table, column and rows."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from fit_cases import ARCTURUS_UD_MAS, arcturus_like
from oiflow.catalog import Catalog
from oiflow.cli import main
from oiflow.config import FitTarget
from oiflow.errors import OIFitsError
from oiflow.fit import companion_search, fit_files, fit_model, load_data
from oiflow.fit.certify import POOR_FIT_CHI2_RED, minimum_checks
from oiflow.fit.fitter import Problem
from oiflow.work.fit import fit_unit, run_fit_unit

PIONIER = ("oifits", "real", "pionier")


def alfcen(shared):
    return shared.joinpath(*PIONIER, "alfCenA_PIONI.2016-05-31T00_55_19.fits")


def last_line(capsys) -> str:
    return capsys.readouterr().out.strip().splitlines()[-1]


# -- unconstrained parameters: error = inf, named, exit 1 -------------------------------------------
def test_a_parameter_the_data_do_not_see_is_unconstrained_not_zero(shared_data, tmp_path, capsys):
    """Closure phases alone of a disk smaller than its first null are all 0 whatever its size."""
    f = shared_data / "oifits" / "real" / "matisse" / "94Aqr_2018-07-17_Part1.fits"
    out = tmp_path / "fit.json"
    rc = main(["fit", str(f), "--model", "{star: {type: ud, diameter: 3}}", "--observables", "t3phi",
               "--json-out", str(out)])
    assert rc == 1
    line = last_line(capsys)
    assert line.startswith("verdict: unconstrained") and "star.diameter" in line
    doc = json.loads(out.read_text())
    assert doc["parameters"]["star.diameter"]["error"] is None  # inf: JSON has no infinity
    assert doc["errors"]["star.diameter"]["covariance_raw"] is None
    assert doc["verdict"]["figures"]["unconstrained"] == ["star.diameter"]
    assert doc["success"] is False


def test_degenerate_parameters_are_unconstrained_and_named_together(shared_data):
    res = fit_files([alfcen(shared_data)], {"a": {"type": "ud", "diameter": 8.0, "flux": 1.0},
                                            "b": {"type": "point", "flux": 0.1}}, smearing=False)
    assert res.verdict.status == "unconstrained"
    assert set(res.verdict.figures["unconstrained"]) == {"a.flux", "b.flux"}
    assert math.isinf(res.errors["a.flux"]) and math.isinf(res.errors["b.flux"])
    assert math.isfinite(res.errors["a.diameter"]) and res.errors["a.diameter"] > 0
    assert any("degenerate with" in r for r in res.verdict.reasons)


def test_an_error_larger_than_the_range_the_data_see_is_unconstrained(shared_data):
    """A companion of fixed, negligible flux: its position moves nothing measurable."""
    res = fit_files([alfcen(shared_data)], {"star": {"type": "ud", "diameter": 8.0},
                                            "c": {"type": "point", "flux": {"value": 1e-7, "fixed": True},
                                                  "x": 5.0, "y": 3.0}}, smearing=False)
    assert res.verdict.status == "unconstrained"
    assert {"c.x", "c.y"} <= set(res.verdict.figures["unconstrained"])
    assert math.isinf(res.errors["c.x"]) and not res.success


def test_a_damaged_wavelength_is_refused_naming_file_table_column(shared_data, tmp_path, capsys):
    """EFF_WAVE = 1e4 m made the issue's '3 ± 0 mas, exit 0'; now the input is refused."""
    bad = tmp_path / "alfCenA_EFF_WAVE_1e4.fits"
    with fits.open(alfcen(shared_data)) as h:
        wave = next(x for x in h if x.name == "OI_WAVELENGTH")
        wave.data["EFF_WAVE"][:] = 1e4
        h.writeto(bad)
    rc = main(["fit", str(bad), "--model", "{star: {type: ud, diameter: 3}}"])
    assert rc == 2
    err = capsys.readouterr().err
    assert bad.name in err and "OI_WAVELENGTH" in err and "EFF_WAVE" in err
    with pytest.raises(OIFitsError, match="EFF_WAVE"):
        load_data([bad], ["v2"])


# -- bounds, minima, poor fits --------------------------------------------------------------------
def test_a_parameter_ending_on_its_bound_is_at_bound(tmp_path, capsys):
    res = fit_files([arcturus_like()], {"star": {"type": "ud", "diameter": {"value": 18.0, "min": 15, "max": 19}}})
    assert res.values["star.diameter"] == pytest.approx(19.0)
    assert res.verdict.status == "at-bound" and res.success
    assert any("star.diameter" in r and "upper bound 19" in r for r in res.verdict.reasons)


def test_the_minimum_checks_pass_at_the_minimum_and_fail_beside_it():
    data = load_data([arcturus_like()], ["v2", "t3phi"])
    res = fit_model({"star": {"type": "ud", "diameter": 20.0}}, data)
    prob = Problem(res.model, data, smearing=res.smearing)
    sigma = np.array([res.errors_raw["star.diameter"]])
    interior = np.array([True])
    for p, expected in ((np.array([res.values["star.diameter"]]), []),
                        (np.array([res.values["star.diameter"] + 3 * sigma[0]]), ["gradient", "lower by"])):
        r = prob.residuals(p)
        reasons, figures = minimum_checks(prob, p, prob.jacobian(p), r, float(r @ r), sigma, interior)
        assert [k for k in expected if not any(k in x for x in reasons)] == []
        assert bool(reasons) == bool(expected)
    assert figures["newton_step_sigma"] == pytest.approx(3.0, rel=0.05)  # the Gauss–Newton step back


def test_a_poor_fit_says_so_and_scales_its_errors(shared_data, capsys):
    """α Cen A as a uniform disk: χ²_red ≈ 11.8 (PMOIRED 11.2): the star is limb-darkened."""
    rc = main(["fit", str(alfcen(shared_data)), "--model", "{star: {type: ud, diameter: 8}}"])
    assert rc == 0  # a poor fit is reported, not refused
    line = last_line(capsys)
    assert line.startswith("verdict: poor-fit") and f"> {POOR_FIT_CHI2_RED:g}" in line and "√χ²_red" in line
    res = fit_files([alfcen(shared_data)], {"star": {"type": "ud", "diameter": 8.0}})
    assert res.verdict.figures["chi2_red_threshold"] == POOR_FIT_CHI2_RED
    assert res.errors["star.diameter"] == pytest.approx(res.errors_raw["star.diameter"] * math.sqrt(res.chi2_red))


def test_fit_and_companion_products_carry_their_verdicts_into_the_catalogue(shared_data, tmp_path):
    spec = FitTarget(model={"name": "ud", "star": {"type": "ud", "diameter": 8.0}})
    with Catalog.for_root(tmp_path) as cat:
        unit = fit_unit("Alpha_Cen_A", "2016-05-30", [alfcen(shared_data)], tmp_path, spec, cat)
        res = run_fit_unit(unit)
        assert res.ok, res.failures
        (rec,) = res.products
        cat.register(res.products)
        (row,) = cat.products(level=3)
    assert rec.verdict["status"] == "poor-fit" and rec.verdict["figures"]["chi2_red"] > 10
    assert json.loads(open(rec.path).read())["verdict"] == rec.verdict
    assert row["verdict"] == "poor-fit" and "χ²_red" in row["verdict_detail"]["reasons"][0]
    # the companion search: its own verdict on both of its products
    spec = FitTarget(model={"name": "binary", "star": {"type": "ud", "diameter": 0.8},
                            "c": {"type": "point", "flux": 0.01, "x": 6.2, "y": -28.5}},
                     companion_search=True, companion_rmin_mas=2, companion_rmax_mas=35, companion_step_mas=3.8)
    with Catalog.for_root(tmp_path / "ax") as cat:
        unit = fit_unit("AX_CIR", "2013-07-14", [shared_data.joinpath(*PIONIER, "AXCir.oifits")], tmp_path / "ax",
                        spec, cat)
        res = run_fit_unit(unit)
    assert res.ok, res.failures
    verdicts = {Path(r.path).name: r.verdict["status"] for r in res.products}
    assert verdicts == {"fit_binary.json": "ok", "companion.json": "ok", "companion_maps.fits": "ok"}
    companion = next(r for r in res.products if r.path.endswith("companion.json"))
    assert companion.verdict["figures"]["nsigma"] > 8 and companion.verdict["figures"]["detected"]


# -- one smearing rule ------------------------------------------------------------------------------
def test_fit_and_companion_decide_the_smearing_alike(shared_data, tmp_path, capsys):
    """The issue: 0.00833 from `fit` (smearing off), 0.00873 from `companion` (on)."""
    f = shared_data.joinpath(*PIONIER, "AXCir.oifits")
    assert main(["fit", str(f), "--model", "{star: {type: ud, diameter: 0.8}, c: {type: point, flux: 0.01, "
                 "x: 6.2, y: -28.5}}", "--json-out", str(tmp_path / "fit.json")]) == 0
    fit_text = capsys.readouterr().out
    assert main(["companion", str(f), "--rmin", "2", "--rmax", "35", "--step", "3.78", "--no-detection-limit",
                 "--json-out", str(tmp_path / "cs.json")]) == 0
    cs_text = capsys.readouterr().out
    for text in (fit_text, cs_text):
        assert "bandwidth smearing: on (auto: R = λ/Δλ = 18.1" in text
    fit_doc = json.loads((tmp_path / "fit.json").read_text())
    cs_doc = json.loads((tmp_path / "cs.json").read_text())
    ratio = fit_doc["parameters"]["c.flux"]["value"]
    assert ratio == pytest.approx(cs_doc["flux_ratio"], rel=1e-4) and ratio == pytest.approx(0.00873, abs=5e-5)
    assert fit_doc["smearing"]["on"] and cs_doc["smearing"]["on"] and fit_doc["smearing"]["delta_chi2"] < -1
    assert cs_doc["verdict"]["status"] == "ok" and cs_text.strip().splitlines()[-1] == "verdict: ok"
    # a single star of 8 mas on the same instrument: smearing changes χ² by < 1, off
    res = fit_files([alfcen(shared_data)], {"star": {"type": "ud", "diameter": 8.0}})
    assert not res.smearing and abs(res.smearing_choice.delta_chi2) < 1


# -- one statement of the error bars -------------------------------------------------------------------
def test_the_error_estimates_are_side_by_side_on_the_same_likelihood(tmp_path, capsys):
    """File errors twice too large: χ²_red ≈ 1/4, the headline (scaled) error half the raw one; the
    MCMC samples the headline's likelihood, so its spread matches the headline, not the raw error."""
    oi = arcturus_like(seed=4)
    for t in oi.tables:
        for col in ("VIS2ERR", "T3PHIERR"):
            if col in t.columns:
                t.columns[col] = t.columns[col] * 2
    res = fit_files([oi], {"star": {"type": "ud", "diameter": 20.0}}, bootstrap=40,
                    mcmc={"nsteps": 300, "nwalkers": 16}, seed=3)
    assert res.chi2_red == pytest.approx(0.25, rel=0.3)
    head, raw = res.errors["star.diameter"], res.errors_raw["star.diameter"]
    assert head == pytest.approx(raw * math.sqrt(res.chi2_red))
    assert 0.7 < res.mcmc["star.diameter"]["std"] / head < 1.4
    assert res.mcmc["star.diameter"]["error_scale"] == pytest.approx(math.sqrt(res.chi2_red))
    doc = res.to_dict()
    row = doc["errors"]["star.diameter"]
    assert set(row) == {"covariance_raw", "covariance_scaled", "bootstrap", "mcmc"}
    assert row["covariance_scaled"] == doc["parameters"]["star.diameter"]["error"]
    assert "sqrt(chi2_red)" in doc["error_rule"] and doc["error_scale"] == pytest.approx(math.sqrt(res.chi2_red))
    assert "bootstrap" in res.summary() and "mcmc" in res.summary()


@pytest.mark.parametrize("factor", [0.5, 1.0, 2.0])
def test_headline_errors_have_unit_pulls_whatever_the_files_error_scale(factor):
    """40 noise realisations of the Arcturus-like set, its error bars multiplied by ``factor`` after
    the noise was drawn: (fit − truth)/error has unit variance with the headline errors; the raw
    ones are off by the factor. With 40 samples the std of the pulls is known to ±0.11; we accept
    [0.75, 1.3] (the headline's √χ²_red is itself estimated from 226 points)."""
    pulls, raw_pulls = [], []
    for seed in range(40):
        oi = arcturus_like(seed=100 + seed)
        for t in oi.tables:
            for col in ("VIS2ERR", "T3PHIERR"):
                if col in t.columns:
                    t.columns[col] = t.columns[col] * factor
        res = fit_model({"star": {"type": "ud", "diameter": 20.0}}, load_data([oi], ["v2", "t3phi"]))
        pulls.append((res.values["star.diameter"] - ARCTURUS_UD_MAS) / res.errors["star.diameter"])
        raw_pulls.append((res.values["star.diameter"] - ARCTURUS_UD_MAS) / res.errors_raw["star.diameter"])
    assert 0.75 < np.std(pulls, ddof=1) < 1.3, np.std(pulls, ddof=1)
    assert abs(np.mean(pulls)) < 0.5
    assert np.std(raw_pulls, ddof=1) == pytest.approx(1 / factor, rel=0.3)


def test_a_search_without_detection_has_the_single_stars_verdict(shared_data, capsys):
    f = shared_data.joinpath(*PIONIER, "alfCenA_20160523_1.fits")
    assert main(["companion", str(f), "--no-detection-limit"]) == 0
    line = last_line(capsys)
    assert line.startswith("verdict: ok") and "no companion detected" in line
    res = companion_search([f], detection_limit=False)
    assert res.nsigma < 3 and not res.verdict.figures["detected"]
    assert res.verdict.figures["chi2_red"] == pytest.approx(res.chi2r_single * res.n_data / (res.n_data - 1))
