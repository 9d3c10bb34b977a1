"""The products table (``oiflow run``'s end, ``oiflow products``): points counted as ``oiflow
inspect`` counts them, said in the table; paths folded only at '/'; a result column with the
fitted values; one target-matching rule for the run and ``oiflow products``."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from oiflow.catalog import Catalog, granules_of
from oiflow.oifits import read_oifits
from oiflow.oifits.summary import summarize
from oiflow.product_tree import safe_name, target_key
from oiflow.products_table import COLUMNS, POINTS_NOTE, cells, fold, markdown, print_table, rich_table

REPO = Path(__file__).resolve().parents[1]


def _cli(args: list[str], home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PYTHONPATH=str(REPO), PREFECT_HOME=str(home), COLUMNS="100")
    return subprocess.run([sys.executable, "-m", "oiflow.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


def test_one_rule_for_target_names():
    assert target_key("AX Cir") == target_key("AX_CIR") == target_key("ax cir") == target_key("ax-cir") == "AXCIR"
    assert target_key(safe_name("alf Cen A")) == target_key("alf Cen A")
    assert target_key("HD 1") != target_key("HD 11")


@pytest.mark.parametrize("name", ["AXCir.oifits", "HD142527_2013-06-03_oiDataCalib.fits",
                                  "alfCenA_PIONI.2016-05-31T00_55_19.fits"])
def test_the_catalogue_counts_points_as_inspect_does(shared_data, name):
    oi = read_oifits(shared_data / "oifits/real/pionier" / name)
    counts = summarize(oi)["counts"]
    granules = granules_of(oi, 2)
    for kind, key in (("vis", "nb_vis"), ("vis2", "nb_vis2"), ("t3", "nb_t3")):
        assert sum(g[f"{key}_points"] for g in granules) == counts[kind]["points"]
        assert sum(g[key] for g in granules) == counts[kind]["rows"]


def test_cells_fold_and_markdown(tmp_path):
    root = tmp_path / "products"
    row = {"night": "2013-07-14", "target_name": "AX_CIR", "instrument_mode": "PIONIER_Pnat(1.6135391/1.7698610)",
           "calib_level": 3, "dataproduct_type": "fit", "nb_vis_points": 0, "nb_vis2_points": 900,
           "nb_t3_points": 600, "em_min": 1.6135e-6, "em_max": 1.7699e-6, "verdict": "ok",
           "result": "sep 29.19 ± 0.08 mas, PA 167.68 ± 0.12°, f 0.0087 ± 0.0004",
           "access_url": str(root.resolve() / "L3/AX_CIR/2013-07-14/companion_maps.fits")}
    assert cells(row, root) == ["2013-07-14", "AX_CIR", "PIONIER_Pnat(1.6135391/1.7698610)", "L3 fit", "0/900/600",
                                "1.61–1.77", "ok", row["result"], "L3/AX_CIR/2013-07-14/companion_maps.fits"]
    assert fold("L3/AX_CIR/2013-07-14/companion_maps.fits") == "L3/AX_CIR/2013-07-14/\ncompanion_maps.fits"
    assert fold("a/" + "x" * 40 + ".fits") == "a/\n" + "x" * 40 + ".fits"  # a long name stays whole
    old = {**row, "nb_vis_points": None, "nb_vis2_points": None, "nb_t3_points": None, "result": None}
    assert cells(old, root)[4] == "?/?/?" and cells(old, root)[7] == ""
    md = markdown([row], root)
    assert md.splitlines()[0] == "| " + " | ".join(COLUMNS) + " |"
    assert "| L3 fit | 0/900/600 | 1.61–1.77 | ok | sep 29.19" in md and md.rstrip().endswith(POINTS_NOTE)
    out = io.StringIO()
    print_table(rich_table([row], root), file=out)
    text = out.getvalue()
    assert "companion_maps.fits" in text and "L3/AX_CIR/2013-07-14/" in text and "(1.6135391/1.7698610)" in text
    assert "VIS/VIS2/T3" in text and "rows × channels" in text


def _names_in(text: str) -> set[str]:
    return set(re.findall(r"[\w.()+-]+\.(?:fits|oifits|json)", text))


def test_a_run_and_products_agree_on_targets_points_and_results(tmp_path, shared_data):
    """The run matches the configured "AX Cir" to the file's AX_CIR; `oiflow products` finds it
    as 'AX Cir', 'AX_CIR' and 'ax cir'; both tables count 900 V² and 600 T3 points (inspect's
    numbers) and show the fitted diameter; no file name is cut."""
    src = shared_data / "oifits/real/pionier/AXCir.oifits"
    root, home = tmp_path / "products", tmp_path / "home"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "input": {"files": [str(src)], "files_level": 2}, "output": {"root": str(root)},
        "fit": {"targets": {"AX Cir": {"model": {"name": "ud", "star": {"type": "ud", "diameter": 0.8}},
                                       "observables": ["v2"]}}},
        "cluster": {"profile": "local", "n_workers": 1}}))
    run = _cli(["run", str(config)], home)
    assert run.returncode == 0, run.stdout + run.stderr
    # the file's 13 legacy unit spellings ('sec', 'deg/year': tests/test_unit_spellings.py) are no noise
    assert "spelling" not in run.stderr and "OIFitsWarning" not in run.stderr and "'sec'" not in run.stderr
    fit_json = root / "L3/AX_CIR/2013-07-14/fit_ud.json"
    doc = json.loads(fit_json.read_text())
    d = doc["parameters"]["star.diameter"]
    from oiflow.fit.headline import value_error

    expected = f"UD {value_error(d['value'], d['error'], 'mas')}"
    assert expected in run.stdout and "0/900/600" in run.stdout and POINTS_NOTE.split(",")[0] in run.stdout
    assert {"AXCir.oifits", "fit_ud.json"} <= _names_in(run.stdout)
    with Catalog.for_root(root) as cat:
        rows = cat.products()
    assert {(r["target_name"], r["nb_vis2_points"], r["nb_t3_points"]) for r in rows} == {("AX_CIR", 900, 600)}
    assert [r["result"] for r in rows if r["calib_level"] == 3] == [expected]
    for query in ("AX Cir", "AX_CIR", "ax cir"):
        listed = _cli(["products", "--root", str(root), "--target", query, "--json"], home)
        assert listed.returncode == 0, listed.stderr
        found = json.loads(listed.stdout)
        assert sorted(Path(r["access_url"]).name for r in found) == ["AXCir.oifits", "fit_ud.json"], query
    table = _cli(["products", "--root", str(root), "--target", "ax cir"], home)
    assert table.returncode == 0 and expected in table.stdout and "0/900/600" in table.stdout
    assert {"AXCir.oifits", "fit_ud.json"} <= _names_in(table.stdout)
    assert json.loads(_cli(["products", "--root", str(root), "--target", "AX Ci", "--json"], home).stdout) == []
