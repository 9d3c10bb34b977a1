#!/usr/bin/env bash
# GPU check of imaging (issue 12 item 7): the cupy path against numpy (transform and full
# reconstruction, within stated tolerances) and the transform and reconstruction benchmarks with
# the CPU baseline measured in the same run (goal: 256², 200k (u, v) points, ≥ 10× the CPU path).
# The checks and tolerances are in tests/benchmarks/gpu_check.py; figures go to $OUT (or ./gpu_check_out).
#
#   1. here, once (needs the package index): wheels the device image lacks → .whl/ (≈ 24 MB)
#        tests/benchmarks/gpu_check.sh fetch
#   2. on the device machine (about 3–4 minutes on an H100):
#        run(command="bash tests/benchmarks/gpu_check.sh run", carry=[".whl"], timeout_s=420)
#   Without cupy or a CUDA device (e.g. here), `run` does the CPU rows and skips the GPU rows,
#   saying why. GPU_CHECK_SIZE=small shrinks the problems to try the plumbing in seconds.
#
# cufinufft is not fetched: its wheel (115 MB) is over the 64 MiB a device call carries, so the GPU
# transform measured is the exact matrix DFT on cupy (oiflow's GPU path without cufinufft); where
# cufinufft is installed, the same script measures it instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
mode=${1:-run}
# the versions this repository is tested with here (pip list of its .venv)
WHEELS="finufft==2.5.1 astropy==8.0.2 pyerfa==2.0.1.5 astropy-iers-data==0.2026.11.16.0.37.44 pydantic==2.14.4
pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 array-api-compat==1.16.0"

case "$mode" in
fetch)
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> "$(git rev-parse --git-path info/exclude)"
    mkdir -p .whl
    # shellcheck disable=SC2086
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl $WHEELS
    du -sh .whl
    ;;
run)
    export PYTHONUNBUFFERED=1
    PY=${PYTHON:-python3}
    if [ -d .whl ] && ! "$PY" -c "import finufft, astropy, pydantic, array_api_compat" 2>/dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    "$PY" tests/benchmarks/gpu_check.py "${OUT:-gpu_check_out}"
    ;;
*)
    echo "usage: $0 fetch|run" >&2
    exit 2
    ;;
esac
