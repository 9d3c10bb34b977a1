"""The Dask task runner of a flow, from a cluster profile (``configs/clusters``).

Every cluster gets the plugins of :mod:`oiflow.flows.worker_plugins`: its workers import what running a
unit needs when they start (:class:`~oiflow.flows.worker_plugins.WarmUp`), and send the Prefect logs and
events they still hold when they close (:class:`~oiflow.flows.worker_plugins.PrefectDrainPlugin`: they
exit at once instead of being killed by their nanny after a 4 s wait, without losing the last
task logs).

:class:`OiflowDaskTaskRunner` is prefect-dask's runner with a cheaper task submission (measured
in ``tests/benchmarks/bench_flows.py``): the serialized context sent with each task leaves out
the flow's *settings* context, which the worker would otherwise re-validate from scratch for
every task (a pydantic-settings model of ~30 nested settings classes, each reading the
environment: most of Prefect's per-task cost on a worker); workers use their own settings,
which :func:`oiflow.flows.runtime.worker_env` makes the flow's. The Dask key is named, not hashed
from the arguments.

That runner uses Prefect's and prefect-dask's internals (``run_task_sync``, the run contexts'
serialisation, ``_optimize_futures``), which Prefect does not keep stable between minor
versions: ``pyproject.toml`` pins the minor versions it was written for (:data:`SUPPORTED`),
``tests/test_prefect_pin.py`` fails when the installed ones differ, and :func:`task_runner`
falls back to prefect-dask's own runner (public API, slower per task) with a warning when they do.
"""

from __future__ import annotations

import logging
import warnings
from importlib.metadata import version
from uuid import uuid4

import cloudpickle
import distributed
from distributed import Client
from prefect.task_engine import run_task_sync
from prefect.utilities.engine import collect_task_run_inputs_sync
from prefect_dask import DaskTaskRunner
from prefect_dask.task_runners import PrefectDaskFuture

from oiflow.archive import WorkUnit
from oiflow.cluster import ClusterProfile, load_profile, make_cluster
from oiflow.config import ClusterConfig

from oiflow.flows.runtime import worker_env
from oiflow.flows.worker_plugins import PrefectDrainPlugin, WarmUp


#: distribution → the minor version whose internals OiflowDaskTaskRunner uses (pinned in pyproject.toml)
SUPPORTED = {"prefect": "3.9", "prefect-dask": "0.3"}


def unsupported_versions() -> dict[str, str]:
    """The installed versions of :data:`SUPPORTED` distributions outside their supported minor."""
    installed = {name: version(name) for name in SUPPORTED}
    return {name: v for name, v in installed.items() if not v.startswith(SUPPORTED[name] + ".")}


class OiflowDaskTaskRunner(DaskTaskRunner):
    """DaskTaskRunner with a cheaper submission (see the module docstring): no per-task settings
    round trip, the flow run's serialized context made once per flow run, and no search for
    futures in parameters that are only work units."""

    _flow_run_context: tuple[object, "Pickled"] | None = None  # (the EngineContext, its serialization)
    _pickled_tasks: dict[int, tuple[object, "Pickled"]] | None = None  # id → (task, pickled)

    def submit(self, task, parameters, wait_for=None, dependencies=None):
        if task.isasync or not self._started:
            return super().submit(task, parameters, wait_for=wait_for, dependencies=dependencies)
        if all(isinstance(v, _HOLDS_NO_FUTURE) for v in parameters.values()):  # e.g. a unit
            inputs = {k: set() for k in parameters}
        else:
            parameters = self._optimize_futures(parameters)
            inputs = {k: collect_task_run_inputs_sync(v, future_cls=distributed.Future) for k, v in parameters.items()}
        wait_for = self._optimize_futures(wait_for) if wait_for else None
        task_run_id = uuid4()
        if dependencies:
            inputs = {k: v.union(dependencies.get(k, set())) for k, v in inputs.items()}
        context = _context_without_settings({"task": task, "task_run_id": task_run_id, "task_inputs": inputs,
                                             "copy_to_child_ctx": True}, self._serialized_flow_run_context())
        future = Client.submit(self.client, _run_task, key=f"{task.name}-{task_run_id.hex}", pure=False,
                               task=self._pickled_task(task), task_run_id=task_run_id, parameters=parameters,
                               wait_for=wait_for, return_type="state", dependencies=inputs, context=context)
        return PrefectDaskFuture(wrapped_future=future, task_run_id=task_run_id)

    def _serialized_flow_run_context(self) -> dict | Pickled:
        """The flow run's context as Prefect serializes it for each task, made and pickled once
        per flow run (it holds the flow run, the flow, its parameters and its result store — the
        same for every task; serializing the result store's block took ~5 ms a task)."""
        import prefect.context as pc

        engine = pc.EngineContext.get()
        if engine is None:
            return {}
        if self._flow_run_context is None or self._flow_run_context[0] is not engine:
            self._flow_run_context = (engine, Pickled(_with_storage_block(engine.serialize(), engine)))
        return self._flow_run_context[1]

    def _pickled_task(self, task) -> Pickled:
        """``task`` pickled once (a stage task, or its ``with_options`` copy, runs many units)."""
        if self._pickled_tasks is None or len(self._pickled_tasks) > 64:
            self._pickled_tasks = {}
        held = self._pickled_tasks.get(id(task))
        if held is None or held[0] is not task:
            held = self._pickled_tasks[id(task)] = (task, Pickled(task))
        return held[1]


def _with_storage_block(serialized: dict, engine) -> dict:
    """The flow run's serialized context with its result store's storage block as the block
    object, not the block's fields. From the fields (a ``block_type_slug``), the worker that
    rebuilds the context finds the block's class by importing every installed Prefect
    collection (prefect-docker: docker, requests, Prefect's workers — ~250 modules, 0.2–0.25 s of CPU
    in every worker's first task); the object carries its class (the same block, its secrets
    included as Prefect's serialization includes them)."""
    store = serialized.get("result_store")
    storage = getattr(getattr(engine, "result_store", None), "result_storage", None)
    if isinstance(store, dict) and isinstance(store.get("result_storage"), dict) and storage is not None:
        serialized = {**serialized, "result_store": {**store, "result_storage": storage}}
    return serialized


#: parameter values that cannot hold a Prefect or Dask future (no search through them)
_HOLDS_NO_FUTURE = (WorkUnit, str, bytes, int, float, bool, type(None))


class Pickled:
    """An object pickled (cloudpickle) once, travelling as those bytes until :meth:`load` on the
    worker. A task's submission sends the same flow-run context and the same task object with
    every unit. Sent as themselves, Dask pickled both again for each unit, and twice for a stage
    task (the standard pickle fails on a function whose module name is taken by its task object,
    and Dask then started over with cloudpickle: ~40 % of the flow process's CPU per submission);
    and the scheduler (in the flow process) unpickled them into Prefect objects and pickled them
    again, with cloudpickle, to send them on. A Pickled is bytes to the client and the scheduler
    (the standard pickle takes it), and :func:`_run_task` loads it on the worker (once per
    worker for the same bytes: :meth:`load`)."""

    __slots__ = ("data",)

    def __init__(self, obj):
        self.data = cloudpickle.dumps(obj)

    def __reduce__(self):
        return _pickled_from, (self.data,)

    def load(self):
        """The object (the same one for the same bytes in this process: a stage task and the
        flow-run context serve every unit; Prefect builds its run objects from them and changes
        neither)."""
        held = _LOADED.get(self.data)
        if held is None:
            if len(_LOADED) >= 16:
                _LOADED.pop(next(iter(_LOADED)))
            held = _LOADED[self.data] = cloudpickle.loads(self.data)
        return held


#: bytes → object of the Pickled loaded in this process (a few tasks and flow-run contexts)
_LOADED: dict[bytes, object] = {}


def _pickled_from(data: bytes) -> Pickled:
    held = object.__new__(Pickled)
    held.data = data
    return held


def _run_task(task: Pickled, context: dict, **kwargs):
    """On a worker: Prefect's ``run_task_sync`` with the task and the flow run's context loaded
    from their :class:`Pickled` bytes."""
    flow_run_context = context.get("flow_run_context")
    if isinstance(flow_run_context, Pickled):
        context = {**context, "flow_run_context": flow_run_context.load()}
    return run_task_sync(task=task.load(), context=context, **kwargs)


def _context_without_settings(asset_ctx_kwargs: dict, flow_run_context: dict | Pickled | None = None) -> dict:
    """:func:`prefect.context.serialize_context` (Prefect 3.9) minus the settings context.
    Serializing the settings (a pydantic dump of every nested settings model, secrets rendered)
    cost the flow process ~35 ms per task, and the worker uses its own settings anyway (the same
    environment, :func:`oiflow.flows.runtime.worker_env`). ``flow_run_context``: the flow run's,
    already serialized (or pickled, :class:`Pickled`; else serialized here)."""
    import prefect.context as pc

    engine, task_run, tags = pc.EngineContext.get(), pc.TaskRunContext.get(), pc.TagsContext.get()
    deployment_var, parameters_var = (getattr(pc, "_deployment_id", None), getattr(pc, "_deployment_parameters", None))
    deployment_id = deployment_var.get() if deployment_var is not None else None
    if flow_run_context is None:
        flow_run_context = engine.serialize() if engine else {}
    return {
        "flow_run_context": flow_run_context,
        "task_run_context": task_run.serialize() if task_run else {},
        "tags_context": tags.serialize() if tags else {},
        "settings_context": {},
        "asset_context": pc.AssetContext.from_task_and_inputs(**asset_ctx_kwargs).serialize(),
        "deployment_id": str(deployment_id) if deployment_id else None,
        "deployment_parameters": parameters_var.get() if parameters_var is not None else None,
    }


def profile_of(cluster: ClusterConfig) -> ClusterProfile:
    overrides = {"n_workers": cluster.n_workers}
    if cluster.address:
        overrides["address"] = cluster.address
    return load_profile(cluster.profile, overrides)


def start_cluster(profile: ClusterProfile, env: dict[str, str]):
    """``cluster_class`` of the task runner: the profile's cluster, with oiflow's worker plugins
    (the workers warm when this returns)."""
    cluster = make_cluster(profile, env)
    with Client(cluster) as client:
        client.register_plugin(PrefectDrainPlugin())
        client.register_plugin(WarmUp())
    return cluster


def runner_class() -> type[DaskTaskRunner]:
    """:class:`OiflowDaskTaskRunner` on the supported Prefect versions, else prefect-dask's
    DaskTaskRunner (with a warning naming the versions)."""
    wrong = unsupported_versions()
    if not wrong:
        return OiflowDaskTaskRunner
    found = ", ".join(f"{k} {v}" for k, v in wrong.items())
    wanted = ", ".join(f"{k} {SUPPORTED[k]}.*" for k in wrong)
    warnings.warn(f"{found} installed, oiflow's task runner is written for {wanted}: using prefect-dask's "
                  f"DaskTaskRunner (slower per task); install the versions pyproject.toml pins", stacklevel=2)
    return DaskTaskRunner


class StartedCluster:
    """A context that starts the Dask cluster of ``profile`` before a flow run, for its task
    runner (:meth:`task_runner`), and closes it after; entered while Prefect's temporary server
    starts (:func:`oiflow.flows.runtime.prefect_api`), so that the workers' start overlaps the server's.
    A profile of kind ``address`` starts nothing (the runner connects to it)."""

    def __init__(self, profile: ClusterProfile):
        self.profile = profile
        self.cluster = None

    def __enter__(self) -> "StartedCluster":
        if self.profile.kind != "address":
            logging.getLogger("distributed").setLevel(logging.getLogger("distributed").level or logging.ERROR)
            self.cluster = start_cluster(self.profile, worker_env())  # worker_env: with the server's URL
        return self

    def task_runner(self) -> DaskTaskRunner:
        if self.cluster is None:
            return task_runner(self.profile)
        return runner_class()(address=self.cluster.scheduler_address)

    def __exit__(self, *exc) -> None:
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None


def task_runner(profile: ClusterProfile, env: dict[str, str] | None = None) -> DaskTaskRunner:
    """A Dask task runner for ``profile`` (:func:`runner_class`); workers get ``env`` (default:
    :func:`worker_env`)."""
    env = worker_env() if env is None else env
    cls = runner_class()
    if profile.kind == "address":
        return cls(address=profile.address)
    logging.getLogger("distributed").setLevel(logging.getLogger("distributed").level or logging.ERROR)
    return cls(cluster_class=start_cluster, cluster_kwargs={"profile": profile, "env": env})
