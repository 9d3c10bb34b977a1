"""OIFITS commands: inspect (validate, plot, merge, select are added by the foundation work)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..oifits import read_oifits


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect)


def inspect(
    files: list[Path] = typer.Argument(..., help="OIFITS files."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
):
    """Summarise OIFITS files: targets, instruments, counts per observable.

    Example: oiflow inspect data.fits --json
    """
    out = []
    for f in files:
        oi = read_oifits(f, warn=False)
        counts = {}
        for kind in ("vis2", "t3", "vis", "flux"):
            v = oi.view(kind)
            counts[kind] = {"points": len(v), "ok": int(v.usable.sum())}
        out.append({"file": str(f), "targets": sorted(oi.target_names().values()), "counts": counts})
    if as_json:
        typer.echo(json.dumps(out, indent=2))
    else:
        for item in out:
            typer.echo(f"{item['file']}: {', '.join(item['targets'])} {item['counts']}")
