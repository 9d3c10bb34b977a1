"""The Prefect environment of an oiflow run: quiet, no telemetry, an API for the workers.

This module does not import Prefect at import time: :func:`configure` must run before the first
``import prefect`` because Prefect reads its settings from the environment then.

Embedded default (nothing configured): :func:`prefect_api` starts Prefect's temporary server
(SQLite under ``PREFECT_HOME``) in a subprocess (:class:`TemporaryServer`), with a startup timeout
raised for slow machines, and exports its URL as ``PREFECT_API_URL`` so that every Dask worker talks to the
same server (a worker without it would start a temporary server of its own); what else the run
needs (the Dask cluster) starts meanwhile. With ``PREFECT_API_URL`` set (server mode), that
server is used.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
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

#: settings of every Prefect server oiflow starts (the temporary one and ``oiflow server start``):
#: the task-run recorder writes the task runs' state changes to its database in batches of up to
#: 500, at least every 5 s (Prefect's default flush interval), instead of one transaction per state
#: change (Prefect's default batch size, 1) — per task run, 43 → 15 ms of the server's CPU (8
#: workers, units of 1 s, bench_scale's sweep); the UI shows a state at most 5 s late, and a server
#: stopped normally flushes what it holds (``tests/test_embedded_server.py``)
RECORDER_ENV = {"PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "500",
                "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "500"}

#: settings of the embedded (temporary) server (besides RECORDER_ENV), which serves no UI while it runs:
#: automations (triggers and their actions) cannot be defined on a server that lives for one run,
#: and their services cost CPU per event; the events themselves are not stored (the event feed
#: of a UI; the task runs, their states, logs and artifacts are: a later ``oiflow server start``
#: on the same PREFECT_HOME shows them) — storing them was a fifth of the server's CPU per task
#: run; block types (the catalogue of Prefect's integrations, for the UI's block forms) are not
#: registered: loading every installed collection to check that the registry is current was
#: 40% of the server's start (oiflow's runs use no blocks)
EMBEDDED_SERVER_ENV = {"PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
                       "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "false",
                       "PREFECT_API_BLOCKS_REGISTER_ON_START": "false",
                       "PREFECT_MEMOIZE_BLOCK_AUTO_REGISTRATION": "false",
                       **RECORDER_ENV}

#: settings of the processes that talk to the embedded server (the flow process and its workers;
#: set while it runs, unless the user set them): their logs go to it in batches every 10 s, not
#: Prefect's 2 s. That server serves no UI, so nobody sees the delay; each batch POST cost it
#: ~4 ms of CPU whatever it held (1.5–2 ms per unit at 8 workers, bench_scale's sweep). Nothing
#: is lost at the end: the flow process drains its logs before the server stops
#: (:func:`flush_logs`), and a closing worker its own (``PrefectDrainPlugin``)
EMBEDDED_CLIENT_ENV = {"PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "10"}

#: environment variables passed on to Dask workers (when set in the flow process)
WORKER_ENV_KEYS = (
    "PREFECT_API_URL", "PREFECT_HOME", "PREFECT_LOGGING_LEVEL", "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL",
    "PREFECT_LOCAL_STORAGE_PATH", "PREFECT_API_SSL_CERT_FILE",
    *QUIET_ENV, *EMBEDDED_CLIENT_ENV,
)

STARTUP_TIMEOUT_S = 180


#: loggers of the libraries under oiflow (HTTP requests, Dask's scheduler and workers, asyncio,
#: Prefect's server): quiet unless the user asks for debugging (see :func:`configure`)
LIBRARY_LOGGERS = ("httpx", "httpcore", "distributed", "asyncio", "prefect.server", "prefect.events",
                   "prefect.client", "prefect._internal", "prefect.task_runner", "websockets")


def configure(verbose: int = 0) -> None:
    """Set oiflow's Prefect defaults in ``os.environ`` (user settings win) and the log levels.

    ``verbose`` 0: only problems (the command line shows its own progress); 1 (``-v``): oiflow's
    details, and only the libraries' warnings — their request-by-request and worker-by-worker
    logs stay out; 2 (``--debug``): the libraries' logs too (Prefect's flow and task run logs on
    the console, HTTP requests, Dask)."""
    for k, v in QUIET_ENV.items():
        os.environ.setdefault(k, v)
    # the Prefect API (UI) gets INFO logs; the console only what the user asked for
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "INFO" if verbose >= 2 else "CRITICAL")
    ca = plain_http_ca_file(os.environ.get("PREFECT_API_URL"))
    if ca:
        os.environ["PREFECT_API_SSL_CERT_FILE"] = ca
    library_level = logging.NOTSET if verbose >= 2 else logging.WARNING if verbose == 1 else logging.ERROR
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(library_level)
    if verbose >= 2 and logging.getLogger().getEffectiveLevel() > logging.INFO:
        logging.getLogger().setLevel(logging.INFO)
    if verbose < 2:  # Dask's scheduler moving its HTTP endpoint (no dashboard is shown) off a port in use
        warnings.filterwarnings("ignore", message=r"Port \d+ is already in use", category=UserWarning)
    if not verbose:
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


def _free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS's choice)."""
    import socket

    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TemporaryServer:
    """Prefect's temporary server (SQLite under ``PREFECT_HOME``, no UI) in a subprocess, started
    as Prefect 3.9's ``SubprocessASGIServer`` starts it — uvicorn serving
    ``prefect.server.api.server:create_app`` with the same arguments and environment flags
    (``tests/test_embedded_server.py`` compares the two command lines) — plus
    :data:`EMBEDDED_SERVER_ENV`, but without importing ``prefect.server`` in this process: that
    import (1.5 s) came before the spawn, so a run waited for it and then for the server's own
    start in turn. Spawned first (:func:`oiflow.flows.run.run_flow`: as soon as the plan shows
    work), the server starts while this process imports the flow and starts the Dask cluster.
    A context manager: spawned on entry, stopped on exit (and at the interpreter's exit)."""

    def __init__(self, port: int | None = None):
        self.port = port or _free_port()
        self.process = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def command(self) -> list[str]:
        import importlib.util
        import sys

        app_dir = Path(importlib.util.find_spec("prefect").origin).parent.parent  # prefect.__module_path__.parent
        return [sys.executable, "-m", "uvicorn", "--app-dir", str(app_dir), "--factory",
                "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port),
                "--log-level", "error", "--lifespan", "on"]

    def environment(self) -> dict[str, str]:
        return {**os.environ, **{k: v for k, v in EMBEDDED_SERVER_ENV.items() if k not in os.environ},
                "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}

    def spawn(self) -> "TemporaryServer":
        import atexit
        import subprocess

        if self.process is None:
            self.process = subprocess.Popen(self.command(), env=self.environment())
            atexit.register(self.stop)
        return self

    def wait(self, timeout: float) -> None:
        """Return once the server answers ``/health``; RuntimeError when its process ends first
        (status 3: its port was taken meanwhile; the workers already have its URL) or after
        ``timeout`` s."""
        import time
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.process.poll()
            if status == 3:  # uvicorn: the address is in use
                raise RuntimeError(f"Prefect's temporary server could not listen on port {self.port}: "
                                   "another process took it while the server started")
            if status is not None:
                raise RuntimeError(f"Prefect's temporary server ended with status {status} before answering")
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"Prefect's temporary server did not answer within {timeout:g} s "
                           "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS)")

    def stop(self) -> None:
        import subprocess

        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()  # uvicorn's shutdown: the task-run recorder flushes what it holds
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> "TemporaryServer":
        return self.spawn()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def prefect_api(verbose: int = 0, alongside: contextlib.AbstractContextManager | None = None,
                server: TemporaryServer | None = None) -> Iterator[str]:
    """Yield the Prefect API URL to use, starting the temporary server if none is configured.

    ``alongside``: a context entered while the temporary server starts (both mostly wait on
    other processes) and left before the server stops; e.g. the Dask cluster
    (:class:`oiflow.flows.runners.StartedCluster`), whose workers already get the server's URL.
    ``server``: a :class:`TemporaryServer` already spawned (its owner stops it; else one is
    spawned here and stopped on exit). With a configured server both are simply entered."""
    configure(verbose)
    url = os.environ.get("PREFECT_API_URL")
    if url:
        with alongside or contextlib.nullcontext():
            yield url
        return
    with contextlib.ExitStack() as owned:
        if server is None:
            server = owned.enter_context(TemporaryServer())
        with _server_url(server, alongside) as api_url:
            yield api_url


@contextlib.contextmanager
def _server_url(server: TemporaryServer, alongside: contextlib.AbstractContextManager | None) -> Iterator[str]:
    """The API URL of ``server`` exported (environment and Prefect's settings) while it runs;
    ``alongside`` entered before waiting for the server to answer."""
    from prefect.context import refresh_global_settings_context
    from prefect.settings import (PREFECT_API_SSL_CERT_FILE, PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
                                  temporary_settings)

    os.environ["PREFECT_API_URL"] = server.api_url
    set_here = {k: v for k, v in EMBEDDED_CLIENT_ENV.items() if k not in os.environ}
    os.environ.update(set_here)
    # no flow-run heartbeats: they tell a lasting server that a flow run's process died, and this
    # server dies with it; the heartbeat thread, which sleeps in 1-s steps, held up the end of
    # every run by up to 1 s (Prefect joins it)
    updates = {PREFECT_API_URL: server.api_url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    ca = plain_http_ca_file(server.api_url)
    if ca:
        os.environ["PREFECT_API_SSL_CERT_FILE"] = ca
        updates[PREFECT_API_SSL_CERT_FILE] = ca
    # threads without this context (Prefect's log and event services) read the process-global
    # settings: without the URL there, the flow process's API logs started a second temporary server
    refresh_global_settings_context()
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(alongside or contextlib.nullcontext())
            server.wait(float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", STARTUP_TIMEOUT_S)))
            with temporary_settings(updates=updates):
                try:
                    yield server.api_url
                finally:
                    flush_logs()
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        for key in set_here:
            os.environ.pop(key, None)
        if ca:
            os.environ.pop("PREFECT_API_SSL_CERT_FILE", None)
        refresh_global_settings_context()


def flush_logs() -> None:
    """Send the logs and events still queued for the Prefect API (before its server stops),
    as Prefect's own test harness does. Only the queues this process started are drained: a
    process that never logged to the API (a Dask worker that ran plain Dask tasks) neither
    imports Prefect nor opens a connection for it (starting an empty log queue to drain it cost
    a closing worker ~3 s)."""
    import inspect
    import sys

    if "prefect.logging.handlers" not in sys.modules and "prefect.events.worker" not in sys.modules:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain():
        for service in (APILogWorker, EventsWorker):
            result = service.drain_all()
            if inspect.isawaitable(result):
                await result

    try:
        run_coro_as_sync(drain())
    except Exception:  # draining must never fail a run
        pass
