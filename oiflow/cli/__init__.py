"""The ``oiflow`` command: one typer app; each stage registers its subcommands from its own
module here (``register(app)``). The conventions every command follows (README "Command-line
conventions", checked by tests/test_cli_convention.py and tests/test_cli_mistakes.py):

- ``-o/--out`` is the output path: a file where one product results, a directory otherwise;
  no other option is ``-o``. Paths are checked when the command starts (:mod:`.paths`).
- ``--json`` prints JSON on stdout; ``--json-out PATH`` writes it to a file.
- Exit codes: 0 ok; 1 a processing or data problem (including a verdict the command says it
  exits 1 on); 2 bad usage or unreadable input. :func:`exit_code` is the one place that maps
  an exception to a code; a user's mistake is one line on stderr, its traceback only with
  ``oiflow --debug``.

Start-up: :func:`main` imports only the module of the command it runs (:data:`COMMANDS`);
``oiflow.cli.app`` (attribute access) registers every module."""

from __future__ import annotations

import importlib
import logging
import os
import sys

import typer

from .. import __version__
from ..errors import ConfigError, OiflowError, OIFitsError

_app = typer.Typer(
    name="oiflow",
    help="Optical/infrared interferometry pipeline: OIFITS tools, reduction, calibration, fitting, imaging, flows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: modules of oiflow.cli that define commands (each has ``register(app)``)
COMMAND_MODULES = ["oifits_cmds", "fit_cmds", "image_cmds", "reduce_cmds", "pipeline_cmds"]
#: the module that registers each top-level command (tests/test_cli_lazy.py checks it against them)
COMMANDS = {
    **dict.fromkeys(("validate", "inspect", "plot", "merge", "select", "quicklook"), "oifits_cmds"),
    **dict.fromkeys(("fit", "companion"), "fit_cmds"),
    "image": "image_cmds",
    **dict.fromkeys(("simulate", "reduce", "calibrate"), "reduce_cmds"),
    **dict.fromkeys(("products", "run", "reprocess", "serve", "deploy", "submit", "server"), "pipeline_cmds"),
}
_registered: set[str] = set()
#: ``oiflow --debug`` (or a command's own ``--debug``) was given: errors show their traceback
DEBUG = [False]


def _version(value: bool):
    if value:
        typer.echo(f"oiflow {__version__}")
        raise typer.Exit()


@_app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of an error (and, for run and "
                               "reprocess, the libraries' logs)."),
):
    DEBUG[0] = DEBUG[0] or debug
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _register(names) -> typer.Typer:
    for name in names:
        if name not in _registered:
            importlib.import_module(f"{__name__}.{name}").register(_app)
            _registered.add(name)
    return _app


def __getattr__(name: str):
    if name == "app":  # the complete app, for callers that inspect or run it
        return _register(COMMAND_MODULES)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _command_of(argv: list[str]) -> str | None:
    """The first word that is not an option (the root options take no value)."""
    return next((a for a in argv if not a.startswith("-")), None)


#: commands that, run as the program, leave through ``os._exit`` once their output and logs are
#: flushed: Python's teardown of the numpy/astropy/finufft objects of an imaging command took
#: 0.15–0.25 s (load 2–3), longer than reconstructing a small data set. Their products are written
#: atomically and their child processes joined before; a command called in-process returns.
FAST_EXIT = {"image"}


def leave(rc: int) -> None:
    """Flush stdout, stderr and the logs, then end the process with ``rc`` at once (no teardown)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    logging.shutdown()
    os._exit(rc)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, mapping oiflow errors to exit codes and one-line messages. As
    the program, a command of :data:`FAST_EXIT` then leaves at once (:func:`leave`); the others
    leave through the ``atexit`` handlers without the garbage collector's passes of Python's
    teardown (:func:`oiflow.process_exit.freeze_at_exit`: 0.5–0.7 s after ``oiflow run``'s summary)."""
    args = sys.argv[1:] if argv is None else list(argv)
    if argv is None:
        from ..process_exit import freeze_at_exit

        freeze_at_exit()
    rc = _run(args)
    if argv is None and _command_of(args) in FAST_EXIT:
        leave(rc)
    return rc


#: OS errors that mean a path given by the user is wrong (exit 2); other OS errors exit 1
_PATH_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError)


def exit_code(exc: BaseException) -> int | None:
    """The exit code of an exception that ends a command (None: a bug, shown with its traceback)."""
    if _is_click_error(exc):  # a usage error (2), or another error of the parser (its code)
        return int(exc.exit_code)
    if isinstance(exc, (OIFitsError, ConfigError, *_PATH_ERRORS)):
        return 2
    if isinstance(exc, (OiflowError, OSError)):
        return 1
    if isinstance(exc, KeyboardInterrupt) or type(exc).__name__ == "Abort":
        return 130
    return None


def _is_click_error(exc: BaseException) -> bool:
    """click's ClickException and its subclasses, UsageError among them (typer vendors its own
    click, so they are known by their interface)."""
    return hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int)


def error_line(exc: BaseException) -> str:
    """The one line that says what went wrong (and where)."""
    if _is_click_error(exc):
        ctx = getattr(exc, "ctx", None)
        where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        return f"error: {exc.format_message()}{where}"
    if isinstance(exc, OSError) and not isinstance(exc, OiflowError) and exc.filename is not None:
        return f"error: {exc.filename}: {exc.strerror or exc}"
    if type(exc).__name__ == "Abort" or isinstance(exc, KeyboardInterrupt):
        return "error: interrupted"
    return f"error: {exc}"


def _run(args: list[str]) -> int:
    # oiflow uses no pydantic plugin: skip their discovery (a scan of every installed package's
    # entry points at the first validation, 15-30 ms of each command's start-up); a user's own
    # setting wins
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    command = _command_of(args)
    module = COMMANDS.get(command or "")
    if module:
        _register([module])
    elif command is not None or "--version" not in args:  # a listing (--help) or a usage error: all
        _register(COMMAND_MODULES)
    DEBUG[0] = False
    try:
        rv = _app(args=args, prog_name="oiflow", standalone_mode=False)
        if isinstance(rv, int) and not isinstance(rv, bool):  # a command's typer.Exit(code), returned by click
            return rv
    except typer.Exit as exc:
        return exc.exit_code
    except SystemExit as exc:
        return int(exc.code or 0)
    except BaseException as exc:  # noqa: BLE001 (mapped to an exit code here, re-raised if unknown)
        code = exit_code(exc)
        if code is None:
            raise
        if DEBUG[0]:
            import traceback

            traceback.print_exception(exc)
        if type(exc).__name__ != "NoArgsIsHelpError":  # the help is shown instead
            typer.echo(error_line(exc), err=True)
        return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
