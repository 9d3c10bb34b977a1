"""The OIFITS corpus (tests/data/oifits) and its MANIFEST.md, parsed (not re-typed) for the tests."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path


def _shared_data_dir() -> Path | None:
    """Same rule as the ``shared_data`` fixture of tests/conftest.py (importing a conftest by name is
    ambiguous once sub-directories have their own)."""
    repo = Path(__file__).resolve().parents[1]
    env = os.environ.get("OIFLOW_SHARED_DATA")
    for c in ([Path(env)] if env else []) + [repo / "tests" / "data"]:
        if (c / "oifits").is_dir():
            return c
    return None


SHARED_DATA = _shared_data_dir()

_COUNT = re.compile(r"^(\d+)(?: \((\d+) ok)?")


@dataclass(frozen=True)
class Entry:
    file: str  # relative to tests/data/oifits
    counts: dict  # {"vis2": (points, ok), ...}
    check: str  # the "oifits-check" column
    notes: str

    @property
    def unreadable(self) -> bool:
        return "OPEN FAILED" in self.notes

    @property
    def must_fail(self) -> bool:
        """NON-CONFORMANT or READ FAIL: the validator must report at least one error."""
        return "NON-CONFORMANT" in self.check or "READ FAIL" in self.check

    @property
    def must_pass(self) -> bool:
        """'clean' or 'valid-with-warnings' and not failing: zero errors."""
        return not self.must_fail and ("clean" in self.check or "valid-with-warnings" in self.check)


def _count(cell: str):
    cell = cell.strip()
    if not cell:
        return None
    m = _COUNT.match(cell)
    points = int(m.group(1))
    return points, int(m.group(2)) if m.group(2) else points


def parse_manifest(path: Path) -> list[Entry]:
    entries = []
    for line in path.read_text().splitlines():
        if not line.startswith("| ") or line.startswith("| file") or line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 12 or not cells[0].endswith(("fits", "oifits")):
            continue
        counts = {k: _count(cells[i]) for k, i in (("vis2", 6), ("t3", 7), ("vis", 8), ("flux", 9))}
        entries.append(Entry(cells[0], counts, cells[10], cells[11]))
    return entries


if SHARED_DATA is None:  # a clone carries its test data: missing data is an error, never a skip
    raise RuntimeError("the test data are missing: tests/data/oifits/MANIFEST.md (see tests/data/README.md)")
ENTRIES: list[Entry] = parse_manifest(SHARED_DATA / "oifits" / "MANIFEST.md")
READABLE = [e for e in ENTRIES if not e.unreadable]
REAL = [e for e in ENTRIES if e.file.startswith(("real/", "sim/"))]


def ids(entries):
    return [e.file for e in entries]
