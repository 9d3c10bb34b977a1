"""The JSON options every command shares (README "Command-line conventions"): ``--json`` prints
the JSON on stdout, ``--json-out PATH`` writes it (an existing file only with ``--force``), and
:func:`emit_json` does both. Light at import: no heavy module is loaded here."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def json_option(help: str = "Print the JSON result on stdout (the text summary goes to stderr)."):
    return typer.Option(False, "--json", help=help)


def json_out_option(what: str = "the JSON result"):
    return typer.Option(None, "--json-out", help=f"Write {what} to this file (an existing one is replaced only "
                                                 "with --force).")


def force_option():
    return typer.Option(False, "--force", help="Replace an existing --json-out file.")


def emit_json(obj, as_json: bool, json_out: Path | None) -> None:
    """``--json-out``: ``obj`` written atomically to that file; ``--json``: printed on stdout."""
    if json_out is not None:
        from ..provenance import write_json_atomic

        write_json_atomic(obj, json_out)
    if as_json:
        typer.echo(json.dumps(obj, indent=2, default=str))
