"""The verdict of an image: the rule (oiflow.image.verdict), the product (IMAGE-OI OUTPUT PARAM),
the commands' last line and exit code (`oiflow image`, `oiflow-image-ci`) on the failures found
by trying them as a new user would (a runaway weight returned a flat image with CONVERGE = T and
exit 0)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from astropy.io import fits

from oiflow.config import ImageTarget
from oiflow.image.verdict import POOR_FIT_CHI2, chi2_threshold, image_verdict

REPO = Path(__file__).resolve().parents[1]
#: the engine command as OImaging runs it (the console script; the same entry point without it)
_SCRIPT = Path(sys.executable).with_name("oiflow-image-ci")
CI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-c", "from oiflow.cli.image_cmds import ci_entry; ci_entry()"]


def _result(chi2_terms, used, converged=True, message="relative reduction of the objective below ftol (3 iterations)",
            maxiter=500):
    n = sum(used.values())
    chi2 = sum(chi2_terms[t] * used[t] for t in used) / n
    return SimpleNamespace(chi2_terms=chi2_terms, used=used, ndata=n, chi2=chi2, mu=1e3, regularization="hyperbolic",
                           niter=120, converged=converged, message=message, settings=ImageTarget(maxiter=maxiter),
                           mu_rule=None, messages=[])


def test_poor_fit_threshold_is_three_with_a_five_sigma_margin_for_few_points():
    assert chi2_threshold(13) == POOR_FIT_CHI2 == 3.0 and chi2_threshold(10_000) == 3.0
    assert chi2_threshold(4) == pytest.approx(1 + 5 * math.sqrt(2 / 4))  # 4.54: five σ of χ²_red for 4 points
    assert chi2_threshold(1) == pytest.approx(1 + 5 * math.sqrt(2))


def test_verdict_rule():
    ok = image_verdict(_result({"vis2": 1.1, "t3phi": 0.9}, {"vis2": 100, "t3phi": 80}))
    assert ok.status == "ok" and ok.reasons == () and ok.figures["chi2_vis2"] == 1.1 and ok.figures["n_t3phi"] == 80
    # one observable above the threshold is enough, even when the total is below it
    poor = image_verdict(_result({"vis2": 1.0, "t3phi": 3.5}, {"vis2": 300, "t3phi": 50}))
    assert poor.status == "poor-fit" and poor.reasons == ("χ²_red 3.5 > 3 for T3 phase (50 points)",)
    # few points: the 5σ margin (4.54 for 4 points) keeps 4 points at χ²_red 4 a fit
    assert image_verdict(_result({"vis2": 1.0, "t3phi": 4.0}, {"vis2": 300, "t3phi": 4})).status == "ok"
    stopped = image_verdict(_result({"vis2": 1.0}, {"vis2": 100}, converged=False,
                                    message="maximum number of iterations reached", maxiter=50))
    assert stopped.status == "maxiter" and stopped.reasons == ("stopped at MAXITER = 50 before converging",)
    stuck = image_verdict(_result({"vis2": 1.0}, {"vis2": 100}, converged=False,
                                  message="line search could not decrease the objective"))
    assert stuck.status == "not-at-minimum"
    # several apply: the worst status, every reason
    both = image_verdict(_result({"vis2": 40.0}, {"vis2": 100}, converged=False,
                                 message="maximum number of iterations reached"))
    assert both.status == "maxiter" and len(both.reasons) == 3  # all data, V², MAXITER
    broken = image_verdict(_result({"vis2": float("inf")}, {"vis2": 100}))
    assert broken.status == "failed"


def _outparams(path):
    return fits.getheader(path, "IMAGE-OI OUTPUT PARAM")


def _assert_consistent(rc: int, last_line: str, out: Path):
    """The product, the last line and the exit code say the same, and CONVERGE = T only for an
    image whose every observable fits."""
    h = _outparams(out)
    status = h["VERDICT"]
    assert last_line.startswith(f"verdict: {status}")
    assert h["CONVERGE"] is (status == "ok") and rc == (0 if status == "ok" else 1)
    fits_each = all(h[k] <= h["CHISQMAX"] for k in ("CHISQ", "CHISQV2", "CHISQCP") if k in h)
    assert status != "ok" or fits_each
    return h


def test_oiflow_image_on_the_contest_binary_as_a_new_user_runs_it(tmp_path):
    """`oiflow image data-samples/oifits/contest-2008-binary.oifits --out x.fits`: with the
    runaway automatic weight it gave χ²_red 10310 with CONVERGE = T and exit 0."""
    out = tmp_path / "x.fits"
    p = subprocess.run([sys.executable, "-m", "oiflow.cli", "image", "data-samples/oifits/contest-2008-binary.oifits",
                        "--out", str(out), "-q"], cwd=REPO, capture_output=True, text=True, timeout=600)
    h = _assert_consistent(p.returncode, p.stdout.strip().splitlines()[-1], out)
    if h["CHISQ"] > 3:  # a poor fit is never called converged
        assert h["VERDICT"] == "poor-fit" and p.returncode == 1 and "for all data" in p.stdout
    assert (tmp_path / "x.png").is_file() and (tmp_path / "x.residuals.png").is_file()


def test_a_runaway_weight_gives_a_marked_poor_fit_and_exit_1(tmp_path):
    """μ = 1e12 makes the image flat: the file is written and marked, the exit status is 1."""
    from oiflow.cli import main

    out = tmp_path / "flat.fits"
    rc = main(["image", str(REPO / "data-samples/oifits/contest-2008-binary.oifits"), "--out", str(out),
               "--npix", "64", "--pixel-size", "0.3", "--mu", "1e12", "-q"])
    h = _outparams(out)
    assert rc == 1 and h["VERDICT"] == "poor-fit" and h["CONVERGE"] is False and h["OPTCONV"] is True
    assert h["CHISQ"] > 100 and "chi2_red" in h["VERDMSG"] and "for T3 phase" in h["VERDMSG"]
    assert h["CHISQCP"] > h["CHISQMAX"] == 3.0 and h["NCP"] == 800 and h["NV2"] == 600


def test_oiflow_image_ci_on_oimagings_example_as_a_new_user_runs_it(shared_data, tmp_path):
    """`oiflow-image-ci 2004-FKV1137-L1L2-example.image-oi.fits out.fits`: χ²_red 1972 came back
    with CONVERGE = T and exit 0."""
    out = tmp_path / "out.fits"
    p = subprocess.run([*CI, str(shared_data / "imaging/oimaging/2004-FKV1137-L1L2-example.image-oi.fits"),
                        str(out)], capture_output=True, text=True, timeout=600)
    h = _assert_consistent(p.returncode, p.stdout.strip().splitlines()[-1], out)
    if h["CHISQ"] > 3:
        assert h["VERDICT"] == "poor-fit" and p.returncode == 1
    assert "note: RGL_NAME: regularization 'L1L2' → hyperbolic" in p.stdout


def test_maxiter_says_how_the_fit_was_still_moving():
    """A maxiter verdict tells whether more iterations would have helped: χ²_red over the last
    50 iterations (the OITOOLS.jl spotted disk: still falling, 151 → 143, at MAXITER = 1000)."""
    r = _result({"vis2": 5.05}, {"vis2": 100}, converged=False, message="maximum number of iterations reached",
                maxiter=300)
    r.history = [{"chi2_red": 9.0 - 0.05 * k} for k in range(80)]
    v = image_verdict(r)
    assert v.status == "maxiter"
    assert ("stopped at MAXITER = 300 before converging (χ²_red still falling: 7.55 → 5.05 over the last 50 "
            "iterations)") in v.reasons
    r.history = [{"chi2_red": 5.05}] * 20
    assert "(χ²_red not falling: 5.05 → 5.05 over the last 19 iterations)" in image_verdict(r).reasons[-1]
