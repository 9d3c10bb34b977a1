"""Retry and cache policy shared by every oiflow task.

* Retries only for transient failures: ``OSError`` (network file systems, a busy disk) and
  timeouts — never for :class:`~oiflow.errors.OiflowError` (bad data or settings stay bad), nor
  for the OSErrors that do not heal by waiting (missing file, permission, is-a-directory).
* Cache key: SHA-256 of the task name, the unit's cache key (itself a hash of input checksums,
  settings and code version) and the unit's output directory: a cached result names product
  files, so a run into another product tree must not reuse it. A hex digest never looks like a
  storage path.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import time
from typing import Any, Callable

from oiflow.errors import OiflowError

PERMANENT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)

#: retry settings of every stage task
RETRIES = 2
RETRY_DELAY_S = [2, 10]
CACHE_EXPIRATION = _dt.timedelta(days=30)


def is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying (see the module docstring)."""
    if isinstance(exc, OiflowError):
        return False
    if isinstance(exc, PERMANENT_OS_ERRORS):
        return False
    return isinstance(exc, (OSError, TimeoutError))


def retry_on_transient(task, task_run, state) -> bool:
    """``retry_condition_fn`` for Prefect tasks."""
    try:
        state.result(raise_on_failure=True)
    except BaseException as exc:  # the task's own exception
        return is_transient(exc)
    return False


def unit_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    """``cache_key_fn``: a hash of the task name, the ``unit`` parameter's cache key and its
    output directory."""
    unit = parameters["unit"]
    name = getattr(getattr(context, "task", None), "name", "task")
    return hashlib.sha256(f"oiflow-task:{name}:{unit.cache_key}:{unit.out_dir}".encode()).hexdigest()


def task_options(name: str) -> dict[str, Any]:
    """Keyword arguments of ``@task`` for a stage task."""
    return dict(
        name=name,
        retries=RETRIES,
        retry_delay_seconds=RETRY_DELAY_S,
        retry_condition_fn=retry_on_transient,
        cache_key_fn=unit_cache_key,
        cache_expiration=CACHE_EXPIRATION,
        persist_result=True,
        result_serializer="pickle",
    )


def run_with_retries(fn: Callable[..., Any], unit) -> Any:
    """``fn(unit=unit)`` with the stage tasks' retry policy, for a unit run as a plain Dask task
    (``cluster.unit_runs: dask``): transient failures retried after RETRY_DELAY_S, others raised."""
    for attempt in range(RETRIES + 1):
        try:
            return fn(unit=unit)
        except Exception as exc:
            if attempt == RETRIES or not is_transient(exc):
                raise
            time.sleep(RETRY_DELAY_S[min(attempt, len(RETRY_DELAY_S) - 1)])
