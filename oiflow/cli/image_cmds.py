"""Imaging commands: ``oiflow image`` and the IMAGE-OI engine ``oiflow-image-ci``.

Both print the result's verdict last (``verdict: ok``, ``verdict: poor-fit (χ²_red … > 3 for
…)``, see :mod:`oiflow.image.verdict`) and exit 1 when it is not ok, with the output file
written and marked (IMAGE-OI ``CONVERGE = F``, ``VERDICT``).

``oiflow-image-ci [options] input.fits output.fits`` follows the contract OImaging uses for
``mira-ci`` (see shared docs INTEROP.md §1.4): without arguments it prints the usage and
exits 1 (OImaging's installation probe); options may arrive as ONE argv element (OImaging's
``cliOptions``), so all arguments are split on white space and the last two words are the
input and the output; options override the file's IMAGE-OI parameters. Exit status: 0 the
image is written and its verdict is ok; 1 the image is written but its verdict is not ok; 1
an error, and then no output file is left (outputs are written atomically).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

from .. import __version__
from ..errors import ConfigError


def register(app: typer.Typer) -> None:
    app.command("image")(image)


def _first_iteration(drawer):
    """A progress callback for the first iteration: it logs (INFO, ``-v``) its wall-clock time —
    the start-up of the command is that minus its start (tests/benchmarks/bench_image.py) — then
    starts the quicklook process ``drawer``, which imports matplotlib while the solver runs (forked
    here, not before: on a busy machine its import competed with the command's own start-up)."""
    import logging
    import time

    seen = []

    def first(info):
        if not seen:
            seen.append(time.time())
            logging.getLogger(__name__).info("first iteration at %.3f (epoch seconds)", seen[0])
            drawer.start()

    return first


def _load_fields(config: Path | None) -> dict:
    """The ImageTarget fields of the ``--config`` file, checked now (``file: key: problem``)."""
    if config is None:
        return {}
    from ..config import ImageTarget, load_yaml, validate

    fields = load_yaml(config)
    validate(ImageTarget, fields, config)
    return fields


def _parse_mu(text: str | None):
    if text is None:
        return None
    if str(text).strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"--mu must be a number or 'auto', not {text!r}") from None


def image(
    files: list[Path] = typer.Argument(..., help="OIFITS files of one target (or one IMAGE-OI input file)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output IMAGE-OI FITS file x.fits (an existing one is "
                             "replaced only with --force); the quicklooks x.png and x.residuals.png go next to it."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output file (and its quicklooks)."),
    npix: int = typer.Option(None, "--npix", help="Image size in pixels (default 128)."),
    pixel_size: float = typer.Option(None, "--pixel-size", help="Pixel size in mas (default 0.2)."),
    regularization: str = typer.Option(None, "--regularization", "-r", help="hyperbolic (alias tv: smoothed total "
                                       "variation) | mem | smooth | compactness | l1 (default tv)."),
    mu: str = typer.Option(None, "--mu", help="Regularisation weight, or 'auto' (aim at chi2_red = 1) (default auto)."),
    device: str = typer.Option(None, "--device", help="cpu | gpu (falls back to the CPU with a message) (default cpu)."),
    maxiter: int = typer.Option(None, "--maxiter", help="Iterations of the whole reconstruction: start, mu search, "
                                "every grid (default 1000)."),
    initial: str = typer.Option(None, "--initial", help="auto (the best of dirac, gaussian, ud) | dirac | gaussian | "
                                "ud | random | FITS file[HDUNAME] (default auto)."),
    restarts: int = typer.Option(None, "--restarts", help="Blur-and-restart rounds after the first (default 0)."),
    target: str = typer.Option(None, "--target", help="Target name when the files hold several."),
    use_t3: str = typer.Option(None, "--use-t3", help="none | phi | amp | all (default phi)."),
    use_vis: str = typer.Option(None, "--use-vis", help="none | phi | amp | all (default none)."),
    polychromatic: str = typer.Option(None, "--polychromatic", help="grey | channels (default grey)."),
    config: Path = typer.Option(None, "--config", help="YAML file with ImageTarget fields (options override it)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Reconstruct an image (regularised maximum likelihood) and write an IMAGE-OI file.

    The last line is the verdict: ok (converged and every observable fits), poor-fit (a reduced
    chi2 above 3), maxiter or not-at-minimum. Exit status 0 when ok; 1 otherwise (the file is
    written and marked: CONVERGE = F, VERDICT) or on a processing error; 2 on unreadable input.

    Example: oiflow image data.oifits --out img.fits --npix 128 --pixel-size 0.15 -r tv --mu 1e4
    """
    from . import paths

    mu = _parse_mu(mu)
    paths.input_files(files)
    paths.output_file(out, force=force, inputs=files)
    if config is not None:
        paths.input_file(config, "--config")
    fields = _load_fields(config)
    from ..image import reconstruct_files
    from ..image.quicklook_process import QuicklookProcess

    opts = dict(npix=npix, pixel_size_mas=pixel_size, regularization=regularization, mu=mu, device=device,
                maxiter=maxiter, initial=initial, restarts=restarts, target=target, use_t3=use_t3, use_vis=use_vis,
                polychromatic=polychromatic)
    fields.update({k: v for k, v in opts.items() if v is not None})
    # a progress bar only on a terminal (rich is not even imported in batch use: start-up)
    interactive = not quiet and sys.stderr.isatty()
    # the quicklooks are drawn by a child process forked at the first iteration: it imports
    # matplotlib while the solver runs and draws once the product is written
    # (oiflow.image.quicklook_process)
    with QuicklookProcess(deferred=True) as drawer:
        first = _first_iteration(drawer)
        if not interactive:
            result = reconstruct_files(files, out, fields, progress=first, plots=drawer)
        else:
            drawer.start()  # now: the progress bar runs a thread, and a process with threads does not fork
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("it {task.completed:>4.0f}"),
                          TextColumn("χ²_red {task.fields[chi2]}"), TextColumn("R {task.fields[reg]}"),
                          TextColumn("μ {task.fields[mu]}"), TimeElapsedColumn(), console=Console(stderr=True)) as bar:
                task = bar.add_task("imaging", total=None, chi2="-", reg="-", mu="-")

                def progress(info):
                    first(info)
                    bar.update(task, completed=info["iteration"], description=str(info["phase"]),
                               chi2=f"{info['chi2_red']:.3f}" if info.get("chi2_red") is not None else "-",
                               reg=f"{info['reg']:.3g}" if info.get("reg") is not None else "-", mu=f"{info['mu']:.3g}")

                result = reconstruct_files(files, out, fields, progress=progress, plots=drawer)
        paths, messages = drawer.join()
    result.png_paths += paths
    result.messages += messages
    for m in result.messages:
        typer.secho(m, fg="yellow", err=True)
    terms = ", ".join(f"{k} {v:.3f}" for k, v in result.chi2_terms.items())
    from ..image.regularizers import describe

    typer.echo(f"{out}: χ²_red {result.chi2:.3f} ({terms}); μ = {result.mu:.3g} "
               f"({describe(result.settings.regularization, result.settings.tau)}); "
               f"{result.niter} iterations, {'converged' if result.converged else result.message}; "
               f"{result.elapsed:.1f} s on {result.backend}/{result.transform}")
    for p in result.png_paths:
        typer.echo(f"  {p}")
    typer.echo(result.verdict.line())
    if not result.verdict.ok:
        raise typer.Exit(1)


# -- the IMAGE-OI engine ---------------------------------------------------------------------------

CI_USAGE = """usage: oiflow-image-ci [options] input.fits output.fits

Reconstruct an image from an IMAGE-OI input file (OIFITS + IMAGE-OI INPUT PARAM + images)
and write an IMAGE-OI output file. Options override the file's parameters:

  -h, -help, --help        this help
  -v, -version, --version  print the version
  -npix=N                  image size (pixels)
  -pixelsize=MAS           pixel size (mas)
  -regul=NAME              hyperbolic|compactness (MiRA) | mem_prior (BSMEM) |
                           totvar|l1l2|l1l2white (WISARD) | tv|mem|smooth|l1
  -mu=X | -mu=auto         regularisation weight
  -maxiter=N               iterations of the whole reconstruction (start, mu search, grids)
  -initial=NAME            auto|dirac|gaussian|ud|random|FITS file
  -restarts=N              blur-and-restart rounds
  -device=cpu|gpu          array backend
  -levels=N                multi-resolution levels
Options may use one or two leading dashes; unknown options (e.g. MiRA's -recenter,
-bootstrap=2, -verb=1) are ignored with a message. The last line is the verdict (ok,
poor-fit: a reduced chi2 above 3, maxiter, not-at-minimum); CONVERGE in the output is T only
when it is ok. Exit status: 0 image written, verdict ok; 1 image written, verdict not ok
(VERDICT in IMAGE-OI OUTPUT PARAM says why); 1 error or usage (no output file).
"""

def _regul(name: str) -> str:
    """An RGL_NAME of OImaging's engines, refused by name when oiflow cannot do it (see
    :func:`oiflow.image.imageoi.engine_regularization`); the name itself is kept, so that a
    mapping to another regulariser is said with the result."""
    from ..image.imageoi import engine_regularization

    engine_regularization(name)
    return name


_CI_OPTIONS = {"npix": ("npix", int), "pixelsize": ("pixel_size_mas", float), "pixel-size": ("pixel_size_mas", float),
               "regul": ("regularization", _regul), "regularization": ("regularization", _regul), "mu": ("mu", _parse_mu),
               "maxiter": ("maxiter", int), "initial": ("initial", str), "restarts": ("restarts", int),
               "device": ("device", str), "levels": ("levels", int)}


def ci_main(argv: list[str] | None = None) -> int:
    """Entry point of ``oiflow-image-ci``."""
    import os

    args = sys.argv[1:] if argv is None else list(argv)
    words = shlex.split(" ".join(args)) if args else []
    if not words:
        sys.stderr.write(CI_USAGE)
        return 1
    if any(w in ("-h", "-help", "--help") for w in words):
        sys.stdout.write(CI_USAGE)
        return 0
    if any(w in ("-v", "-version", "--version") for w in words):
        print(os.environ.get("OIFLOW_IMAGE_CI_VERSION", __version__))
        return 0
    positional = [w for w in words if not w.startswith("-")]
    if len(positional) < 2:
        sys.stderr.write("error: need an input and an output file\n" + CI_USAGE)
        return 1
    inp, out = positional[-2], positional[-1]
    from ..errors import OiflowError

    fields = {}
    for w in words:
        if not w.startswith("-"):
            continue
        key, _, val = w.lstrip("-").partition("=")
        if key in _CI_OPTIONS and val:
            name, conv = _CI_OPTIONS[key]
            try:
                fields[name] = conv(val)
            except (ValueError, OiflowError) as exc:
                sys.stderr.write(f"error: bad value for -{key}: {exc}\n")
                return 1
        else:
            print(f"oiflow-image-ci: option {w} ignored", flush=True)
    from ..image import reconstruct_files

    def progress(info):
        if info["iteration"] % 25 == 0:
            print(f"{info['phase']} it {info['iteration']:4d} chi2_red {info['chi2_red']:.4f} reg {info['reg']:.4g} "
                  f"mu {info['mu']:.3g}", flush=True)

    print(f"oiflow-image-ci {__version__}: {inp} -> {out}", flush=True)
    try:
        result = reconstruct_files([inp], out, fields, progress=progress, plots=False)
    except (OiflowError, OSError, ValueError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    for m in result.messages:
        print(f"note: {m}", flush=True)
    print(f"done: chi2_red {result.chi2:.4f} {result.chi2_terms} mu {result.mu:.4g} niter {result.niter} "
          f"optimiser converged {result.converged} ({result.elapsed:.2f} s)", flush=True)
    print(result.verdict.line(), flush=True)
    return 0 if result.verdict.ok else 1


def ci_entry() -> None:  # console script: leaves at once, as `oiflow image` does (oiflow.cli.FAST_EXIT)
    from . import leave

    leave(ci_main())
