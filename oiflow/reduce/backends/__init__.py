"""Reduction backends, chosen by name and passed explicitly (no plugin system):

* ``native``: oiflow's own reducer, in-process or in the worker image;
* ``amdlib``: ESO's AMBER recipes (esorex, amdlib) in the amber image;
* ``pndrs``: PIONIER's pndrs in the pndrs image.

Each declares what it needs and produces (:meth:`Backend.requirements`) and reduces a night with
a runner (:mod:`oiflow.reduce.runners`): ``backend.reduce_night(raw_dir, out_dir, config, runner)``.
:func:`select` picks backend and runner for an instrument from a ReduceConfig.
"""

from __future__ import annotations

from ...config import ReduceConfig
from ...errors import ConfigError
from ..runners import Runner, get_runner
from .amdlib import AmdlibBackend
from .base import Backend, BackendResult, Requirements
from .native import NativeBackend
from .pndrs import PndrsBackend

BACKENDS = {"native": NativeBackend, "amdlib": AmdlibBackend, "pndrs": PndrsBackend}


def get_backend(name: str, **kwargs) -> Backend:
    try:
        return BACKENDS[name](**kwargs)
    except KeyError:
        raise ConfigError(f"unknown reduction backend {name!r}; choose one of {', '.join(BACKENDS)}") from None


def runner_for(config: ReduceConfig, name: str | None = None) -> Runner:
    name = name or config.runner
    if name == "docker":
        return get_runner("docker", base_url=config.engine.docker_url)
    if name == "apptainer":
        return get_runner("apptainer", executable=config.engine.apptainer)
    return get_runner(name)


def select(config: ReduceConfig, instrument: str | None = None) -> tuple[Backend, Runner, ReduceConfig]:
    """Backend, runner and the effective config (image filled in) for ``instrument`` (the raw
    files' INSTRUME), from ``config.instruments`` or else the config's defaults."""
    choice = config.instruments.get((instrument or "").upper()) if instrument else None
    if choice is not None:
        config = config.model_copy(update={"backend": choice.backend, "runner": choice.runner,
                                           "image": choice.image or config.image})
    return get_backend(config.backend), runner_for(config), config


__all__ = ["AmdlibBackend", "BACKENDS", "Backend", "BackendResult", "NativeBackend", "PndrsBackend",
           "Requirements", "get_backend", "runner_for", "select"]
