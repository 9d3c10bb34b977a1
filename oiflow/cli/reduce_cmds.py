"""Commands for L0 → L2: ``oiflow simulate night``, ``oiflow reduce``, ``oiflow calibrate``.

    oiflow simulate night configs/night-demo.yaml --out data-samples/night-sim
    oiflow reduce data-samples/night-sim --out products/2023-03-15/L1
    oiflow simulate night configs/amber-night.yaml --instrument amber --out amber-night
    oiflow reduce amber-night --out products/amber/L1 --backend amdlib --runner local   # esorex installed here
    oiflow calibrate products/2023-03-15/L1 --out products/2023-03-15/L2 --diameters data-samples/calibrators.csv

Settings: command-line options > the run configuration (``--config``, sections ``reduce`` /
``calibrate``) > defaults. Exit code 1 when some observation or target failed (they are listed).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..config import load_config
from ..errors import ConfigError
from . import paths

simulate_app = typer.Typer(help="Simulate instrument data with known truth.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(simulate_app, name="simulate")
    app.command("reduce")(reduce)
    app.command("calibrate")(calibrate)


@simulate_app.command("night")
def simulate_night_cmd(
    config: Path = typer.Argument(..., help="Night configuration (YAML), e.g. configs/night-demo.yaml."),
    out: Path = typer.Option(..., "--out", "-o", help="Output night directory (raw FITS + truth.json; created, "
                             "files of the same names in it are replaced)."),
    seed: int | None = typer.Option(None, "--seed", help="Override the configuration's random seed."),
    catalogue: Path | None = typer.Option(None, "--catalogue", help="Also write the calibrators' diameters (a CSV "
                                          "file; an existing one is replaced only with --force)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --catalogue file."),
    instrument: str = typer.Option("abcd", "--instrument",
                                   help="abcd (the native 4-telescope ABCD format) | amber (AMBER raw files for amdlib: "
                                        "the first 3 stations, K band, P2VM set and calibrator database)."),
):
    """Simulate a night of raw frames: calibration set + CAL–SCI–CAL sequences.

    Examples: oiflow simulate night configs/night-demo.yaml --out data-samples/night-sim
              oiflow simulate night configs/amber-night.yaml --instrument amber --out amber-night
    """
    paths.input_file(config)
    paths.output_dir(out)
    if catalogue is not None:
        paths.output_file(catalogue, force=force, label="--catalogue")
    if instrument.lower() not in ("abcd", "amber"):
        raise ConfigError(f"oiflow simulate night: unknown --instrument {instrument!r} (abcd | amber)")
    from ..simulate.night import NightConfig, simulate_night, write_calibrator_catalogue

    cfg = NightConfig.from_yaml(config, {"seed": seed} if seed is not None else None)
    if instrument.lower() == "amber":
        from ..simulate.amber_raw import simulate_amber_night

        truth = simulate_amber_night(cfg, out)
    else:
        truth = simulate_night(cfg, out)
    if catalogue is not None:
        write_calibrator_catalogue(cfg, catalogue)
    typer.echo(f"{out}: {len(truth['files'])} raw files ({len(truth['observations'])} observations) and truth.json")


def _stage_config(config: Path | None, section: str, overrides: dict):
    clean = {k: v for k, v in overrides.items() if v is not None}
    run = load_config(config, {section: clean} if clean else None)
    return getattr(run, section)


def reduce(
    raw_dir: Path = typer.Argument(..., help="Night directory of raw files (L0)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output directory for the L1 OIFITS files (required "
                                    "unless --plan; created, files of the same names in it are replaced)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="Run configuration (YAML); its 'reduce' section."),
    nboot: int | None = typer.Option(None, "--nboot", help="Bootstrap realisations for the error bars."),
    min_snr: float | None = typer.Option(None, "--min-snr", help="Reject frames with a lower fringe SNR."),
    keep_fraction: float | None = typer.Option(None, "--keep-fraction", help="Keep this fraction of the best frames."),
    backend: str | None = typer.Option(None, "--backend", help="native (default) | amdlib | pndrs."),
    runner: str | None = typer.Option(None, "--runner", help="local (default) | docker | apptainer."),
    plan_only: bool = typer.Option(False, "--plan", help="Only classify the files and print the plan (JSON)."),
):
    """Reduce raw frames to L1 OIFITS (one file per observation); native P2VM reducer by default.

    Example: oiflow reduce data-samples/night-sim --out products/2023-03-15/L1
    """
    paths.input_dir(raw_dir)
    if not any(p.is_file() and p.name.endswith((".fits", ".fits.gz")) for p in raw_dir.iterdir()):
        raise ConfigError(f"{raw_dir}: no raw FITS files (*.fits, *.fits.gz) in it")
    if config is not None:
        paths.input_file(config, "--config")
    if out is None and not plan_only:
        raise ConfigError("oiflow reduce: give --out L1DIR (or --plan)")
    if out is not None:
        paths.output_dir(out)
    from ..reduce import plan_night, reduce_night

    if plan_only:
        typer.echo(json.dumps(plan_night(raw_dir).summary(), indent=2))
        return
    fs = {k: v for k, v in (("min_snr", min_snr), ("keep_fraction", keep_fraction)) if v is not None}
    cfg = _stage_config(config, "reduce", {"nboot": nboot, "frame_selection": fs or None, "backend": backend,
                                           "runner": runner})
    if cfg.backend == "native" and cfg.runner == "local" and cfg.image is None and not cfg.instruments:
        result = reduce_night(raw_dir, out, cfg)
    else:  # an external reducer or a container: through the backends (oiflow.reduce.backends)
        from ..reduce.backends import select

        be, run, eff = select(cfg, _instrument_of(raw_dir))
        result = be.reduce_night(raw_dir, out, eff, run)
    typer.echo(f"{len(result.products)} L1 file(s) written to {out}")
    if getattr(result, "calibrated", None):
        typer.echo(f"{len(result.calibrated)} calibrated (L2) file(s) by the backend's own calibration written to {out}")
    for item, why in result.failures:
        typer.echo(f"FAILED {item}: {why}", err=True)
    if result.failures:
        raise typer.Exit(1)


def _instrument_of(raw_dir: Path) -> str | None:
    """INSTRUME of the first raw FITS file of a night directory (None if there is none)."""
    from astropy.io import fits

    for p in sorted(Path(raw_dir).glob("*.fits*")):
        try:
            return str(fits.getheader(p).get("INSTRUME", "")).strip() or None
        except Exception:  # an unreadable file: try the next one
            continue
    return None


def calibrate(
    l1_dir: Path = typer.Argument(..., help="Directory of L1 OIFITS files (or one file)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory for the L2 files and TF plots (created; "
                             "files of the same names in it are replaced)."),
    diameters: Path | None = typer.Option(None, "--diameters", "-d", help="Calibrator catalogue (CSV or FITS)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="Run configuration (YAML); its 'calibrate' section."),
    mode: str | None = typer.Option(None, "--mode", help="TF interpolation: nearest|linear|smooth|average|linfit."),
    window_h: float | None = typer.Option(None, "--window-h", help="Smoothing length in hours (smooth mode)."),
    jsdc: bool | None = typer.Option(None, "--jsdc/--no-jsdc", help="Look missing diameters up in JSDC (network)."),
):
    """Calibrate L1 files with the transfer function of the calibrators (one L2 file per science target).

    Example: oiflow calibrate products/2023-03-15/L1 --out products/2023-03-15/L2 --diameters data-samples/calibrators.csv
    """
    paths.input_path(l1_dir)
    paths.output_dir(out)
    if diameters is not None:
        paths.input_file(diameters, "--diameters")
    if config is not None:
        paths.input_file(config, "--config")
    from ..calibrate import calibrate_night

    cfg = _stage_config(config, "calibrate", {"diameters": str(diameters) if diameters else None,
                                               "interpolation": mode, "window_h": window_h, "jsdc_lookup": jsdc})
    files = sorted(l1_dir.glob("*.fits")) if l1_dir.is_dir() else [l1_dir]
    if not files:
        raise ConfigError(f"no L1 OIFITS file in {l1_dir}")
    result = calibrate_night(files, out, cfg)
    typer.echo(f"{len(result.products)} L2 file(s) and {len(result.plots)} TF plot(s) written to {out}")
    for item, why in result.failures:
        typer.echo(f"FAILED {item}: {why}", err=True)
    if result.failures:
        raise typer.Exit(1)
