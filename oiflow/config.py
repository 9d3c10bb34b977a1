"""The run configuration: one typed (pydantic) model per stage, composed in :class:`RunConfig`.

YAML layout (ARCHITECTURE.md)::

    input:     {night: data-samples/night-sim, level: 0}      # or files: [...] with level 1 or 2
    output:    {root: products}
    reduce:    {backend: native, runner: local, frame_selection: {min_snr: 2}}
    calibrate: {diameters: data-samples/calibrators.csv, interpolation: smooth, window_h: 0.8}
    fit:       {targets: {HD_X: {model: configs/models/binary.yaml, observables: [v2, t3phi]}}}
    image:     {targets: {HD_Y: {npix: 128, pixel_size_mas: 0.2, regularization: tv, mu: auto}}}
    cluster:   {profile: local}                                 # local | slurm | oar | address
    catalog:   {url: null}                                      # null → SQLite under the root

Precedence: command-line options > this file > defaults (:func:`load_config` takes overrides).
Stages own their section: add fields to the stage's model, with defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputConfig(_Model):
    night: Path | None = None  # a night directory of raw (L0) files
    nights: list[Path] = Field(default_factory=list)  # several nights
    files: list[Path] = Field(default_factory=list)  # L1 or L2 OIFITS files
    level: Literal[0, 1, 2] = 0


class OutputConfig(_Model):
    root: Path = Path("products")


class FrameSelection(_Model):
    min_snr: float = 0.0  # frames whose fringe SNR is below are rejected
    keep_fraction: float = 1.0  # keep at most this fraction of the best frames


class ReduceConfig(_Model):
    backend: Literal["native", "amdlib", "pndrs"] = "native"
    runner: Literal["local", "docker", "apptainer"] = "local"
    image: str | None = None  # container image for docker/apptainer runners
    frame_selection: FrameSelection = Field(default_factory=FrameSelection)
    nboot: int = 20  # bootstrap realisations for error bars
    seed: int = 1  # bootstrap seed (deterministic reprocessing)


class CalibrateConfig(_Model):
    diameters: Path | None = None  # catalogue file (CSV or FITS)
    calibrators: dict[str, dict[str, float]] = Field(default_factory=dict)  # name → {diameter_mas, error_mas}
    interpolation: Literal["nearest", "linear", "smooth", "average"] = "smooth"
    window_h: float = 0.8  # smoothing length for "smooth"
    min_amp_err: float = 0.02  # relative floor on TF errors
    min_phi_err_deg: float = 0.1
    jsdc_lookup: bool = False  # online JSDC lookup (network) with a local cache


class FitTarget(_Model):
    model: Path | dict[str, Any]
    observables: list[str] = Field(default_factory=lambda: ["v2", "t3phi"])
    companion_search: bool = False


class FitConfig(_Model):
    targets: dict[str, FitTarget] = Field(default_factory=dict)


class ImageTarget(_Model):
    npix: int = 128
    pixel_size_mas: float = 0.2
    regularization: str = "tv"
    mu: float | Literal["auto"] = "auto"
    device: Literal["cpu", "gpu"] = "cpu"
    maxiter: int = 500


class ImageConfig(_Model):
    targets: dict[str, ImageTarget] = Field(default_factory=dict)


class ClusterConfig(_Model):
    profile: str = "local"  # local | slurm | oar | address, or a path to a profile YAML
    address: str | None = None
    n_workers: int | None = None  # overrides the profile's
    max_parallel: int = 0  # units in flight at once (0: as many as there are)


class CatalogConfig(_Model):
    url: str | None = None  # SQLAlchemy URL; None → sqlite:///<root>/catalog.sqlite


class RunConfig(_Model):
    input: InputConfig = Field(default_factory=InputConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    reduce: ReduceConfig = Field(default_factory=ReduceConfig)
    calibrate: CalibrateConfig = Field(default_factory=CalibrateConfig)
    fit: FitConfig = Field(default_factory=FitConfig)
    image: ImageConfig = Field(default_factory=ImageConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    catalog: CatalogConfig = Field(default_factory=CatalogConfig)


def _deep_update(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_update(out[k], v)
        else:
            out[k] = v
    return out


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> RunConfig:
    """Read a YAML run configuration, apply ``overrides`` (e.g. from the command line) and
    validate. Relative paths in the file stay relative to the current directory."""
    data: dict = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"configuration file not found: {path}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
    if overrides:
        data = _deep_update(data, overrides)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path or 'configuration'}: {exc}") from None
