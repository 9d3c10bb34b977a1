"""Prefect is pinned to the minor version whose internals flows/runners.py (and flows/runtime.py)
use: this fails when the installed Prefect or prefect-dask is another one, or when the pin in
pyproject.toml and oiflow.flows.runners.SUPPORTED disagree (README: "Prefect version")."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from oiflow.flows import runtime

runtime.configure()

from prefect_dask import DaskTaskRunner  # noqa: E402

from oiflow.flows import runners  # noqa: E402
from oiflow.cluster import load_profile  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    reqs = {r.name: r for r in map(Requirement, deps)}
    return {name: str(reqs[name].specifier) for name in runners.SUPPORTED}


def test_pyproject_pins_the_supported_minor_versions():
    assert _pins() == {name: f"=={minor}.*" for name, minor in runners.SUPPORTED.items()}


def test_the_installed_prefect_is_the_supported_one():
    installed = {name: version(name) for name in runners.SUPPORTED}
    assert runners.unsupported_versions() == {}, (
        f"installed {installed}; flows/runners.py is written for {runners.SUPPORTED}: check the runner against "
        f"the new Prefect (tests/test_task_runner.py, tests/benchmarks/bench_flows.py), then move the pins")
    for name, v in installed.items():
        assert Requirement(f"{name}{_pins()[name]}").specifier.contains(v)


def test_another_prefect_gets_prefect_dasks_runner(monkeypatch):
    profile = load_profile("local", {"n_workers": 1})
    assert type(runners.task_runner(profile, {})) is runners.OiflowDaskTaskRunner
    monkeypatch.setattr(runners, "version", lambda name: {"prefect": "3.10.0", "prefect-dask": "0.3.7"}[name])
    assert runners.unsupported_versions() == {"prefect": "3.10.0"}
    with pytest.warns(UserWarning, match=r"prefect 3\.10\.0 installed.*written for prefect 3\.9\.\*"):
        runner = runners.task_runner(profile, {})
    assert type(runner) is DaskTaskRunner
