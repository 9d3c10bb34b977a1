"""Server mode: deployments from YAML, served with cron schedules (``oiflow serve``) or run in the
worker image by a docker work pool (``oiflow deploy``); ad-hoc submission.

``configs/deployments.yaml``::

    deployments:
      - name: nightly                       # reprocess the archive every morning
        flow: reprocess_archive
        cron: "0 9 * * *"
        timezone: UTC
        parameters: {root: archive, config: {input: {level: 2}, output: {root: products}}}
      - name: adhoc                         # no schedule: run by `oiflow submit`
        flow: run_pipeline
        parameters: {config: {input: {level: 2, files: []}, output: {root: products}}}

Each deployment runs an *entry* flow that picks the Dask task runner from the run's own
``config.cluster`` and runs the stage flow under it (the task runner is chosen per run, at
flow level). Relative paths in parameters are made absolute when served or submitted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prefect import flow

from oiflow.catalog import Catalog
from oiflow.config import RunConfig, _deep_update, validate
from oiflow.errors import ConfigError

from oiflow.flows.deployment_specs import ENTRY_FLOW_NAMES, DeploymentSpec, _absolute, load_deployments  # noqa: F401
from oiflow.flows.pipeline import run_pipeline
from oiflow.flows.reprocess import reprocess_archive
from oiflow.flows.runners import profile_of, task_runner


@flow(name=ENTRY_FLOW_NAMES["reprocess_archive"])
def reprocess_archive_job(root: Path, config: RunConfig, force: bool = False):
    """Deployment entry: :func:`oiflow.flows.reprocess.reprocess_archive` on the config's cluster."""
    runner = task_runner(profile_of(config.cluster))
    return reprocess_archive.with_options(task_runner=runner)(root=root, config=config, force=force, return_state=True)


@flow(name=ENTRY_FLOW_NAMES["run_pipeline"])
def pipeline_job(config: RunConfig, force: bool = False):
    """Deployment entry: :func:`oiflow.flows.pipeline.run_pipeline` on the config's cluster."""
    runner = task_runner(profile_of(config.cluster))
    return run_pipeline.with_options(task_runner=runner)(config=config, force=force, return_state=True)


#: the entry flow of each ``flow:`` name of a deployments file (their names: ENTRY_FLOW_NAMES)
ENTRY_FLOWS = {"reprocess_archive": reprocess_archive_job, "run_pipeline": pipeline_job}


def to_deployments(specs: list[DeploymentSpec]):
    out = []
    for s in specs:
        kwargs: dict[str, Any] = dict(name=s.name, parameters=s.parameters, description=s.description or None,
                                      tags=s.tags or None)
        if s.cron:
            from prefect.client.schemas.schedules import CronSchedule

            kwargs["schedules"] = [CronSchedule(cron=s.cron, timezone=s.timezone)]
        out.append(ENTRY_FLOWS[s.flow].to_deployment(**kwargs))
    return out


# -- deployments that run in the worker image: Prefect's docker work pool (prefect-docker) ----------

DOCKER_POOL_TYPE = "docker"
IMAGE_WORKDIR = "/tmp"  # the working directory of flow runs in the worker image (its HOME, writable)


def volume_spec(text: str) -> str:
    """A docker-worker volume from ``SRC[:DST][:ro|rw]``; without DST the path is the same inside
    (as for oiflow's runners), so the paths in a run's config mean the same thing there."""
    parts = str(text).split(":")
    mode = parts.pop() if len(parts) > 1 and parts[-1] in ("ro", "rw") else "rw"
    if len(parts) > 2 or not parts[0]:
        raise ConfigError(f"volume {text!r}: expected SRC[:DST][:ro|rw]")
    src = str(Path(parts[0]).resolve())
    dst = parts[1] if len(parts) == 2 else src
    return f"{src}:{dst}:{mode}"


def docker_job_variables(image: str, volumes: list[str] = (), *, user: str | None = None,
                         network_mode: str = "host", mem_limit: str | None = None,
                         env: dict[str, str] | None = None) -> dict[str, Any]:
    """Job variables of a deployment whose runs execute in ``image`` (the oiflow worker image).

    * ``volumes``: ``SRC[:DST][:ro|rw]`` (see :func:`volume_spec`): the inputs and the products root;
    * ``user``: ``uid:gid`` inside the container (default: the caller's, so that the products
      belong to whoever deployed, not to root);
    * ``network_mode``: ``host`` by default, because the flow run in the container talks to the
      Prefect API (and its Dask workers to each other). The reduction jobs that a flow starts
      through oiflow's runners still run without network;
    * the image is never pulled when present (``IfNotPresent``): images built by
      ``containers/build.sh`` exist only locally.
    """
    from oiflow.flows.runtime import QUIET_ENV

    return {
        "image": image,
        "image_pull_policy": "IfNotPresent",
        "volumes": [volume_spec(v) for v in volumes],
        "network_mode": network_mode,
        "auto_remove": True,
        "stream_output": True,
        "env": {**QUIET_ENV, "PREFECT_LOGGING_LEVEL": "INFO", **(env or {})},
        "container_create_kwargs": {"user": user or f"{os.getuid()}:{os.getgid()}"},
        **({"mem_limit": mem_limit} if mem_limit else {}),
    }


def ensure_docker_work_pool(name: str) -> None:
    """Create the docker work pool ``name`` (prefect-docker's default job template) if missing."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    try:
        from prefect_docker.worker import DockerWorker
    except ImportError:
        raise ConfigError("docker work pools need prefect-docker: pip install 'oiflow[containers]'") from None
    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type=DOCKER_POOL_TYPE,
                                                   base_job_template=DockerWorker.get_default_base_job_template()))
            return
    if pool.type != DOCKER_POOL_TYPE:
        raise ConfigError(f"work pool {name!r} is of type {pool.type!r}, not {DOCKER_POOL_TYPE!r}")


def deploy_to_docker_pool(specs: list[DeploymentSpec], work_pool: str, image: str, volumes: list[str] = (),
                          **job_kwargs) -> list[str]:
    """Register ``specs`` as deployments of the docker work pool ``work_pool`` whose runs execute
    in ``image``; returns their ids. A worker runs them:
    ``DOCKER_HOST=unix:///…/podman.sock prefect worker start --pool POOL --type docker``.

    The flow code is the one installed in the image: the entrypoint is a module path
    (``oiflow.flows.deployments.pipeline_job``) and the only pull step sets the working directory
    (:data:`IMAGE_WORKDIR`), so nothing is built, pushed, pulled or copied (without a pull step,
    Prefect would copy the container's working directory, ``/``, into a workspace)."""
    from prefect import get_client
    from prefect.client.schemas.actions import DeploymentUpdate
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.types.entrypoint import EntrypointType

    ensure_docker_work_pool(work_pool)
    job_variables = docker_job_variables(image, list(volumes), **job_kwargs)
    ids = []
    for s in specs:
        schedules = [CronSchedule(cron=s.cron, timezone=s.timezone)] if s.cron else None
        dep_id = ENTRY_FLOWS[s.flow].deploy(
            name=s.name, work_pool_name=work_pool, image=image, build=False, push=False,
            job_variables=job_variables, parameters=s.parameters, description=s.description or None,
            tags=s.tags or None, schedules=schedules, entrypoint_type=EntrypointType.MODULE_PATH,
            print_next_steps=False)
        with get_client(sync_client=True) as client:
            client.update_deployment(dep_id, DeploymentUpdate(path=None, pull_steps=[
                {"prefect.deployments.steps.set_working_directory": {"directory": IMAGE_WORKDIR}}]))
        ids.append(str(dep_id))
    return ids


def serve_deployments(specs: list[DeploymentSpec]) -> None:
    from prefect import serve

    serve(*to_deployments(specs), print_starting_message=True)


def _nest(params: dict[str, Any]) -> dict[str, Any]:
    """{"config.output.root": x} → {"config": {"output": {"root": x}}}."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def ui_url(flow_run_id: str) -> str:
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    ui = PREFECT_UI_URL.value() or (PREFECT_API_URL.value() or "").removesuffix("/api")
    return f"{ui.rstrip('/')}/runs/flow-run/{flow_run_id}"


def submit(deployment: str, params: dict[str, Any], *, watch: bool = False, timeout: float = 3600.0) -> dict[str, Any]:
    """Create a run of ``deployment`` with ``params`` merged (deeply) into its defaults."""
    from prefect import get_client
    from prefect.deployments import run_deployment

    if not os.environ.get("PREFECT_API_URL"):
        raise ConfigError("oiflow submit needs a Prefect server: export PREFECT_API_URL=http://127.0.0.1:4200/api")
    with get_client(sync_client=True) as client:
        if "/" not in deployment:
            matches = [d for d in client.read_deployments() if d.name == deployment]
            if len(matches) != 1:
                raise ConfigError(f"deployment {deployment!r}: {len(matches)} match(es); use flow-name/deployment-name")
            dep = matches[0]
        else:
            try:
                dep = client.read_deployment_by_name(deployment)
            except Exception:
                raise ConfigError(f"no deployment named {deployment!r} on {os.environ['PREFECT_API_URL']}") from None
    merged = _deep_update(dict(dep.parameters or {}), _absolute(_nest(params), Path.cwd()))
    config = validate(RunConfig, merged.get("config", {}), f"deployment {deployment} with --param", prefix="config")
    fr = run_deployment(dep.id, parameters=merged, timeout=timeout if watch else 0, as_subflow=False)
    root = Path(config.output.root)
    info: dict[str, Any] = {
        "flow_run_id": str(fr.id), "flow_run_name": fr.name, "state": fr.state.name if fr.state else "Scheduled",
        "state_type": fr.state.type.value if fr.state else "SCHEDULED", "ui_url": ui_url(str(fr.id)),
        "products_root": str(root), "catalog": config.catalog.url or str(root / "catalog.sqlite"), "summary": None,
    }
    if watch and fr.state is not None and fr.state.is_final():
        from oiflow.flows.summary import RunSummary

        rows = []
        if (root / "catalog.sqlite").is_file() or config.catalog.url:
            with Catalog.for_root(root, config.catalog.url) as cat:
                rows = cat.products(flow_run_id=str(fr.id))
        info["summary"] = RunSummary(flow=dep.name, root=str(root), products=rows, flow_run_id=str(fr.id))
        if not fr.state.is_completed():
            info["summary"].failures.append({"unit": "-", "item": fr.name, "error": fr.state.message or fr.state.name})
    return info
