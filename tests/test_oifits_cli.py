"""The oiflow command: exit codes, JSON on stdout, inspect counts against MANIFEST, plots,
merge/select/quicklook end to end."""

from __future__ import annotations

import json
import warnings

import pytest

from oifits_corpus import REAL
from oiflow.cli import COMMAND_MODULES, app, main
from oiflow.oifits import read_oifits



def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def corpus(shared_data):
    return shared_data / "oifits"


def test_inspect_json_counts_match_manifest_for_every_real_file(capsys, corpus):
    files = [corpus / e.file for e in REAL]
    code, out, _ = run(capsys, "inspect", "--json", *files)
    assert code == 0
    infos = json.loads(out)
    assert len(infos) == len(REAL)
    for entry, info in zip(REAL, infos):
        assert info["file"].endswith(entry.file)
        for kind, expected in entry.counts.items():
            assert (info["counts"][kind]["points"], info["counts"][kind]["ok"]) == (expected or (0, 0)), (entry.file, kind)


def test_inspect_content(capsys, corpus):
    code, out, _ = run(capsys, "inspect", "--json", corpus / "real/gravity/oLeo_GRAVI.2022-02-28.fits")
    info = json.loads(out)[0]
    assert code == 0
    assert [t["name"] for t in info["targets"]] == ["omi_Leo"]
    ins = {i["insname"]: i for i in info["instruments"]}
    assert ins["GRAVITY_SC"]["nwave"] == 1628 and ins["GRAVITY_FT"]["nwave"] == 6
    assert 1.96 < ins["GRAVITY_SC"]["wave_min_um"] < 1.98 and 2.39 < ins["GRAVITY_SC"]["wave_max_um"] < 2.41
    assert info["nights"] == ["2022-02-27"]  # MJD 59638.19 = 2022-02-28 04:27 UT, night of the 27th
    assert len(info["baselines"]) == 6 and 39 < info["baseline_range_m"][0] < info["baseline_range_m"][1] < 131
    code, text, _ = run(capsys, "inspect", corpus / "real/pionier/AXCir.oifits")
    assert code == 0 and "AX_CIR" in text and "VIS2 900 points (900 ok)" in text


def test_validate_exit_codes_and_json(capsys, corpus):
    clean = corpus / "real/pionier/AXCir.oifits"
    bad = corpus / "malformed/oifitslib_v2_bad_neg_error.fits"
    trunc = corpus / "malformed/oitools_testdata_opt_TRUNC.fits"
    assert run(capsys, "validate", clean)[0] == 0
    code, out, _ = run(capsys, "validate", "--json", clean, bad)
    assert code == 1
    reports = json.loads(out)
    assert [r["verdict"] for r in reports] == ["valid-with-warnings", "non-conformant"]
    assert any(f["rule"] == "GENERIC_COL_VAL_POSITIVE" and f["column"] == "T3PHIERR" for f in reports[1]["findings"])
    code, out, _ = run(capsys, "validate", "--json", clean, bad, trunc)
    assert code == 2 and json.loads(out)[2]["verdict"] == "unreadable"
    code, out, _ = run(capsys, "validate", bad)
    assert code == 1 and "GENERIC_COL_VAL_POSITIVE" in out and "ERROR" in out
    assert run(capsys, "validate", corpus / "does-not-exist.fits")[0] == 2
    assert run(capsys, "validate", "--no-such-option")[0] == 2


def test_every_command_has_help_with_example(capsys):
    names = ["validate", "inspect", "plot", "merge", "select", "quicklook"]
    assert COMMAND_MODULES[0] == "oifits_cmds"
    for name in names:
        code, out, _ = run(capsys, name, "--help")
        assert code == 0 and "Example: oiflow " + name in " ".join(out.split()), name
    assert {c.name for c in app.registered_commands} >= set(names)


def test_plot_writes_pngs(capsys, tmp_path, corpus):
    code, out, _ = run(capsys, "plot", corpus / "real/matisse/FSCMa_2018-12-07_LM_LOW_Chop.fits", "--out", tmp_path)
    assert code == 0
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == [f"FSCMa_2018-12-07_LM_LOW_Chop_{k}.png" for k in ("flux", "t3", "uv", "vis", "vis2")]
    for p in tmp_path.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000


def test_merge_and_select_end_to_end(capsys, tmp_path, corpus):
    a = corpus / "real/pionier/FSCMa_PIONI.2017-10-21.fits"
    b = corpus / "real/matisse/FSCMa_2018-12-07_LM_LOW_Chop.fits"
    merged = tmp_path / "merged.fits"
    code, out, _ = run(capsys, "merge", a, b, "--out", merged)
    assert code == 0 and "1 targets" in out  # HD_45677 and HD45677 are the same star
    code, out, _ = run(capsys, "validate", "--json", merged)
    assert code == 0 and json.loads(out)[0]["errors"] == 0
    sub = tmp_path / "sub.fits"
    code, out, _ = run(capsys, "select", merged, "--out", sub, "--wave-min", "1.6", "--wave-max", "1.7", "--drop-flagged")
    assert code == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        oi = read_oifits(sub)
    waves = [w for t in oi.wavelengths for w in t.eff_wave]
    assert waves and all(1.6e-6 <= w <= 1.7e-6 for w in waves)
    assert {t.insname for t in oi.data_tables} == {"PIONIER_Pnat(1.5208180/1.7653541)"}  # MATISSE L band is gone
    hist = " ".join(str(h) for h in oi.primary_header.get("HISTORY", []))
    assert "oiflow select" in hist and oi.primary_header["HIERARCH OIFLOW STAGE"] == "select"
    code, _, err = run(capsys, "select", merged, "-o", tmp_path / "none.fits", "--target", "Vega")
    assert code == 1 and "no target" in err and not (tmp_path / "none.fits").exists()


def test_quicklook(capsys, tmp_path, corpus):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("real/pionier/alfCenA_PIONI.2016-05-31T00_55_19.fits", "sim/contest-2008-binary.oifits"):
        (src / name.split("/")[-1]).write_bytes((corpus / name).read_bytes())
    out = tmp_path / "ql"
    code, text, _ = run(capsys, "quicklook", src, "--out", out)
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["files"]) == 2 and all(f["errors"] == 0 for f in summary["files"])
    assert (out / "contest-2008-binary" / "validation.json").exists()
    assert len(list((out / "contest-2008-binary").glob("*.png"))) == 3  # uv, V², closure phase


@pytest.mark.parametrize("command", ["validate", "inspect"])
def test_json_out_writes_what_json_prints(capsys, tmp_path, corpus, command):
    f = corpus / "real/pionier/AXCir.oifits"
    out = tmp_path / "r.json"
    code, printed, _ = run(capsys, command, f, "--json", "--json-out", out)
    assert code == 0 and json.loads(out.read_text()) == json.loads(printed)
    assert json.loads(printed)[0]["file"] == str(f)
    code, _, err = run(capsys, command, f, "--json-out", out)
    assert code == 2 and err.strip() == f"error: --json-out {out}: exists (add --force to replace it)"
    assert run(capsys, command, f, "--json-out", out, "--force")[0] == 0
