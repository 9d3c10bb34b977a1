"""``oiflow fit`` and ``oiflow companion`` from the command line: outputs and exit codes."""

import json

import numpy as np
import pytest
from astropy.io import fits

from oiflow.cli import main


def test_fit_command_writes_the_json_of_the_issue(shared_data, tmp_path, capsys):
    f = shared_data / "oifits" / "real" / "pionier" / "AXCir.oifits"
    model = tmp_path / "binary.yaml"
    model.write_text("star: {type: ud, diameter: 0.8}\ncomp: {type: point, x: 6.2, y: -28.5, flux: 0.01}\n")
    out = tmp_path / "res.json"
    plots = tmp_path / "plots"
    rc = main(["fit", str(f), "--model", str(model), "--observables", "v2,t3phi", "--json-out", str(out),
               "--out", str(plots)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "chi2_red" in text and "star.diameter" in text
    doc = json.loads(out.read_text())
    assert {"model", "parameters", "chi2_red", "n_data", "correlation", "derived"} <= set(doc)
    assert set(doc["parameters"]) == {"star.diameter", "comp.flux", "comp.x", "comp.y"}
    for p in doc["parameters"].values():
        assert set(p) == {"value", "error", "unit"}
    assert doc["parameters"]["comp.x"]["unit"] == "mas"
    assert doc["n_data"] == 1500
    d = doc["derived"]
    assert d["position_angle_deg"] == np.degrees(np.arctan2(doc["parameters"]["comp.x"]["value"],
                                                            doc["parameters"]["comp.y"]["value"])) % 360
    assert d["flux_ratio"] == doc["parameters"]["comp.flux"]["value"]
    assert "sqrt(chi2_red)" in doc["error_rule"] and doc["error_scale"] == pytest.approx(doc["chi2_red"] ** 0.5)
    assert doc["verdict"]["status"] == "ok" and text.strip().splitlines()[-1] == "verdict: ok"
    assert "bandwidth smearing: on (auto" in text  # a 29 mas binary with R ≈ 18 channels
    product = json.loads((plots / "fit_binary.json").read_text())
    assert product["provenance"]["calib_level"] == 3 and product["provenance"]["inputs"][0]["name"] == "AXCir.oifits"
    assert (plots / "fit_binary_v2.png").stat().st_size > 10000
    assert (plots / "fit_binary_t3phi.png").stat().st_size > 10000


def test_fit_command_errors_map_to_exit_codes(shared_data, tmp_path, capsys):
    f = shared_data / "oifits" / "real" / "midi" / "NGC5128_MIDI_2005.oifits"
    assert main(["fit", str(f), "--model", "{s: {type: ud, diameter: 5}}", "--observables", "v2"]) == 1
    assert "OI_VIS2" in capsys.readouterr().err
    assert main(["fit", str(f), "--model", "{s: {type: blob}}"]) == 2
    assert "unknown type" in capsys.readouterr().err


def test_companion_command_writes_maps(shared_data, tmp_path, capsys):
    f = shared_data / "imaging" / "contests_oifitsjl" / "contest-2008-binary.oifits"
    out = tmp_path / "cs"
    rc = main(["companion", str(f), "--rmin", "2", "--rmax", "8", "--step", "1.5", "--out", str(out),
               "--json-out", str(tmp_path / "c.json")])
    assert rc == 0
    doc = json.loads((tmp_path / "c.json").read_text())
    assert doc["position_angle_deg"] == pytest.approx(30.0, abs=0.2)
    assert doc["separation_mas"] == pytest.approx(5.0, abs=0.02)
    with fits.open(out / "companion_maps.fits") as h:
        assert [x.name for x in h[1:]] == ["CHI2R", "NSIGMA", "DETLIM"]
        assert h["CHI2R"].header["CDELT1"] < 0 and h[0].header["PROCSOFT"].startswith("oiflow")
        img = h["CHI2R"].data
        n = img.shape[1]
        # the minimum of the map lies at PA ≈ 30° (East left: x_east = −(ix − n//2)·step)
        iy, ix = np.unravel_index(np.nanargmin(img), img.shape)
        x, y = -(ix - n // 2) * 1.5, (iy - n // 2) * 1.5
        assert 0 < x and 0 < y
    assert (out / "companion_chi2.png").is_file() and (out / "companion_detection_limit.png").is_file()


def test_the_readme_bootstrap_example_runs(capsys):
    """The README's `--bootstrap 100 --mcmc` line, as written, on the file it names (a bootstrap by
    observation needs ≥ 3 observations: the α Cen A files of data-samples have 1 and 2)."""
    import shlex
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    line = next(t.strip() for t in (repo / "README.md").read_text().splitlines()
                if t.strip().startswith("oiflow fit") and "--bootstrap" in t)
    words = shlex.split(line)[1:]
    words = [str(repo / w) if w.startswith("data-samples/") else w for w in words]
    assert main(words) == 0
    out = capsys.readouterr().out
    assert "columns: raw covariance, bootstrap, mcmc" in out and out.strip().splitlines()[-1].startswith("verdict: ok")


def test_json_prints_the_result_and_the_text_goes_to_stderr(shared_data, capsys):
    f = shared_data / "oifits" / "real" / "pionier" / "AXCir.oifits"
    assert main(["fit", str(f), "--model", "{star: {type: ud, diameter: 1}}", "--observables", "v2", "--json"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["verdict"]["status"] == "ok" and doc["n_data"] == 900
    assert 0.9 < doc["parameters"]["star.diameter"]["value"] < 0.96
    assert err.strip().splitlines()[-1] == "verdict: ok"
