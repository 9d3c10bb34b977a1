"""Backends in their images through a real Docker-API engine: the REAL esorex AMBER recipes
(failures: missing calibration, wrong file category) and the pndrs contract with the stand-in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from oiflow.config import ReduceConfig
from oiflow.fit.analytic import uniform_disk
from oiflow.oifits import read_oifits
from oiflow.oifits.write import to_hdulist
from oiflow.provenance import Provenance, sha256_file
from oiflow.reduce.backends import AmdlibBackend, PndrsBackend
from oiflow.reduce.backends.amdlib import RecipeError, write_sof
from oiflow.reduce.backends.base import BackendResult
from oiflow.simulate.synthetic import synthetic_oifits
from oiflow.units import MAS

pytestmark = pytest.mark.container


def _amber_header(catg, typ, mjd):
    h = fits.Header()
    h["INSTRUME"] = "AMBER"
    h["MJD-OBS"] = mjd
    h["HIERARCH ESO DPR CATG"] = catg
    h["HIERARCH ESO DPR TYPE"] = typ
    h["HIERARCH ESO DPR TECH"] = "INTERFEROMETRY"
    return h


def _hashes(d: Path) -> dict:
    return {p.name: sha256_file(p) for p in sorted(d.iterdir())}


def test_amdlib_missing_calibration_is_reported_by_the_real_recipe(docker_runner, amber_image, tmp_path):
    night = tmp_path / "night"
    night.mkdir()
    files = [("CALIB", "3P2V"), ("CALIB", "3P2V"), ("SCIENCE", "OBJECT"), ("CALIB", "NOT-AN-AMBER-TYPE")]
    for i, (catg, typ) in enumerate(files):
        fits.PrimaryHDU(header=_amber_header(catg, typ, 60000 + 0.01 * i)).writeto(night / f"AMBER.{i}.fits")
    before = _hashes(night)
    out = tmp_path / "L1"
    res = AmdlibBackend().reduce_night(night, out, ReduceConfig(image=amber_image), docker_runner)
    assert res.products == []
    reasons = dict(res.failures)
    p2vm = reasons["P2VM set p2vm_1 (AMBER.0.fits…)"]
    # the reason is amber_p2vm's own message, and the log is named and kept
    assert p2vm.startswith("amber_p2vm failed (exit status 2)")
    assert "Support Frames needed: AMBER_BADPIX and AMBER_FLAT" in p2vm
    log = out / "amdlib" / "p2vm_1.log"
    assert f"[log: {log}]" in p2vm and "ESO Recipe Execution Tool" in log.read_text()
    assert reasons["AMBER.2.fits"].startswith("no P2VM_REDUCED available")
    assert "no AMBER DO category" in reasons["AMBER.3.fits"]
    assert (out / "amdlib" / "sof" / "p2vm_1.sof").read_text().split() == [
        str(night / "AMBER.0.fits"), "AMBER_3P2V", str(night / "AMBER.1.fits"), "AMBER_3P2V"]
    assert not (out / "amdlib" / "p2vm_1").exists()  # failed recipe: nothing half-written
    assert _hashes(night) == before


@pytest.mark.parametrize("recipe,tag,expected", [
    ("amber_calibrate", "CALIB_REDUCED", "No file tagged SCIENCE_REDUCED or SCIENCE_REDUCED_FILTERED found in the SOF"),
    ("amber_trf", "SCIENCE_REDUCED", "No file tagged CALIB_REDUCED or CALIB_REDUCED_FILTERED found in the SOF"),
])
def test_amdlib_wrong_file_category_is_reported_by_the_real_recipe(docker_runner, amber_image, tmp_path,
                                                                   recipe, tag, expected):
    data = tmp_path / "data"
    data.mkdir()
    f = data / "product.fits"
    fits.PrimaryHDU(header=_amber_header("SCIENCE", "OBJECT", 60000.0)).writeto(f)
    sof = write_sof([(f, tag)], tmp_path / "sof" / f"{recipe}.sof")
    result = BackendResult()
    with pytest.raises(RecipeError) as err:
        AmdlibBackend().run_recipe(docker_runner, ReduceConfig(image=amber_image), recipe, sof, [data],
                                   tmp_path / "work" / recipe, result)
    assert err.value.recipe == recipe
    assert str(err.value).startswith(f"{recipe} failed (exit status")
    assert expected in str(err.value)
    assert err.value.log_path.exists() and expected in err.value.log_path.read_text()
    assert not (tmp_path / "work" / recipe).exists()


def _fake_pionier_night(night: Path, n: int, fail: set[int] = frozenset()) -> None:
    """Raw-looking PIONIER files for the STAND-IN: each carries OI tables to be copied."""
    night.mkdir(parents=True)
    xyz = np.array([[0.0, 0.0, 0.0], [30.0, 10.0, 0.0], [10.0, 40.0, 0.0], [-20.0, 25.0, 0.0]])
    for i in range(n):
        diam = (1.0 + 0.2 * i) * MAS
        oi = synthetic_oifits(lambda u, v, wave, d=diam: uniform_disk(u, v, d), u=None, v=None,
                              wavelength=np.linspace(1.5e-6, 1.8e-6, 6), station_xyz=xyz, seed=i,
                              insname="PIONIER", arrname="VLTI", target=f"HD{i}")
        hdul = to_hdulist(oi)
        hdul[0].header["INSTRUME"] = "PIONIER"
        if i in fail:
            hdul[0].header["HIERARCH OIFLOW STANDIN FAIL"] = True
        hdul.writeto(night / f"PIONI.2013-08-10T0{i}:00:00.000.fits")


def test_pndrs_contract_with_the_standin(docker_runner, pndrs_standin_image, tmp_path):
    night = tmp_path / "2013-08-10"
    _fake_pionier_night(night, 3)
    before = _hashes(night)
    out = tmp_path / "L1"
    res = PndrsBackend(calibrate=True).reduce_night(night, out, ReduceConfig(image=pndrs_standin_image), docker_runner)
    assert res.failures == []
    assert [p.name for p in res.products] == [f"PIONI.2013-08-10T0{i}:00:00.000_oidata.fits" for i in range(3)]
    for i, p in enumerate(res.products):
        assert p.parent == out.resolve()
        oi = read_oifits(p)
        raw = read_oifits(night / f"PIONI.2013-08-10T0{i}:00:00.000.fits")
        np.testing.assert_array_equal(oi.vis2[0].columns["VIS2DATA"], raw.vis2[0].columns["VIS2DATA"])
        hdr = fits.getheader(p)
        assert hdr["HIERARCH PNDRS STANDIN"] is True and hdr["PROCSOFT"].startswith("oiflow")
        prov = Provenance.from_header(hdr)
        assert prov.stage == "reduce" and prov.inputs[0].sha256 == before[f"PIONI.2013-08-10T0{i}:00:00.000.fits"]
        assert hdr["HIERARCH OIFLOW ENGINE"] == "docker"
    assert len(res.calibrated) == 3 and all("oidataCalibrated" in p.name for p in res.calibrated)
    log = (out / "pndrs.log").read_text()
    assert "pndrs STAND-IN" in log and "this is not pndrs" in log
    assert not (out / "pndrs" / "2013-08-10").exists()  # the link directory is removed
    assert _hashes(night) == before  # inputs untouched (read-only mount)


def test_pndrs_failure_names_the_night_and_log(docker_runner, pndrs_standin_image, tmp_path):
    night = tmp_path / "2013-08-11"
    _fake_pionier_night(night, 2, fail={1})
    out = tmp_path / "L1"
    res = PndrsBackend().reduce_night(night, out, ReduceConfig(image=pndrs_standin_image), docker_runner)
    assert res.products == []
    ((item, reason),) = res.failures
    assert item == "2013-08-11"
    assert reason.startswith("pndrsReduce failed (exit status 1)")
    assert "ERROR while reducing PIONI.2013-08-10T01:00:00.000.fits" in reason
    assert f"[log: {out.resolve() / 'pndrs.log'}]" in reason
    assert not (out / "pndrs").exists()  # nothing half-written


def test_amber_p2vm_recovers_the_simulated_instrument(docker_runner, amber_image, tmp_path):
    """The real amber_p2vm reads the 10 simulated files (amdlib's raw format) and its P2VM holds the
    simulated instrument: wavelengths, the beams' profile in the interferometric channel (VK), and
    carrier waves whose phase is the instrumental phase of each pair, the second carrier (from the
    quarter-wave "Q" files) shifted by quadrature_sign × 90°."""
    from oiflow.reduce.backends.amdlib import classify_dir
    from oiflow.simulate.amber_raw import PAIRS, AmberSetup, _envelope, _x, write_p2vm_set, write_static_calibrations

    night = tmp_path / "night"
    night.mkdir()
    setup = AmberSetup()
    write_p2vm_set(night, setup, nframes=20)
    write_static_calibrations(night)
    files = classify_dir(night)
    sof = write_sof([(f.path, f.category) for f in files], tmp_path / "sof" / "p2vm.sof")
    result = BackendResult()
    prods = AmdlibBackend().run_recipe(docker_runner, ReduceConfig(image=amber_image), "amber_p2vm", sof, [night],
                                       tmp_path / "work" / "p2vm", result)
    ((p2vm, catg),) = prods
    assert catg == "P2VM_REDUCED"
    with fits.open(p2vm) as hdul:
        table = hdul["P2VM"]
        assert table.header["NAXIS2"] == 1 and table.header["STARTPIX"] == setup.first_row
        row = table.data[0]
        np.testing.assert_allclose(row["EFF_WAVE"], setup.channel_wavelengths_nm() * 1e-9, rtol=1e-6)
        vk, matrix = row["VK"], row["MATRIX"]  # (3, nwave, nx), (nwave, nx, 6: c12 c23 c31 d12 d23 d31)
        np.testing.assert_allclose(np.abs(row["CALIB_PHASE"]), 90.0, atol=1.5)
    env, x = _envelope(setup), _x(setup)
    core = env > 0.25 * env.max()  # where the beams carry light (the edges are noise-dominated)
    np.testing.assert_allclose((vk / env)[:, :, core], 1.0, atol=0.03)
    for b, pair in enumerate(PAIRS):
        for c in range(0, setup.nwave, 7):
            f = setup.frequency(pair)[c]
            design = np.column_stack([env * np.cos(2 * np.pi * f * x), env * np.sin(2 * np.pi * f * x)])
            (ac, bc), (ad, bd) = (np.linalg.lstsq(design, matrix[c, :, k], rcond=None)[0] for k in (b, b + 3))
            phase_c, phase_d = np.degrees(np.arctan2(-bc, ac)), np.degrees(np.arctan2(-bd, ad))
            assert abs((phase_c - np.degrees(setup.instrument_phase[pair]) + 180) % 360 - 180) < 1.0
            assert abs((phase_d - phase_c - setup.quadrature_sign * 90 + 180) % 360 - 180) < 1.5
    log = result.logs[0].read_text()
    assert "P2VM produced" in log and "Loading P2VM file" in log
