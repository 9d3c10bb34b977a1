"""The ``oiflow simulate night`` / ``reduce`` / ``calibrate`` commands."""

import json

import yaml

from oiflow.cli import main
from oiflow.oifits import read_oifits

from night_factory import night_config


def _small_config(tmp_path):
    cfg = night_config(seed=2, order=["HD_CAL_A", "SCI_BINARY", "HD_CAL_B"], n_frames=12, n_channels=3,
                       n_calib_frames=12)
    path = tmp_path / "night.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return path


def test_simulate_reduce_calibrate_commands(tmp_path, capsys):
    cfg = _small_config(tmp_path)
    raw, l1, l2, cat = tmp_path / "raw", tmp_path / "L1", tmp_path / "L2", tmp_path / "cal.csv"
    assert main(["simulate", "night", str(cfg), "--out", str(raw), "--catalogue", str(cat)]) == 0
    assert (raw / "truth.json").is_file() and "HD_CAL_B" in cat.read_text()
    capsys.readouterr()
    assert main(["reduce", str(raw), "--plan"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["night"] == "2023-03-15" and len(plan["observations"]) == 3
    assert main(["reduce", str(raw), "--out", str(l1), "--nboot", "10"]) == 0
    assert len(list(l1.glob("*.fits"))) == 3
    oi = read_oifits(next(l1.glob("*SCI_BINARY.fits")))
    assert '"nboot":10' in "".join(str(h) for h in oi.primary_header["HISTORY"])
    assert main(["calibrate", str(l1), "--out", str(l2), "--diameters", str(cat), "--mode", "linear"]) == 0
    assert sorted(p.name for p in l2.iterdir()) == ["SCI_BINARY_2023-03-15.fits", "tf_SIMABCD_H-3CH.png"]
    assert read_oifits(l2 / "SCI_BINARY_2023-03-15.fits").primary_header["HIERARCH OIFLOW TFMODE"] == "linear"


def test_commands_report_failures_with_exit_code_1(tmp_path, capsys):
    cfg = _small_config(tmp_path)
    raw = tmp_path / "raw"
    assert main(["simulate", "night", str(cfg), "--out", str(raw)]) == 0
    (raw / "SIMABCD_H-3CH_DARK.fits").unlink()
    assert main(["reduce", str(raw), "--out", str(tmp_path / "L1")]) == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "missing calibration files" in err and "DARK" in err
    assert main(["calibrate", str(tmp_path / "empty"), "--out", str(tmp_path / "L2")]) == 2  # no input: usage error
    assert main(["simulate", "night", str(tmp_path / "nope.yaml"), "--out", str(raw)]) == 2


def test_reduce_an_empty_directory_is_a_usage_error(tmp_path, capsys):
    """A directory without raw FITS files is refused at once (exit 2), as every wrong input path."""
    (tmp_path / "night").mkdir()
    (tmp_path / "night" / "notes.txt").write_text("no raw files here")
    assert main(["reduce", str(tmp_path / "night"), "--out", str(tmp_path / "L1")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'night'}: no raw FITS files (*.fits, *.fits.gz) in it"
    assert not (tmp_path / "L1").exists()
