"""Dask cluster profiles: where the coarse tasks of a flow run.

A profile is a small YAML file (``configs/clusters/<name>.yaml``) naming a *kind*:

* ``local``   — a :class:`distributed.LocalCluster` on this machine (the default);
* ``slurm`` / ``oar`` — worker jobs submitted by dask-jobqueue (``SLURMCluster``/``OARCluster``);
  ``job`` holds the jobqueue arguments (cores, memory, walltime, project/account, queue,
  interface, memory property…), ``apptainer`` an image that the workers run in, ``scratch`` a
  shared directory for worker logs and Dask's shared temporary files;
* ``address`` — an existing Dask scheduler (``address: tcp://host:8786``).

Workers receive environment variables from the flow (``worker_env``: the Prefect API URL and
the telemetry switches), as ``Nanny(env=…)`` locally and as ``export`` lines in job scripts.

Dask's statistical profiler is off (:data:`DASK_CONFIG`): it samples every event loop and task
thread every 10 ms for the dashboard's profile page, which oiflow does not show; on a 2-core
machine the scheduler, nannies and workers spent CPU on it that the stages need. For the same
reason the event loops' health tick runs every second (not 20 ms), the system monitor (the
dashboard's graphs) every 2 s and the memory monitor every 0.5 s (not 100 ms): an idle worker
then costs 0.4% of a core instead of 1.5%, which 32 workers on 2 cores felt
(tests/benchmarks/bench_scale.py).
This module does not import Prefect; dask-jobqueue is imported only when a job queue is used.
"""

from __future__ import annotations

import logging
import os
import shlex
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError

#: Dask settings of every oiflow cluster (see the module docstring); DASK_ENV: the same for the
#: workers of job scripts (jobqueue_kwargs adds it to their environment)
DASK_CONFIG = {"distributed.worker.profile.enabled": False, "distributed.admin.tick.interval": "1s",
               "distributed.admin.system-monitor.interval": "2s", "distributed.worker.memory.monitor-interval": "500ms"}
DASK_ENV = {"DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False", "DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL": "1s",
            "DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__INTERVAL": "2s",
            "DASK_DISTRIBUTED__WORKER__MEMORY__MONITOR_INTERVAL": "500ms"}

#: directory of the profiles shipped with oiflow (configs/clusters beside the package)
PROFILE_DIR = Path(__file__).resolve().parents[1] / "configs" / "clusters"


class ApptainerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: str  # path of the .sif image on the cluster
    binds: list[str] = Field(default_factory=list)  # directories bound into the container
    executable: str = "apptainer"


class ClusterProfile(BaseModel):
    """A Dask cluster profile (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "slurm", "oar", "address"] = "local"
    n_workers: int | None = None  # local: worker processes (default: CPU count); jobqueue: jobs to start
    threads_per_worker: int = 1
    memory_limit: str | None = None  # local: per worker, e.g. "4GB"
    address: str | None = None  # kind=address: the scheduler
    adapt: dict[str, int] | None = None  # jobqueue: {minimum, maximum} jobs instead of a fixed n_workers
    job: dict[str, Any] = Field(default_factory=dict)  # jobqueue cluster arguments
    apptainer: ApptainerSettings | None = None
    scratch: str | None = None  # shared scratch directory (jobqueue: logs and shared temp)

    def worker_count(self) -> int:
        if self.n_workers is not None:
            return self.n_workers
        if self.kind == "local":
            return os.cpu_count() or 1
        return 1


def load_profile(name_or_path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> ClusterProfile:
    """A profile by name (``local``, ``slurm``, ``oar``, ``address`` in ``configs/clusters``) or
    by path to a YAML file, with ``overrides`` applied on top."""
    p = Path(name_or_path)
    if not p.suffix:
        p = PROFILE_DIR / f"{name_or_path}.yaml"
    data: dict[str, Any] = {}
    if p.is_file():
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: invalid YAML: {exc}") from None
    elif str(name_or_path) == "local":
        data = {"kind": "local"}
    else:
        raise ConfigError(f"cluster profile not found: {name_or_path} (looked for {p})")
    for k, v in (overrides or {}).items():
        if v is not None:
            data[k] = v
    try:
        return ClusterProfile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"cluster profile {name_or_path}: {exc}") from None


def _export_lines(env: dict[str, str]) -> list[str]:
    return [f"export {k}={shlex.quote(str(v))}" for k, v in sorted(env.items())]


def jobqueue_kwargs(profile: ClusterProfile, worker_env: dict[str, str] | None = None) -> dict[str, Any]:
    """The keyword arguments of the dask-jobqueue cluster of a slurm/oar profile."""
    if profile.kind not in ("slurm", "oar"):
        raise ConfigError(f"profile kind {profile.kind!r} does not use a job queue")
    kw = dict(profile.job)
    kw.setdefault("processes", 1)
    kw.setdefault("job_name", "oiflow-worker")
    prologue = list(kw.pop("job_script_prologue", []) or [])
    worker_env = {**DASK_ENV, **(worker_env or {})}
    prologue += _export_lines(worker_env)
    if profile.scratch:
        scratch = profile.scratch
        prologue.append(f"mkdir -p {shlex.quote(scratch)}/logs {shlex.quote(scratch)}/dask-tmp")
        kw.setdefault("log_directory", f"{scratch}/logs")
        kw.setdefault("shared_temp_directory", f"{scratch}/dask-tmp")
        prologue.append(f"export OIFLOW_SCRATCH={shlex.quote(scratch)}")
        if profile.kind == "oar":  # OAR writes the job's stdout/stderr where -O/-E say
            extra = list(kw.get("job_extra_directives") or [])
            extra += [f"-O {scratch}/logs/oiflow-worker.%jobid%.out", f"-E {scratch}/logs/oiflow-worker.%jobid%.err"]
            kw["job_extra_directives"] = extra
    if profile.apptainer is not None:
        a = profile.apptainer
        binds = list(a.binds) + ([profile.scratch] if profile.scratch and profile.scratch not in a.binds else [])
        bind = f" --bind {shlex.quote(','.join(binds))}" if binds else ""
        # APPTAINERENV_* reach the container's environment (Apptainer cleans some variables)
        prologue += [f"export APPTAINERENV_{k}={shlex.quote(str(v))}" for k, v in sorted((worker_env or {}).items())]
        kw["python"] = f"{a.executable} exec{bind} {shlex.quote(a.image)} python3"
    kw["job_script_prologue"] = prologue
    return kw


def _jobqueue_class(kind: str):
    try:
        import dask_jobqueue
    except ImportError:
        raise ConfigError(f"the {kind} profile needs dask-jobqueue: pip install 'oiflow[hpc]'") from None
    return {"slurm": dask_jobqueue.SLURMCluster, "oar": dask_jobqueue.OARCluster}[kind]


def job_script(profile: ClusterProfile, worker_env: dict[str, str] | None = None,
               scheduler: str = "tcp://SCHEDULER:8786") -> str:
    """The batch script one worker job would run. Nothing is started or submitted: the job is
    built without a scheduler, whose address appears as ``scheduler``."""
    cls = _jobqueue_class(profile.kind)
    kw = jobqueue_kwargs(profile, worker_env)
    for cluster_only in ("scheduler_options", "shared_temp_directory", "n_workers", "silence_logs", "security",
                         "asynchronous", "dashboard_address", "host", "protocol"):
        kw.pop(cluster_only, None)
    job = cls.job_cls(scheduler=scheduler, name=f"{kw.get('job_name', 'oiflow-worker')}-0", **kw)
    return job.job_script()


def make_cluster(profile: ClusterProfile, worker_env: dict[str, str] | None = None):
    """Start the Dask cluster of a profile (not for kind=address: connect to ``profile.address``)."""
    env = dict(worker_env or {})
    if profile.kind == "local":
        import dask
        from distributed import LocalCluster

        with dask.config.set(DASK_CONFIG):  # the scheduler and nannies here; the nannies pass it to the workers
            return LocalCluster(n_workers=profile.worker_count(), threads_per_worker=profile.threads_per_worker,
                                processes=True, memory_limit=profile.memory_limit or "auto", env=env,
                                dashboard_address=None, silence_logs=logging.ERROR)
    if profile.kind in ("slurm", "oar"):
        cluster = _jobqueue_class(profile.kind)(**jobqueue_kwargs(profile, env))
        if profile.adapt:
            cluster.adapt(**profile.adapt)
        else:
            cluster.scale(jobs=profile.worker_count())
        return cluster
    raise ConfigError("a cluster of kind 'address' already exists: connect to its address")
