"""oiflow/ is the science core: it must not import prefect (flows and tasks live outside it)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "oiflow"


def test_no_prefect_import_under_oiflow():
    offenders = []
    for path in ROOT.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                    "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
                names = [str(node.args[0].value)]
            offenders += [f"{path.relative_to(ROOT.parent)}:{node.lineno} {n}" for n in names
                          if n == "prefect" or n.startswith("prefect.") or n.startswith("prefect_")]
    assert offenders == []
    assert len(list(ROOT.rglob("*.py"))) > 10  # the scan did look at the package
