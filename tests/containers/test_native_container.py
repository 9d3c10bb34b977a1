"""The native reducer in the worker image gives the same products as in-process, byte for byte.

Masked, and only these (:data:`PRODUCT_MASK`):

* ``DATE`` (primary header): the file's creation time;
* ``CHECKSUM`` (every HDU): covers the header, so it changes with DATE and with DATASUM's comment;
* ``DATASUM`` (every HDU): the value (checksum of the data) must be equal; only its comment,
  "data unit checksum updated <time>", is ignored;
* ``HIERARCH OIFLOW ENGINE`` / ``IMAGE`` / ``IMAGEID`` (primary): how the product was made
  (``in-process`` vs ``docker``, the image and its id): they differ by design and are checked
  for their own values.

Everything else (every other card, the header padding, every data byte) must be identical; the
settings recorded in the products leave out where the reducer ran (EXECUTION_FIELDS).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fits_bytes import card_value, differing_keywords, fits_differences
from oiflow.config import ReduceConfig
from oiflow.provenance import sha256_file
from oiflow.reduce.backends import NativeBackend
from oiflow.reduce.runners import LocalRunner

pytestmark = pytest.mark.container

REPO = Path(__file__).resolve().parents[2]
NIGHT = REPO / "data-samples" / "night-sim"

EXECUTION = {"HIERARCH OIFLOW ENGINE", "HIERARCH OIFLOW IMAGE", "HIERARCH OIFLOW IMAGEID"}
PRODUCT_MASK = {"DATE": "value", "CHECKSUM": "value", "DATASUM": "comment", **{k: "card" for k in EXECUTION}}


def _hashes(d: Path) -> dict:
    return {p.name: sha256_file(p) for p in sorted(d.iterdir())}


def test_native_in_the_worker_image_is_byte_identical_to_in_process(docker_runner, worker_image, tmp_path):
    before = _hashes(NIGHT)
    local = NativeBackend().reduce_night(NIGHT, tmp_path / "in-process", ReduceConfig(), LocalRunner())
    cont = NativeBackend().reduce_night(NIGHT, tmp_path / "container", ReduceConfig(runner="docker", image=worker_image),
                                        docker_runner)
    assert local.failures == [] and cont.failures == []
    names = [p.name for p in local.products]
    assert len(names) == 11 and [p.name for p in cont.products] == names
    for name in names:
        a, b = tmp_path / "in-process" / name, tmp_path / "container" / name
        assert fits_differences(a, b, PRODUCT_MASK) == [], name
        # the mask hides only what it says: without it, exactly these keywords differ
        diff = differing_keywords(a, b)
        assert diff <= {"DATE", "CHECKSUM", "DATASUM"} | EXECUTION, (name, diff)
        assert EXECUTION <= diff
        assert card_value(a, "HIERARCH OIFLOW ENGINE") == "in-process"
        assert card_value(a, "HIERARCH OIFLOW IMAGE") is None
        assert card_value(b, "HIERARCH OIFLOW ENGINE") == "docker"
        assert card_value(b, "HIERARCH OIFLOW IMAGE") == worker_image
        assert card_value(b, "HIERARCH OIFLOW IMAGEID") == docker_runner.image_id(worker_image)
    # the container's products were collected through the staged output, nothing else is left
    assert sorted(p.name for p in (tmp_path / "container").iterdir()) == sorted(names + ["native.log"])
    log = (tmp_path / "container" / "native.log").read_text()
    assert "native reducer: 11 products, 0 failures (threads: OPENBLAS_NUM_THREADS=1)" in log
    ((run),) = cont.runs
    assert run["engine"] == "docker" and run["network_isolated"] is True and run["returncode"] == 0
    assert _hashes(NIGHT) == before  # inputs untouched


def test_native_failures_in_the_worker_image(docker_runner, worker_image, tmp_path):
    """A corrupt observation fails only itself, in the image as in-process; a night without any
    observation fails the job, with its log kept and nothing half-written."""
    from night_factory import night_config
    from oiflow.simulate.night import simulate_night

    raw = tmp_path / "raw"
    simulate_night(night_config(seed=2, order=["HD_CAL_A", "SCI_BINARY", "HD_CAL_B"], n_frames=12, n_channels=3), raw)
    victim = sorted(raw.glob("*OBS002*.fits"))[0]
    victim.write_bytes(victim.read_bytes()[:5000])
    cfg = ReduceConfig(runner="docker", image=worker_image)
    local = NativeBackend().reduce_night(raw, tmp_path / "a", ReduceConfig(), LocalRunner())
    cont = NativeBackend().reduce_night(raw, tmp_path / "b", cfg, docker_runner)
    assert [p.name for p in cont.products] == [p.name for p in local.products] and len(cont.products) == 2
    assert len(cont.failures) == 1 and cont.failures == local.failures
    assert victim.name in cont.failures[0][0] + cont.failures[0][1]
    for a in local.products:
        assert fits_differences(a, tmp_path / "b" / a.name, PRODUCT_MASK) == []

    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "c"
    res = NativeBackend().reduce_night(empty, out, cfg, docker_runner)
    assert res.products == []
    ((item, reason),) = res.failures
    assert item == "empty" and reason.startswith("native reducer failed (exit status 3)")
    assert "no OBJECT exposures to reduce" in reason and f"[log: {out / 'native.log'}]" in reason
    assert sorted(p.name for p in out.iterdir()) == ["native.log"]  # no staging left, no result.json


def test_native_job_killed_at_its_timeout_leaves_nothing(docker_runner, worker_image, tmp_path):
    """The demo night takes longer than 2 s in the image: the container is killed at 2 s, the night
    fails with the reason, the log is kept, and no product, result file or staging directory is left."""
    from oiflow.config import EngineConfig

    out = tmp_path / "L1"
    cfg = ReduceConfig(runner="docker", image=worker_image, engine=EngineConfig(timeout_s=2))
    res = NativeBackend().reduce_night(NIGHT, out, cfg, docker_runner)
    assert res.products == []
    ((item, reason),) = res.failures
    assert item == "night-sim" and reason.startswith("native reducer failed (timed out)")
    assert sorted(p.name for p in out.iterdir()) == ["native.log"]
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name or ".native-run" in p.name]
    assert [c for c in docker_runner.client.containers.list(all=True)
            if c.labels.get("org.oiflow.job") == "native reducer (night-sim)"] == []
