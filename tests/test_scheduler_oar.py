"""`oiflow reprocess --cluster <oar profile>` on a live one-node OAR (server, node, PostgreSQL;
started by .ci/oar.sh), run as an ordinary user as on the Ciment machines: the Dask workers are
OAR jobs submitted with oarsub, a worker job deleted mid-run (oardel) is replaced, and the run
completes with every product catalogued. Marked ``scheduler``; .ci/run runs it, where a missing
OAR fails.

What the job user runs: a virtualenv made from the system's Python with oiflow installed from
the wheel of this checkout (scheduler_run.wheel_venv) — the user cannot execute a venv made from
an interpreter under /root, nor read a checkout there. Everything the run writes lives under the
user's home: when the user's last job on the node ends, OAR's cleanup deletes that user's files
under /tmp, /dev/shm and /var/tmp, and here the flow runs on the node of its workers.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from scheduler_run import (NIGHTS, UNITS_PER_NIGHT, check_products, eventually, flow_env, l1_products,
                           raw_archive, registered, require_scheduler, run_config, start, stop, wait_for, wheel_venv)

pytestmark = pytest.mark.scheduler

USER = os.environ.get("OIFLOW_TEST_OAR_USER", "oiflowci")
JOB_NAME = "oiflow-ci-worker"


def _oar_problem() -> str | None:
    if shutil.which("oarsub") is None or shutil.which("oarstat") is None:
        return "oarsub/oarstat not installed"
    if os.geteuid() != 0:
        return "the test runs the flow as another user: it needs root"
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return f"no user {USER!r} to submit as (OAR refuses root)"
    out = subprocess.run(["oarnodes", "-s"], capture_output=True, text=True)
    if out.returncode != 0 or "Alive" not in out.stdout:
        return f"no Alive resource: {out.stdout.strip() or out.stderr.strip()}"
    return None


def _jobs() -> dict[str, dict]:
    """The worker jobs of this test that OAR lists now (oarstat -J), by id."""
    out = subprocess.run(["oarstat", "-J"], capture_output=True, text=True)
    jobs = json.loads(out.stdout or "{}") if out.returncode == 0 else {}
    return {k: j for k, j in jobs.items() if j.get("name") == JOB_NAME and j.get("owner") == USER}


def _running() -> list[str]:
    return sorted((k for k, j in _jobs().items() if j["state"] == "Running"), key=int)


def _job(job_id: str) -> dict:
    out = subprocess.run(["oarstat", "-f", "-J", "-j", job_id], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[job_id]


def _as_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", USER, "--", *cmd]


@pytest.fixture
def user_work():
    """A fresh directory under the job user's home, owned by that user; removed afterwards."""
    require_scheduler("OAR", _oar_problem())
    home = Path(pwd.getpwnam(USER).pw_dir)
    work = home / f"oiflow-test-{uuid.uuid4().hex[:8]}"
    work.mkdir(parents=True)
    yield work
    shutil.rmtree(work, ignore_errors=True)


def test_reprocess_on_oar_as_a_user_survives_a_deleted_worker_job(user_work):
    venv = wheel_venv()
    work = user_work
    archive = raw_archive(work / "archive")
    cfg = run_config(work)
    root, logs = work / "products", work / "scratch" / "logs"
    profile = work / "oar-ci.yaml"
    profile.write_text(yaml.safe_dump({
        "kind": "oar", "n_workers": 2, "scratch": str(work / "scratch"),
        "job": {"cores": 1, "processes": 1, "memory": "1GB", "memory_per_core_property_name": "memcore",
                "walltime": "00:20:00", "job_name": JOB_NAME, "local_directory": str(work / "dask-local")}}))
    env = flow_env(work)
    u = pwd.getpwnam(USER)
    env.update(HOME=u.pw_dir, USER=USER, LOGNAME=USER)
    subprocess.run(["chown", "-R", f"{u.pw_uid}:{u.pw_gid}", str(work)], check=True)
    cmd = _as_user([str(venv / "bin" / "oiflow"), "reprocess", str(archive), "--config", str(cfg), "--cluster",
                    str(profile), "--root", str(root)])
    proc = start(cmd, work, env)
    try:
        first = wait_for(lambda: (jobs := _running()) and len(jobs) >= 2 and jobs, proc,
                         "two worker jobs running (oarstat)", timeout=300)
        assert {_jobs()[j]["owner"] for j in first} == {USER}
        wait_for(lambda: all(registered(logs / f"{JOB_NAME}.{j}.err") for j in first), proc,
                 "both workers joined the run's scheduler")
        victim = first[0]
        subprocess.run(_as_user(["oardel", victim]), check=True, capture_output=True)
        done_at_cancel = len(l1_products(root))
        # the replacement joins while the run still has work for it
        replacement = wait_for(lambda: [j for j in _running() if int(j) > int(max(first, key=int))], proc,
                               "a replacement job running")[0]
        wait_for(lambda: registered(logs / f"{JOB_NAME}.{replacement}.err"), proc, "the replacement worker joined")
        out, err = proc.communicate(timeout=600)
    finally:
        stop(proc)
        left = list(_jobs())
        if left:
            subprocess.run(["oardel", *left], capture_output=True)
    assert proc.returncode == 0, out[-3000:] + err[-5000:]
    assert "Traceback" not in out + err
    assert f"{len(NIGHTS) * UNITS_PER_NIGHT} unit(s) processed, 0 up to date" in out
    # said once by the run: resubmitted by oiflow's keeper, or already replaced by Dask's own timer
    assert re.search(rf"worker job {victim} \(\S+\) lost its workers: (submitting a replacement|replaced by job \d+)",
                     err), err[-3000:]

    deleted = _job(victim)
    assert deleted["state"] == "Error" and deleted["owner"] == USER
    assert any(e["type"] == "FRAG_JOB_REQUEST" for e in deleted["events"])  # the oardel
    assert done_at_cancel < 5 * len(NIGHTS), "the job was deleted after the run's work was done"
    assert _job(replacement)["owner"] == USER and _job(replacement)["name"] == JOB_NAME
    assert eventually(lambda: _running() == [])  # the run deleted its jobs when it ended
    check_products(root)
    # the products belong to the user that ran the flow
    assert {p.stat().st_uid for p in root.rglob("*") if p.is_file()} == {u.pw_uid}
