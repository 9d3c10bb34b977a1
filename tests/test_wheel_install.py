"""The built wheel, installed in a fresh virtualenv, prints the SLURM and OAR job scripts of
`oiflow run CONFIG --cluster slurm|oar --dry-run` from a directory outside the repository: the
cluster profiles travel as package data. Slow (builds the wheel, installs its dependencies);
.ci/run runs it."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from scheduler_run import REPO, wheel_venv

pytestmark = pytest.mark.slow


def _oiflow(venv, args, cwd):
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("PREFECT_")}
    return subprocess.run([str(venv / "bin" / "oiflow"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_installed_wheel_prints_slurm_and_oar_job_scripts_from_any_directory(tmp_path):
    venv = wheel_venv()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert not elsewhere.resolve().is_relative_to(REPO)
    (elsewhere / "run.yaml").write_text("input: {level: 2, files: []}\noutput: {root: products}\n")

    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import oiflow.cluster as c; print(c.PROFILE_DIR)"],
                           cwd=elsewhere, capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(venv)) and where.endswith("oiflow/data/clusters")  # not the checkout's
    # the Prefect layer installs as oiflow.flows / oiflow.tasks: no generic top-level names in the wheel
    names = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import importlib.util as u, oiflow.flows.pipeline as p, oiflow.fit.model as m\n"
                            "print(u.find_spec('flows'), u.find_spec('tasks'), p.__file__.startswith(m.__file__[:-12]),"
                            " m.shipped_models())"],
                           cwd=elsewhere, capture_output=True, text=True, check=True).stdout.strip().split(maxsplit=3)
    assert names == ["None", "None", "True", "['binary-demo', 'ud']"]

    slurm = _oiflow(venv, ["run", "run.yaml", "--cluster", "slurm", "--dry-run"], elsewhere)
    assert slurm.returncode == 0, slurm.stderr
    assert "# slurm profile slurm: 4 job(s)" in slurm.stdout
    for line in ("#SBATCH -A my-account", "#SBATCH -p normal", "#SBATCH --cpus-per-task=8"):
        assert line in slurm.stdout.splitlines()
    worker = slurm.stdout.strip().splitlines()[-1]
    assert worker.startswith("apptainer exec --bind /scratch,/scratch/my-account/oiflow /scratch/my-account/oiflow.sif "
                             "python3 -m distributed.cli.dask_worker")
    assert '--local-directory "${TMPDIR}"' in worker

    oar = _oiflow(venv, ["run", "run.yaml", "--cluster", "oar", "--dry-run"], elsewhere)
    assert oar.returncode == 0, oar.stderr
    for line in ("#OAR --project my-project", "#OAR -l /nodes=1/core=8,walltime=04:00:00", "#OAR -p memcore>=3815"):
        assert line in oar.stdout.splitlines()

    # a user's own profile, by path
    (elsewhere / "mine.yaml").write_text(yaml.safe_dump({"kind": "oar", "n_workers": 3, "job": {
        "cores": 2, "memory": "4GB", "memory_per_core_property_name": "memcore", "project": "astro-oi"}}))
    mine = _oiflow(venv, ["run", "run.yaml", "--cluster", "mine.yaml", "--dry-run"], elsewhere)
    assert mine.returncode == 0, mine.stderr
    assert "# oar profile mine.yaml: 3 job(s)" in mine.stdout and "#OAR --project astro-oi" in mine.stdout

    # a mistyped name: one line naming the shipped profiles, usage exit code
    typo = _oiflow(venv, ["run", "run.yaml", "--cluster", "slrum", "--dry-run"], elsewhere)
    assert typo.returncode == 2 and "Traceback" not in typo.stderr
    assert "cluster profile not found: slrum" in typo.stderr and "address, local, oar, slurm" in typo.stderr
