"""The Dask task runner of a flow, from a cluster profile (``configs/clusters``).

Every cluster gets :class:`PrefectDrainPlugin`: when a worker closes, it sends the Prefect logs
and events it still holds, so it exits at once instead of being killed by its nanny after a
4 s wait (and without losing the last task logs).
"""

from __future__ import annotations

import logging

from distributed import Client, WorkerPlugin
from prefect_dask import DaskTaskRunner

from oiflow.cluster import ClusterProfile, load_profile, make_cluster
from oiflow.config import ClusterConfig

from flows.runtime import flush_logs, worker_env


class PrefectDrainPlugin(WorkerPlugin):
    name = "oiflow-prefect-drain"

    def teardown(self, worker) -> None:
        flush_logs()


def profile_of(cluster: ClusterConfig) -> ClusterProfile:
    overrides = {"n_workers": cluster.n_workers}
    if cluster.address:
        overrides["address"] = cluster.address
    return load_profile(cluster.profile, overrides)


def start_cluster(profile: ClusterProfile, env: dict[str, str]):
    """``cluster_class`` of the task runner: the profile's cluster, with the drain plugin."""
    cluster = make_cluster(profile, env)
    with Client(cluster) as client:
        client.register_plugin(PrefectDrainPlugin())
    return cluster


def task_runner(profile: ClusterProfile, env: dict[str, str] | None = None) -> DaskTaskRunner:
    """A DaskTaskRunner for ``profile``; workers get ``env`` (default: :func:`worker_env`)."""
    env = worker_env() if env is None else env
    if profile.kind == "address":
        return DaskTaskRunner(address=profile.address)
    logging.getLogger("distributed").setLevel(logging.getLogger("distributed").level or logging.ERROR)
    return DaskTaskRunner(cluster_class=start_cluster, cluster_kwargs={"profile": profile, "env": env})
