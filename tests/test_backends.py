"""Reduction backends without a container engine: classification, SOF files, esorex log
summaries, backend/runner selection from the config, and the native backend's in-process path."""

from __future__ import annotations


import pytest
from astropy.io import fits

from oiflow.config import ReduceConfig
from oiflow.errors import ConfigError
from oiflow.reduce.backends import AmdlibBackend, NativeBackend, PndrsBackend, get_backend, select
from oiflow.reduce.backends import native as native_mod
from oiflow.reduce.backends.amdlib import classify_dir, classify_header, summarize_esorex_log, write_sof
from oiflow.reduce.runners import ApptainerRunner, DockerRunner, LocalRunner


def _hdr(catg="", typ="", tech="INTERFEROMETRY", pro=None):
    h = fits.Header()
    h["HIERARCH ESO DPR CATG"] = catg
    h["HIERARCH ESO DPR TYPE"] = typ
    h["HIERARCH ESO DPR TECH"] = tech
    if pro:
        h["HIERARCH ESO PRO CATG"] = pro
    return h


@pytest.mark.parametrize("catg,typ,tech,expected", [
    ("CALIB", "3P2V", "INTERFEROMETRY", "AMBER_3P2V"),
    ("CALIB", "2P2V", "INTERFEROMETRY", "AMBER_2P2V"),
    ("SCIENCE", "OBJECT", "INTERFEROMETRY", "AMBER_SCIENCE"),
    ("CALIB", "OBJECT", "INTERFEROMETRY", "AMBER_CALIB"),
    ("CALIB", "STD", "INTERFEROMETRY", "AMBER_SCIENCE_CALIB"),
    ("CALIB", "DARK", "INTERFEROMETRY", "AMBER_DARK_CALIB"),
    ("CALIB", "SKY", "INTERFEROMETRY", "AMBER_SKY_CALIB"),
    ("CALIB", "BADPIX", "IMAGE", "AMBER_BADPIX"),
    ("CALIB", "FLATFIELD", "IMAGE", "AMBER_FLATFIELD"),
    ("CALIB", "WEIRD", "INTERFEROMETRY", None),
    ("TEST", "OBJECT", "INTERFEROMETRY", "TEST"),
])
def test_classification_follows_the_oca_rules(catg, typ, tech, expected):
    assert classify_header(_hdr(catg, typ, tech)) == expected


def test_products_are_classified_by_pro_catg():
    assert classify_header(_hdr(pro="P2VM_REDUCED")) == "P2VM_REDUCED"
    assert classify_header(_hdr(pro="SCIENCE_REDUCED")) == "SCIENCE_REDUCED"
    assert classify_header(_hdr(pro="CALIB_DATABASE_K")) == "CALIB_DATABASE_K"


def test_classify_dir_and_sof(tmp_path):
    for i, (catg, typ) in enumerate([("CALIB", "3P2V"), ("SCIENCE", "OBJECT")]):
        h = fits.PrimaryHDU(header=_hdr(catg, typ))
        h.header["MJD-OBS"] = 60000.0 + i
        h.header["HIERARCH ESO TPL START"] = f"2024-01-01T0{i}:00:00"
        h.writeto(tmp_path / f"AMBER.{i}.fits")
    files = classify_dir(tmp_path)
    assert [(f.path.name, f.category, f.mjd) for f in files] == [
        ("AMBER.0.fits", "AMBER_3P2V", 60000.0), ("AMBER.1.fits", "AMBER_SCIENCE", 60001.0)]
    sof = write_sof([(f.path, f.category) for f in files], tmp_path / "sof" / "x.sof")
    assert sof.read_text().splitlines() == [f"{tmp_path}/AMBER.0.fits AMBER_3P2V",
                                            f"{tmp_path}/AMBER.1.fits AMBER_SCIENCE"]


def test_esorex_log_summary():
    log = """
[ INFO  ] amber_trf: Start
[ ERROR ] amber_trf: Dumping all 2 error(s):
[ ERROR ] amber_trf:   [1/2] 'Data not found: Can not find number of telescopes from the header!' (10) at x.c:803
[ ERROR ] amber_trf:   [2/2] 'Data not found: Recipe failed' (10) at amber_trf.c:332
[ ERROR ] esorex: Execution of recipe 'amber_trf' failed, status = 10
"""
    s = summarize_esorex_log(log)
    assert "Can not find number of telescopes" in s and "Recipe failed" in s and "esorex" not in s
    info_only = """[ INFO  ] amber_p2vm: Start of DataReduction
[ INFO  ] amber_p2vm: Zeroframes found: 0
[ INFO  ] amber_p2vm: Support Frames needed: AMBER_BADPIX and AMBER_FLAT.
[ ERROR ] esorex: Execution of recipe 'amber_p2vm' failed, status = 2"""
    assert summarize_esorex_log(info_only) == ("amber_p2vm: Zeroframes found: 0; "
                                               "amber_p2vm: Support Frames needed: AMBER_BADPIX and AMBER_FLAT.")


def test_select_backend_and_runner_per_instrument():
    cfg = ReduceConfig(instruments={"AMBER": {"backend": "amdlib", "runner": "docker", "image": "amb:1"},
                                    "PIONIER": {"backend": "pndrs", "runner": "apptainer"}},
                       engine={"docker_url": "unix:///x.sock", "apptainer": "/opt/apptainer"})
    backend, runner, eff = select(cfg, "amber")
    assert isinstance(backend, AmdlibBackend) and isinstance(runner, DockerRunner) and eff.image == "amb:1"
    assert runner._base_url == "unix:///x.sock"
    backend, runner, eff = select(cfg, "PIONIER")
    assert isinstance(backend, PndrsBackend) and isinstance(runner, ApptainerRunner)
    assert runner.executable == "/opt/apptainer"
    backend, runner, eff = select(cfg, "GRAVITY")  # not listed: the defaults
    assert isinstance(backend, NativeBackend) and isinstance(runner, LocalRunner) and eff.image is None
    with pytest.raises(ConfigError):
        get_backend("gravity_pipeline")


def test_requirements_are_declared():
    for name in ("native", "amdlib", "pndrs"):
        req = get_backend(name).requirements()
        assert req.image and req.command and req.produces


def test_pndrs_command_links_the_night_and_cleans_up(tmp_path):
    cmd = PndrsBackend(calibrate=True).command(tmp_path / "2013-08-10")
    assert cmd[:2] == ["sh", "-c"]
    assert 'cd "$OIFLOW_OUTPUT"/2013-08-10 && pndrsReduce -calibrate' in cmd[2]
    assert 'rm -rf "$OIFLOW_OUTPUT"/2013-08-10; exit $rc' in cmd[2]


def test_native_in_process_calls_reduce_night(tmp_path, monkeypatch):
    calls = []

    class FakeResult:  # the contract: ReduceResult(products, failures)
        def __init__(self, products, failures):
            self.products, self.failures = products, failures

    def fake_reduce_night(raw_dir, out_dir, config, execution=None):
        calls.append((raw_dir, out_dir, config, execution))
        return FakeResult([out_dir / "obs1.fits"], [("obs2", "no P2VM")])

    monkeypatch.setattr(native_mod, "_reduce_night", lambda: fake_reduce_night)
    cfg = ReduceConfig()
    res = NativeBackend().reduce_night(tmp_path / "raw", tmp_path / "L1", cfg, LocalRunner())
    assert calls == [((tmp_path / "raw").resolve(), (tmp_path / "L1").resolve(), cfg, {"engine": "in-process"})]
    assert res.products == [(tmp_path / "L1").resolve() / "obs1.fits"]
    assert res.failures == [("obs2", "no P2VM")]
