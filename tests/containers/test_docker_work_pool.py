"""A Prefect deployment whose runs execute in the worker image: Prefect's docker work pool
(prefect-docker) driven by a worker pointed at the container engine's Docker API (Podman's socket
in CI). The whole user path: `oiflow server start`, `oiflow deploy --work-pool`, `prefect worker
start --type docker`, `oiflow submit --watch`; the products appear in a bind-mounted directory."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from oiflow.catalog import Catalog
from oiflow.provenance import sha256_file

pytestmark = pytest.mark.container

REPO = Path(__file__).resolve().parents[2]
SAMPLES = ["FSCMa_PIONI.2017-10-21.fits", "alfCenA_PIONI.2016-05-31T00_55_19.fits"]
from test_server_ui import _env, _free_port, _start, _stop, _wait_http  # noqa: E402  (tests/ is on sys.path)


def _cli(args, env, timeout=600):
    return subprocess.run([sys.executable, "-m", "oiflow.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_a_deployment_runs_in_the_worker_image_on_a_docker_work_pool(docker_runner, worker_image, engine_url,
                                                                   require, tmp_path):
    try:
        import prefect_docker  # noqa: F401
    except ImportError:
        require("prefect-docker is not installed (pip install 'oiflow[containers]')")
    inputs, products = tmp_path / "in", tmp_path / "products"
    inputs.mkdir()
    products.mkdir()
    for name in SAMPLES:
        shutil.copy(REPO / "data-samples" / "oifits" / name, inputs / name)
    before = {p.name: sha256_file(p) for p in inputs.iterdir()}
    # as root, run the flow as another user: files owned by it can only have been written in the container
    user = "1234:1234" if os.getuid() == 0 else f"{os.getuid()}:{os.getgid()}"
    if os.getuid() == 0:
        products.chmod(0o777)
    spec = tmp_path / "deployments.yaml"
    spec.write_text(yaml.safe_dump({"deployments": [{
        "name": "container-ingest", "flow": "run_pipeline",
        "parameters": {"config": {"input": {"level": 2, "files": [str(inputs / n) for n in SAMPLES]},
                                  "output": {"root": str(products)}, "cluster": {"n_workers": 1}}}}]}))

    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = _env(tmp_path / "prefect-home", api)
    server_log, worker_log = tmp_path / "server.log", tmp_path / "worker.log"
    server = _start(["server", "start", "--port", str(port)], _env(tmp_path / "prefect-home"), server_log)
    worker = None
    try:
        _wait_http(f"{api}/health", server, server_log)
        out = _cli(["deploy", str(spec), "--work-pool", "oiflow-docker", "--image", worker_image,
                    "--volume", f"{inputs}:ro", "--volume", str(products), "--user", user], env)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "pipeline-job/container-ingest" in out.stdout and worker_image in out.stdout

        worker = subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", "oiflow-docker", "--type", "docker"],
            cwd=tmp_path, env={**env, "DOCKER_HOST": engine_url}, start_new_session=True,
            stdout=worker_log.open("w"), stderr=subprocess.STDOUT)
        out = _cli(["submit", "pipeline-job/container-ingest", "--watch", "--timeout", "480"], env)
        assert out.returncode == 0, out.stdout + out.stderr + worker_log.read_text()[-4000:]
        assert ": Completed" in out.stdout

        from prefect import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
            dep = client.read_deployment_by_name("pipeline-job/container-ingest")
            assert dep.work_pool_name == "oiflow-docker" and dep.entrypoint == "oiflow.flows.deployments.pipeline_job"
            assert dep.job_variables["image"] == worker_image
            runs = [r for r in client.read_flow_runs() if r.deployment_id == dep.id]
        (run,) = runs
        assert run.state.type.value == "COMPLETED"
        # the run's infrastructure is a container of the engine the worker talked to
        assert re.fullmatch(r"http\+docker://localhost:[0-9a-f]{64}", run.infrastructure_pid or ""), run.infrastructure_pid
        log = worker_log.read_text()
        assert "Creating Docker container" in log and "Finished in state Completed" in log

        made = {p.relative_to(products).as_posix() for p in products.rglob("*.fits")}
        assert made == {"2017-10-20/L2/FSCMa_PIONI.2017-10-21.fits",
                        "2016-05-30/L2/alfCenA_PIONI.2016-05-31T00_55_19.fits"}
        uid = int(user.split(":")[0])
        assert all(p.stat().st_uid == uid for p in products.rglob("*.fits"))  # written in the container
        with Catalog.for_root(products) as cat:
            rows = cat.products()
        assert sorted(Path(r["access_url"]).name for r in rows) == sorted(SAMPLES)
        assert all(r["flow_run_id"] for r in rows)
        assert {p.name: sha256_file(p) for p in inputs.iterdir()} == before  # inputs untouched (read-only)
    finally:
        if worker is not None:
            _stop(worker)
        _stop(server)
    # no flow container is left behind (auto_remove)
    time.sleep(1)
    leftovers = [c for c in docker_runner.client.containers.list(all=True)
                 if c.attrs.get("Config", {}).get("Image", "").startswith(worker_image.split(":")[0])
                 and "prefect.io/flow-run-id" in (c.labels or {})]
    assert leftovers == []
