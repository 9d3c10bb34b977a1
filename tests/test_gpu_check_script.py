"""The prepared GPU check (tests/benchmarks/gpu_check.sh) runs where cupy is absent: its CPU rows
measured, its GPU rows skipped with the reason; where a GPU is present, its checks must pass."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from oiflow.backend import gpu_available

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_script_runs_without_a_gpu(tmp_path):
    env = {**os.environ, "GPU_CHECK_SIZE": "small", "PYTHON": sys.executable, "OUT": str(tmp_path)}
    p = subprocess.run(["bash", str(REPO / "tests/benchmarks/gpu_check.sh"), "run"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    rows = {r["check"]: r for r in report["rows"]}
    assert list(rows) == ["transform", "bench transform", "same-algorithm reconstruction", "default reconstruction",
                          "bench reconstruction"]
    assert report["failed"] == [] and (tmp_path / "gpu_check.txt").read_text().endswith("failed: none\n")
    ok, why = gpu_available()
    if ok:  # a CUDA machine: the comparisons ran and passed
        assert {r["status"] for r in rows.values()} <= {"pass", "measured"}
    else:  # the GPU rows say why they did not run; the CPU baselines are there
        assert all(r["status"] == "skipped" and r["reason"] == f"no GPU: {why}" for r in rows.values())
        assert rows["bench transform"]["cpu_1thread_s"] > 0 and rows["bench reconstruction"]["cpu_s"] > 0
        assert rows["same-algorithm reconstruction"]["niter_cpu"] == 30
        assert f"[skipped] transform: reason no GPU: {why}" in p.stdout
