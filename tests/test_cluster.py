"""Cluster profiles and the job scripts that `oiflow run --dry-run` prints (nothing submitted)."""

from __future__ import annotations

import pytest

from oiflow.cli import main
from oiflow.cluster import job_script, load_profile
from oiflow.errors import ConfigError

ENV = {"PREFECT_API_URL": "http://10.1.2.3:4200/api", "DO_NOT_TRACK": "1"}


def test_oar_job_script_is_shaped_for_ciment():
    script = job_script(load_profile("oar"), ENV)
    lines = script.splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "#OAR --project my-project" in lines
    assert "#OAR -l /nodes=1/core=8,walltime=04:00:00" in lines
    assert "#OAR -p memcore>=3815" in lines  # 32 GB over 8 cores, in MiB
    assert "#OAR -O /bettik/my-project/oiflow/logs/oiflow-worker.%jobid%.out" in lines
    assert "export PREFECT_API_URL=http://10.1.2.3:4200/api" in lines
    assert "export APPTAINERENV_PREFECT_API_URL=http://10.1.2.3:4200/api" in lines
    assert "export DO_NOT_TRACK=1" in lines
    worker = lines[-1]
    assert worker.startswith("apptainer exec --bind /bettik,/bettik/my-project/oiflow /bettik/my-project/oiflow.sif "
                             "python3 -m distributed.cli.dask_worker tcp://SCHEDULER:8786")
    assert "--interface ib0" in worker and "--nworkers 8" in worker and "--nthreads 1" in worker
    assert "--local-directory /var/tmp" in worker


def test_slurm_job_script():
    script = job_script(load_profile("slurm"), ENV)
    for line in ("#SBATCH -A my-account", "#SBATCH -p normal", "#SBATCH --cpus-per-task=8", "#SBATCH -t 04:00:00",
                 "export PREFECT_API_URL=http://10.1.2.3:4200/api"):
        assert line in script.splitlines()


def test_profiles_load_and_validate(tmp_path):
    assert load_profile("local").kind == "local"
    assert load_profile("local", {"n_workers": 3}).worker_count() == 3
    assert load_profile("address").address == "tcp://127.0.0.1:8786"
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: pbs\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: kind: should be .*\(got 'pbs'\)"):
        load_profile(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_profile("nosuchprofile")


def test_run_dry_run_prints_the_oar_job_script(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://10.9.9.9:4200/api")
    cfg = tmp_path / "run.yaml"
    cfg.write_text("input: {level: 2, files: []}\noutput: {root: products}\n")
    assert main(["run", str(cfg), "--cluster", "oar", "--workers", "6", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "# oar profile oar: 6 job(s)" in out
    assert "#OAR --project my-project" in out and "export PREFECT_API_URL=http://10.9.9.9:4200/api" in out
    assert "export PREFECT_SERVER_ANALYTICS_ENABLED=false" in out
    assert main(["run", str(cfg), "--dry-run"]) == 0
    assert "LocalCluster" in capsys.readouterr().out


def test_dask_profiler_is_off_in_job_scripts_and_local_workers():
    """Dask's 10 ms statistical profiler (for a dashboard oiflow does not show) is switched off
    for the workers of every profile: an export line in job scripts, the Dask config locally."""
    from distributed import Client

    from oiflow.cluster import make_cluster

    assert "export DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False" in job_script(load_profile("oar"), ENV).splitlines()
    assert "export DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False" in job_script(load_profile("slurm"), ENV).splitlines()
    with make_cluster(load_profile("local", {"n_workers": 1}), {"OIFLOW_PROBE": "1"}) as cluster, Client(cluster) as c:
        import dask
        import os

        seen = c.run(lambda: (dask.config.get("distributed.worker.profile.enabled"), os.environ.get("OIFLOW_PROBE")))
    assert list(seen.values()) == [(False, "1")]
