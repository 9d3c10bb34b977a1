"""Layering: oiflow/ never imports Prefect; the task cache key (retries: tests/test_retry_policy.py)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]


def test_oiflow_package_has_no_prefect_imports():
    offenders = []
    for path in (REPO / "oiflow").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.relative_to(REPO)}:{node.lineno} {n}" for n in names
                          if n.split(".")[0] in ("prefect", "prefect_dask")]
    assert offenders == []


def test_importing_oiflow_and_its_cli_does_not_load_prefect():
    code = ("import sys, pkgutil, importlib, oiflow\n"
            "for m in pkgutil.walk_packages(oiflow.__path__, 'oiflow.'):\n"
            "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
            "import oiflow.cli\n"
            "print(sorted(k for k in sys.modules if k.split('.')[0] in ('prefect', 'prefect_dask')))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_task_cache_key_is_a_hex_digest():
    from types import SimpleNamespace

    from oiflow.tasks.policy import unit_cache_key

    unit = SimpleNamespace(cache_key="/some/path/that/must/not/leak", out_dir="/products/2023-03-15/L1")
    ctx = SimpleNamespace(task=SimpleNamespace(name="ingest"))
    key = unit_cache_key(ctx, {"unit": unit})
    assert len(key) == 64 and set(key) <= set("0123456789abcdef")
    assert key != unit_cache_key(SimpleNamespace(task=SimpleNamespace(name="reduce")), {"unit": unit})
    # a result names product files: another product tree never reuses it
    elsewhere = SimpleNamespace(cache_key=unit.cache_key, out_dir="/other/2023-03-15/L1")
    assert key != unit_cache_key(ctx, {"unit": elsewhere})


def test_flows_and_tasks_install_under_the_oiflow_namespace():
    """pyproject.toml maps the repository's flows/ and tasks/ to oiflow.flows and oiflow.tasks and
    lists every package: a new subpackage that the list forgets would be missing from the wheel."""
    import tomllib

    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert tool["package-dir"] == {"oiflow": "oiflow", "oiflow.flows": "flows", "oiflow.tasks": "tasks"}
    on_disk = {"oiflow" + ("." + ".".join(p.parent.relative_to(REPO / "oiflow").parts) if p.parent != REPO / "oiflow"
                           else "") for p in (REPO / "oiflow").rglob("__init__.py")}
    on_disk = {n.rstrip(".") for n in on_disk} | {"oiflow.flows", "oiflow.tasks"}
    on_disk |= {f"oiflow.{top}.{p.parent.name}" for top in ("flows", "tasks") for p in (REPO / top).glob("*/__init__.py")}
    assert set(tool["packages"]) == on_disk
    out = subprocess.run([sys.executable, "-c", "import importlib.util as u, oiflow.flows.units, oiflow.tasks.policy\n"
                          "print(u.find_spec('flows'), u.find_spec('tasks'), oiflow.flows.units.__name__)"],
                         cwd="/", capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None", "None", "oiflow.flows.units"]


def test_example_models_ship_as_package_data_and_load_by_name():
    from oiflow.fit.model import load_model_spec, shipped_models

    assert shipped_models() == sorted(p.stem for p in (REPO / "configs" / "models").glob("*.yaml"))
    spec, name, base = load_model_spec("ud")
    assert name == "ud" and spec["star"]["type"] == "ud" and base.name == "models"


def test_the_flow_modules_the_command_line_imports_by_name_exist():
    """oiflow/cli/pipeline_cmds.py imports the flow modules lazily, by name (``_flows("run")``):
    each name it uses must import (a renamed package once left `oiflow run` with ModuleNotFoundError)."""
    from oiflow.cli import pipeline_cmds

    src = (REPO / "oiflow" / "cli" / "pipeline_cmds.py").read_text()
    names = {node.args[0].value for node in ast.walk(ast.parse(src)) if isinstance(node, ast.Call)
             and getattr(node.func, "id", None) == "_flows" and node.args and isinstance(node.args[0], ast.Constant)}
    assert names >= {"run", "plans", "deployments"}
    for name in sorted(names):
        assert pipeline_cmds._flows(name).__name__ == f"oiflow.flows.{name}"
