#!/usr/bin/env bash
# The container part of CI (called by .ci/run): install Podman, build the images from clean, serve
# the Docker API from Podman, run the container tests (pytest -m container) against it, stop it.
#   PYTHON               the interpreter of the test environment (default .venv/bin/python); the worker
#                        image gets the same package versions (build.sh pins its wheelhouse to them)
#   OIFLOW_PODMAN_ROOT   optional: a Podman store of its own (containers/env.sh), e.g. a fresh
#                        directory to measure a clean build on a machine that already has images
# The tests start and stop what else they need (a Prefect server and a docker-pool worker for
# tests/containers/test_docker_work_pool.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
t0=$SECONDS

if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
    echo "[containers/ci.sh] apt-get install podman runc debootstrap"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman runc debootstrap >/dev/null
fi
echo "[containers/ci.sh] install: $((SECONDS - t0)) s"

OIFLOW_PYTHON="$PYTHON" containers/build.sh base worker amber pndrs-standin
echo "[containers/ci.sh] images built: $((SECONDS - t0)) s"

URL="$(containers/podman-service.sh start)"
trap 'containers/podman-service.sh stop' EXIT
OIFLOW_DOCKER_URL="$URL" OIFLOW_REQUIRE_CONTAINERS=1 "$PYTHON" -m pytest -m container tests/containers --durations=5
echo "[containers/ci.sh] total: $((SECONDS - t0)) s"
