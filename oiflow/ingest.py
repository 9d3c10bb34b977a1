"""Ingest existing L1/L2 OIFITS into the product tree: read, describe, copy atomically.

This is how real reduced or calibrated data enter the pipeline (README, pipeline section: "real L1/L2
OIFITS from any instrument can enter at their level"). Each file is read (so an unreadable
file fails here, naming itself), its granules are computed for the catalogue, and its bytes
are copied unchanged to ``<root>/<night>/L<level>/<name>`` (temporary name, then rename).
The copy is checked against the input checksum. Inputs are never modified.

:func:`ingest_unit` processes one :class:`~oiflow.archive.WorkUnit` (a night); one bad file
fails only itself and is listed in :attr:`UnitResult.failures`.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from .archive import UnitResult, WorkUnit, code_version
from .catalog import ProductRecord, granules_of
from .errors import ConfigError, DataError, OiflowError
from .oifits import read_oifits
from .product_tree import level_dir, remove_stale_temporaries, safe_name
from .provenance import atomic_path, sha256_file

STAGE = "ingest"

__all__ = ["STAGE", "UnitResult", "archive_units", "file_units", "ingest_file", "ingest_unit", "night_units"]

#: the code whose changes invalidate ingested products
MODULES = ("oiflow.ingest", "oiflow.catalog", "oiflow.oifits", "oiflow.product_tree")


def ingest_code_version() -> str:
    return code_version(*MODULES)


def ingest_settings(level: int, night: str | None = None) -> dict[str, Any]:
    """The effective settings of the ingest stage. ``night`` names the product-tree night of
    the unit (an archive's night directory); None takes it from the data (earliest granule)."""
    if level not in (1, 2):
        raise ConfigError(f"ingested OIFITS must be L1 or L2 (input.level 1 or 2), not level {level}")
    return {"level": int(level), "night": night, "layout": "<root>/<night>/L<level>/<name>"}


def ingest_file(path: str | Path, root: str | Path, *, level: int, night: str | None = None,
                expected_sha256: str | None = None, settings_hash: str = "") -> ProductRecord:
    """Copy one OIFITS file to ``<root>/<night>/L<level>/`` and describe it; raises
    OiflowError if unusable. ``night`` None: the earliest night of the file's granules."""
    src = Path(path)
    oi = read_oifits(src, warn=False)
    granules = granules_of(oi, level)
    if not granules:
        raise DataError(f"{src}: no OI_VIS, OI_VIS2, OI_T3 or OI_FLUX rows to catalogue")
    if night is None:
        night = min(g["night"] for g in granules) or "unknown-night"
    out_dir = level_dir(root, night, level)
    dest = out_dir / safe_name(src.name)
    remove_stale_temporaries(out_dir, product=dest.name)
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
        digest = sha256_file(tmp)
        if expected_sha256 is not None and digest != expected_sha256:
            raise DataError(f"{src} changed while being processed (checksum {digest[:12]}… "
                            f"instead of {expected_sha256[:12]}…); run again")
    record = ProductRecord(path=str(dest.resolve()), calib_level=level, stage=STAGE, sha256=digest,
                           size=dest.stat().st_size, granules=granules, settings_hash=settings_hash,
                           inputs=[{"name": src.name, "sha256": digest}], obs_id=src.stem)
    return record


def ingest_unit(unit: WorkUnit) -> UnitResult:
    """Ingest every input of ``unit`` into the product tree rooted at ``unit.out_dir``.
    Safe to rerun (atomic writes of the same bytes)."""
    t0 = time.perf_counter()
    level = int(unit.settings["level"])
    night = unit.settings.get("night")
    result = UnitResult(stage=unit.stage, unit=unit.unit)
    seen: dict[str, str] = {}
    for inp in unit.inputs:
        name = safe_name(Path(inp.path).name)
        if night is not None and name in seen:
            result.failures.append({"item": inp.path, "error": f"DataError: same product name {name!r} as {seen[name]}"})
            continue
        seen[name] = inp.path
        try:
            result.products.append(ingest_file(inp.path, unit.out_dir, level=level, night=night,
                                               expected_sha256=inp.sha256, settings_hash=unit.settings_hash))
        except OiflowError as exc:
            result.failures.append({"item": inp.path, "error": f"{type(exc).__name__}: {exc}"})
    result.seconds = time.perf_counter() - t0
    return result


def archive_units(archive: str | Path, root: str | Path, level: int, catalog) -> list[WorkUnit]:
    """One ingest unit per night directory of ``archive`` (unit name: the directory name)."""
    from .archive import night_dirs

    return night_units(night_dirs(archive), root, level, catalog)


def night_units(nights, root: str | Path, level: int, catalog) -> list[WorkUnit]:
    """One ingest unit per night directory (unit name and product-tree night: the directory name)."""
    from .archive import input_files, make_unit

    code = ingest_code_version()
    units = []
    for d in map(Path, nights):
        if not d.is_dir():
            raise ConfigError(f"night directory not found: {d}")
        night = safe_name(d.name)
        units.append(make_unit(STAGE, night, input_files(d), ingest_settings(level, night), code, root, catalog))
    return units


def file_units(files, root: str | Path, level: int, catalog) -> list[WorkUnit]:
    """One ingest unit per loose file (unit name: its absolute path; night from the data)."""
    from .archive import make_unit

    code = ingest_code_version()
    units = []
    for f in files:
        p = Path(f)
        if not p.is_file():
            raise ConfigError(f"input file not found: {p}")
        units.append(make_unit(STAGE, str(p.resolve()), [p], ingest_settings(level), code, root, catalog))
    return units
