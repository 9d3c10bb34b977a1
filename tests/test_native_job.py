"""The native reducer's products do not depend on where it runs (default tier, no container engine):
execution settings stay out of the products' settings, the number of BLAS threads does not matter,
and the worker-image job (``python -m oiflow.reduce.backends.native_job``, here as a local subprocess) gives the same
bytes as the in-process run apart from the masked cards. The same comparison against the real
worker image is tests/containers/test_native_container.py."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from fits_bytes import card_value, differing_keywords, fits_differences
from night_factory import night_config
from oiflow.config import EngineConfig, ReduceConfig
from oiflow.provenance import Provenance
from oiflow.reduce import plan_night, reduce_night, reduce_observation
from oiflow.reduce.backends import NativeBackend
from oiflow.reduce.pipeline import EXECUTION_FIELDS
from oiflow.reduce.runners import LocalRunner
from oiflow.simulate.night import simulate_night

DEMO = Path(__file__).resolve().parents[1] / "data-samples" / "night-sim"
EXECUTION = {"HIERARCH OIFLOW ENGINE", "HIERARCH OIFLOW IMAGE", "HIERARCH OIFLOW IMAGEID"}
MASK = {"DATE": "value", "CHECKSUM": "value", "DATASUM": "comment", **{k: "card" for k in EXECUTION}}


@pytest.fixture(scope="module")
def small_night(tmp_path_factory):
    raw = tmp_path_factory.mktemp("night") / "raw"
    simulate_night(night_config(seed=2, order=["HD_CAL_A", "SCI_BINARY", "HD_CAL_B"], n_frames=12, n_channels=3), raw)
    return raw


def _write(tmp_path, name, data, date):
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns([fits.Column("X", "D", array=data)])])
    hdul[0].header["DATE"] = date
    hdul[0].header["HIERARCH OIFLOW ENGINE"] = "docker" if "b" in name else "in-process"
    hdul[0].header["HIERARCH OIFLOW IMAGEID"] = "sha256:" + "ab" * 32  # long: CONTINUE cards
    path = tmp_path / name
    hdul.writeto(path, checksum=True)
    return path


def test_the_comparison_masks_only_what_it_names(tmp_path):
    x = np.arange(5.0)
    a = _write(tmp_path, "a.fits", x, "2026-01-01T00:00:00")
    b = _write(tmp_path, "b.fits", x, "2026-01-02T00:00:00")
    assert fits_differences(a, b, MASK) == []
    assert {"DATE", "CHECKSUM", "HIERARCH OIFLOW ENGINE"} <= differing_keywords(a, b)
    assert card_value(a, "HIERARCH OIFLOW IMAGEID") == "sha256:" + "ab" * 32
    # one bit of data: found, and DATASUM's value is compared even though its comment is not
    y = x.copy()
    y[3] = np.nextafter(y[3], 10)
    c = _write(tmp_path, "c.fits", y, "2026-01-02T00:00:00")
    diffs = fits_differences(a, c, MASK)
    assert any(d.startswith("HDU 1 data") for d in diffs) and any("DATASUM" in d for d in diffs)
    # any other card: found
    with fits.open(b) as h:
        h = fits.HDUList([hdu.copy() for hdu in h])
    h[0].header["OBJECT"] = "X"
    h.writeto(tmp_path / "d.fits", checksum=True)
    assert any("OBJECT" in d for d in fits_differences(a, tmp_path / "d.fits", MASK))


def test_execution_settings_stay_out_of_the_products(small_night, tmp_path):
    plan = plan_night(small_night)
    obs = plan.observations[0].obs_id
    a = reduce_observation(plan, obs, tmp_path / "a", ReduceConfig(), execution={"engine": "in-process"})
    other = ReduceConfig(runner="docker", image="localhost/oiflow-worker:latest",
                         engine=EngineConfig(timeout_s=10, cpus=1, memory="1g", docker_url="unix:///x.sock"),
                         instruments={"AMBER": {"backend": "amdlib", "runner": "docker"}})
    b = reduce_observation(plan, obs, tmp_path / "b", other,
                           execution={"engine": "docker", "image": other.image, "image_id": "sha256:" + "0" * 64})
    assert fits_differences(a, b, MASK) == []
    settings = Provenance.from_header(fits.getheader(b)).settings
    assert not EXECUTION_FIELDS & settings.keys() and settings["reducer"] == "native-p2vm"
    assert card_value(b, "HIERARCH OIFLOW IMAGEID") == "sha256:" + "0" * 64
    # a science setting does change the product
    c = reduce_observation(plan, obs, tmp_path / "c", ReduceConfig(nboot=20))
    assert fits_differences(a, c, MASK) != []


@pytest.fixture(scope="module")
def demo_one_obs(tmp_path_factory):
    """The demo night's calibrations and its first observation: big enough (6 channels, 40 frames,
    50 bootstrap realisations) that OpenBLAS splits its products over threads."""
    night = tmp_path_factory.mktemp("demo") / "night-one"
    night.mkdir()
    for f in sorted(DEMO.glob("*.fits")):
        if "_OBS" not in f.name or "_OBS001_" in f.name:
            (night / f.name).symlink_to(f)
    return night


def test_products_do_not_depend_on_blas_threads(demo_one_obs, tmp_path):
    """In-process (OpenBLAS with one thread per core: 2 here), in a thread after the BLAS pool
    has been used, and in a subprocess with OPENBLAS_NUM_THREADS=1 (the native job's environment,
    as in the worker image): the same bytes. With the bootstrap sums as a BLAS product, 1 and 2
    threads gave different error bars (measured on this project's 2-core machine)."""
    a = reduce_night(demo_one_obs, tmp_path / "main", ReduceConfig()).products[0]
    x = np.random.default_rng(0).random((400, 400))
    x @ x  # the BLAS thread pool is up
    out = {}
    t = threading.Thread(target=lambda: out.update(r=reduce_night(demo_one_obs, tmp_path / "thread", ReduceConfig())))
    t.start()
    t.join()
    b = out["r"].products[0]
    sub = NativeBackend().reduce_night(demo_one_obs, tmp_path / "sub", ReduceConfig(image="any"), LocalRunner())
    assert sub.failures == [] and [p.name for p in sub.products] == [a.name]
    assert "OPENBLAS_NUM_THREADS=1" in (tmp_path / "sub" / "native.log").read_text()
    assert fits_differences(a, b, MASK) == []
    assert fits_differences(a, sub.products[0], MASK) == []


def test_bootstrap_sums_are_exact_weighted_sums():
    from oiflow.reduce.estimators import _boot_sums

    rng = np.random.default_rng(1)
    per_frame = rng.normal(size=(40, 3, 2))
    starts = np.array([0, 10, 25])
    w = np.array([[1.0, 1.0, 1.0], [3.0, 0.0, 0.0], [0.0, 2.0, 1.0]])
    seg = np.stack([per_frame[0:10].sum(0), per_frame[10:25].sum(0), per_frame[25:].sum(0)])
    expected = np.stack([seg.sum(0), 3 * seg[0], 2 * seg[1] + seg[2]])
    np.testing.assert_allclose(_boot_sums(per_frame, starts, w), expected, rtol=1e-13)


def test_native_job_as_a_subprocess_gives_the_in_process_bytes(small_night, tmp_path):
    local = NativeBackend().reduce_night(small_night, tmp_path / "a", ReduceConfig(), LocalRunner())
    sub = NativeBackend().reduce_night(small_night, tmp_path / "b", ReduceConfig(image="any"), LocalRunner())
    assert sub.failures == [] and len(sub.products) == 3
    assert [p.name for p in sub.products] == [p.name for p in local.products]
    for p in local.products:
        assert fits_differences(p, tmp_path / "b" / p.name, MASK) == []
        assert card_value(tmp_path / "b" / p.name, "HIERARCH OIFLOW ENGINE") == "local"
        assert card_value(tmp_path / "b" / p.name, "HIERARCH OIFLOW IMAGE") is None  # local ignores images
    assert sorted(x.name for x in (tmp_path / "b").iterdir()) == sorted([p.name for p in local.products] + ["native.log"])
    assert sub.runs[0]["command"][1:3] == ["-m", "oiflow.reduce.backends.native_job"]


def test_a_direct_call_records_in_process(small_night, tmp_path):
    plan = plan_night(small_night)
    p = reduce_observation(plan, plan.observations[0].obs_id, tmp_path)
    assert card_value(p, "HIERARCH OIFLOW ENGINE") == "in-process"
    assert card_value(p, "HIERARCH OIFLOW IMAGE") is None and card_value(p, "HIERARCH OIFLOW IMAGEID") is None
