"""What every reduction backend shares: its declaration (what it runs, in which image, what it
produces), its result, and the bookkeeping around one runner job (log file, provenance)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ...config import ReduceConfig
from ...errors import EngineError
from ...provenance import write_text_atomic
from ..runners import Job, Runner, RunResult, log_tail


@dataclass
class BackendResult:
    """Products and failures of a night, shaped like ``oiflow.reduce.ReduceResult``:
    ``products`` (L1 files written), ``failures`` as ``(item, reason)`` pairs (one bad item fails
    only itself), plus ``logs`` (one file per external program run) and ``calibrated`` (L2 files,
    for backends that also calibrate)."""

    products: list[Path] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    calibrated: list[Path] = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)  # RunResult.provenance() of each job


@dataclass(frozen=True)
class Requirements:
    """What a backend needs and produces (for the flows, the docs and ``oiflow`` diagnostics)."""

    image: str | None  # default container image (None: runs in-process)
    command: tuple[str, ...]  # the external program(s) it runs
    produces: str  # what comes out


class Backend:
    name = "backend"
    default_image: str | None = None

    def requirements(self) -> Requirements:
        raise NotImplementedError

    def reduce_night(self, raw_dir: str | os.PathLike, out_dir: str | os.PathLike, config: ReduceConfig,
                     runner: Runner) -> BackendResult:
        raise NotImplementedError

    def image(self, config: ReduceConfig) -> str | None:
        return config.image or self.default_image


def job_limits(config: ReduceConfig) -> dict:
    """Timeout and resource limits for a job, from ``config.engine``."""
    eng = config.engine
    return {"timeout_s": eng.timeout_s, "cpus": eng.cpus, "memory": eng.memory}


def run_logged(runner: Runner, job: Job, log_path: Path, result: BackendResult) -> RunResult:
    """Run ``job``, keep its whole log at ``log_path`` (also on failure) and its provenance.

    Raises the runner's :class:`EngineError` unchanged after saving the log."""
    try:
        res = runner.run(job)
    except EngineError as exc:
        write_text_atomic(exc.log, log_path)
        result.logs.append(log_path)
        raise
    write_text_atomic(res.log, log_path)
    result.logs.append(log_path)
    result.runs.append({"job": job.name, **res.provenance()})
    return res


def failure_reason(what: str, exc: EngineError, log_path: Path, summary: str | None = None) -> str:
    status = "timed out" if exc.returncode is None else f"exit status {exc.returncode}"
    detail = summary if summary is not None else log_tail(exc.log, 5)
    return f"{what} failed ({status}): {detail} [log: {log_path}]"


def move_into(src: Path, dest_dir: Path, name: str | None = None) -> Path:
    """Move a finished file into ``dest_dir`` atomically (same filesystem: a rename)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / (name or src.name)
    try:
        os.replace(src, dest)
    except OSError:  # another filesystem: copy to a temporary name, then rename
        tmp = dest.with_name(f".{dest.name}.tmp")
        shutil.copy2(src, tmp)
        os.replace(tmp, dest)
    return dest
