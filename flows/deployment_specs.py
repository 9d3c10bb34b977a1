"""The deployments file (``configs/deployments.yaml``), read and checked without Prefect, so
that ``oiflow serve`` and ``oiflow deploy`` refuse a bad file before Prefect is imported; the
entry flows themselves are in :mod:`oiflow.flows.deployments`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from oiflow.config import RunConfig, load_yaml, validate
from oiflow.errors import ConfigError

#: the Prefect name of the entry flow of each ``flow:`` of a deployments file
#: (:data:`oiflow.flows.deployments.ENTRY_FLOWS` are decorated with these names)
ENTRY_FLOW_NAMES = {"reprocess_archive": "reprocess-archive-job", "run_pipeline": "pipeline-job"}


class DeploymentSpec(BaseModel):
    """One entry of a deployments file (checked by :func:`oiflow.config.validate`)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    flow: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    cron: str | None = None
    timezone: str = "UTC"
    description: str = ""
    tags: list[str] = Field(default_factory=list)

    @property
    def flow_name(self) -> str:
        return ENTRY_FLOW_NAMES[self.flow]


def _absolute(params: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make ``root``, ``config.output.root``, ``config.input.*`` paths absolute against ``base``."""
    out = dict(params)

    def fix(p):
        return str(p) if p is None or Path(str(p)).is_absolute() else str((base / str(p)).resolve())

    if out.get("root") is not None:
        out["root"] = fix(out["root"])
    cfg = out.get("config")
    if isinstance(cfg, dict):
        cfg = {k: dict(v) if isinstance(v, dict) else v for k, v in cfg.items()}
        if isinstance(cfg.get("output"), dict) and cfg["output"].get("root") is not None:
            cfg["output"]["root"] = fix(cfg["output"]["root"])
        inp = cfg.get("input")
        if isinstance(inp, dict):
            if inp.get("night"):
                inp["night"] = fix(inp["night"])
            for key in ("nights", "files"):
                if inp.get(key):
                    inp[key] = [fix(p) for p in inp[key]]
        out["config"] = cfg
    return out


def load_deployments(path: str | os.PathLike) -> list[DeploymentSpec]:
    """The deployments of a YAML file, each checked (entries, flow names, run configurations:
    ``file: key.path: problem``), their relative paths made absolute against the current
    directory."""
    p = Path(path)
    data = load_yaml(p)
    entries = data.get("deployments") or []
    if not isinstance(entries, list):
        raise ConfigError(f"{p}: deployments: should be a list of deployments")
    specs = []
    for i, d in enumerate(entries):
        if not isinstance(d, dict):
            raise ConfigError(f"{p}: deployments.{i}: should be a mapping (name, flow, parameters, …)")
        spec = validate(DeploymentSpec, d, p, prefix=f"deployments.{i}")
        if spec.flow not in ENTRY_FLOW_NAMES:
            raise ConfigError(f"{p}: deployments.{i}.flow: unknown flow {spec.flow!r} "
                              f"(one of {', '.join(ENTRY_FLOW_NAMES)})")
        spec.parameters = _absolute(spec.parameters, Path.cwd())
        if "config" in spec.parameters:  # validate now, not at 3 a.m.
            validate(RunConfig, spec.parameters["config"], p, prefix=f"deployments.{i}.parameters.config")
        specs.append(spec)
    if not specs:
        raise ConfigError(f"{p}: no deployments")
    return specs
