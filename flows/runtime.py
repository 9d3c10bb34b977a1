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
from pathlib import Path
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

#: settings of the embedded (temporary) server only: automations (triggers and their actions)
#: cannot be defined on a server that lives for one run, and their services cost CPU per event
EMBEDDED_SERVER_ENV = {"PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false"}

#: environment variables passed on to Dask workers (when set in the flow process)
WORKER_ENV_KEYS = (
    "PREFECT_API_URL", "PREFECT_HOME", "PREFECT_LOGGING_LEVEL", "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL",
    "PREFECT_LOCAL_STORAGE_PATH", "PREFECT_API_SSL_CERT_FILE",
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
    ca = plain_http_ca_file(os.environ.get("PREFECT_API_URL"))
    if ca:
        os.environ["PREFECT_API_SSL_CERT_FILE"] = ca
    if not verbose:
        for name in ("distributed", "asyncio", "prefect.server.api.server"):
            logging.getLogger(name).setLevel(logging.ERROR)
        for handler in logging.getLogger().handlers:  # e.g. the command line's basicConfig handler
            if handler.level == logging.NOTSET:
                handler.setLevel(logging.WARNING)


def plain_http_ca_file(api_url: str | None) -> str | None:
    """For a plain-HTTP Prefect API (the embedded server, ``oiflow server start``): a CA file
    holding ONE certificate, for ``PREFECT_API_SSL_CERT_FILE``.

    Prefect's client builds a TLS context even for ``http://`` URLs, loading the whole CA bundle
    (25–75 ms here), and a task on a Dask worker creates two clients: a one-certificate file
    makes that ~1 ms. No TLS connection is ever made to an ``http://`` API, so nothing is
    verified against it; an ``https://`` API (or a user's own setting) is left alone."""
    if not api_url or not api_url.startswith("http://") or os.environ.get("PREFECT_API_SSL_CERT_FILE"):
        return None
    import certifi

    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect")
    path = home / "oiflow-plain-http-ca.pem"
    if not path.is_file():
        pem = Path(certifi.where()).read_text()
        end = "-----END CERTIFICATE-----"
        first = pem[pem.index("-----BEGIN CERTIFICATE-----"):pem.index(end) + len(end)] + "\n"
        home.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(first)
        os.replace(tmp, path)
    return str(path)


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
    from prefect.settings import PREFECT_API_SSL_CERT_FILE, PREFECT_API_URL, temporary_settings

    if not verbose:
        logging.getLogger("prefect.server.api.server").setLevel(logging.ERROR)
    server = SubprocessASGIServer()
    added = {k: v for k, v in EMBEDDED_SERVER_ENV.items() if k not in os.environ}
    os.environ.update(added)  # the server subprocess copies this process's environment
    try:
        server.start(timeout=int(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
                                                STARTUP_TIMEOUT_S)))
    finally:
        for k in added:
            os.environ.pop(k, None)
    os.environ["PREFECT_API_URL"] = server.api_url
    updates = {PREFECT_API_URL: server.api_url}
    ca = plain_http_ca_file(server.api_url)
    if ca:
        os.environ["PREFECT_API_SSL_CERT_FILE"] = ca
        updates[PREFECT_API_SSL_CERT_FILE] = ca
    try:
        with temporary_settings(updates=updates):
            try:
                yield server.api_url
            finally:
                flush_logs()
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        if ca:
            os.environ.pop("PREFECT_API_SSL_CERT_FILE", None)
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
