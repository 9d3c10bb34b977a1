"""The run configuration: one typed (pydantic) model per stage, composed in :class:`RunConfig`.

YAML layout (configs/demo.yaml is a complete example)::

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

Every YAML file oiflow reads (run configurations, cluster profiles, deployments, model
descriptions, simulated nights, image settings) goes through :func:`load_yaml`, and every
configuration model is checked by :func:`validate`: a problem is a :class:`ConfigError` of one
line per problem, ``file: key.path: problem`` (``file: line L, column C: problem`` for YAML
syntax), each problem once.
"""

from __future__ import annotations

import functools

import difflib
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError

if typing.TYPE_CHECKING:  # imported where a YAML file is read
    import yaml


# -- reading YAML and validating configuration models ----------------------------------------------


@functools.lru_cache(maxsize=None)
def _loader():
    """PyYAML's safe loader that refuses a key given twice in one mapping (PyYAML keeps the last
    silently, so a second ``fit:`` section would replace the first). Built on first use: not
    every command reads YAML, and importing PyYAML costs start-up."""
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen: set = set()
            for key_node, _value in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in seen:
                        raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}",
                                                                key_node.start_mark)
                    seen.add(key)
                except TypeError:  # an unhashable key: PyYAML says so below
                    pass
            return super().construct_mapping(node, deep=deep)

    return Loader


def _yaml_problem(source, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{source}: {where}{problem}" + (f" ({context})" if context else "")


def load_yaml(path: str | os.PathLike, text: str | None = None) -> dict[str, Any]:
    """The mapping held by the YAML file ``path`` (or by ``text``, then called ``path`` in the
    messages); an empty document is ``{}``. Raises :class:`ConfigError` naming the file: not
    found, not readable, a directory, not text, bad YAML (line and column), a key given twice,
    or a top level that is not a mapping."""
    if text is None:
        p = Path(path)
        try:
            text = p.read_text()
        except FileNotFoundError:
            raise ConfigError(f"{p}: file not found") from None
        except IsADirectoryError:
            raise ConfigError(f"{p}: is a directory, not a YAML file") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{p}: not a text (YAML) file") from None
        except OSError as exc:
            raise ConfigError(f"{p}: cannot read: {exc.strerror or exc}") from None
    import yaml

    try:
        data = yaml.load(text, Loader=_loader())  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_problem(path, exc)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping (key: value), not a {type(data).__name__}")
    return data


def _unwrap(tp):
    """``X`` for ``X | None`` and ``Annotated[X, ...]``; a real union stays as it is."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _key_path(model: type[BaseModel], loc) -> tuple[list[str], type[BaseModel] | None]:
    """The configuration keys of a pydantic error location (without the names pydantic gives the
    branches of a union) and the model holding the last key (None: a dict or list holds it)."""
    keys: list[str] = []
    tp, holder = model, None
    for el in loc:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            keys.append(str(el))
            holder = tp
            field = tp.model_fields.get(el) if isinstance(el, str) else None
            tp = field.annotation if field is not None else None
        elif origin in (dict, typing.Mapping) or tp is dict:
            keys.append(str(el))
            holder, tp = None, (typing.get_args(tp)[1] if typing.get_args(tp) else None)
        elif origin in (list, tuple, set, frozenset) or tp in (list, tuple):
            keys.append(str(el))
            holder, tp = None, (typing.get_args(tp)[0] if typing.get_args(tp) else None)
        else:  # a union branch, or below a scalar: the key path ends here
            break
    return keys, holder


def unknown_key(key: str, known, what: str = "key") -> str:
    """``unknown key (did you mean 'x'?)`` — the closest of ``known`` (difflib), or the list of
    them when none is close: the one wording of an unknown key in every configuration file."""
    known = sorted(str(k) for k in known)
    near = difflib.get_close_matches(str(key), known, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else (f" (known: {', '.join(known)})" if known else "")
    return f"unknown {what}{hint}"


def _problem(errors: list[dict], holder: type[BaseModel] | None, key: str) -> str:
    """One sentence for the errors pydantic gives at one key (several for a union)."""
    types_ = {e["type"] for e in errors}
    if "extra_forbidden" in types_:
        return unknown_key(key, holder.model_fields if holder is not None else ())
    if "missing" in types_:
        return "required, missing"
    msgs = [re.sub(r" for <class '[\w.]+'>", "", m) for m in dict.fromkeys(e["msg"] for e in errors)]
    msgs = [m[len("Input "):] if m.startswith("Input ") else m for m in msgs]
    # our own validators' messages (pydantic prefixes "Value error, ") name the key already
    msgs = [re.sub(rf"^([\w.]*\.)?{re.escape(str(key))}: ", "", m.removeprefix("Value error, ")) for m in msgs]
    if len(msgs) > 1 and all(m.startswith("should be ") for m in msgs):
        text = "should be " + " or ".join(m[len("should be "):] for m in msgs)
    else:
        text = " or ".join(msgs)
    value = errors[0].get("input")
    if not isinstance(value, (dict, list)):
        shown = repr(value)
        text += f" (got {shown if len(shown) <= 60 else shown[:57] + '...'})"
    return text


def validation_problems(model: type[BaseModel], exc: ValidationError, source, prefix: str = "") -> list[str]:
    """``source: key.path: problem`` for each key pydantic found a problem at, once each."""
    grouped: dict[tuple[str, ...], tuple[list[dict], type[BaseModel] | None]] = {}
    for err in exc.errors(include_url=False):
        keys, holder = _key_path(model, err["loc"])
        grouped.setdefault(tuple(keys), ([], holder))[0].append(err)
    lines = []
    for keys, (errors, holder) in grouped.items():
        path = ".".join(([prefix] if prefix else []) + list(keys)) or "(top level)"
        lines.append(f"{source}: {path}: {_problem(errors, holder, keys[-1] if keys else '')}")
    return lines


def validate(model: type[BaseModel], data: Any, source, prefix: str = ""):
    """``model`` validated from ``data`` (read from ``source``, a file or a description, under
    the key ``prefix``); a :class:`ConfigError` of one ``source: key.path: problem`` line per
    problem otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("\n".join(validation_problems(model, exc, source, prefix))) from None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)  # schemas built on first use (start-up)


class InputConfig(_Model):
    night: Path | None = None  # a night directory of raw (L0) files
    nights: list[Path] = Field(default_factory=list)  # several nights
    files: list[Path] = Field(default_factory=list)  # L1 or L2 OIFITS files
    level: Literal[0, 1, 2] = 0  # level of the nights (0: raw frames; 1/2: directories of OIFITS)
    files_level: Literal[1, 2] | None = None  # level of `files`; None: `level`, or 2 when `level` is 0


class OutputConfig(_Model):
    root: Path = Path("products")


class FrameSelection(_Model):
    min_snr: float = 0.0  # frames whose fringe SNR is below are rejected
    keep_fraction: float = 1.0  # keep at most this fraction of the best frames


class EngineConfig(_Model):
    """How external reduction programs run (oiflow.reduce.runners)."""

    timeout_s: float | None = 3600.0  # a job running longer is killed and fails
    cpus: float | None = None  # CPU limit per job (containers: CFS quota)
    memory: str | None = None  # memory limit per job, e.g. "4g"
    docker_url: str | None = None  # Docker-API socket (Podman: unix:///…/podman.sock); None → DOCKER_HOST
    apptainer: str = "apptainer"  # the apptainer executable
    network: bool = False  # give jobs network access (off by default)


class InstrumentReduce(_Model):
    """Backend, runner and image for one instrument (overrides the defaults of ReduceConfig)."""

    backend: Literal["native", "amdlib", "pndrs"]
    runner: Literal["local", "docker", "apptainer"] = "local"
    image: str | None = None


class ReduceConfig(_Model):
    backend: Literal["native", "amdlib", "pndrs"] = "native"
    runner: Literal["local", "docker", "apptainer"] = "local"
    image: str | None = None  # container image for docker/apptainer runners
    engine: EngineConfig = Field(default_factory=EngineConfig)
    # per instrument (INSTRUME keyword, e.g. AMBER, PIONIER): {AMBER: {backend: amdlib, runner: docker}}
    instruments: dict[str, InstrumentReduce] = Field(default_factory=dict)
    calib_dirs: list[Path] = Field(default_factory=list)  # extra calibration files (amdlib: BADPIX, FLATFIELD, …)
    frame_selection: FrameSelection = Field(default_factory=FrameSelection)
    nboot: int = 50  # bootstrap realisations for error bars (realisation 0 = all frames)
    seed: int = 1  # bootstrap seed (deterministic reprocessing)
    debias: bool = True  # subtract the per-frame noise bias from |C|² (native reducer)
    min_frames: int = 5  # flag a baseline/triangle with fewer selected frames (native reducer)


class CalibrateConfig(_Model):
    diameters: Path | None = None  # catalogue file (CSV or FITS)
    calibrators: dict[str, dict[str, float]] = Field(default_factory=dict)  # name → {diameter_mas, error_mas}
    interpolation: Literal["nearest", "linear", "smooth", "average", "linfit"] = "smooth"
    window_h: float = 0.8  # smoothing length for "smooth"
    min_amp_err: float = 0.02  # relative floor on TF errors
    min_phi_err_deg: float = 0.1
    jsdc_lookup: bool = False  # online JSDC lookup (network) with a local cache
    jsdc_cache: Path | None = None  # JSON cache of JSDC answers (default: <L2 dir>/jsdc_cache.json)


class FitTarget(_Model):
    model: Path | dict[str, Any]
    observables: list[str] = Field(default_factory=lambda: ["v2", "t3phi"])
    companion_search: bool = False
    bootstrap: int = 0  # resamplings by observation (oiflow.fit.fit_files(bootstrap=...))
    smearing: bool | None = None  # bandwidth smearing of fit and companion search; None: the model's option (auto)
    companion_rmin_mas: float | None = None  # companion-search grid; None: CANDID-like defaults
    companion_rmax_mas: float | None = None
    companion_step_mas: float | None = None


class FitConfig(_Model):
    targets: dict[str, FitTarget] = Field(default_factory=dict)


class ImageTarget(_Model):
    """Settings of one image reconstruction (oiflow.image.reconstruct; IMAGE-OI names in brackets)."""

    npix: int = Field(128, ge=8)  # grid size (NAXIS1 = NAXIS2)
    pixel_size_mas: float = Field(0.2, gt=0)  # (|CDELT1|)
    regularization: str = "tv"  # tv/hyperbolic | mem | smooth | compactness | l1 (RGL_NAME)
    mu: float | Literal["auto"] = "auto"  # regularization weight (RGL_WGT; "auto" = AUTO_WGT)
    device: Literal["cpu", "gpu"] = "cpu"
    # iterations of the whole reconstruction, μ search included (MAXITER; image.schedule.IterationBudget)
    maxiter: int = Field(1000, ge=1)
    # edge threshold of hyperbolic TV / l1 smoothing, × the object's mean pixel value
    # (image.objective.object_brightness)
    tau: float = Field(0.001, gt=0)
    prior_fwhm_mas: float | None = None  # radial prior size (compactness, l1, MEM default prior)
    prior: str | None = None  # FITS image used as the MEM prior (RGL_PRIO)
    extra_regularizers: dict[str, float] = Field(default_factory=dict)  # name -> absolute weight, added
    # auto (the best of dirac, gaussian, ud: image.initial) | dirac | gaussian | ud | random | model
    # | path to a FITS image (INIT_IMG)
    initial: str = "auto"
    initial_size_mas: float | None = None  # Gaussian FWHM / UD diameter; None: fitted to the V²
    initial_model: list[dict[str, Any]] | None = None  # components for initial="model"
    restarts: int = Field(0, ge=0)  # blur-and-restart rounds after the first
    blur_fwhm_mas: float | None = None  # blur between rounds; None: half the beam
    use_vis2: bool = True  # (USE_VIS2)
    use_t3: Literal["none", "all", "amp", "phi"] = "phi"  # (USE_T3)
    use_vis: Literal["none", "all", "amp", "phi"] = "none"  # (USE_VIS)
    target: str | None = None  # (TARGET)
    wave_min: float | None = None  # metres (WAVE_MIN)
    wave_max: float | None = None  # metres (WAVE_MAX)
    polychromatic: Literal["grey", "channels"] = "grey"
    spectral_mu: float = Field(0.0, ge=0)  # weight of the spectral smoothness (channels mode)
    transform: Literal["auto", "nufft", "dft"] = "auto"
    flux: float = Field(1.0, gt=0)  # total flux of the output image (FLUX)
    chi2_target: float = Field(1.0, gt=0)  # reduced χ² of mu="auto": the largest μ within 2σ of it fits (image.mu_rule)
    mu_method: Literal["chi2", "lcurve"] = "chi2"
    recenter: bool = True  # move the photocentre to the centre between rounds and at the end (no absolute phases)
    ftol: float = Field(1e-4, gt=0)  # relative decrease of the objective (3 iterations) that stops the optimiser (MiRA-like)
    seed: int = 0  # for initial="random"
    levels: int = Field(2, ge=1)  # multi-resolution: coarser grids (pixel ×2 each) solved first


class ImageConfig(_Model):
    targets: dict[str, ImageTarget] = Field(default_factory=dict)


class ClusterConfig(_Model):
    profile: str = "local"  # local | slurm | oar | address, or a path to a profile YAML
    address: str | None = None
    n_workers: int | None = None  # overrides the profile's
    max_parallel: int = 0  # units in flight at once (0: as many as there are)
    # how each unit runs: "prefect" — a Prefect task run (the UI lists it with its logs and
    # quicklooks); "dask" — a plain Dask task under the flow run (its summary and products table
    # only; no per-unit API traffic: on a small machine the Prefect server and the flow process
    # then leave the cores to the stages). None: "dask" for reprocess_archive, else "prefect".
    unit_runs: Literal["prefect", "dask"] | None = None


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
    data: dict = load_yaml(path) if path is not None else {}
    if overrides:
        data = _deep_update(data, overrides)
    return validate(RunConfig, data, path or "configuration")
