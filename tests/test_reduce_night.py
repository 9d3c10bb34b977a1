"""The native reducer on simulated nights: truth recovery (pulls), planning, provenance, and
bad input (missing calibrations, corrupt files)."""

import json

import numpy as np
import pytest
from astropy.io import fits

from oiflow.config import ReduceConfig
from oiflow.errors import ReductionError
from oiflow.oifits import read_oifits
from oiflow.provenance import Provenance
from oiflow.reduce import plan_night, reduce_night, reduce_observation

from night_factory import night_config, reduced_night


def _pulls(l1_dir, truth):
    pv, pc = [], []
    for o in truth["observations"]:
        oi = read_oifits(l1_dir / f"{o['obs_id']}.fits")
        v2, t3 = oi.vis2[0], oi.t3[0]
        assert not v2["FLAG"].any() and not t3["FLAG"].any()
        pv.append((v2["VIS2DATA"] - np.array(o["vis2_raw"])) / v2["VIS2ERR"])
        d = np.angle(np.exp(1j * np.radians(t3["T3PHI"] - np.array(o["t3phi_raw_deg"]))))
        pc.append(d / np.radians(t3["T3PHIERR"]))
    return np.concatenate(pv).ravel(), np.concatenate(pc).ravel()


def test_night_pulls_of_v2_and_closure_phase():
    """Reduced (uncalibrated) V² and closure phases against the simulated truth (sky × instrument):
    over the night the pulls have mean within ±0.1 and standard deviation within [0.8, 1.25]."""
    raw, l1, truth, result, _ = reduced_night("pulls")
    assert result.failures == [] and len(result.products) == 20
    pv, pc = _pulls(l1, truth)
    assert pv.size == 20 * 6 * 16 and pc.size == 20 * 4 * 16
    assert abs(pv.mean()) < 0.1 and 0.8 < pv.std() < 1.25, (pv.mean(), pv.std())
    assert abs(pc.mean()) < 0.1 and 0.8 < pc.std() < 1.25, (pc.mean(), pc.std())


def test_uv_from_geometry_matches_the_simulation():
    raw, l1, truth, _, _ = reduced_night("pulls")
    o = truth["observations"][3]
    oi = read_oifits(l1 / f"{o['obs_id']}.fits")
    np.testing.assert_allclose(oi.vis2[0]["UCOORD"], o["u"], atol=1e-6)
    np.testing.assert_allclose(oi.vis2[0]["VCOORD"], o["v"], atol=1e-6)
    np.testing.assert_allclose(oi.vis2[0]["MJD"], o["mjd_mid"], atol=1e-9)


def test_plan_classifies_the_night():
    raw, _, truth, _, _ = reduced_night("pulls")
    plan = plan_night(raw)
    assert plan.night == "2023-03-15"
    cal = plan.calibrations["H-16CH"]
    assert len(cal.darks) == 1 and sorted(cal.flats) == [0, 1, 2, 3] and len(cal.p2vm) == 6 and cal.missing() == []
    assert [o.obs_id for o in plan.observations] == [o["obs_id"] for o in truth["observations"]]
    assert [o.category for o in plan.observations[:4]] == ["CAL", "SCI", "CAL", "SCI"]
    assert plan.observations[1].target == "SCI_DISK"


def test_l1_products_carry_level_provenance_and_categories():
    raw, l1, truth, result, _ = reduced_night("pulls")
    path = result.products[1]
    oi = read_oifits(path)
    prov = Provenance.from_header(oi.primary_header)
    assert prov.level == 1 and prov.stage == "reduce" and prov.status == "COMPLETE"
    names = [i.name for i in prov.inputs]
    assert names[0] == truth["observations"][1]["file"] and len(names) == 1 + 11  # raw + calibration set
    assert prov.settings["nboot"] == ReduceConfig().nboot and prov.settings["reducer"] == "native-p2vm"
    assert oi.flux[0].calstat == "U"
    assert list(oi.target["CATEGORY"]) == ["SCI"]
    assert oi.primary_header["HIERARCH OIFLOW NIGHT"] == "2023-03-15"
    assert oi.flux[0]["FLUXDATA"].shape == (4, 16) and np.all(oi.flux[0]["FLUXDATA"] > 0)


def test_reduction_is_deterministic(tmp_path):
    raw, l1, truth, _, _ = reduced_night("pulls")
    plan = plan_night(raw)
    obs_id = plan.observations[2].obs_id
    out = reduce_observation(plan, obs_id, tmp_path, ReduceConfig())
    a, b = read_oifits(out), read_oifits(l1 / f"{obs_id}.fits")
    np.testing.assert_array_equal(a.vis2[0]["VIS2ERR"], b.vis2[0]["VIS2ERR"])
    np.testing.assert_array_equal(a.t3[0]["T3PHI"], b.t3[0]["T3PHI"])


@pytest.fixture()
def small_night(tmp_path):
    from oiflow.simulate.night import simulate_night

    cfg = night_config(seed=9, order=["HD_CAL_A", "SCI_DISK", "HD_CAL_B"], n_frames=10, n_channels=3,
                       n_calib_frames=10)
    raw = tmp_path / "raw"
    truth = simulate_night(cfg, raw)
    return raw, truth


def test_missing_calibration_file_is_named(small_night, tmp_path):
    raw, truth = small_night
    (raw / "SIMABCD_H-3CH_FLAT_T3.fits").unlink()
    (raw / "SIMABCD_H-3CH_P2VM_24.fits").unlink()
    plan = plan_night(raw)
    with pytest.raises(ReductionError, match=r"FLAT for beam 3, P2VM scan for baseline 2-4"):
        reduce_observation(plan, plan.observations[0].obs_id, tmp_path / "L1", ReduceConfig())
    result = reduce_night(raw, tmp_path / "L1", ReduceConfig())
    assert result.products == [] and len(result.failures) == 3
    assert all("FLAT for beam 3" in why for _, why in result.failures)
    assert not (tmp_path / "L1").exists() or list((tmp_path / "L1").iterdir()) == []


def test_corrupt_raw_file_fails_only_its_observation(small_night, tmp_path):
    raw, truth = small_night
    bad = raw / truth["observations"][1]["file"]
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # truncated during a transfer
    (raw / "notes.fits").write_bytes(b"this is not FITS at all" * 10)
    out = tmp_path / "L1"
    result = reduce_night(raw, out, ReduceConfig())
    assert sorted(p.name for p in result.products) == sorted(f"{o['obs_id']}.fits" for k, o in
                                                             enumerate(truth["observations"]) if k != 1)
    failed = dict(result.failures)
    assert set(failed) == {truth["observations"][1]["obs_id"], "notes.fits"}
    assert "unreadable" in failed["notes.fits"]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in result.products)  # no partial file


def test_non_finite_frames_are_rejected(small_night, tmp_path):
    raw, truth = small_night
    path = raw / truth["observations"][2]["file"]
    with fits.open(path) as h:
        h["IMAGING_DATA"].data[3, 5, 1] = np.nan
        h.writeto(path, overwrite=True)
    result = reduce_night(raw, tmp_path / "L1", ReduceConfig())
    assert len(result.products) == 2
    assert "non-finite" in dict(result.failures)[truth["observations"][2]["obs_id"]]


def test_truth_file_records_targets(small_night):
    raw, truth = small_night
    saved = json.loads((raw / "truth.json").read_text())
    assert saved["targets"]["SCI_DISK"]["model"] == {"type": "uniform_disk", "diameter_mas": 2.0}
    assert len(saved["observations"]) == 3 and saved["stations"] == ["A0", "G1", "J2", "K0"]


def test_demo_night_sample_is_consistent(repo_root):
    raw = repo_root / "data-samples" / "night-sim"
    truth = json.loads((raw / "truth.json").read_text())
    plan = plan_night(raw)
    assert plan.calibrations["H-6CH"].missing() == []
    assert [o.obs_id for o in plan.observations] == [o["obs_id"] for o in truth["observations"]]
    assert sum(f.stat().st_size for f in raw.iterdir()) < 3e6
    cat = (repo_root / "data-samples" / "calibrators.csv").read_text()
    assert "HD_CAL_A" in cat and "HD_CAL_B" in cat


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 12, 13, 14])
def test_night_pulls_hold_for_other_seeds(seed, tmp_path):
    """The pull statistics of the default test are not a lucky draw: the same night with other seeds."""
    from oiflow.simulate.night import simulate_night

    cfg = night_config(seed=seed, n_obs=20, n_channels=16, n_frames=30, slot_min=8, n_calib_frames=100)
    truth = simulate_night(cfg, tmp_path / "raw")
    result = reduce_night(tmp_path / "raw", tmp_path / "L1", ReduceConfig())
    assert result.failures == []
    pv, pc = _pulls(tmp_path / "L1", truth)
    assert abs(pv.mean()) < 0.1 and 0.8 < pv.std() < 1.25, (pv.mean(), pv.std())
    assert abs(pc.mean()) < 0.1 and 0.8 < pc.std() < 1.25, (pc.mean(), pc.std())


def test_raw_reader_reads_gzip_and_refuses_damaged_structure(repo_root, tmp_path):
    """read_raw (astropy, strict opening): a gzipped copy reads the same values; a raw file cut
    inside its frame cube or with a damaged NAXIS card is an error naming the file, HDU and card,
    never fewer frames."""
    import gzip

    from astropy.io import fits

    from oiflow.errors import ReductionError
    from oiflow.reduce import raw_reader

    src = next(p for p in sorted((repo_root / "data-samples" / "night-sim").glob("*.fits"))
               if raw_reader.read_raw_header(p).dpr_type == "OBJECT")
    plain = raw_reader.read_raw(src)
    gz = tmp_path / (src.name + ".gz")
    gz.write_bytes(gzip.compress(src.read_bytes()))
    packed = raw_reader.read_raw(gz)
    assert np.array_equal(plain.frames, packed.frames) and np.array_equal(plain.mjd, packed.mjd)
    with fits.open(src) as h:
        cube = h["IMAGING_DATA"]
        start = cube.fileinfo()["datLoc"]
        header_at = cube.fileinfo()["hdrLoc"]
        nframes = cube.header["NAXIS3"]
    assert plain.frames.shape[0] == nframes
    data = src.read_bytes()
    cut = tmp_path / "cut.fits"
    cut.write_bytes(data[: start + 5000])
    with pytest.raises(ReductionError, match=r"cut\.fits: damaged FITS file: truncated.*HDU IMAGING_DATA#\d; card NAXIS3"):
        raw_reader.read_raw(cut)
    k = data.index(b"NAXIS3  =", header_at)
    bad = tmp_path / "naxis.fits"
    bad.write_bytes(data[:k] + f"{'NAXIS3':8}= {'2.5':>20}".ljust(80).encode() + data[k + 80:])
    with pytest.raises(ReductionError, match=r"NAXIS3 = 2\.5 is not an integer.*card NAXIS3"):
        raw_reader.read_raw(bad)


def test_a_raw_header_is_read_once_per_version_of_its_file(repo_root, tmp_path, monkeypatch):
    """Planning asks for each header twice (instrument, then plan): astropy parses it once; a
    file rewritten (other size or time) is read again; a damaged one is an error naming it."""
    import os
    import shutil

    from astropy.io import fits

    from oiflow.reduce import raw_reader
    from oiflow.work.reduce import instrument_of

    src = next(p for p in sorted((repo_root / "data-samples" / "night-sim").glob("*.fits")))
    f = tmp_path / src.name
    shutil.copy(src, f)
    parsed = []
    real = fits.Header.fromfile
    monkeypatch.setattr(fits.Header, "fromfile", lambda *a, **k: parsed.append(1) or real(*a, **k))
    info = raw_reader.read_raw_header(f)
    assert instrument_of(f) == info.instrument.upper() != "" and len(parsed) == 1
    with fits.open(f, mode="update") as h:  # rewritten: another DPR TYPE, a later time
        h[0].header["HIERARCH ESO DPR TYPE"] = "DARK" if info.dpr_type != "DARK" else "FLAT"
    parsed.clear()
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    again = raw_reader.read_raw_header(f)
    assert len(parsed) == 1 and again.dpr_type != info.dpr_type
    bad = tmp_path / "bad.fits"
    bad.write_bytes(b"not a FITS file at all" * 200)
    with pytest.raises(ReductionError, match="bad.fits: unreadable raw file"):
        raw_reader.read_raw_header(bad)
    assert instrument_of(bad) == ""
