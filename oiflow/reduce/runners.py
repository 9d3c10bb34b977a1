"""Runners: run one external program (a reduction backend's command) locally or in a container.

One small interface for the three engines::

    job = Job(command=["esorex", "amber_p2vm", "{output}/p2vm.sof"], image="localhost/oiflow-amber",
              inputs=[raw_dir], output=out_dir, timeout_s=600)
    result = get_runner("docker").run(job)        # → RunResult(returncode=0, log=..., ...)

* ``local``: a subprocess on this machine (``image`` is ignored).
* ``docker``: any Docker-API engine through the docker SDK: Docker itself, or Podman's API
  socket (``podman system service unix:///…/podman.sock``; pass ``base_url`` or set DOCKER_HOST).
* ``apptainer``: the ``apptainer exec`` command line (HPC clusters); ``image`` is a SIF file.

What every runner guarantees
----------------------------
* Paths are mapped one to one: an input mounted from ``/data/night`` is ``/data/night`` inside
  the container too (as the JMMC ``docker-run-ci`` shim does), so a command is written once for
  every runner. ``Mount(source, target)`` maps it elsewhere when an image expects a fixed path.
* Inputs are mounted read-only; the only writable mount is the output directory.
* The output is staged: the command writes into a temporary directory next to ``output`` (the
  string ``{output}`` in the command, the environment and ``workdir`` is replaced by its path,
  and ``$OIFLOW_OUTPUT`` holds it). Only when the command exits 0 is the temporary directory
  renamed onto ``output``; on failure or timeout it is deleted, so nothing half-written is left.
* No network by default (``network=False``): ``--network none`` for containers. The local
  runner cannot cut a subprocess off the network and says so in its provenance.
* ``timeout_s``: the process (container) is killed when it runs longer, and
  :class:`~oiflow.errors.EngineError` is raised with ``returncode=None`` and the log so far.
* A non-zero exit status raises :class:`~oiflow.errors.EngineError` (``returncode``, ``log``).
* ``cpus`` / ``memory`` limits (containers: CFS quota and cgroup memory limit; local: memory
  as an address-space rlimit, CPUs as an affinity mask).
* The run is described by :meth:`RunResult.provenance` (engine, image and its id, command,
  exit status, duration, SHA-256 of the log) for the product headers; the log is kept whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Sequence

from ..errors import ConfigError, EngineError

OUTPUT_PLACEHOLDER = "{output}"
_LOG_TAIL_LINES = 25


@dataclass(frozen=True)
class Mount:
    """A host path made visible to the job. ``target`` defaults to the same absolute path."""

    source: Path
    target: str | None = None
    read_only: bool = True

    def resolved(self) -> "Mount":
        src = Path(self.source).resolve()
        return Mount(src, self.target or str(src), self.read_only)


def _as_mount(item) -> Mount:
    return item if isinstance(item, Mount) else Mount(Path(item))


def parse_memory(value: int | str | None) -> int | None:
    """Bytes from ``1073741824``, ``"512m"``, ``"2g"``, ``"4GiB"`` (binary multiples)."""
    if value is None or isinstance(value, int):
        return value
    text = str(value).strip().lower().removesuffix("ib").removesuffix("b")
    scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    try:
        if text and text[-1] in scale:
            return int(float(text[:-1]) * scale[text[-1]])
        return int(text)
    except ValueError:
        raise ConfigError(f"invalid memory limit {value!r} (use e.g. 512m or 2g)") from None


@dataclass(frozen=True)
class Job:
    """What to run. See the module docstring for the meaning of each field."""

    command: Sequence[str]
    image: str | None = None
    inputs: Sequence[Mount | Path | str] = ()
    output: Path | None = None
    workdir: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None  # "uid:gid" inside the container; None → the calling user's
    network: bool = False
    timeout_s: float | None = None
    cpus: float | None = None
    memory: int | str | None = None
    name: str = "job"  # a label for logs and errors (e.g. the recipe name)

    def mounts(self) -> list[Mount]:
        return [_as_mount(m).resolved() for m in self.inputs]

    def memory_bytes(self) -> int | None:
        return parse_memory(self.memory)


@dataclass
class RunResult:
    """The outcome of a successful run (failures raise :class:`EngineError`)."""

    engine: str
    command: list[str]
    returncode: int
    log: str
    duration_s: float
    output: Path | None
    image: str | None = None
    image_id: str | None = None
    network_isolated: bool = True

    def provenance(self) -> dict:
        return {
            "engine": self.engine,
            "image": self.image,
            "image_id": self.image_id,
            "command": list(self.command),
            "returncode": self.returncode,
            "duration_s": round(self.duration_s, 3),
            "network_isolated": self.network_isolated,
            "log_sha256": hashlib.sha256(self.log.encode()).hexdigest(),
        }


def log_tail(log: str, n: int = _LOG_TAIL_LINES) -> str:
    lines = log.rstrip().splitlines()
    return "\n".join(lines[-n:])


def _engine_error(job: Job, engine: str, returncode: int | None, log: str, timeout_s=None) -> EngineError:
    if returncode is None:
        what = f"timed out after {timeout_s:g} s and was killed"
    else:
        what = f"exited with status {returncode}"
    msg = f"{job.name} ({engine}{', image ' + job.image if job.image else ''}) {what}"
    tail = log_tail(log)
    if tail:
        msg += "; last lines of its log:\n" + tail
    return EngineError(msg, returncode=returncode, log=log)


# ------------------------------------------------------------------------------------------
# output staging
# ------------------------------------------------------------------------------------------


class _Staging:
    """A temporary directory beside ``final``; promoted onto it only on success."""

    def __init__(self, final: Path | None, owner: tuple[int, int] | None = None):
        self.final = None if final is None else Path(final).resolve()
        self.tmp: Path | None = None
        if self.final is not None:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.", suffix=".tmp", dir=self.final.parent))
            if owner is not None and os.geteuid() == 0 and owner != (os.getuid(), os.getgid()):
                os.chown(self.tmp, *owner)

    def substitute(self, text: str) -> str:
        return text if self.tmp is None else text.replace(OUTPUT_PLACEHOLDER, str(self.tmp))

    def promote(self) -> None:
        if self.tmp is None:
            return
        old = None
        if self.final.exists():
            old = self.final.with_name(f".{self.final.name}.{uuid.uuid4().hex[:8]}.old")
            os.replace(self.final, old)
        os.replace(self.tmp, self.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self.tmp = None

    def discard(self) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


def _parse_user(user: str | None) -> tuple[int, int] | None:
    if user is None:
        return None
    uid, _, gid = str(user).partition(":")
    try:
        return int(uid), int(gid or uid)
    except ValueError:
        raise ConfigError(f"user must be 'uid:gid' with numbers, not {user!r}") from None


class Runner:
    """Base class: subclasses implement :meth:`_execute`."""

    name = "runner"

    def image_id(self, image: str) -> str | None:
        """The engine's id of ``image`` (for provenance) where the engine has one, else None."""
        return None

    def run(self, job: Job) -> RunResult:
        owner = _parse_user(job.user) or (os.getuid(), os.getgid())
        staging = _Staging(job.output, owner)
        try:
            command = [staging.substitute(str(a)) for a in job.command]
            env = {k: staging.substitute(str(v)) for k, v in job.env.items()}
            if staging.tmp is not None:
                env.setdefault("OIFLOW_OUTPUT", str(staging.tmp))
            workdir = staging.substitute(job.workdir) if job.workdir else (str(staging.tmp) if staging.tmp else None)
            t0 = time.monotonic()
            returncode, log, extra = self._execute(job, command, env, workdir, staging.tmp)
            duration = time.monotonic() - t0
            if returncode is None:
                raise _engine_error(job, self.name, None, log, job.timeout_s)
            if returncode != 0:
                raise _engine_error(job, self.name, returncode, log)
            staging.promote()
        except BaseException:
            staging.discard()
            raise
        return RunResult(
            engine=self.name, command=command, returncode=returncode, log=log, duration_s=duration,
            output=staging.final, image=job.image if self.name != "local" else None, **extra,
        )

    def _execute(self, job: Job, command: list[str], env: dict, workdir: str | None, output_tmp: Path | None):
        """Run; return (returncode or None on timeout, log, extra RunResult fields)."""
        raise NotImplementedError


# ------------------------------------------------------------------------------------------
# local
# ------------------------------------------------------------------------------------------


def _run_process(argv: list[str], *, env: dict, cwd: str | None, timeout_s: float | None, preexec=None):
    """Run argv in its own session; kill the whole process group at the timeout."""
    try:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=cwd, start_new_session=True, preexec_fn=preexec,
        )
    except FileNotFoundError as exc:
        raise EngineError(f"cannot run {argv[0]!r}: {exc.strerror}", returncode=None, log="") from None
    try:
        out, _ = proc.communicate(timeout=timeout_s)
        return proc.returncode, out.decode(errors="replace")
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return None, (out or b"").decode(errors="replace")


class LocalRunner(Runner):
    """A subprocess on this machine: the command must be installed here (``image`` is ignored).

    It inherits this process's environment (plus ``job.env``); mounts are not needed (paths are
    the host's) and cannot be made read-only; the network cannot be cut (recorded as
    ``network_isolated: false``). ``memory`` is an address-space limit, ``cpus`` an affinity mask.
    """

    name = "local"

    def _execute(self, job, command, env, workdir, output_tmp):
        user = _parse_user(job.user)
        if user is not None and user != (os.getuid(), os.getgid()):
            raise ConfigError("the local runner runs as the calling user; leave `user` unset")
        for m in job.mounts():
            if m.target != str(m.source):
                raise ConfigError(f"the local runner cannot map {m.source} to {m.target}")
        full_env = {**os.environ, **env}
        mem = job.memory_bytes()
        ncpu = None if job.cpus is None else max(1, int(round(job.cpus)))

        def preexec():
            if mem is not None:
                resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
            if ncpu is not None and hasattr(os, "sched_setaffinity"):
                cpus = sorted(os.sched_getaffinity(0))[:ncpu]
                os.sched_setaffinity(0, cpus)

        rc, log = _run_process(command, env=full_env, cwd=workdir, timeout_s=job.timeout_s, preexec=preexec)
        return rc, log, {"network_isolated": False}


# ------------------------------------------------------------------------------------------
# docker (Docker API: Docker or Podman)
# ------------------------------------------------------------------------------------------


class DockerRunner(Runner):
    """A container through the Docker API (Docker, or Podman's ``podman system service``).

    ``base_url`` (``unix:///path/podman.sock``) or DOCKER_HOST chooses the engine. The image must
    already be present (nothing is pulled: build it with ``containers/build.sh``).
    """

    name = "docker"

    def __init__(self, base_url: str | None = None, client=None):
        self._base_url = base_url
        self._client = client

    @property
    def client(self):
        if self._client is None:
            try:
                import docker
            except ImportError:  # pragma: no cover - the test extra installs it
                raise EngineError("the docker runner needs the `docker` Python package (pip install docker)") from None
            try:
                if self._base_url:
                    self._client = docker.DockerClient(base_url=self._base_url)
                else:
                    self._client = docker.from_env()
                self._client.ping()
            except Exception as exc:
                where = self._base_url or os.environ.get("DOCKER_HOST", "the default Docker socket")
                self._client = None
                raise EngineError(f"no container engine answers at {where}: {exc}") from None
        return self._client

    def image_id(self, image: str) -> str:
        import docker

        try:
            return self.client.images.get(image).id
        except docker.errors.ImageNotFound:
            raise EngineError(
                f"image {image!r} is not present on the engine; build it with containers/build.sh"
            ) from None

    def _execute(self, job, command, env, workdir, output_tmp):
        if not job.image:
            raise ConfigError(f"{job.name}: the docker runner needs an image")
        image_id = self.image_id(job.image)
        volumes = {str(m.source): {"bind": m.target, "mode": "ro" if m.read_only else "rw"} for m in job.mounts()}
        if output_tmp is not None:
            volumes[str(output_tmp)] = {"bind": str(output_tmp), "mode": "rw"}
        user = job.user or f"{os.getuid()}:{os.getgid()}"
        kwargs = dict(
            command=command, environment=env, volumes=volumes, user=user, working_dir=workdir,
            network_mode=None if job.network else "none", detach=True,
            labels={"org.oiflow.job": job.name},
        )
        if job.cpus is not None:
            kwargs["nano_cpus"] = int(job.cpus * 1e9)
        if job.memory is not None:
            kwargs["mem_limit"] = job.memory_bytes()
        container = self.client.containers.create(job.image, **kwargs)
        returncode = None
        try:
            container.start()
            t0 = time.monotonic()
            try:
                status = container.wait(timeout=job.timeout_s)
                returncode = int(status.get("StatusCode", -1))
            except Exception as exc:  # requests' ReadTimeout / ConnectionError at the timeout
                if job.timeout_s is None or time.monotonic() - t0 < 0.95 * job.timeout_s:
                    raise EngineError(f"{job.name}: lost the container engine: {exc}") from exc
                with contextlib.suppress(Exception):
                    container.kill()
                with contextlib.suppress(Exception):
                    container.wait(timeout=30)
            log = container.logs(stdout=True, stderr=True).decode(errors="replace")
        finally:
            with contextlib.suppress(Exception):
                container.remove(force=True)
        return returncode, log, {"image_id": image_id, "network_isolated": not job.network}


# ------------------------------------------------------------------------------------------
# apptainer
# ------------------------------------------------------------------------------------------


class ApptainerRunner(Runner):
    """``apptainer exec`` on a SIF image (or any image reference Apptainer accepts).

    Apptainer runs as the calling user (``user`` must be unset). The command line is
    ``apptainer exec --containall --cleanenv --no-home [--net --network none] --pwd DIR
    --bind SRC:DST:ro … --bind OUT:OUT:rw [--env K=V …] [--cpus N] [--memory BYTES] IMAGE CMD…``.
    """

    name = "apptainer"

    def __init__(self, executable: str = "apptainer"):
        self.executable = executable

    def command_line(self, job: Job, command: list[str], env: dict, workdir: str | None, output_tmp) -> list[str]:
        if not job.image:
            raise ConfigError(f"{job.name}: the apptainer runner needs an image (a .sif file)")
        user = _parse_user(job.user)
        if user is not None and user != (os.getuid(), os.getgid()):
            raise ConfigError("apptainer runs as the calling user; leave `user` unset")
        argv = [self.executable, "exec", "--containall", "--cleanenv", "--no-home"]
        if not job.network:
            argv += ["--net", "--network", "none"]
        if workdir:
            argv += ["--pwd", workdir]
        for m in job.mounts():
            argv += ["--bind", f"{m.source}:{m.target}:{'ro' if m.read_only else 'rw'}"]
        if output_tmp is not None:
            argv += ["--bind", f"{output_tmp}:{output_tmp}:rw"]
        for k, v in sorted(env.items()):
            argv += ["--env", f"{k}={v}"]
        if job.cpus is not None:
            argv += ["--cpus", f"{job.cpus:g}"]
        if job.memory is not None:
            argv += ["--memory", str(job.memory_bytes())]
        return argv + [str(job.image)] + list(command)

    def _execute(self, job, command, env, workdir, output_tmp):
        argv = self.command_line(job, command, env, workdir, output_tmp)
        rc, log = _run_process(argv, env=dict(os.environ), cwd=None, timeout_s=job.timeout_s)
        return rc, log, {"network_isolated": not job.network}


RUNNERS = {"local": LocalRunner, "docker": DockerRunner, "apptainer": ApptainerRunner}


def get_runner(name: str, **kwargs) -> Runner:
    """A runner by name: ``local``, ``docker`` (kwargs: base_url) or ``apptainer`` (executable)."""
    try:
        cls = RUNNERS[name]
    except KeyError:
        raise ConfigError(f"unknown runner {name!r}; choose one of {', '.join(RUNNERS)}") from None
    return cls(**kwargs)


def with_defaults(job: Job, **defaults) -> Job:
    """``job`` with unset (None) fields filled from ``defaults`` (e.g. a config's timeout)."""
    changes = {k: v for k, v in defaults.items() if getattr(job, k) is None and v is not None}
    return replace(job, **changes) if changes else job
