"""Retry and cache policy shared by every oiflow task.

* **One retry policy**, :data:`RETRY` (a :class:`RetryPolicy`): retries only for transient
  failures — ``OSError`` (network file systems, a busy disk) and timeouts — never for
  :class:`~oiflow.errors.OiflowError` (bad data or settings stay bad), nor for the OSErrors that
  do not heal by waiting (missing file, permission, is-a-directory). It is applied by Prefect
  to a unit run as a Prefect task (``cluster.unit_runs: prefect``: the task's ``retries``,
  ``retry_delay_seconds`` and ``retry_condition_fn``, :meth:`RetryPolicy.prefect_options`), and
  by :meth:`RetryPolicy.call` to a unit run as a plain Dask task (``unit_runs: dask``, where no
  Prefect engine runs): same attempts, same delays, same condition.
* Cache key: SHA-256 of the task name, the unit's cache key (itself a hash of input checksums,
  settings and code version) and the unit's output directory: a cached result names product
  files, so a run into another product tree must not reuse it. A hex digest never looks like a
  storage path.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import time
from dataclasses import dataclass
from typing import Any, Callable

from oiflow.errors import OiflowError

PERMANENT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)

CACHE_EXPIRATION = _dt.timedelta(days=30)


def is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying (see the module docstring)."""
    if isinstance(exc, OiflowError):
        return False
    if isinstance(exc, PERMANENT_OS_ERRORS):
        return False
    return isinstance(exc, (OSError, TimeoutError))


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` more attempts after a transient failure (:func:`is_transient`), the k-th after
    ``delays_s[k]`` seconds (the last delay repeats)."""

    retries: int = 2
    delays_s: tuple[float, ...] = (2.0, 10.0)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        return self.delays_s[min(attempt, len(self.delays_s) - 1)] if self.delays_s else 0.0

    def retry_condition(self, task, task_run, state) -> bool:
        """Prefect's ``retry_condition_fn``: retry when the task's exception is transient."""
        try:
            state.result(raise_on_failure=True)
        except BaseException as exc:  # the task's own exception
            return is_transient(exc)
        return False

    def prefect_options(self) -> dict[str, Any]:
        """The retry arguments of ``@task`` (Prefect applies the policy)."""
        return dict(retries=self.retries, retry_delay_seconds=[self.delay(k) for k in range(self.retries)],
                    retry_condition_fn=self.retry_condition)

    def call(self, fn: Callable[..., Any], /, *args, **kwargs) -> Any:
        """``fn(*args, **kwargs)`` under the policy, where no Prefect engine runs (a plain Dask
        task): a transient failure is retried after its delay, any other raised at once."""
        for attempt in range(self.retries + 1):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if attempt == self.retries or not is_transient(exc):
                    raise
                time.sleep(self.delay(attempt))


#: the retry policy of every stage task
RETRY = RetryPolicy()


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
        **RETRY.prefect_options(),
        cache_key_fn=unit_cache_key,
        cache_expiration=CACHE_EXPIRATION,
        persist_result=True,
        result_serializer="pickle",
    )
