"""Paths of the product tree (README: "Pipeline runs, the product catalogue…") and safe names.

::

    <root>/<night>/L1/<obs-id>.fits
    <root>/<night>/L2/<target>_<night>.fits     (ingested files keep their own, sanitised, name)
    <root>/L3/<target>/<night-or-set>/...
    <root>/catalog.sqlite

Names coming from data (targets, file names, observation ids, setups, model names, night
directories) are sanitised by :func:`safe_name`, oiflow's one sanitiser: only letters, digits,
``.``, ``_``, ``+`` and ``-`` are kept, any run of other characters becomes one ``_``; a leading
dot is removed so that no product can be hidden or climb out of the tree. Nights are named by
:mod:`oiflow.site`.

Target names are COMPARED by :func:`target_key` (the one rule, used by the run to match its
configured targets, by ``oiflow products --target``, by merge and select): case, white space,
``_`` and ``-`` are ignored, so "AX Cir", "AX_CIR" (the product directory's sanitised name) and
"ax-cir" are one target.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")
_LOOSE = re.compile(r"[\s_\-]+")

#: suffix of the temporary files written by oiflow.provenance.atomic_path
TMP_SUFFIX = ".tmp"


def safe_name(name: str) -> str:
    """A file-system-safe version of ``name`` (no separators, no shell metacharacters)."""
    out = _UNSAFE.sub("_", str(name).strip()).lstrip(".")
    out = out.replace("..", "_")
    return out or "_"


def target_key(name: str) -> str:
    """The key two target names are compared by: ``name`` without white space, ``_`` and ``-``,
    upper case ("AX Cir", "AX_CIR", "ax-cir" → "AXCIR")."""
    return _LOOSE.sub("", str(name)).upper()


def level_dir(root: str | os.PathLike, night: str, level: int) -> Path:
    """``<root>/<night>/L<level>`` for levels 0–2."""
    return Path(root) / safe_name(night) / f"L{int(level)}"


def l3_dir(root: str | os.PathLike, target: str, subset: str) -> Path:
    """``<root>/L3/<target>/<night-or-set>``."""
    return Path(root) / "L3" / safe_name(target) / safe_name(subset)


def remove_stale_temporaries(directory: str | os.PathLike, product: str | None = None,
                             stems: tuple[str, ...] = ("",)) -> list[Path]:
    """Delete temporary files left by an interrupted atomic write (``.<stem>.<random><suffix>.tmp``,
    see :func:`oiflow.provenance.atomic_path`) in ``directory`` — only those of ``product`` (a
    file name) when given, else those whose stem starts with one of ``stems``. Returns what was
    removed. Call it where no other writer of the same products is active (the stage that is
    about to write them): units sharing a directory (a target's fit and image) name their own."""
    d = Path(directory)
    removed: list[Path] = []
    if not d.is_dir():
        return removed
    prefixes = (f".{Path(product).stem}.",) if product is not None else tuple(f".{s}" for s in stems)
    suffix = TMP_SUFFIX if product is None else f"{Path(product).suffix}{TMP_SUFFIX}"
    for p in d.iterdir():
        if p.name.startswith(prefixes) and p.name.endswith(suffix) and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed
