"""The products table: catalogue rows (:mod:`oiflow.catalog`) as the table printed at the end of
``oiflow run`` and by ``oiflow products`` (rich), and in the run's Markdown summary.

Columns (:data:`COLUMNS`): night, target, instrument mode, level (with the product type of L3
rows: "L2", "L3 fit", "L3 image"), the POINTS of OI_VIS, OI_VIS2 and OI_T3 as ``VIS/VIS2/T3``
(rows × channels, flagged points included: the "points" of ``oiflow inspect``; "?" for a row of
a catalogue made before points were recorded), the wavelength range, the verdict (L3), the result in words (L3:
:mod:`oiflow.fit.headline`, an image's χ²_red and μ) and the product's path relative to the
product root.

**Folding rule**: a cell never breaks inside a name. The path is folded only after a ``/``,
the instrument mode only before a ``(`` or after a space, the result only after a ", ", into
lines of at most :data:`FOLD_WIDTH` characters (a single longer piece stays whole on its line).
The console is made as wide as the table needs (a narrower terminal wraps the lines it shows;
nothing is cut).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

#: the table's columns
COLUMNS = ("night", "target", "instrument mode", "level", "points VIS/VIS2/T3", "λ (µm)", "verdict", "result",
           "product")
#: what the point columns count, said under the table
POINTS_NOTE = "points = rows × channels, flagged ones included (as `oiflow inspect` counts them)"
#: longest line of a folded path or instrument mode (characters)
FOLD_WIDTH = 28

#: where a folded cell may break: a path after "/", an instrument mode before "(" or after a
#: space, a result after ", "
PATH_BREAKS = re.compile(r"(?<=/)")
MODE_BREAKS = re.compile(r"(?=\()|(?<=\s)")
RESULT_BREAKS = re.compile(r"(?<=, )")


def fold(text: str, breaks: re.Pattern = PATH_BREAKS, width: int = FOLD_WIDTH) -> str:
    """``text`` in lines of at most ``width`` characters, broken only where ``breaks`` matches
    (a longer piece stays whole on its own line)."""
    lines: list[str] = []
    line = ""
    for piece in (p for p in breaks.split(str(text)) if p):
        if line and len(line) + len(piece.rstrip()) > width:
            lines.append(line.rstrip())
            line = ""
        line += piece
    if line or not lines:
        lines.append(line.rstrip())
    return "\n".join(lines)


def _points(row: dict[str, Any], key: str) -> str:
    n = row.get(f"{key}_points")
    return "?" if n is None else str(n)


def relative_path(path: str, root: str | os.PathLike | None) -> str:
    """``path`` relative to the product root ``root`` when it lies under it."""
    p = Path(path)
    if root is not None:
        base = Path(root).resolve()
        if p.is_relative_to(base):
            return str(p.relative_to(base))
    return str(p)


def cells(row: dict[str, Any], root: str | os.PathLike | None = None) -> list[str]:
    """The cells of one catalogue row, in :data:`COLUMNS` order, unfolded."""
    lam = f"{row['em_min'] * 1e6:.2f}–{row['em_max'] * 1e6:.2f}" if row.get("em_min") and row.get("em_max") else ""
    kind = row.get("dataproduct_type") or ""
    level = f"L{row['calib_level']}" + (f" {kind}" if kind and kind != "visibility" else "")
    points = "/".join(_points(row, k) for k in ("nb_vis", "nb_vis2", "nb_t3"))
    return [row["night"] or "", row["target_name"], row["instrument_mode"] or "", level, points, lam,
            row.get("verdict") or "", row.get("result") or "", relative_path(row["access_url"], root)]


def rich_table(rows: list[dict[str, Any]], root: str | os.PathLike | None = None, title: str | None = None,
               caption: str | None = None):
    """A :class:`rich.table.Table` of the rows (the module's folding rule applied)."""
    from rich.table import Table

    table = Table(title=title or f"{len(rows)} product granule(s)",
                  caption=" · ".join(c for c in (POINTS_NOTE, caption) if c))
    folded = {"instrument mode": MODE_BREAKS, "product": PATH_BREAKS, "result": RESULT_BREAKS}
    for col in COLUMNS:
        table.add_column(col.replace("points ", "points\n"), no_wrap=True,
                         justify="right" if col.startswith("points") else "left")
    for r in rows:
        table.add_row(*[fold(c, folded[col]) if col in folded else c for col, c in zip(COLUMNS, cells(r, root))])
    return table


def print_table(table, file=None) -> None:
    """Print ``table`` on a console as wide as the table needs (at least the terminal's width)."""
    from rich.console import Console

    needed = Console(file=file, width=100_000).measure(table).maximum
    Console(file=file, width=max(Console(file=file).width, needed)).print(table)


def markdown(rows: list[dict[str, Any]], root: str | os.PathLike | None = None) -> str:
    """A Markdown table of the rows (run summaries, Prefect artifacts): the same cells."""
    head = "| " + " | ".join(COLUMNS) + " |\n" + "|" + "---|" * len(COLUMNS) + "\n"
    lines = ["| " + " | ".join(c.replace("|", "\\|") for c in cells(r, root)) + " |" for r in rows]
    return head + "\n".join(lines) + ("\n\n" + POINTS_NOTE + "\n" if lines else "")
