"""The Prefect servers oiflow starts record task runs in batches (``runtime.RECORDER_ENV``) and
lose none of them: every state change of a flow's task runs is in the server's database once the
temporary server has stopped."""

from __future__ import annotations

import os
import sqlite3
import sys

import pytest

from oiflow.flows import runtime

runtime.configure()

from prefect import flow, task  # noqa: E402
from prefect.settings import PREFECT_HOME, temporary_settings  # noqa: E402

N_TASKS = 30


@task
def _square(x: int) -> int:
    return x * x


@flow
def _squares(n: int) -> int:
    return sum(f.result() for f in _square.map(range(n)))


def test_recorder_batches_on_every_server_oiflow_starts():
    assert runtime.EMBEDDED_SERVER_ENV["PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE"] == "500"
    assert runtime.RECORDER_ENV.items() <= runtime.EMBEDDED_SERVER_ENV.items()


def test_server_start_batches_unless_the_user_says_otherwise(monkeypatch):
    from oiflow.cli import pipeline_cmds

    seen = {}
    monkeypatch.setattr(pipeline_cmds.subprocess, "call", lambda cmd, env: seen.update(env) or 0)
    monkeypatch.setenv("PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE", "7")
    with pytest.raises(Exception) as exit_:
        pipeline_cmds.server_start(port=4321)
    assert getattr(exit_.value, "exit_code", None) == 0
    assert seen["PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE"] == "500"
    assert seen["PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE"] == "7"  # the user's
    assert seen["PREFECT_SERVER_API_PORT"] == "4321"


def test_every_task_run_state_is_recorded_when_the_temporary_server_stops(tmp_path, monkeypatch):
    home = tmp_path / "prefect-home"
    monkeypatch.setenv("PREFECT_HOME", str(home))
    for key in runtime.EMBEDDED_SERVER_ENV:
        monkeypatch.delenv(key, raising=False)
    with temporary_settings(updates={PREFECT_HOME: str(home)}):
        with runtime.prefect_api():
            assert _squares(N_TASKS) == sum(x * x for x in range(N_TASKS))
    # the run took well under the recorder's 5-s flush interval: what it held was flushed at the stop
    with sqlite3.connect(home / "prefect.db") as db:
        states = dict(db.execute("select state_type, count(*) from task_run group by state_type").fetchall())
        n_states = db.execute("select count(*) from task_run_state").fetchone()[0]
        flows = db.execute("select state_type from flow_run").fetchall()
    assert states == {"COMPLETED": N_TASKS}
    assert n_states == 3 * N_TASKS  # pending, running, completed
    assert flows == [("COMPLETED",)]
    assert not any(k in os.environ for k in runtime.EMBEDDED_SERVER_ENV)  # the server's, not this process's
    # the logs went in 10-s batches (runtime.EMBEDDED_CLIENT_ENV) and the run took less: drained at the end
    assert _finished_task_logs(home) == N_TASKS


def _finished_task_logs(home) -> int:
    with sqlite3.connect(home / "prefect.db") as db:
        return db.execute("select count(*) from log where task_run_id is not null "
                          "and message like 'Finished in state%'").fetchone()[0]


def test_the_workers_logs_reach_the_temporary_server_before_it_stops(tmp_path, monkeypatch):
    """Dask workers send their task-run logs in 10-s batches to the embedded server: a run
    shorter than that loses none of them (each closing worker drains its queue)."""
    from oiflow.cluster import load_profile
    from oiflow.flows.runners import StartedCluster

    home = tmp_path / "prefect-home"
    monkeypatch.setenv("PREFECT_HOME", str(home))
    for key in (*runtime.EMBEDDED_SERVER_ENV, *runtime.EMBEDDED_CLIENT_ENV):
        monkeypatch.delenv(key, raising=False)
    with temporary_settings(updates={PREFECT_HOME: str(home)}):
        cluster = StartedCluster(load_profile("local", {"n_workers": 1}))
        with runtime.prefect_api(alongside=cluster):
            assert os.environ["PREFECT_LOGGING_TO_API_BATCH_INTERVAL"] == "10"
            assert runtime.worker_env()["PREFECT_LOGGING_TO_API_BATCH_INTERVAL"] == "10"
            on_dask = _squares.with_options(task_runner=cluster.task_runner())
            assert on_dask(8) == sum(x * x for x in range(8))
    assert "PREFECT_LOGGING_TO_API_BATCH_INTERVAL" not in os.environ
    assert _finished_task_logs(home) == 8


def test_the_users_log_batch_interval_is_kept(monkeypatch):
    """EMBEDDED_CLIENT_ENV is a default: a value the user set stays, and nothing is left behind."""

    class Answering:
        api_url = "http://127.0.0.1:9/api"

        def wait(self, timeout):
            return None

    monkeypatch.setenv("PREFECT_LOGGING_TO_API_BATCH_INTERVAL", "3")
    with runtime._server_url(Answering(), None):
        assert os.environ["PREFECT_LOGGING_TO_API_BATCH_INTERVAL"] == "3"
    assert os.environ["PREFECT_LOGGING_TO_API_BATCH_INTERVAL"] == "3"
    monkeypatch.delenv("PREFECT_LOGGING_TO_API_BATCH_INTERVAL")
    with runtime._server_url(Answering(), None):
        assert os.environ["PREFECT_LOGGING_TO_API_BATCH_INTERVAL"] == "10"
    assert "PREFECT_LOGGING_TO_API_BATCH_INTERVAL" not in os.environ


def test_temporary_server_starts_as_prefects_own(monkeypatch):
    """TemporaryServer spawns what Prefect's SubprocessASGIServer spawns (same arguments, same
    environment flags), plus oiflow's server settings, without importing prefect.server here."""
    import subprocess

    from prefect.server.api.server import SubprocessASGIServer

    spawned = []

    class Recorder:
        def __init__(self, args, env=None, **kw):
            spawned.append((list(args), dict(env or {})))

        def poll(self):
            return None

    monkeypatch.setattr(subprocess, "Popen", Recorder)
    for key in runtime.EMBEDDED_SERVER_ENV:
        monkeypatch.delenv(key, raising=False)
    SubprocessASGIServer(port=4567)._run_uvicorn_command()
    ours = runtime.TemporaryServer(port=4567)
    monkeypatch.setattr(ours, "stop", lambda: None)  # nothing was started (atexit)
    ours.spawn()
    (theirs_args, theirs_env), (our_args, our_env) = spawned
    assert our_args == theirs_args
    assert our_args[:3] == [sys.executable, "-m", "uvicorn"]
    flags = ("PREFECT_UI_ENABLED", "PREFECT__SERVER_EPHEMERAL", "PREFECT__SERVER_FINAL")
    assert {k: our_env[k] for k in flags} == {k: theirs_env[k] for k in flags}
    assert runtime.EMBEDDED_SERVER_ENV.items() <= our_env.items()
    assert ours.api_url == SubprocessASGIServer(port=4567).api_url


def test_a_server_that_dies_is_an_error_naming_its_status(tmp_path, monkeypatch):
    server = runtime.TemporaryServer()
    monkeypatch.setattr(server, "command", lambda: [sys.executable, "-c", "raise SystemExit(5)"])
    with server:
        with pytest.raises(RuntimeError, match="ended with status 5 before answering"):
            server.wait(30)
    assert server.process is None


def test_no_flow_heartbeats_on_the_temporary_server(tmp_path, monkeypatch):
    """Flow-run heartbeats tell a lasting server that a run's process died; the temporary server
    dies with it, and Prefect's heartbeat thread held up the end of every run by up to 1 s."""
    from prefect.settings import get_current_settings

    home = tmp_path / "prefect-home"
    monkeypatch.setenv("PREFECT_HOME", str(home))
    assert get_current_settings().flows.heartbeat_frequency is not None  # Prefect's default (180 s)
    with temporary_settings(updates={PREFECT_HOME: str(home)}):
        with runtime.prefect_api():
            assert get_current_settings().flows.heartbeat_frequency is None
            assert _squares(3) == 5
    assert get_current_settings().flows.heartbeat_frequency is not None


def test_a_taken_port_is_an_error_naming_it():
    """uvicorn ends with status 3 when its port is taken; the run's workers already have the
    server's URL, so that is an error naming the port, not a server moved elsewhere."""
    import socket

    from oiflow.flows.runtime import TemporaryServer

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with TemporaryServer(port=port) as server, pytest.raises(RuntimeError, match=f"port {port}"):
            server.wait(120)
