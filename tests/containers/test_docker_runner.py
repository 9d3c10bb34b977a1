"""The docker runner against a real Docker-API engine (Podman's socket in CI)."""

from __future__ import annotations

import os
import time

import pytest

from oiflow.errors import EngineError
from oiflow.reduce.runners import Job, Mount

pytestmark = pytest.mark.container


def _running_jobs(runner, name):
    return [c for c in runner.client.containers.list(all=True) if c.labels.get("org.oiflow.job") == name]


def test_success_staging_user_and_logs(docker_runner, base_image, tmp_path, leftovers):
    night = tmp_path / "night"
    night.mkdir()
    (night / "raw1.fits").write_text("raw")
    out = tmp_path / "L1"
    job = Job(image=base_image, inputs=[night], output=out, env={"GREETING": "hi"},
              command=["sh", "-c", f'cat {night}/raw1.fits > "$OIFLOW_OUTPUT/copy.txt"; echo "$GREETING"; '
                                   'id -u; echo to-stderr >&2; pwd'])
    res = docker_runner.run(job)
    assert (out / "copy.txt").read_text() == "raw"
    lines = res.log.split()
    assert "hi" in lines and "to-stderr" in lines and str(os.getuid()) in lines
    assert os.stat(out / "copy.txt").st_uid == os.getuid()  # files belong to the calling user
    assert leftovers(out) == []
    prov = res.provenance()
    assert prov["engine"] == "docker" and prov["image"] == base_image
    assert prov["image_id"] == docker_runner.image_id(base_image) and len(prov["image_id"]) >= 12
    assert prov["network_isolated"] is True


def test_inputs_are_read_only(docker_runner, base_image, tmp_path, leftovers):
    night = tmp_path / "night"
    night.mkdir()
    (night / "raw1.fits").write_text("raw")
    out = tmp_path / "L1"
    with pytest.raises(EngineError) as err:
        docker_runner.run(Job(image=base_image, inputs=[night], output=out,
                              command=["sh", "-c", f"echo tamper > {night}/raw1.fits"]))
    assert err.value.returncode != 0 and "Read-only file system" in err.value.log
    assert (night / "raw1.fits").read_text() == "raw"
    assert not out.exists() and leftovers(out) == []


def test_no_network_by_default(docker_runner, base_image):
    res = docker_runner.run(Job(image=base_image, command=["sh", "-c", "ls /sys/class/net"]))
    assert res.log.split() == ["lo"]
    assert res.provenance()["network_isolated"] is True


def test_mapped_mount_target(docker_runner, base_image, tmp_path):
    cal = tmp_path / "cal"
    cal.mkdir()
    (cal / "p2vm.fits").write_text("P2VM")
    res = docker_runner.run(Job(image=base_image, inputs=[Mount(cal, "/calib")], command=["cat", "/calib/p2vm.fits"]))
    assert res.log == "P2VM"


def test_exit_status_maps_to_engine_error(docker_runner, base_image, tmp_path, leftovers):
    out = tmp_path / "L1"
    with pytest.raises(EngineError) as err:
        docker_runner.run(Job(image=base_image, output=out, name="amber_SciCal",
                              command=["sh", "-c", 'echo half > "$OIFLOW_OUTPUT/x.fits"; echo "no P2VM" >&2; exit 4']))
    assert err.value.returncode == 4 and "no P2VM" in err.value.log
    assert "amber_SciCal" in str(err.value) and base_image in str(err.value)
    assert not out.exists() and leftovers(out) == []
    assert _running_jobs(docker_runner, "amber_SciCal") == []  # containers are removed


def test_hanging_container_is_killed_at_timeout(docker_runner, base_image, tmp_path, leftovers):
    out = tmp_path / "L1"
    t0 = time.monotonic()
    with pytest.raises(EngineError) as err:
        docker_runner.run(Job(image=base_image, output=out, timeout_s=2, name="hang",
                              command=["sh", "-c", 'echo started; echo half > "$OIFLOW_OUTPUT/x.fits"; sleep 600']))
    assert time.monotonic() - t0 < 40
    assert err.value.returncode is None and "timed out after 2 s" in str(err.value)
    assert "started" in err.value.log
    assert not out.exists() and leftovers(out) == []
    assert _running_jobs(docker_runner, "hang") == []


def test_memory_and_cpu_limits(docker_runner, base_image):
    res = docker_runner.run(Job(image=base_image, memory="256m", cpus=0.5,
                                command=["sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
                                                     "/sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us "
                                                     "2>/dev/null || cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max"]))
    values = res.log.split()
    assert values[0] == str(256 * 2**20)
    quota, period = int(values[1]), int(values[2])
    assert quota / period == pytest.approx(0.5)


def test_user_mapping(docker_runner, base_image, tmp_path):
    if os.getuid() != 0:
        pytest.skip("mapping to another uid needs root on the host (the staging dir is chowned to it)")
    out = tmp_path / "L1"
    res = docker_runner.run(Job(image=base_image, output=out, user="1234:1234",
                                command=["sh", "-c", 'id -u; touch "$OIFLOW_OUTPUT/f"']))
    assert res.log.split() == ["1234"]
    assert os.stat(out / "f").st_uid == 1234


def test_missing_image_is_a_clear_error(docker_runner):
    with pytest.raises(EngineError, match="not present on the engine; build it with containers/build.sh"):
        docker_runner.run(Job(image="localhost/oiflow-does-not-exist:latest", command=["true"]))
