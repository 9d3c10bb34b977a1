"""The task runner's serialized run context: Prefect's own, minus the settings (no server)."""

from __future__ import annotations

import uuid

from oiflow.flows import runtime

runtime.configure()

from prefect import tags, task  # noqa: E402
from prefect.context import serialize_context  # noqa: E402

from oiflow.flows.runners import _context_without_settings  # noqa: E402


@task
def _probe(x):
    return x


def test_context_is_prefects_without_the_settings():
    kw = {"task": _probe, "task_run_id": uuid.uuid4(), "task_inputs": {}, "copy_to_child_ctx": True}
    with tags("night-2024-01-01"):
        ours = _context_without_settings(dict(kw))
        theirs = serialize_context(asset_ctx_kwargs=dict(kw))
    assert theirs["settings_context"]  # Prefect sends the whole settings model…
    assert ours["settings_context"] == {}  # …which the workers rebuild from their own environment
    assert set(ours) == set(theirs)  # a Prefect upgrade that adds a context shows up here
    assert {k: v for k, v in ours.items() if k != "settings_context"} == \
        {k: v for k, v in theirs.items() if k != "settings_context"}
    assert ours["tags_context"]["current_tags"] == {"night-2024-01-01"}


def test_a_stage_task_is_pickled_once_and_travels_as_bytes_to_the_worker():
    """A stage task's function has its task's name in its module, so the standard pickle refuses
    it (Dask then pickled the whole submission again with cloudpickle, for every unit);
    :class:`Pickled` holds it pickled once: the client and the scheduler pickle and unpickle it as
    bytes with the standard pickle (the scheduler no longer rebuilt the Prefect objects and
    pickled them again), and the worker loads it, once for the same bytes, to an equal task."""
    import pickle

    from distributed.protocol.pickle import dumps as dask_dumps, loads as dask_loads

    from oiflow.flows import runners
    from oiflow.flows.runners import OiflowDaskTaskRunner, Pickled
    from oiflow.tasks.reduce import reduce

    try:
        pickle.dumps(reduce)
        raise AssertionError("the standard pickle took a stage task: Pickled is no longer needed")
    except pickle.PicklingError:
        pass
    held = Pickled(reduce)
    frames = pickle.dumps({"task": held, "context": Pickled({"flow_run": {"id": "x"}})}, protocol=5)
    at_scheduler = pickle.loads(frames)  # the scheduler's view: still bytes
    assert isinstance(at_scheduler["task"], Pickled) and at_scheduler["task"].data == held.data
    back = pickle.loads(pickle.dumps(at_scheduler, protocol=5))  # sent on to the worker
    assert back["context"].load() == {"flow_run": {"id": "x"}}
    task = back["task"].load()
    assert task.name == reduce.name and task.fn.__name__ == reduce.fn.__name__
    assert task.retries == reduce.retries and task.task_run_name == reduce.task_run_name
    assert back["task"].load() is task  # loaded once per worker for the same bytes
    assert dask_loads(dask_dumps(held)).load().name == reduce.name  # Dask's own pickling takes it as is
    assert len(runners._LOADED) <= 16
    runner = OiflowDaskTaskRunner()
    assert runner._pickled_task(reduce) is runner._pickled_task(reduce)  # once per task object
    refreshing = reduce.with_options(refresh_cache=True)
    assert runner._pickled_task(refreshing) is not runner._pickled_task(reduce)
    assert pickle.loads(pickle.dumps(runner._pickled_task(refreshing))).load().refresh_cache is True


@task(persist_result=True)
def _worker_view(x):
    """On the worker: the Prefect collections it imported, and the flow's result storage there."""
    import sys

    from prefect.context import FlowRunContext

    storage = FlowRunContext.get().result_store.result_storage
    return x * 2, "prefect_docker" in sys.modules, type(storage).__name__, str(getattr(storage, "basepath", ""))


def test_a_worker_rebuilds_the_flow_context_without_importing_every_prefect_collection(tmp_path, monkeypatch):
    """The flow run's result storage reaches the worker as its block object: rebuilding the
    context from its fields made Prefect import every installed collection (prefect-docker:
    docker, requests, Prefect's workers; 0.2–0.25 s of CPU per worker). The worker's storage is the
    flow's, and a persisted result written there is read back by the flow."""
    import importlib.util

    from prefect import flow
    from prefect.context import FlowRunContext
    from prefect.settings import PREFECT_HOME, PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    from oiflow.cluster import load_profile
    from oiflow.flows.runners import StartedCluster

    assert importlib.util.find_spec("prefect_docker") is not None  # a test dependency: the case is real
    home = tmp_path / "prefect-home"
    monkeypatch.setenv("PREFECT_HOME", str(home))
    monkeypatch.setenv("PREFECT_LOCAL_STORAGE_PATH", str(tmp_path / "results"))
    with temporary_settings(updates={PREFECT_HOME: str(home), PREFECT_LOCAL_STORAGE_PATH: str(tmp_path / "results")}):
        cluster = StartedCluster(load_profile("local", {"n_workers": 1}))
        with runtime.prefect_api(alongside=cluster):
            @flow(task_runner=cluster.task_runner())
            def view():
                storage = FlowRunContext.get().result_store.result_storage
                return _worker_view.submit(21).result(), (type(storage).__name__, str(storage.basepath))

            (value, collections_loaded, kind, basepath), (flow_kind, flow_basepath) = view()
    assert value == 42
    assert not collections_loaded
    assert (kind, basepath) == (flow_kind, flow_basepath)
    assert basepath == str(tmp_path / "results")
    assert any((tmp_path / "results").iterdir())  # the worker persisted its result there
