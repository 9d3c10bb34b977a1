"""The path checks of the command line, made when a command starts, before any work.

Every command checks its inputs and outputs here (README "Command-line conventions"); a
problem is a :class:`~oiflow.errors.ConfigError` of one line, ``LABEL PATH: problem``, which
:func:`oiflow.cli.main` prints and turns into exit code 2. The rules:

- an input file exists, is not a directory and can be read; an input directory exists and is
  a directory;
- an output file (``-o/--out`` where one product results, ``--json-out``) is not a directory,
  is not one of the command's inputs (inputs are never modified) and, when it exists, is
  replaced only with ``--force``; the directory it goes in must be writable;
- an output directory (``-o/--out`` otherwise) is not a file; it is created when missing, and
  the files of the same names in it are replaced; it (or, when missing, the nearest existing
  directory above it) must be writable.

Writability is asked of the kernel (``os.access``): it sees an immutable (``chattr +i``) or
read-only file system also for root, for whom the permission bits alone prove nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError


def _fail(label: str, path, problem: str) -> None:
    raise ConfigError(f"{label + ' ' if label else ''}{path}: {problem}")


def input_file(path: Path, label: str = "") -> Path:
    """``path`` if it is a readable file (not a directory)."""
    path = Path(path)
    if not path.exists():
        _fail(label, path, "no such file")
    if path.is_dir():
        _fail(label, path, "is a directory, a file is expected")
    if not os.access(path, os.R_OK):
        _fail(label, path, "cannot be read (permission denied)")
    return path


def input_files(paths, label: str = "") -> list[Path]:
    """Each of ``paths`` checked by :func:`input_file`."""
    return [input_file(p, label) for p in paths]


def input_dir(path: Path, label: str = "") -> Path:
    """``path`` if it is a directory."""
    path = Path(path)
    if not path.exists():
        _fail(label, path, "no such directory")
    if not path.is_dir():
        _fail(label, path, "is a file, a directory is expected")
    return path


def input_path(path: Path, label: str = "") -> Path:
    """``path`` if it exists (a file or a directory, as the command accepts both)."""
    path = Path(path)
    if not path.exists():
        _fail(label, path, "no such file or directory")
    return path


def _existing_parent(path: Path) -> Path:
    """The nearest existing directory at or above ``path`` (a file on the way is refused)."""
    for parent in (path, *path.parents):
        if parent.exists():
            if not parent.is_dir():
                _fail("", parent, f"is a file, so {path} cannot be made")
            return parent
    return Path(".")


def _writable_dir(label: str, path: Path, where: Path) -> None:
    if not os.access(where, os.W_OK | os.X_OK):
        _fail(label, path, f"cannot write in {where} (read-only, immutable or permission denied)")


def output_file(path: Path, *, force: bool = False, inputs=(), label: str = "--out") -> Path:
    """``path`` if a file can be written there under the rules above."""
    path = Path(path)
    if path.is_dir():
        _fail(label, path, "is a directory, a file is expected")
    if path.exists():
        for inp in inputs:
            if Path(inp).exists() and path.samefile(inp):
                _fail(label, path, "is also an input (inputs are never modified)")
        if not force:
            _fail(label, path, "exists (add --force to replace it)")
        if not os.access(path, os.W_OK):
            _fail(label, path, "cannot be replaced (read-only, immutable or permission denied)")
    _writable_dir(label, path, _existing_parent(path.parent if str(path.parent) else Path(".")))
    return path


def output_dir(path: Path, label: str = "--out") -> Path:
    """``path`` if a directory of outputs can be written there under the rules above."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        _fail(label, path, "is a file, a directory is expected")
    _writable_dir(label, path, _existing_parent(path))
    return path
