"""`oiflow reprocess --cluster <slurm profile>` on a live one-node SLURM (started by .ci/slurm.sh):
the Dask workers are SLURM jobs, a worker job cancelled mid-run (scancel) is replaced, and the
run completes with every product catalogued. Marked ``scheduler`` (not in the default run);
.ci/run runs it, where a missing SLURM fails."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scheduler_run import (NIGHTS, UNITS_PER_NIGHT, check_products, eventually, flow_env, l1_products,
                           raw_archive, registered, require_scheduler, run_config, start, stop, wait_for)

pytestmark = pytest.mark.scheduler

PARTITION = os.environ.get("OIFLOW_TEST_SLURM_PARTITION", "debug")
CTLD_LOG = Path(os.environ.get("OIFLOW_TEST_SLURMCTLD_LOG", "/var/lib/oiflow-slurm/slurmctld.log"))
JOB_NAME = "oiflow-ci-worker"


def _slurm_problem() -> str | None:
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "sinfo/sbatch not installed"
    out = subprocess.run(["sinfo", "-h", "-p", PARTITION, "-o", "%T"], capture_output=True, text=True)
    states = set(out.stdout.split())
    if out.returncode != 0 or not states & {"idle", "mixed"}:
        return f"partition {PARTITION!r}: {out.stdout.strip() or out.stderr.strip() or 'no node'}"
    if not CTLD_LOG.is_file():
        return f"no controller log at {CTLD_LOG}"
    return None


def _running_jobs() -> list[str]:
    out = subprocess.run(["squeue", "-h", "-n", JOB_NAME, "-t", "R", "-o", "%i"], capture_output=True, text=True)
    return sorted(out.stdout.split(), key=int)


def _started_since(offset: int) -> list[str]:
    """Job ids the controller started after byte ``offset`` of its log, by its main or backfill
    scheduler (no slurmdbd here, so no sacct)."""
    with CTLD_LOG.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    return re.findall(r"(?:sched: Allocate JobId=|_start_job: Started JobId=)(\d+) ", text)


def test_reprocess_on_slurm_survives_a_cancelled_worker_job(tmp_path):
    require_scheduler("SLURM", _slurm_problem())
    archive = raw_archive(tmp_path / "archive")
    cfg = run_config(tmp_path)
    root, logs = tmp_path / "products", tmp_path / "scratch" / "logs"
    profile = tmp_path / "slurm-ci.yaml"
    profile.write_text(yaml.safe_dump({
        "kind": "slurm", "n_workers": 2, "scratch": str(tmp_path / "scratch"),
        "job": {"cores": 1, "processes": 1, "memory": "2GB", "walltime": "00:20:00", "queue": PARTITION,
                "job_name": JOB_NAME, "local_directory": str(tmp_path / "dask-local")}}))
    log_offset = CTLD_LOG.stat().st_size
    cmd = [sys.executable, "-m", "oiflow.cli", "reprocess", str(archive), "--config", str(cfg), "--cluster",
           str(profile), "--root", str(root)]
    proc = start(cmd, tmp_path, flow_env(tmp_path))
    try:
        first = wait_for(lambda: (jobs := _running_jobs()) and len(jobs) >= 2 and jobs, proc,
                         "two worker jobs running (squeue)", timeout=240)
        wait_for(lambda: all(registered(logs / f"{JOB_NAME}-{j}.err") for j in first), proc,
                 "both workers joined the run's scheduler")
        victim = first[0]
        subprocess.run(["scancel", victim], check=True)
        done_at_cancel = len(l1_products(root))
        # the replacement joins while the run still has work for it
        replacement = wait_for(lambda: [j for j in _running_jobs() if int(j) > int(max(first, key=int))], proc,
                               "a replacement job running")[0]
        wait_for(lambda: registered(logs / f"{JOB_NAME}-{replacement}.err"), proc, "the replacement worker joined")
        out, err = proc.communicate(timeout=600)
    finally:
        stop(proc)
        left = _running_jobs()
        if left:
            subprocess.run(["scancel", *left])
    assert proc.returncode == 0, out[-3000:] + err[-5000:]
    assert "Traceback" not in out + err
    assert f"{len(NIGHTS) * UNITS_PER_NIGHT} unit(s) processed, 0 up to date" in out
    assert len(l1_products(root)) == 5 * len(NIGHTS)
    # said once by the run: resubmitted by oiflow's keeper, or already replaced by Dask's own timer
    assert re.search(rf"worker job {victim} \(\S+\) lost its workers: (submitting a replacement|replaced by job \d+)",
                     err), err[-3000:]

    assert done_at_cancel < 5 * len(NIGHTS), "the job was cancelled after the run's work was done"
    started = _started_since(log_offset)  # the controller's record of the jobs
    assert set(first) | {replacement} <= set(started), (first, replacement, started)
    assert eventually(lambda: _running_jobs() == [])  # the run cancelled its jobs when it ended
    check_products(root)
