"""Cluster profiles and the job scripts that `oiflow run --dry-run` prints (nothing submitted)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from oiflow.cli import main
from oiflow.cluster import ClusterProfile, job_script, load_profile, shell_word
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


def test_workers_keep_glibcs_adaptive_trim_threshold_and_one_blas_thread():
    """Dask's nannies set MALLOC_TRIM_THRESHOLD_=65536 in their workers (the stages' large
    temporaries then came back as fresh pages: the companion grid ran 3.7x slower in a worker).
    oiflow's workers, local or in job scripts, get the trim threshold at 64 MiB and the mmap
    threshold at 32 MiB (and Dask's one BLAS/OpenMP thread)."""
    import dask
    from distributed import Client

    from oiflow.cluster import DASK_ENV, WORKER_SPAWN_ENV, make_cluster

    dask_default = dask.config.get("distributed.nanny.pre-spawn-environ")
    assert set(dask_default) <= set(WORKER_SPAWN_ENV)  # each of Dask's variables set (env settings add)
    assert WORKER_SPAWN_ENV["MALLOC_TRIM_THRESHOLD_"] == 64 * 2**20 > dask_default["MALLOC_TRIM_THRESHOLD_"]
    for name in ("oar", "slurm"):  # the export line, read back as a job's Dask reads its environment
        line = next(ln for ln in job_script(load_profile(name), ENV).splitlines()
                    if ln.startswith("export DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON="))
        value = shlex.split(line.split("=", 1)[1])[0]
        assert value == DASK_ENV["DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON"]
        read = subprocess.run([sys.executable, "-c", "import dask, distributed, json; print(json.dumps("
                               "dask.config.get('distributed.nanny.pre-spawn-environ')))"],
                              env={**os.environ, "DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON": value},
                              capture_output=True, text=True, check=True)
        assert json.loads(read.stdout) == WORKER_SPAWN_ENV
    with make_cluster(load_profile("local", {"n_workers": 1}), {}) as cluster, Client(cluster) as c:
        seen = c.run(lambda: {k: os.environ.get(k) for k in WORKER_SPAWN_ENV})
    assert list(seen.values()) == [{k: str(v) for k, v in WORKER_SPAWN_ENV.items()}]


def test_worker_jobs_never_import_from_the_submission_directory(tmp_path):
    """A batch job starts where the flow was submitted; `python -m distributed.cli.dask_worker`
    would put that directory first on sys.path, and a checkout's oiflow/ there shadowed the
    installed package (the OAR test's workers failed with "No module named 'oiflow.flows'").
    Every job script exports PYTHONSAFEPATH (and into Apptainer), and with it such a directory
    is not searched."""
    import subprocess
    import sys

    for name in ("oar", "slurm"):
        lines = job_script(load_profile(name), ENV).splitlines()
        assert "export PYTHONSAFEPATH=1" in lines
        assert "export APPTAINERENV_PYTHONSAFEPATH=1" in lines  # both shipped profiles use Apptainer
    (tmp_path / "shadow").mkdir()
    (tmp_path / "shadow" / "__init__.py").write_text("raise SystemExit('imported from the submission directory')\n")
    (tmp_path / "probe.py").write_text("import importlib.util\nprint(importlib.util.find_spec('shadow'))\n")
    for env, found in (({}, True), ({"PYTHONSAFEPATH": "1"}, False)):
        out = subprocess.run([sys.executable, "-m", "probe"], cwd=tmp_path, capture_output=True, text=True,
                             env={"PATH": "/usr/bin:/bin", **env}, timeout=60)
        if found:
            assert out.returncode == 0 and "shadow" in out.stdout
        else:  # without the submission directory on sys.path, not even the probe module is found
            assert out.returncode == 1 and "No module named probe" in out.stderr


# -- job-script values are quoted; bind paths are validated -------------------------------------

HOSTILE = "x y;touch PWNED;'q\"$(touch PWNED2)"  # a space, ;, both quotes, a command substitution


def _fake_command(path: Path) -> Path:
    """An executable at ``path`` that writes its arguments (NUL-separated) and $PROBE to $ARGV_OUT."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('#!/bin/sh\nprintf "%s\\0" "$@" > "$ARGV_OUT"\nprintf "%s" "$PROBE" > "$ARGV_OUT.probe"\n')
    path.chmod(0o755)
    return path


def _run_script(script: str, tmp_path: Path) -> tuple[list[str], str]:
    """Run a job script with bash (its directives are comments there); the fake worker command's
    arguments and the exported $PROBE it saw."""
    argv_out = tmp_path / "argv"
    env = {"PATH": os.environ["PATH"], "ARGV_OUT": str(argv_out), "TMPDIR": str(tmp_path / "node tmp")}
    out = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return argv_out.read_text().split("\0")[:-1], Path(f"{argv_out}.probe").read_text()


def _no_command_ran(tmp_path: Path) -> None:
    assert not [p for p in tmp_path.rglob("PWNED*")] and not Path("PWNED").exists()


@pytest.mark.parametrize("kind", ["slurm", "oar"])
def test_hostile_values_stay_one_inert_argument_of_the_apptainer_worker_line(tmp_path, kind):
    weird = tmp_path / HOSTILE.replace("/", "_")
    apptainer = _fake_command(weird / "bin" / "apptainer")
    scratch = str(tmp_path / f"scratch {HOSTILE.replace('/', '_')}")
    profile = ClusterProfile(kind=kind, scratch=scratch,
                             job={"cores": 1, "memory": "1GB", "local_directory": f"$TMPDIR/dask {HOSTILE}",
                                  "interface": f"ib0;{HOSTILE}", "worker_extra_args": ["--lifetime", HOSTILE],
                                  **({"memory_per_core_property_name": "memcore"} if kind == "oar" else {})},
                             apptainer={"executable": str(apptainer), "image": str(weird / "o i.sif"),
                                        "binds": [str(weird)]})
    script = job_script(profile, {"PROBE": HOSTILE})
    argv, probe = _run_script(script, tmp_path)
    _no_command_ran(tmp_path)
    assert probe == HOSTILE
    assert argv[:5] == ["exec", "--bind", f"{weird},{scratch}", str(weird / "o i.sif"), "python3"]
    assert argv[5:8] == ["-m", "distributed.cli.dask_worker", "tcp://SCHEDULER:8786"]
    assert argv[argv.index("--local-directory") + 1] == f"{tmp_path / 'node tmp'}/dask {HOSTILE}"  # $TMPDIR expanded
    assert argv[argv.index("--interface") + 1] == f"ib0;{HOSTILE}"
    assert argv[argv.index("--lifetime") + 1] == HOSTILE
    assert Path(scratch, "logs").is_dir() and Path(scratch, "dask-tmp").is_dir()  # the script's mkdir, quoted
    # the job's output files: one argument each, as sbatch (and dask-jobqueue's oarsub call) split directives
    prefix = "#SBATCH " if kind == "slurm" else "#OAR "
    flags = ("-o", "-e") if kind == "slurm" else ("-O", "-E")
    outputs = [shlex.split(line[len(prefix):]) for line in script.splitlines()
               if line.startswith(prefix) and line.split()[1] in flags]
    assert [o[0] for o in outputs] == list(flags) and all(len(o) == 2 for o in outputs)
    assert all(o[1].startswith(f"{scratch}/logs/oiflow-worker") for o in outputs)


def test_hostile_python_path_stays_one_argument(tmp_path):
    python = _fake_command(tmp_path / HOSTILE.replace("/", "_") / "python")
    script = job_script(ClusterProfile(kind="slurm", job={"cores": 1, "memory": "1GB", "python": str(python)}))
    argv, _ = _run_script(script, tmp_path)
    _no_command_ran(tmp_path)
    assert argv[:3] == ["-m", "distributed.cli.dask_worker", "tcp://SCHEDULER:8786"]


def test_shell_word_expands_only_a_leading_variable():
    env = {"PATH": os.environ["PATH"], "TMPDIR": "/node/t mp"}
    for value, expected in [("$TMPDIR", "/node/t mp"), ("${TMPDIR}/a;b", "/node/t mp/a;b"),
                            ("/x/$TMPDIR", "/x/$TMPDIR"), ("$(touch PWNED)", "$(touch PWNED)"),
                            ("$TMPDIR$(id)", "/node/t mp$(id)")]:
        out = subprocess.run(["bash", "-c", f"printf %s {shell_word(value)}"], env=env, capture_output=True, text=True)
        assert out.stdout == expected, value


@pytest.mark.parametrize("bad, message", [
    ({"apptainer": {"image": "/i.sif", "binds": ["/data,/etc"]}}, "apptainer.binds: '/data,/etc' is not a plain"),
    ({"apptainer": {"image": "/i.sif", "binds": ["/data:/mnt:ro"]}}, "apptainer.binds: '/data:/mnt:ro' is not a plain"),
    ({"apptainer": {"image": "/i.sif"}, "scratch": "/scratch/a,b"}, "scratch (bound into the Apptainer container)"),
    ({"job": {"queue": "debug\nrm -rf ~"}}, "job.queue"),
    ({"job": {"job_name": "a b"}}, "job.job_name 'a b' is not a plain name"),
    ({"job": {"job_extra_directives": ["-t x\ntouch PWNED"]}}, "job.job_extra_directives[0]"),
    ({"scratch": "/s\n/t"}, "contains a control character"),
])
def test_unsafe_profile_values_are_refused_with_a_config_error(tmp_path, bad, message):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"kind": "slurm", **bad}))
    with pytest.raises(ConfigError) as err:
        load_profile(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_shipped_profiles_are_package_data_and_the_checkout_copy_is_the_same_files(repo_root):
    from oiflow.cluster import PROFILE_DIR, profile_names

    assert PROFILE_DIR == Path(__file__).resolve().parents[1] / "oiflow" / "data" / "clusters"
    assert profile_names() == ["address", "local", "oar", "slurm"]
    configs = repo_root / "configs" / "clusters"
    assert configs.resolve() == PROFILE_DIR  # one home: configs/clusters links to the package data
    for name in profile_names():
        assert load_profile(name) == load_profile(configs / f"{name}.yaml")


# -- lost worker jobs are resubmitted -----------------------------------------------------------


class _FakeJob:
    def __init__(self, job_id):
        self.job_id, self.closed = job_id, False

    async def close(self):
        self.closed = True


class _FakeCluster:
    """The parts of a dask-jobqueue cluster that LostJobKeeper reads: planned jobs (worker_spec),
    started jobs (workers), the scheduler's workers, scale()."""

    def __init__(self):
        from distributed.core import Status

        self.status = Status.running
        self.worker_spec = {"C-0": {}, "C-1": {"group": ["-0", "-1"]}, "C-2": {}}
        self.workers = {"C-0": _FakeJob("11"), "C-1": _FakeJob("12"), "C-2": _FakeJob("13")}
        self.connected = {"C-0", "C-1-0", "C-1-1"}  # C-2: still queued
        self.scaled: list[int] = []

    @property
    def scheduler_info(self):
        return {"workers": {f"tcp://w/{n}": {"name": n} for n in self.connected}}

    def scale(self, jobs):
        self.scaled.append(jobs)


def test_lost_job_keeper_replaces_lost_jobs_and_leaves_queued_ones_alone():
    import asyncio

    from oiflow.cluster import LostJobKeeper

    c = _FakeCluster()
    keeper = LostJobKeeper(c)
    grace = keeper.grace_s
    assert keeper.lost_jobs(0.0) == ([], [])
    c.connected = {"C-0"}  # both workers of the 2-process job C-1 gone (its job cancelled)
    assert keeper.lost_jobs(grace - 1) == ([], [])  # within the grace time: they may come back
    lost, forgotten = keeper.lost_jobs(grace + 1)
    assert [name for name, _ in lost] == ["C-1"] and forgotten == []
    job12 = c.workers["C-1"]
    asyncio.run(keeper.check())  # at a later monotonic time: C-1 lost for longer than the grace
    assert job12.closed and "C-1" not in c.workers and c.scaled == [3]  # back to the 3 planned jobs
    assert keeper.replaced == ["12"]
    # a single-worker job forgotten by SpecCluster itself (its own lost-worker timer) is resubmitted
    del c.workers["C-0"]
    c.connected = set()
    asyncio.run(keeper.check())
    assert keeper.replaced == ["12", "11"] and c.scaled == [3, 3]
    # SpecCluster replaced a lost single-worker job by one of the same name between two checks:
    # said once, with both batch ids (nothing to resubmit)
    c.workers["C-1"] = _FakeJob("15")  # (the fake's scale() submits nothing: C-1's replacement by hand)
    c.workers["C-0"], c.connected = _FakeJob("16"), {"C-0"}
    asyncio.run(keeper.check())  # C-0 seen connected as job 16
    c.workers["C-0"], c.connected = _FakeJob("17"), set()
    assert keeper.renewed_jobs() == [("C-0", "16", "17")]
    asyncio.run(keeper.check())
    asyncio.run(keeper.check())
    assert keeper.replaced == ["12", "11", "16"] and c.scaled == [3, 3] and keeper.renewed_jobs() == []
    # a job that connected and was forgotten by SpecCluster between two checks (never seen
    # connected here) is named by the batch id it was started with
    c.workers["C-0"], c.connected = _FakeJob("18"), set()
    asyncio.run(keeper.check())  # job 18 started, not yet connected
    del c.workers["C-0"]  # connected, cancelled and forgotten within one interval
    asyncio.run(keeper.check())
    assert keeper.replaced == ["12", "11", "16", "18"] and c.scaled == [3, 3, 3]
    # the job that never connected (C-2, still queued) is never taken for lost
    assert "C-2" in c.workers and not c.workers["C-2"].closed
    # a job retired on purpose (not planned any more) is not replaced
    del c.worker_spec["C-2"], c.workers["C-2"]
    c.workers["C-0"], c.workers["C-1"] = _FakeJob("14"), _FakeJob("15")
    asyncio.run(keeper.check())
    assert keeper.replaced == ["12", "11", "16", "18"] and c.scaled == [3, 3, 3]
