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

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError


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
    smearing: bool | None = None  # bandwidth smearing; None: the model description's option
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
    maxiter: int = Field(500, ge=1)  # per optimisation round (MAXITER)
    tau: float = Field(0.001, gt=0)  # edge threshold of hyperbolic TV / l1 smoothing, × the object's mean pixel value (image.reconstruct.object_brightness)
    prior_fwhm_mas: float | None = None  # radial prior size (compactness, l1, MEM default prior)
    prior: str | None = None  # FITS image used as the MEM prior (RGL_PRIO)
    extra_regularizers: dict[str, float] = Field(default_factory=dict)  # name -> absolute weight, added
    initial: str = "dirac"  # dirac | gaussian | ud | random | model | path to a FITS image (INIT_IMG)
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
    data: dict = {}
    if path is not None:
        import yaml  # here: not every command reads a run configuration (start-up)

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
