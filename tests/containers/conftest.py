"""Fixtures for the container tests (marker ``container``; run with ``pytest -m container``).

They need a Docker-API engine: ``OIFLOW_DOCKER_URL`` (e.g. ``unix:///tmp/oiflow-podman-0/podman.sock``,
printed by ``containers/podman-service.sh start``), else DOCKER_HOST, else the podman-service.sh default.
The images come from ``containers/build.sh``. When the engine or an image is missing, the tests are
skipped with the reason, except when OIFLOW_REQUIRE_CONTAINERS=1 (as in .ci/run): then they fail.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from oiflow.reduce.runners import DockerRunner

PREFIX = os.environ.get("OIFLOW_IMAGE_PREFIX", "localhost/oiflow-")


def _missing(reason: str):
    if os.environ.get("OIFLOW_REQUIRE_CONTAINERS") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def docker_url() -> str:
    url = os.environ.get("OIFLOW_DOCKER_URL") or os.environ.get("DOCKER_HOST")
    return url or f"unix:///tmp/oiflow-podman-{os.getuid()}/podman.sock"


@pytest.fixture(scope="session")
def engine_url() -> str:
    """The Docker-API URL of the engine the tests use (for DOCKER_HOST of other programs)."""
    return docker_url()


@pytest.fixture(scope="session")
def require():
    """``require(reason)``: skip, or fail under OIFLOW_REQUIRE_CONTAINERS=1, when something is missing."""
    return _missing


@pytest.fixture(scope="session")
def docker_runner() -> DockerRunner:
    pytest.importorskip("docker")
    runner = DockerRunner(base_url=docker_url())
    try:
        runner.client
    except Exception as exc:
        _missing(f"no container engine: {exc} (start one with containers/podman-service.sh start)")
    return runner


def _image_fixture(name: str):
    @pytest.fixture(scope="session")
    def fixture(docker_runner) -> str:
        image = f"{PREFIX}{name}:latest"
        try:
            docker_runner.image_id(image)
        except Exception as exc:
            _missing(f"{exc}")
        return image

    return fixture


base_image = _image_fixture("base")
worker_image = _image_fixture("worker")
amber_image = _image_fixture("amber")
pndrs_standin_image = _image_fixture("pndrs-standin")


@pytest.fixture()
def leftovers():
    """Names of staging directories left beside ``final`` (there must be none)."""

    def check(final: Path) -> list[str]:
        return sorted(p.name for p in final.parent.iterdir() if p.name.startswith(f".{final.name}."))

    return check
