"""Dask cluster profiles: where the coarse tasks of a flow run.

A profile is a small YAML file naming a *kind*; the ones shipped with oiflow are package data
(``oiflow/data/clusters/<name>.yaml``, also seen as ``configs/clusters/`` in a checkout) and are
found by name; a user's own profile is given by its path:

* ``local``   — a :class:`distributed.LocalCluster` on this machine (the default);
* ``slurm`` / ``oar`` — worker jobs submitted by dask-jobqueue (``SLURMCluster``/``OARCluster``);
  ``job`` holds the jobqueue arguments (cores, memory, walltime, project/account, queue,
  interface, memory property…), ``apptainer`` an image that the workers run in, ``scratch`` a
  shared directory for worker logs and Dask's shared temporary files;
* ``address`` — an existing Dask scheduler (``address: tcp://host:8786``).

Workers receive environment variables from the flow (``worker_env``: the Prefect API URL and
the telemetry switches), as ``Nanny(env=…)`` locally and as ``export`` lines in job scripts.

Job scripts are written by dask-jobqueue from :func:`jobqueue_kwargs`. Every value of a profile
that lands on a shell line of the script (the interpreter or Apptainer command, binds, image,
scratch, local directory, interface, extra worker arguments, exported variables) is quoted
there: one inert word, whatever it holds (``;``, spaces, quotes). A value may start with
``$NAME`` or ``${NAME}`` (e.g. ``local_directory: $TMPDIR``): that variable is expanded when the
job runs, the rest stays literal. Values that land on directive lines (``#SBATCH``/``#OAR``) are
quoted the same way (sbatch and dask-jobqueue's oarsub call both split them as a shell would);
names (job_name, queue, account, project, walltime) must be plain tokens and no value may hold a
control character (a newline would start a line of its own). ``job_script_prologue`` and
``job_extra_directives`` are the user's own shell lines and directives, written as given.

A worker job that the scheduler loses (cancelled, killed at its walltime, its node lost) is
resubmitted: :class:`LostJobKeeper`.

Dask's statistical profiler is off (:data:`DASK_CONFIG`): it samples every event loop and task
thread every 10 ms for the dashboard's profile page, which oiflow does not show; on a 2-core
machine the scheduler, nannies and workers spent CPU on it that the stages need. For the same
reason the event loops' health tick runs every second (not 20 ms), the system monitor (the
dashboard's graphs) every 2 s and the memory monitor every 0.5 s (not 100 ms): an idle worker
then costs 0.4% of a core instead of 1.5%, which 32 workers on 2 cores felt
(tests/benchmarks/bench_scale.py).
Dask's nannies start their workers with ``MALLOC_TRIM_THRESHOLD_=65536``, to keep a worker's
unmanaged memory low: glibc then returns freed memory above 64 KiB to the system, and (any such
setting turns glibc's adaptive thresholds off) serves every block over 128 KiB by a fresh
mmap. The stages allocate and free large temporary arrays all the time, each of them then came
back as fresh pages: the companion search's grid ran 3.7× slower in a worker than in a plain
process (0.55 vs 0.15 s of CPU for the same chunk of nodes), the demo's AX Cir fit took 5 s
instead of 2. oiflow's workers get glibc's trim threshold at 64 MiB and its mmap threshold at
32 MiB, where glibc's adaptive thresholds end up for such a process (:data:`WORKER_SPAWN_ENV`;
the same chunk: 0.15 s). A Dask setting given by environment variable (job scripts) adds to
Dask's default rather than replacing it, so the variable is set, not left out.
This module does not import Prefect; dask-jobqueue is imported only when a job queue is used.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import sys
import time
import weakref
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .config import load_yaml, validate
from .errors import ConfigError

#: what a nanny sets in its worker's environment before starting it (see the module docstring):
#: Dask's default with glibc's trim threshold at 64 MiB (Dask: 64 KiB) and its mmap threshold at
#: 32 MiB (the top of glibc's own adaptive range; setting either fixes both); one BLAS/OpenMP thread
WORKER_SPAWN_ENV = {"MALLOC_TRIM_THRESHOLD_": 64 * 2**20, "MALLOC_MMAP_THRESHOLD_": 32 * 2**20,
                    "OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1}
#: Dask settings of every oiflow cluster (see the module docstring); DASK_ENV: the same for the
#: workers of job scripts (jobqueue_kwargs adds it to their environment)
DASK_CONFIG = {"distributed.worker.profile.enabled": False, "distributed.admin.tick.interval": "1s",
               "distributed.admin.system-monitor.interval": "2s", "distributed.worker.memory.monitor-interval": "500ms",
               "distributed.nanny.pre-spawn-environ": WORKER_SPAWN_ENV}
DASK_ENV = {"DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False", "DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL": "1s",
            "DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__INTERVAL": "2s",
            "DASK_DISTRIBUTED__WORKER__MEMORY__MONITOR_INTERVAL": "500ms",
            "DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON": json.dumps(WORKER_SPAWN_ENV)}

#: the environment of a worker job's Python: a batch job starts in the directory the flow was
#: submitted from, and ``python -m distributed.cli.dask_worker`` would put that directory first on
#: sys.path — an ``oiflow/`` folder there (a checkout of the sources) would shadow the installed
#: package the workers must run (PYTHONSAFEPATH, Python ≥ 3.11: no such first entry)
JOB_PYTHON_ENV = {"PYTHONSAFEPATH": "1"}

#: directory of the profiles shipped with oiflow (package data; configs/clusters links to it)
PROFILE_DIR = Path(__file__).resolve().parent / "data" / "clusters"

log = logging.getLogger(__name__)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TOKEN = re.compile(r"^[\w.@+,:-]+$")  # scheduler names and times: partitions may be listed with commas
#: job arguments that are scheduler names or times (directive lines, the worker's --name)
_TOKEN_KEYS = ("job_name", "queue", "account", "project", "walltime", "memory_per_core_property_name")
_ENV_PREFIX = re.compile(r"^\$(?:\{(\w+)\}|(\w+))(.*)$", re.DOTALL)


def _no_control(value: str, what: str) -> str:
    if _CONTROL.search(value):
        raise ValueError(f"{what} {value!r} contains a control character "
                         "(a newline would start a line of the job script)")
    return value


class ApptainerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: str  # path of the .sif image on the cluster
    binds: list[str] = Field(default_factory=list)  # directories bound into the container (read-write)
    executable: str = "apptainer"

    @field_validator("image", "executable")
    @classmethod
    def _plain(cls, v: str, info) -> str:
        return _no_control(v, f"apptainer.{info.field_name}")

    @field_validator("binds")
    @classmethod
    def _bind_paths(cls, v: list[str]) -> list[str]:
        for path in v:
            _check_bind_path(path, "apptainer.binds")
        return v


def _check_bind_path(path: str, what: str) -> None:
    """A bind is one directory, bound at the same place: Apptainer's --bind splits its value at
    commas (binds) and colons (source:destination:options), so neither may occur in a path."""
    _no_control(path, what)
    if not path or "," in path or ":" in path:
        raise ValueError(f"{what}: {path!r} is not a plain directory path (Apptainer's --bind splits at ',' and ':'; "
                         "give each directory as its own list item, without options)")


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

    @field_validator("scratch")
    @classmethod
    def _scratch(cls, v: str | None) -> str | None:
        return None if v is None else _no_control(v, "scratch")

    @field_validator("job")
    @classmethod
    def _job(cls, v: dict[str, Any]) -> dict[str, Any]:
        def walk(value: Any, where: str) -> None:
            if isinstance(value, str):
                _no_control(value, where)
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    walk(item, f"{where}[{i}]")
            elif isinstance(value, dict):
                for k, item in value.items():
                    walk(item, f"{where}.{k}")

        walk(v, "job")
        for key in _TOKEN_KEYS:
            if v.get(key) is not None and not _TOKEN.match(str(v[key])):
                raise ValueError(f"job.{key} {v[key]!r} is not a plain name (letters, digits and . _ @ + , : - only)")
        return v

    @model_validator(mode="after")
    def _scratch_is_bindable(self) -> ClusterProfile:
        if self.apptainer is not None and self.scratch:
            _check_bind_path(self.scratch, "scratch (bound into the Apptainer container)")
        return self

    def worker_count(self) -> int:
        if self.n_workers is not None:
            return self.n_workers
        if self.kind == "local":
            return os.cpu_count() or 1
        return 1


def profile_names() -> list[str]:
    """Names of the profiles shipped with oiflow."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def load_profile(name_or_path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> ClusterProfile:
    """A profile by name (one of :func:`profile_names`, shipped with oiflow) or by path to a YAML
    file, with ``overrides`` applied on top."""
    p = Path(name_or_path)
    if not p.suffix:
        p = PROFILE_DIR / f"{name_or_path}.yaml"
    data: dict[str, Any] = {}
    if p.is_file():
        data = load_yaml(p)
    elif str(name_or_path) == "local":
        data = {"kind": "local"}
    else:
        raise ConfigError(f"cluster profile not found: {name_or_path} (not a file; the shipped profiles are "
                          f"{', '.join(profile_names())})")
    for k, v in (overrides or {}).items():
        if v is not None:
            data[k] = v
    return validate(ClusterProfile, data, p if p.is_file() else f"cluster profile {name_or_path}")


def shell_word(value: str) -> str:
    """``value`` as one inert shell word; a leading ``$NAME``/``${NAME}`` is left to expand when
    the job runs (double-quoted: one word even if its value has spaces), the rest is literal."""
    m = _ENV_PREFIX.match(value)
    if m is None:
        return shlex.quote(value)
    name, rest = m.group(1) or m.group(2), m.group(3)
    return f'"${{{name}}}"' + (shlex.quote(rest) if rest else "")


def _export_lines(env: dict[str, str]) -> list[str]:
    for k in env:
        if not re.fullmatch(r"[A-Za-z_]\w*", k):
            raise ConfigError(f"worker environment: {k!r} is not a variable name")
    return [f"export {k}={shlex.quote(str(v))}" for k, v in sorted(env.items())]


def log_directory(profile: ClusterProfile) -> str | None:
    """Where worker jobs write their output: ``job.log_directory``, else ``<scratch>/logs``."""
    if profile.job.get("log_directory"):
        return str(profile.job["log_directory"])
    return f"{profile.scratch}/logs" if profile.scratch else None


def _log_directives(kind: str, directory: str, job_name: str) -> list[str]:
    """The job's stdout/stderr files (sbatch -o/-e, oarsub -O/-E), quoted."""
    if kind == "slurm":
        return [f"-o {shlex.quote(f'{directory}/{job_name}-%j.out')}",
                f"-e {shlex.quote(f'{directory}/{job_name}-%j.err')}"]
    return [f"-O {shlex.quote(f'{directory}/{job_name}.%jobid%.out')}",
            f"-E {shlex.quote(f'{directory}/{job_name}.%jobid%.err')}"]


def _worker_python(profile: ClusterProfile, kw: dict[str, Any]) -> str:
    """The interpreter command of the worker line: the flow's Python (or ``job.python``), or
    ``apptainer exec --bind DIRS IMAGE python3``; each part one quoted word."""
    if profile.apptainer is None:
        return shlex.quote(str(kw.get("python") or sys.executable))
    a = profile.apptainer
    binds = list(a.binds) + ([profile.scratch] if profile.scratch and profile.scratch not in a.binds else [])
    bind = ["--bind", ",".join(binds)] if binds else []
    return " ".join(shlex.quote(w) for w in [a.executable, "exec", *bind, a.image, "python3"])


def jobqueue_kwargs(profile: ClusterProfile, worker_env: dict[str, str] | None = None) -> dict[str, Any]:
    """The keyword arguments of the dask-jobqueue cluster of a slurm/oar profile, with every
    value that reaches a line of the job script quoted (see the module docstring)."""
    if profile.kind not in ("slurm", "oar"):
        raise ConfigError(f"profile kind {profile.kind!r} does not use a job queue")
    kw = dict(profile.job)
    kw.setdefault("processes", 1)
    kw.setdefault("job_name", "oiflow-worker")
    kw.pop("log_directory", None)  # written as our own quoted directives below
    prologue = list(kw.pop("job_script_prologue", []) or [])
    worker_env = {**DASK_ENV, **JOB_PYTHON_ENV, **(worker_env or {})}
    prologue += _export_lines(worker_env)
    directives = list(kw.get("job_extra_directives") or [])
    if profile.scratch:
        scratch = profile.scratch
        prologue.append(f"mkdir -p {shlex.quote(scratch + '/logs')} {shlex.quote(scratch + '/dask-tmp')}")
        kw.setdefault("shared_temp_directory", f"{scratch}/dask-tmp")  # used by the flow process, not the script
        prologue.append(f"export OIFLOW_SCRATCH={shlex.quote(scratch)}")
    logs = log_directory(profile)
    if logs:
        directives += _log_directives(profile.kind, logs, kw["job_name"])
    kw["job_extra_directives"] = directives
    if profile.apptainer is not None:
        # APPTAINERENV_* reach the container's environment (Apptainer cleans some variables)
        prologue += _export_lines({f"APPTAINERENV_{k}": v for k, v in worker_env.items()})
    kw["python"] = _worker_python(profile, kw)
    for key in ("local_directory", "interface"):
        if kw.get(key) is not None:
            kw[key] = shell_word(str(kw[key]))
    if kw.get("worker_extra_args"):
        kw["worker_extra_args"] = [shell_word(str(a)) for a in kw["worker_extra_args"]]
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


class LostJobKeeper:
    """Resubmits the worker jobs of a dask-jobqueue cluster that the scheduler lost.

    Dask's SpecCluster cancels and forgets a job of one worker process whose worker left (after
    ``distributed.deploy.lost-worker-timeout``, 15 s) but submits no replacement, and never
    notices a lost job of several worker processes. Every ``interval_s`` this looks at the jobs
    the cluster means to have: a job of several workers that had connected and have all been gone
    for the lost-worker timeout is cancelled (if the batch system still has it) and forgotten; then
    the cluster is scaled back to its planned number of jobs, which submits the replacements (the
    same job names). A job that never connected (still queued, or failing at start) is left
    alone: no resubmission loop. Single-worker jobs are left to SpecCluster's own timer, which
    would otherwise cancel the replacement that reuses the lost job's name.
    """

    def __init__(self, cluster, interval_s: float = 2.0):
        import dask
        from dask.utils import parse_timedelta

        self.cluster = cluster
        self.interval_s = interval_s
        self.grace_s = parse_timedelta(dask.config.get("distributed.deploy.lost-worker-timeout"))
        # weak: a job object held here would outlive its closing (SpecCluster checks that none does);
        # by object, not name: a replacement job has the name of the job it replaces
        self._last_seen: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._connected: dict[str, str] = {}  # job name -> batch id of the job last seen connected under it
        # job name -> batch id of the job last seen started under it, connected or not: SpecCluster
        # forgets only a job whose worker connected and left, which may fall between two checks
        self._started: dict[str, str] = {}
        self.replaced: list[str] = []  # batch ids of the jobs replaced

    @staticmethod
    def _worker_names(job: str, spec: dict) -> set[str]:
        return {f"{job}{suffix}" for suffix in spec["group"]} if "group" in spec else {str(job)}

    def renewed_jobs(self) -> list[tuple[str, str, str]]:
        """(name, lost batch id, new batch id) of the jobs whose worker had connected and that
        SpecCluster itself has already replaced by a job of the same name (it may forget a lost
        single-worker job and submit the next one between two checks)."""
        renewed = []
        for name, old in self._connected.items():
            proc = self.cluster.workers.get(name)
            new = getattr(proc, "job_id", None)
            if new is not None and str(new) != old:
                renewed.append((name, old, str(new)))
        return renewed

    def lost_jobs(self, now: float) -> tuple[list[tuple[str, Any]], list[str]]:
        """(jobs of several workers to cancel and forget: connected once, then without workers
        for the grace time; names of jobs SpecCluster forgot: connected once, gone, still planned)."""
        c = self.cluster
        connected = {str(w.get("name")) for w in c.scheduler_info.get("workers", {}).values()}
        lost = []
        for name, proc in list(c.workers.items()):
            if name not in c.worker_spec:
                continue  # being retired on purpose
            self._started[name] = str(getattr(proc, "job_id", None))
            spec = c.worker_spec[name]
            if connected & self._worker_names(name, spec):
                self._last_seen[proc] = now
                self._connected[name] = str(getattr(proc, "job_id", None))
            elif "group" in spec and proc in self._last_seen and now - self._last_seen[proc] > self.grace_s:
                lost.append((name, proc))  # SpecCluster forgets single-worker jobs itself
        forgotten = [name for name in self._started if name not in c.workers and name in c.worker_spec]
        for known in (self._connected, self._started):
            for name in [n for n in known if n not in c.worker_spec]:
                del known[name]  # retired on purpose
        return lost, forgotten

    async def check(self) -> None:
        from distributed.core import Status

        c = self.cluster
        if c.status != Status.running:
            return
        for name, old, new in self.renewed_jobs():
            log.warning("worker job %s (%s) lost its workers: replaced by job %s", old, name, new)
            self.replaced.append(old)
            del self._connected[name]
        lost, forgotten = self.lost_jobs(time.monotonic())
        for name in [n for n, _ in lost] + forgotten:
            job_id = self._connected.pop(name, None) or self._started.get(name)
            self._started.pop(name, None)
            log.warning("worker job %s (%s) lost its workers: submitting a replacement", job_id, name)
            self.replaced.append(str(job_id))
        for name, proc in lost:
            if c.workers.get(name) is proc:
                del c.workers[name]
            await proc.close()  # cancels it if the batch system still has it
        if set(c.worker_spec) - set(c.workers):  # lost here or forgotten by SpecCluster
            c.scale(jobs=len(c.worker_spec))

    def install(self) -> None:
        """Run :meth:`check` periodically on the cluster's event loop (stopped when it closes)."""
        from tornado.ioloop import PeriodicCallback

        def start():
            pc = PeriodicCallback(self.check, self.interval_s * 1000)
            self.cluster.periodic_callbacks["oiflow-lost-job-keeper"] = pc
            pc.start()

        self.cluster.loop.add_callback(start)


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
        logs = log_directory(profile)
        if logs:  # the batch system opens the job's output there before the script runs
            Path(logs).mkdir(parents=True, exist_ok=True)
        cluster = _jobqueue_class(profile.kind)(**jobqueue_kwargs(profile, env))
        LostJobKeeper(cluster).install()
        if profile.adapt:
            cluster.adapt(**profile.adapt)
        else:
            cluster.scale(jobs=profile.worker_count())
        return cluster
    raise ConfigError("a cluster of kind 'address' already exists: connect to its address")
