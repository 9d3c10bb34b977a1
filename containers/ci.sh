#!/usr/bin/env bash
# The container part of CI (called by .ci/run): install Podman, build the images, serve the Docker
# API from Podman, and run the container tests (pytest -m container) against it.
#   PYTHON: the interpreter of the test environment (default .venv/bin/python)
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
OIFLOW_DOCKER_URL="$URL" OIFLOW_REQUIRE_CONTAINERS=1 "$PYTHON" -m pytest -m container tests/containers
echo "[containers/ci.sh] total: $((SECONDS - t0)) s"
