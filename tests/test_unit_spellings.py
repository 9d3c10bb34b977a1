"""PIONIER files from pndrs spell units 'sec', 'year' and 'deg/year': legal legacy spellings of
a whole instrument's archive. `oiflow validate` reports them; reading them (read_oifits,
inspect, fit, image) says nothing about them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from oiflow.oifits import read_oifits, validate

REPO = Path(__file__).resolve().parents[1]
PIONIER = sorted((REPO / "tests/data/oifits/real/pionier").iterdir())


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "oiflow.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def _spellings(path: Path) -> set[tuple[str, str]]:
    """(column, unit) of the unit-spelling findings of ``path``'s validation report."""
    rep = validate(path)
    out = set()
    for f in rep.findings:
        if f.rule == "GENERIC_COL_UNIT" and "non-standard spelling" in f.message:
            assert f.severity.value == "warning", f
            out.add((f.column, f.message.split("'")[1]))
    return out


@pytest.mark.parametrize("path", PIONIER, ids=[p.name for p in PIONIER])
def test_validate_reports_the_spellings_and_reading_is_silent(path):
    spellings = _spellings(path)
    assert {("INT_TIME", "sec"), ("PMRA", "deg/year")} <= spellings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_oifits(path)
    assert [str(w.message) for w in caught] == []


def test_inspect_fit_and_image_print_nothing_about_them(tmp_path):
    for path in PIONIER:
        proc = _cli("inspect", str(path))
        assert proc.returncode == 0 and proc.stderr == "", (path.name, proc.stderr)
    src = REPO / "tests/data/oifits/real/pionier/HD142527_2013-06-03_oiDataCalib.fits"
    fit = _cli("fit", str(src), "--model", "{star: {type: ud, diameter: 1.0}}", "--observables", "v2",
               "--json-out", str(tmp_path / "fit.json"))
    assert fit.returncode == 0 and fit.stderr == "", fit.stderr
    assert json.loads((tmp_path / "fit.json").read_text())["parameters"]["star.diameter"]["value"] > 0
    image = _cli("image", str(src), "--out", str(tmp_path / "img.fits"), "--npix", "32", "--pixel-size", "0.5",
                 "--maxiter", "20", "-q")
    assert image.returncode in (0, 1) and (tmp_path / "img.fits").is_file(), image.stderr
    assert "spelling" not in image.stderr and "'sec'" not in image.stderr and "Warning" not in image.stderr, image.stderr
    report = _cli("validate", str(src))
    assert "INT_TIME unit 'sec' is a non-standard spelling of 's'" in report.stdout
