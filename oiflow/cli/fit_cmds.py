"""Model-fitting commands: ``oiflow fit`` and ``oiflow companion``."""

from __future__ import annotations

from pathlib import Path

import typer

from . import paths
from .json_output import emit_json, force_option, json_option, json_out_option


def register(app: typer.Typer) -> None:
    app.command("fit")(fit)
    app.command("companion")(companion)


def fit(
    files: list[Path] = typer.Argument(..., help="Calibrated OIFITS files."),
    model: str = typer.Option(..., "--model", "-m",
                              help="Model description: a YAML file, a model shipped with oiflow by name (ud, "
                                   "binary-demo), or YAML text such as "
                                   "'{star: {type: ud, diameter: 1.0}}'."),
    observables: str = typer.Option("v2,t3phi", "--observables",
                                    help="Comma-separated: v2, visamp, visphi, t3amp, t3phi, flux."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output directory for fit_<model>.json and the PNG "
                                    "plots (created; files of the same names in it are replaced)."),
    as_json: bool = json_option(),
    json_out: Path | None = json_out_option(),
    force: bool = force_option(),
    bootstrap: int = typer.Option(0, "--bootstrap", help="Bootstrap resamplings by observation (0: none)."),
    mcmc: bool = typer.Option(False, "--mcmc", help="Also sample the posterior with emcee."),
    smearing: bool | None = typer.Option(None, "--smearing/--no-smearing",
                                         help="Bandwidth smearing (default: the model's option, auto: on when "
                                              "it changes χ² at the solution by ≥ 1, as `oiflow companion`)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap/MCMC and of the multi-start search."),
):
    """Fit a geometric model; print the parameters ± errors, χ²_red, the smearing choice and the
    verdict (last line). Start values are searched (model option search: false to trust them).

    Exit code 1 when the verdict is not-at-minimum or unconstrained (the JSON is still written);
    poor-fit and at-bound are printed, exit 0.

    Example: oiflow fit AXCir.oifits --model binary.yaml --observables v2,t3phi --json-out fit.json --out fit/
    """
    _check_paths(files, out, json_out, force)
    from ..fit import fit_files

    result = fit_files([str(f) for f in files], model, observables, out_dir=out, plot=out is not None,
                       bootstrap=bootstrap, mcmc=mcmc or None, smearing=smearing, seed=seed)
    emit_json(result.to_dict(), as_json, json_out)
    typer.echo(result.summary(), err=as_json)
    if not result.success:
        raise typer.Exit(1)


def _check_paths(files, out, json_out, force) -> None:
    """The inputs, the output directory and the JSON file of fit and companion (:mod:`.paths`)."""
    paths.input_files(files)
    if out is not None:
        paths.output_dir(out)
    if json_out is not None:
        paths.output_file(json_out, force=force, inputs=files, label="--json-out")


def companion(
    files: list[Path] = typer.Argument(..., help="Calibrated OIFITS files."),
    rmin: float | None = typer.Option(None, "--rmin", help="Inner radius of the search (mas); default λ/B_max."),
    rmax: float | None = typer.Option(None, "--rmax", help="Outer radius (mas); default: bandwidth-smearing field."),
    step: float | None = typer.Option(None, "--step", help="Grid step (mas); default √2·λ/B_max."),
    observables: str = typer.Option("v2,t3phi", "--observables", help="v2, t3phi and/or t3amp."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output directory for the maps (FITS, PNG) and "
                                    "companion.json (created; files of the same names in it are replaced)."),
    as_json: bool = json_option(),
    json_out: Path | None = json_out_option(),
    force: bool = force_option(),
    detection_limit: bool = typer.Option(True, "--detection-limit/--no-detection-limit",
                                         help="Compute the 3σ detection-limit map by injection."),
    smearing: bool | None = typer.Option(None, "--smearing/--no-smearing",
                                         help="Bandwidth smearing of the fits (default: auto, the rule of "
                                              "`oiflow fit`; the grid always uses the exact band average)."),
    device: str = typer.Option("cpu", "--device", help="cpu or gpu (cupy) for the grid."),
):
    """Search for a companion (CANDID-style grid of fits); report the best one with its nσ, the
    smearing choice and the verdict (last line; that of the best binary's fit when detected at
    ≥ 3σ, else the single star's). Exit code 1 when it is not-at-minimum or unconstrained.

    Example: oiflow companion AXCir.oifits --rmin 2 --rmax 35 --step 3.5 --out companion/
    """
    _check_paths(files, out, json_out, force)
    from ..backend import resolve_device
    from ..fit import companion_search
    from ..fit.fitter import EXIT_1

    backend, message = resolve_device(device)
    if message:
        typer.echo(message, err=True)
    res = companion_search([str(f) for f in files], rmin, rmax, step, observables=observables.split(","),
                           smearing=smearing, detection_limit=detection_limit, xp=backend, out_dir=out)
    b = res.best
    text = [f"best companion: x = {b['x_mas']:.3f} ± {b['x_mas_error']:.3f} mas, "
            f"y = {b['y_mas']:.3f} ± {b['y_mas_error']:.3f} mas, "
            f"flux ratio = {b['flux_ratio']:.4g} ± {b['flux_ratio_error']:.2g}",
            f"separation = {res.separation_mas:.3f} mas, PA = {res.position_angle_deg:.2f} deg, "
            f"{res.nsigma:.1f} sigma (chi2_r single {res.chi2r_single:.4g}, binary {res.chi2r_binary:.4g}, "
            f"{res.n_data} data)"]
    if res.detection is not None and len(res.detection["radius_mas"]):
        med = res.detection["flux_ratio_median"]
        text.append(f"3-sigma detection limit (median over positions): flux ratio {min(med):.3g} – {max(med):.3g}")
    emit_json(res.to_dict(), as_json, json_out)
    for line in (*text, res.smearing_choice.line(), res.verdict.line()):
        typer.echo(line, err=as_json)
    if res.verdict.status in EXIT_1:
        raise typer.Exit(1)
