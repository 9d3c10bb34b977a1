"""Runners without a container engine: the local runner for real, and the Apptainer runner's command
lines through a recording stand-in executable (nothing here runs Apptainer)."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

import pytest

from oiflow.errors import ConfigError, EngineError
from oiflow.reduce.runners import ApptainerRunner, Job, LocalRunner, Mount, get_runner, parse_memory


def _leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


def test_local_success_promotes_staged_output(tmp_path):
    out = tmp_path / "products"
    job = Job(command=["sh", "-c", 'echo hello > "$OIFLOW_OUTPUT/a.txt"; echo done; echo warn >&2; '
                       'test "$PWD" = "$OIFLOW_OUTPUT"'], output=out)
    res = LocalRunner().run(job)
    assert res.returncode == 0
    assert (out / "a.txt").read_text() == "hello\n"
    assert "done" in res.log and "warn" in res.log  # stdout and stderr captured together
    assert _leftovers(tmp_path, "products") == []
    prov = res.provenance()
    assert prov["engine"] == "local" and prov["network_isolated"] is False
    assert len(prov["log_sha256"]) == 64


def test_output_placeholder_is_the_staging_dir(tmp_path):
    out = tmp_path / "o"
    res = LocalRunner().run(Job(command=["sh", "-c", "pwd; echo x > {output}/f"], output=out))
    staged = res.log.strip()
    assert Path(staged).parent == tmp_path and Path(staged).name.startswith(".o.") and staged.endswith(".tmp")
    assert (out / "f").read_text() == "x\n"
    assert res.command[-1] == f"pwd; echo x > {staged}/f"


def test_local_failure_maps_exit_status_and_leaves_nothing(tmp_path):
    out = tmp_path / "products"
    job = Job(command=["sh", "-c", 'echo partial > "$OIFLOW_OUTPUT/half.fits"; echo "recipe broke" >&2; exit 3'],
              output=out, name="amber_p2vm")
    with pytest.raises(EngineError) as err:
        LocalRunner().run(job)
    assert err.value.returncode == 3
    assert "recipe broke" in err.value.log
    assert "amber_p2vm" in str(err.value) and "status 3" in str(err.value) and "recipe broke" in str(err.value)
    assert not out.exists() and _leftovers(tmp_path, "products") == []


def test_local_timeout_kills_the_process_group(tmp_path):
    out = tmp_path / "products"
    marker = tmp_path / "child-survived"
    # a child in the background that would write after the timeout: killing the group stops it too
    job = Job(command=["sh", "-c", f'(sleep 3; touch {marker}) & echo started; echo x > "$OIFLOW_OUTPUT/x"; sleep 30'],
              output=out, timeout_s=1.0)
    t0 = time.monotonic()
    with pytest.raises(EngineError) as err:
        LocalRunner().run(job)
    assert time.monotonic() - t0 < 10
    assert err.value.returncode is None and "timed out after 1 s" in str(err.value)
    assert "started" in err.value.log
    assert not out.exists() and _leftovers(tmp_path, "products") == []
    time.sleep(3.5)
    assert not marker.exists()


def test_existing_output_replaced_only_on_success(tmp_path):
    out = tmp_path / "products"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(EngineError):
        LocalRunner().run(Job(command=["sh", "-c", "exit 1"], output=out))
    assert (out / "old.txt").read_text() == "old"  # a failed rerun keeps the previous products
    LocalRunner().run(Job(command=["sh", "-c", 'echo new > "$OIFLOW_OUTPUT/new.txt"'], output=out))
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert _leftovers(tmp_path, "products") == []


def test_local_memory_limit_applies(tmp_path):
    code = "b = bytearray(400 * 1024 * 1024); print('allocated')"
    with pytest.raises(EngineError) as err:
        LocalRunner().run(Job(command=[sys.executable, "-c", code], memory="200m"))
    assert err.value.returncode != 0 and "MemoryError" in err.value.log
    res = LocalRunner().run(Job(command=[sys.executable, "-c", "print('small')"], memory="2g"))
    assert "small" in res.log


def test_missing_program_is_an_engine_error():
    with pytest.raises(EngineError, match="cannot run 'no-such-program-xyz'"):
        LocalRunner().run(Job(command=["no-such-program-xyz"]))


def test_parse_memory_and_get_runner():
    assert parse_memory("512m") == 512 * 2**20
    assert parse_memory("2GiB") == 2 * 2**30
    assert parse_memory(1000) == 1000
    with pytest.raises(ConfigError):
        parse_memory("lots")
    assert isinstance(get_runner("local"), LocalRunner)
    assert get_runner("apptainer", executable="/x/apptainer").executable == "/x/apptainer"
    with pytest.raises(ConfigError, match="unknown runner"):
        get_runner("kubernetes")


# ------------------------------------------------------------------------------------------------
# Apptainer: a recording stand-in executable
# ------------------------------------------------------------------------------------------------

FAKE_APPTAINER = r'''#!/bin/sh
# RECORDING STAND-IN for apptainer (oiflow tests). It is not Apptainer and starts no container:
# it appends its argv (JSON) to $FAKE_APPTAINER_RECORD, then runs the command that follows the
# image ON THE HOST, in the --pwd directory with the --env variables only, so that staging and timeouts can be exercised.
exec "$FAKE_PYTHON" - "$@" <<'PY'
import json, os, sys
argv = sys.argv[1:]
with open(os.environ["FAKE_APPTAINER_RECORD"], "a") as f:
    f.write(json.dumps(argv) + "\n")
opts_with_value = {"--pwd", "--bind", "--env", "--network", "--cpus", "--memory"}
i, pwd, env = 1, None, {"PATH": os.environ["PATH"]}
while argv[i].startswith("--"):
    if argv[i] == "--pwd":
        pwd = argv[i + 1]
    if argv[i] == "--env":
        key, _, value = argv[i + 1].partition("=")
        env[key] = value
    i += 2 if argv[i] in opts_with_value else 1
image, command = argv[i], argv[i + 1:]
os.chdir(pwd or "/")
os.execvpe(command[0], command, env)
PY
'''


@pytest.fixture()
def fake_apptainer(tmp_path, monkeypatch):
    exe = tmp_path / "bin" / "apptainer"
    exe.parent.mkdir()
    exe.write_text(FAKE_APPTAINER)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv("FAKE_APPTAINER_RECORD", str(record))
    monkeypatch.setenv("FAKE_PYTHON", sys.executable)

    def calls():
        return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []

    return ApptainerRunner(executable=str(exe)), calls


def test_apptainer_command_line(tmp_path, fake_apptainer):
    runner, calls = fake_apptainer
    night = tmp_path / "night"
    night.mkdir()
    cal = tmp_path / "cal"
    cal.mkdir()
    out = tmp_path / "L1"
    job = Job(command=["sh", "-c", 'echo ok > "$OIFLOW_OUTPUT/r.txt"'], image="/images/amber.sif",
              inputs=[night, Mount(cal, "/calib")], output=out, env={"OMP_NUM_THREADS": "1"},
              cpus=2, memory="1g", timeout_s=30, name="amber_p2vm")
    res = runner.run(job)
    (argv,) = calls()
    pwd = argv[argv.index("--pwd") + 1]
    assert Path(pwd).parent == tmp_path and Path(pwd).name.startswith(".L1.")
    expected = [
        "exec", "--containall", "--cleanenv", "--no-home", "--net", "--network", "none",
        "--pwd", pwd,
        "--bind", f"{night.resolve()}:{night.resolve()}:ro",
        "--bind", f"{cal.resolve()}:/calib:ro",
        "--bind", f"{pwd}:{pwd}:rw",
        "--env", f"OIFLOW_OUTPUT={pwd}",
        "--env", "OMP_NUM_THREADS=1",
        "--cpus", "2", "--memory", str(2**30),
        "/images/amber.sif", "sh", "-c", 'echo ok > "$OIFLOW_OUTPUT/r.txt"',
    ]
    assert argv == expected
    assert (out / "r.txt").read_text() == "ok\n"
    assert res.engine == "apptainer" and res.image == "/images/amber.sif"


def test_apptainer_network_opt_in_and_user(tmp_path, fake_apptainer):
    runner, calls = fake_apptainer
    runner.run(Job(command=["true"], image="x.sif", network=True))
    (argv,) = calls()
    assert "--net" not in argv and "--network" not in argv
    with pytest.raises(ConfigError, match="calling user"):
        runner.run(Job(command=["true"], image="x.sif", user=f"{os.getuid() + 1}:{os.getgid()}"))
    with pytest.raises(ConfigError, match="needs an image"):
        runner.run(Job(command=["true"]))


def test_apptainer_failure_and_timeout(tmp_path, fake_apptainer):
    runner, _ = fake_apptainer
    out = tmp_path / "o"
    with pytest.raises(EngineError) as err:
        runner.run(Job(command=["sh", "-c", "echo bad; exit 7"], image="x.sif", output=out))
    assert err.value.returncode == 7 and "bad" in err.value.log
    with pytest.raises(EngineError) as err:
        runner.run(Job(command=["sh", "-c", 'touch "$OIFLOW_OUTPUT/half"; sleep 30'], image="x.sif",
                       output=out, timeout_s=1))
    assert err.value.returncode is None
    assert not out.exists() and _leftovers(tmp_path, "o") == []


def test_missing_apptainer_executable(tmp_path):
    with pytest.raises(EngineError, match="cannot run"):
        ApptainerRunner(executable=str(tmp_path / "nope")).run(Job(command=["true"], image="x.sif"))
