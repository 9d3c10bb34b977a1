"""Pipeline commands: products, run, reprocess, server start, serve, deploy, submit.

The flows live in the top-level ``flows`` package (Prefect); they are imported inside the
commands that run them, after :func:`oiflow.flows.runtime.configure` has set oiflow's quiet,
telemetry-free Prefect defaults. ``oiflow products`` and ``--dry-run`` never import Prefect.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer

from ..config import load_config
from ..errors import ConfigError
from . import DEBUG, paths
from .json_output import force_option, json_option, json_out_option

server_app = typer.Typer(help="The Prefect server (UI and API) for scheduled and submitted jobs.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("products")(products)
    app.command("run")(run)
    app.command("reprocess")(reprocess)
    app.command("serve")(serve)
    app.command("deploy")(deploy)
    app.command("submit")(submit)
    server_app.command("start")(server_start)
    app.add_typer(server_app, name="server")


def _verbose(debug: bool = False) -> int:
    """0 quiet, 1 ``oiflow -v``, 2 ``--debug`` (see :func:`oiflow.flows.runtime.configure`)."""
    import logging

    if debug or DEBUG[0]:
        return 2
    return 1 if logging.getLogger().getEffectiveLevel() <= logging.INFO else 0


def _flows(module: str, debug: bool = False):
    """Import ``oiflow.flows.<module>`` after configuring Prefect's environment."""
    from oiflow.flows import runtime  # noqa: PLC0415  (no Prefect import here)

    runtime.configure(verbose=_verbose(debug))
    return importlib.import_module(f"oiflow.flows.{module}")


def _reporter(verbose: int):
    """The progress of a run on stderr: a live line on a terminal, else one log line per finished
    unit and a heartbeat (:mod:`oiflow.flows.progress`)."""
    import logging

    from rich.console import Console

    from oiflow.flows.progress import LogReporter, TerminalReporter

    _oiflow_log(verbose)
    console = Console(stderr=True)
    if console.is_terminal:
        return TerminalReporter(console, verbose=verbose >= 1)
    logger = logging.getLogger("oiflow.progress")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return LogReporter(logger)


def _oiflow_log(verbose: int) -> None:
    """oiflow's own log records during a run (a lost worker job resubmitted, a unit retried…) on
    stderr: warnings and errors, and INFO with -v. They get their own handler because Prefect's
    logging set-up replaces the root logger's handlers with its console handler, which shows only
    what --debug asks for (:func:`oiflow.flows.runtime.configure`)."""
    import logging

    logger = logging.getLogger("oiflow")
    if not any(getattr(h, "oiflow_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        handler.oiflow_cli = True
        logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    logger.propagate = False


def _run_with_progress(flow: str, config, idle, debug: bool, **params):
    """Run ``flows.<flow>`` (module.function) as the command line does (:func:`oiflow.flows.run.run_flow`),
    its progress shown by :func:`_reporter`."""
    from oiflow.flows.progress import reporting

    from ..cluster import load_profile

    load_profile(config.cluster.profile, {"n_workers": config.cluster.n_workers})  # a bad profile: exit 2 now
    run_mod = _flows("run", debug)
    module, name = flow.split(".")
    with reporting(_reporter(_verbose(debug))):
        return run_mod.run_flow(lambda: getattr(_flows(module, debug), name), config.cluster, idle=idle,
                                verbose=_verbose(debug), config=config, **params)


# -- products --------------------------------------------------------------------------------


def products(
    root: Path = typer.Option(Path("products"), "--root", help="Product tree (catalogue in <root>/catalog.sqlite)."),
    url: str | None = typer.Option(None, "--catalog", help="Catalogue database URL (e.g. postgresql://...)."),
    target: str | None = typer.Option(None, "--target", help="Only this target (OI_TARGET name; case, spaces, _ "
                                      "and - ignored, as the run matches targets: 'AX Cir' finds AX_CIR)."),
    level: int | None = typer.Option(None, "--level", help="Only this calib_level (1, 2, 3)."),
    night: str | None = typer.Option(None, "--night", help="Only this night (YYYY-MM-DD, local date at the start of the night)."),
    verdict: str | None = typer.Option(None, "--verdict", help="Only L3 products with this verdict (ok, poor-fit, "
                                       "maxiter, not-at-minimum, unconstrained, at-bound, failed), or not-ok."),
    as_json: bool = json_option("Print JSON rows (all catalogue columns)."),
    json_out: Path | None = json_out_option("the JSON rows"),
    force: bool = force_option(),
):
    """List catalogued product granules (one row per product file, target, instrument mode, night).

    Example: oiflow products --root products --target AX_CIR --level 2 --json
    """
    from ..catalog import Catalog, dumps
    from ..verdict import STATUSES

    if verdict is not None and verdict not in (*STATUSES, "not-ok"):
        raise ConfigError(f"--verdict: unknown verdict {verdict!r} (one of {', '.join(STATUSES)}, not-ok)")
    if url is None:
        paths.input_dir(root, "--root")
    if json_out is not None:
        paths.output_file(json_out, force=force, label="--json-out")
    if url is None and not (root / "catalog.sqlite").is_file():
        raise ConfigError(f"no catalogue at {root / 'catalog.sqlite'} (run a flow first, or give --catalog URL)")
    with Catalog.for_root(root, url) as cat:
        rows = cat.products(target=target, level=level, night=night, verdict=verdict)
    if json_out is not None:
        from ..provenance import write_text_atomic

        write_text_atomic(dumps(rows) + "\n", json_out)
    if as_json:
        typer.echo(dumps(rows))
    else:
        print_products(rows, root)


#: rows of the products table at the end of a run (an archive's run lists the others with `oiflow products`)
SUMMARY_ROWS = 60


def print_products(rows: list[dict[str, Any]], root: Path | str | None = None, title: str | None = None,
                   limit: int | None = None) -> None:
    """The rows as the products table (:mod:`oiflow.products_table`): the first ``limit`` of
    them, the number of the others below."""
    from ..products_table import print_table, rich_table

    more = len(rows) - limit if limit is not None and len(rows) > limit else 0
    rows = rows[:limit] if more else rows
    caption = f"… and {more} more: oiflow products --root {root}" if more else None
    print_table(rich_table(rows, root, title=title, caption=caption))


def _print_summary(summary, state) -> int:
    if summary is None:
        msg = getattr(state, "message", None) or "the flow failed before producing a summary"
        typer.echo(f"error: {msg}", err=True)
        return 1
    print_products(summary.products, summary.root, title=f"{summary.flow}: {len(summary.products)} product granule(s) "
                                                         f"under {summary.root}", limit=SUMMARY_ROWS)
    typer.echo(f"{summary.state_message} ({summary.seconds:.1f} s)")
    if summary.orchestration:
        typer.echo(summary.orchestration)
    if summary.not_ok:
        typer.echo("verdicts other than ok:", err=True)
        for r in summary.not_ok:
            reasons = "; ".join((r.get("verdict_detail") or {}).get("reasons", []))
            typer.echo(f"  {r['target_name']}: {Path(r['access_url']).name}: {r['verdict']}"
                       + (f" ({reasons})" if reasons else ""), err=True)
    if summary.failures:
        typer.echo("failed:", err=True)
        for f in summary.failures:
            typer.echo(f"  {f['unit']}: {Path(f['item']).name}: {f['error']}", err=True)
    return 0 if summary.ok else 1


def _overrides(root: Path | None, url: str | None, cluster: str | None, workers: int | None,
               max_parallel: int | None, unit_runs: str | None = None) -> dict:
    ov: dict[str, Any] = {}
    if unit_runs is not None:
        ov.setdefault("cluster", {})["unit_runs"] = unit_runs
    if root is not None:
        ov.setdefault("output", {})["root"] = str(root)
    if url is not None:
        ov.setdefault("catalog", {})["url"] = url
    if cluster is not None:
        ov.setdefault("cluster", {})["profile"] = cluster
    if workers is not None:
        ov.setdefault("cluster", {})["n_workers"] = workers
    if max_parallel is not None:
        ov.setdefault("cluster", {})["max_parallel"] = max_parallel
    return ov


def _dry_run(config) -> None:
    from ..cluster import job_script, load_profile

    profile = load_profile(config.cluster.profile, {"n_workers": config.cluster.n_workers,
                                                    "address": config.cluster.address})
    from oiflow.flows.runtime import QUIET_ENV

    env = {"PREFECT_API_URL": os.environ.get("PREFECT_API_URL", "<the flow's Prefect API URL>"), **QUIET_ENV}
    if profile.kind in ("slurm", "oar"):
        n = f"adaptive {profile.adapt}" if profile.adapt else f"{profile.worker_count()} job(s)"
        typer.echo(f"# {profile.kind} profile {config.cluster.profile}: {n}, each running this script\n")
        typer.echo(job_script(profile, env))
    elif profile.kind == "local":
        typer.echo(f"# local profile: LocalCluster with {profile.worker_count()} worker process(es) x "
                   f"{profile.threads_per_worker} thread(s)")
    else:
        typer.echo(f"# address profile: existing Dask scheduler at {profile.address}")


# -- run / reprocess -----------------------------------------------------------------------

ROOT_HELP = ("Output directory: the product tree root (output.root; created, its products are updated). "
             "--root is the same option, the name `oiflow products` reads the tree with.")


def _load_run_config(config_path: Path | None, overrides: dict, debug: bool, run_config_argument: bool = False):
    """The run configuration (``--debug`` noted for the error report)."""
    DEBUG[0] = DEBUG[0] or debug
    if config_path is not None:
        paths.input_file(config_path, "" if run_config_argument else "--config")
    return load_config(config_path, overrides)


def _check_root(config, config_path: Path | None, out: Path | None) -> None:
    """The product root must be writable: said now, not after Prefect's start-up."""
    paths.output_dir(config.output.root, "--out" if out is not None else f"{config_path or 'configuration'}: output.root")


def run(
    config_path: Path = typer.Argument(..., metavar="CONFIG", help="Run configuration (YAML)."),
    cluster: str | None = typer.Option(None, "--cluster", help="Cluster profile: local, slurm, oar, address, or a YAML path."),
    workers: int | None = typer.Option(None, "--workers", help="Dask workers (local) or jobs (slurm/oar)."),
    out: Path | None = typer.Option(None, "--out", "-o", "--root", help=ROOT_HELP),
    url: str | None = typer.Option(None, "--catalog", help="Catalogue URL (catalog.url)."),
    force: bool = typer.Option(False, "--force", help="Redo units even when up to date."),
    unit_runs: str | None = typer.Option(None, "--unit-runs", help="Each unit as a Prefect task run ('prefect': listed in "
                                         "the UI) or a plain Dask task ('dask': less CPU per unit). Default: prefect."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the cluster setup (the job script for slurm/oar) and stop."),
    debug: bool = typer.Option(False, "--debug", help="Also show the libraries' logs (Prefect's task runs, HTTP "
                               "requests, Dask) and an error's traceback, as `oiflow --debug`; -v shows "
                               "oiflow's details only."),
):
    """Run the pipeline of CONFIG (raw nights → L1 → L2 → fits and images of the configured
    targets; or from L1/L2 OIFITS) and print a summary table of the products.

    With nothing configured it starts Prefect's temporary server (spawned while the plan is
    checked) and a local Dask cluster; when every unit is up to date no cluster starts and the
    server is stopped unused (the summary says so). On a terminal a live line
    shows the units done, failed and running per stage with an estimate of the time left;
    otherwise one line per finished unit and a heartbeat go to stderr.
    Exits 1 when an item failed (the others are processed; the summary lists what failed).

    Example: oiflow run configs/demo.yaml --cluster oar --dry-run
    """
    config = _load_run_config(config_path, _overrides(out, url, cluster, workers, None, unit_runs), debug, True)
    if dry_run:
        _dry_run(config)
        return
    _check_root(config, config_path, out)
    plans = _flows("plans", debug)
    plans.check_config(config)
    idle = _flows("run", debug).IdleCheck("l0-to-l3", config, plans.pipeline_build(config))
    summary, state = _run_with_progress("pipeline.l0_to_l3", config, idle, debug, server_with_plan=True, force=force)
    raise typer.Exit(_print_summary(summary, state))


def reprocess(
    archive: Path = typer.Argument(..., help="Archive root: one directory per night."),
    config_path: Path | None = typer.Option(None, "--config", help="Run configuration (YAML)."),
    level: int | None = typer.Option(None, "--level", help="Level of the archived nights: 0 raw (default), 1 or 2 OIFITS."),
    cluster: str | None = typer.Option(None, "--cluster", help="Cluster profile."),
    workers: int | None = typer.Option(None, "--workers", help="Dask workers (local) or jobs (slurm/oar)."),
    max_parallel: int | None = typer.Option(None, "--max-parallel", help="Nights in flight at once (0: all)."),
    out: Path | None = typer.Option(None, "--out", "-o", "--root", help=ROOT_HELP),
    url: str | None = typer.Option(None, "--catalog", help="Catalogue URL (catalog.url)."),
    force: bool = typer.Option(False, "--force", help="Redo nights even when up to date."),
    unit_runs: str | None = typer.Option(None, "--unit-runs", help="Each unit as a Prefect task run ('prefect': listed in "
                                         "the UI) or a plain Dask task ('dask': less CPU per unit). Default: dask."),
    debug: bool = typer.Option(False, "--debug", help="Also show the libraries' logs (Prefect's task runs, HTTP "
                               "requests, Dask) and an error's traceback, as `oiflow --debug`; -v shows "
                               "oiflow's details only."),
):
    """Reprocess the nights of ARCHIVE: only the units (observations, nights, targets) whose
    inputs, settings or code changed since their last successful run (from the catalogue) are
    redone; an unchanged archive costs a scan and no writes. Raw nights (level 0) go through
    reduce, calibrate, fit and image (the targets of the config); OIFITS nights start later.

    Example: oiflow reprocess /data/archive --config configs/demo.yaml --out products --max-parallel 4
    """
    paths.input_dir(archive)
    ov = _overrides(out, url, cluster, workers, max_parallel, unit_runs)
    if level is not None:
        ov.setdefault("input", {})["level"] = level
    config = _load_run_config(config_path, ov, debug)
    _check_root(config, config_path, out)
    nights, build = _flows("plans", debug).archive_build(archive, config)
    idle = _flows("run", debug).IdleCheck("reprocess-archive", config, build, {"report_unmatched": bool(nights)})
    summary, state = _run_with_progress("reprocess.reprocess_archive", config, idle, debug, root=archive, force=force)
    raise typer.Exit(_print_summary(summary, state))


# -- server mode -----------------------------------------------------------------------------


def server_start(
    port: int = typer.Option(4200, "--port", help="Port on 127.0.0.1."),
):
    """Start a Prefect server (UI and API) on 127.0.0.1, in the foreground. Then, in other
    shells: export PREFECT_API_URL=http://127.0.0.1:PORT/api; oiflow serve ...; oiflow submit ...
    """
    from oiflow.flows import runtime

    runtime.configure(verbose=_verbose())
    typer.echo(f"Prefect UI: http://127.0.0.1:{port}   API: export PREFECT_API_URL=http://127.0.0.1:{port}/api")
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    env = dict(runtime.RECORDER_ENV, **os.environ)  # the user's settings win
    env.update(PREFECT_SERVER_API_HOST="127.0.0.1", PREFECT_SERVER_API_PORT=str(port),
               PREFECT_UI_API_URL=f"http://127.0.0.1:{port}/api")  # the UI must call this server's API
    raise typer.Exit(subprocess.call(cmd, env=env))


def serve(
    deployments: Path = typer.Argument(..., help="Deployments file (YAML), e.g. configs/deployments.yaml."),
    check: bool = typer.Option(False, "--check", help="Validate the file and print the deployments, then stop."),
):
    """Serve the deployments of a YAML file (cron schedules for nightly reprocessing,
    parameterised deployments for ad-hoc jobs) until interrupted. Needs PREFECT_API_URL.

    Example: oiflow serve configs/deployments.yaml
    """
    from oiflow.flows.deployment_specs import load_deployments  # no Prefect: a bad file is refused at once

    paths.input_file(deployments)
    specs = load_deployments(deployments)
    if check:
        for s in specs:
            sched = f"cron {s.cron!r}" if s.cron else "on demand"
            typer.echo(f"{s.flow_name}/{s.name}: {sched}; parameters {json.dumps(s.parameters, default=str)}")
        return
    if not os.environ.get("PREFECT_API_URL"):
        raise ConfigError("oiflow serve needs a Prefect server: start one with `oiflow server start` and "
                          "export PREFECT_API_URL=http://127.0.0.1:4200/api")
    _flows("deployments").serve_deployments(specs)


def deploy(
    deployments: Path = typer.Argument(..., help="Deployments file (YAML), e.g. configs/deployments.yaml."),
    work_pool: str = typer.Option(..., "--work-pool", help="Docker work pool (created if missing)."),
    image: str = typer.Option("localhost/oiflow-worker:latest", "--image", help="Image the runs execute in."),
    volume: list[str] = typer.Option([], "--volume", help="SRC[:DST][:ro|rw] bind mount (same path inside when "
                                                          "DST is omitted): the inputs and the products root."),
    user: str | None = typer.Option(None, "--user", help="uid:gid inside the container (default: yours)."),
    mem_limit: str | None = typer.Option(None, "--mem-limit", help="Memory limit of each run's container, e.g. 8g."),
):
    """Register the deployments of a YAML file on a docker work pool: each run executes in the
    worker image (prefect-docker), started by a worker on the machine with the container engine:

        DOCKER_HOST=unix:///…/podman.sock prefect worker start --pool POOL --type docker

    Then `oiflow submit NAME --watch`. Needs PREFECT_API_URL (see containers/README.md).
    """
    from oiflow.flows.deployment_specs import load_deployments  # no Prefect: a bad file is refused at once

    paths.input_file(deployments)
    specs = load_deployments(deployments)
    if not os.environ.get("PREFECT_API_URL"):
        raise ConfigError("oiflow deploy needs a Prefect server: start one with `oiflow server start` and "
                          "export PREFECT_API_URL=http://127.0.0.1:4200/api")
    ids = _flows("deployments").deploy_to_docker_pool(specs, work_pool, image, volume, user=user, mem_limit=mem_limit)
    for s, dep_id in zip(specs, ids):
        typer.echo(f"{s.flow_name}/{s.name} ({dep_id}): work pool {work_pool}, image {image}")


def _parse_param(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"--param expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip(), value


def submit(
    deployment: str = typer.Argument(..., help="Deployment name (flow-name/deployment-name, or deployment-name)."),
    param: list[str] = typer.Option([], "--param", help="key=value (JSON values accepted); dotted keys set nested "
                                                        "fields, e.g. config.output.root=products."),
    watch: bool = typer.Option(False, "--watch", help="Wait for the run to finish and print its products."),
    timeout: float = typer.Option(3600.0, "--timeout", help="With --watch: seconds to wait."),
):
    """Submit a run of a served deployment and say where its products will be.

    Example: oiflow submit reprocess-archive-job/adhoc --param root=/data/archive --param config.output.root=products --watch
    """
    dep = _flows("deployments")
    params = dict(_parse_param(p) for p in param)
    info = dep.submit(deployment, params, watch=watch, timeout=timeout)
    typer.echo(f"flow run {info['flow_run_name']} ({info['flow_run_id']}): {info['state']}")
    typer.echo(f"UI: {info['ui_url']}")
    typer.echo(f"products: {info['products_root']} (catalogue: {info['catalog']})")
    if watch and info.get("summary") is not None:
        code = _print_summary(info["summary"], None)
        raise typer.Exit(code)
    if watch and info["state_type"] != "COMPLETED":
        raise typer.Exit(1)
