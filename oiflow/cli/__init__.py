"""The ``oiflow`` command: one typer app; each stage registers its subcommands from its own
module here (``register(app)``). Exit codes: 0 success, 1 the command's own failure verdict
(e.g. validation errors, a failed item in a batch), 2 unreadable input or bad usage."""

from __future__ import annotations

import importlib
import logging
import sys

import typer

from .. import __version__
from ..errors import ConfigError, OiflowError, OIFitsError

app = typer.Typer(
    name="oiflow",
    help="Optical/infrared interferometry pipeline: OIFITS tools, reduction, calibration, fitting, imaging, flows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: modules of oiflow.cli that define commands (each has ``register(app)``)
COMMAND_MODULES = ["oifits_cmds", "fit_cmds", "image_cmds", "reduce_cmds", "pipeline_cmds"]


def _version(value: bool):
    if value:
        typer.echo(f"oiflow {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
):
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


for _name in COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_name}").register(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, mapping oiflow errors to exit codes and one-line messages."""
    try:
        rv = app(args=argv, standalone_mode=False)
        if isinstance(rv, int) and not isinstance(rv, bool):  # a command's typer.Exit(code), returned by click
            return rv
    except typer.Exit as exc:
        return exc.exit_code
    except SystemExit as exc:  # click usage errors
        return int(exc.code or 0)
    except (OIFitsError, ConfigError) as exc:
        typer.echo(f"error: {exc}", err=True)
        return 2
    except OiflowError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 1
    except Exception as exc:  # click's UsageError and friends (typer may vendor its own click)
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            return 2
        if type(exc).__name__ == "Abort":
            return 130
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
