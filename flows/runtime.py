"""The Prefect environment of an oiflow run: quiet, no telemetry, an API for the workers.

This module does not import Prefect at import time: :func:`configure` must run before the first
``import prefect`` because Prefect reads its settings from the environment then.

Embedded default (nothing configured): :func:`prefect_api` starts Prefect's temporary server
(SQLite under ``PREFECT_HOME``) in a subprocess, with a startup timeout raised for slow
machines, and exports its URL as ``PREFECT_API_URL`` so that every Dask worker talks to the
same server (a worker without it would start a temporary server of its own). With
``PREFECT_API_URL`` set (server mode), that server is used.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

#: settings every oiflow process and worker gets unless the user set them
QUIET_ENV = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
    "PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_UI_SHOW_PROMOTIONAL_CONTENT": "false",
}

#: environment variables passed on to Dask workers (when set in the flow process)
WORKER_ENV_KEYS = (
    "PREFECT_API_URL", "PREFECT_HOME", "PREFECT_LOGGING_LEVEL", "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL",
    "PREFECT_LOCAL_STORAGE_PATH",
    *QUIET_ENV,
)

STARTUP_TIMEOUT_S = 180


def configure(verbose: bool = False) -> None:
    """Set oiflow's Prefect defaults in ``os.environ`` (user settings win)."""
    for k, v in QUIET_ENV.items():
        os.environ.setdefault(k, v)
    # the Prefect API (UI) gets INFO logs; the console only what the user asked for
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "INFO" if verbose else "CRITICAL")
    if not verbose:
        for name in ("distributed", "asyncio", "prefect.server.api.server"):
            logging.getLogger(name).setLevel(logging.ERROR)
        for handler in logging.getLogger().handlers:  # e.g. the command line's basicConfig handler
            if handler.level == logging.NOTSET:
                handler.setLevel(logging.WARNING)


def worker_env() -> dict[str, str]:
    """The environment that Dask workers of this flow must have."""
    return {k: os.environ[k] for k in WORKER_ENV_KEYS if os.environ.get(k)}


@contextlib.contextmanager
def prefect_api(verbose: bool = False) -> Iterator[str]:
    """Yield the Prefect API URL to use, starting the temporary server if none is configured."""
    configure(verbose)
    url = os.environ.get("PREFECT_API_URL")
    if url:
        yield url
        return
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if not verbose:
        logging.getLogger("prefect.server.api.server").setLevel(logging.ERROR)
    server = SubprocessASGIServer()
    server.start(timeout=int(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", STARTUP_TIMEOUT_S)))
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            try:
                yield server.api_url
            finally:
                flush_logs()
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()


def flush_logs() -> None:
    """Send the logs and events still queued for the Prefect API (before its server stops),
    as Prefect's own test harness does."""
    import inspect

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain():
        try:
            result = APILogWorker.instance().drain()
            if inspect.isawaitable(result):
                await result
        except RuntimeError:  # never started
            pass
        result = EventsWorker.drain_all()
        if inspect.isawaitable(result):
            await result

    try:
        run_coro_as_sync(drain())
    except Exception:  # draining must never fail a run
        pass
