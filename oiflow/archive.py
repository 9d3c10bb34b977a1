"""Units of (re)processing and change detection over an archive of nights.

A :class:`WorkUnit` is what one coarse task processes — a night, a target — with the checksums
of its inputs, its effective settings and the version of the code that processes it. Its
:attr:`~WorkUnit.cache_key` (a SHA-256 hex digest, never path-like) is stored in the catalogue
with the run; :func:`plan_units` returns the units whose key differs from the last successful
run or whose outputs have gone, so that an unchanged archive costs a scan and nothing else.

An archive is a directory of night directories, each holding the files of one night::

    <archive>/<night>/*.fits | *.oifits | *.fits.gz
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from . import __version__
from .catalog import Catalog, ProductRecord
from .errors import ConfigError
from .provenance import canonical_json, settings_hash

#: file name patterns of OIFITS / FITS inputs inside a night directory
INPUT_PATTERNS = ("*.fits", "*.oifits", "*.fits.gz", "*.fit")


def _source_path(name: str) -> Path:
    """The source file of module ``name`` (a package: its ``__init__.py``), found on disk without
    importing it: hashing a stage's code must not load its dependencies (scipy, matplotlib) into
    the flow process, which only plans units."""
    top, *rest = name.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.origin:
        raise ConfigError(f"module not found: {name}")
    if not rest:
        return Path(spec.origin)
    base = Path(spec.origin).parent.joinpath(*rest)
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    raise ConfigError(f"module not found: {name}")


@functools.lru_cache(maxsize=None)
def code_version(*modules: str) -> str:
    """``<oiflow version>+<12 hex>``: the package version and a hash of the source files of
    ``modules`` (dotted names; a package counts all its ``.py`` files). A code change in a
    stage therefore invalidates that stage's earlier products, even without a version bump."""
    h = hashlib.sha256(__version__.encode())
    for name in sorted(set(modules)):
        path = _source_path(name)
        files = sorted(path.parent.rglob("*.py")) if path.name == "__init__.py" else [path]
        for f in files:
            h.update(str(f.relative_to(path.parent)).encode())
            h.update(f.read_bytes())
    return f"{__version__}+{h.hexdigest()[:12]}"


@dataclass(frozen=True)
class InputFile:
    path: str
    sha256: str

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


@dataclass(frozen=True)
class WorkUnit:
    """One stage applied to one unit: inputs (with checksums), settings and code version."""

    stage: str
    unit: str
    inputs: tuple[InputFile, ...]
    settings: dict[str, Any] = field(hash=False, compare=False)
    code_version: str
    out_dir: str
    #: what the stage function needs at run time but that does not define the result (absolute
    #: paths of inputs by role, the raw directory…): not part of the cache key
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def settings_hash(self) -> str:
        return settings_hash(self.settings)

    @property
    def input_digest(self) -> str:
        blob = canonical_json(sorted([i.name, i.sha256] for i in self.inputs))
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def cache_key(self) -> str:
        """SHA-256 of (stage, unit, input checksums, settings, code version)."""
        blob = canonical_json(["oiflow-unit-v1", self.stage, self.unit, self.input_digest, self.settings_hash,
                               self.code_version])
        return hashlib.sha256(blob.encode()).hexdigest()

    def input_records(self) -> list[dict[str, str]]:
        return [{"name": i.name, "path": i.path, "sha256": i.sha256} for i in self.inputs]


@dataclass
class UnitResult:
    """What processing one unit produced: products (registered by the flow) and failures.

    Unit functions (``oiflow.ingest.ingest_unit``, ``oiflow.work.*``) return one; one bad item
    fails only itself and is listed in ``failures``."""

    stage: str
    unit: str
    products: list[ProductRecord] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)  # [{"item", "error"}]
    plots: list[str] = field(default_factory=list)  # quicklook PNGs
    warnings: list[str] = field(default_factory=list)  # worth reading, not failures (e.g. a calibrator left out)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(self, item: str, exc: BaseException) -> None:
        self.failures.append({"item": str(item), "error": f"{type(exc).__name__}: {exc}"})


def night_dirs(archive: str | os.PathLike) -> list[Path]:
    """The night directories of an archive (subdirectories holding input files), sorted."""
    root = Path(archive)
    if not root.is_dir():
        raise ConfigError(f"archive directory not found: {root}")
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and input_files(d))


def input_files(directory: str | os.PathLike) -> list[Path]:
    d = Path(directory)
    found: set[Path] = set()
    for pattern in INPUT_PATTERNS:
        found.update(p for p in d.glob(pattern) if p.is_file() and not p.name.startswith("."))
    return sorted(found)


def make_unit(stage: str, unit: str, files: Iterable[str | os.PathLike], settings: dict[str, Any],
              code: str, out_dir: str | os.PathLike, catalog: Catalog, params: dict[str, Any] | None = None) -> WorkUnit:
    """A work unit with input checksums taken through the catalogue's checksum cache."""
    inputs = tuple(InputFile(path, digest) for path, digest in catalog.resolved_sha256s(files))
    return WorkUnit(stage=stage, unit=unit, inputs=inputs, settings=dict(settings), code_version=code,
                    out_dir=str(Path(out_dir).resolve()), params=dict(params or {}))


def unit_to_json(unit: WorkUnit) -> dict[str, Any]:
    return {"stage": unit.stage, "unit": unit.unit, "inputs": [[i.path, i.sha256] for i in unit.inputs],
            "settings": unit.settings, "code_version": unit.code_version, "out_dir": unit.out_dir,
            "params": unit.params}


def unit_from_json(data: dict[str, Any]) -> WorkUnit:
    return WorkUnit(stage=data["stage"], unit=data["unit"], inputs=tuple(InputFile(p, h) for p, h in data["inputs"]),
                    settings=dict(data["settings"]), code_version=data["code_version"], out_dir=data["out_dir"],
                    params=dict(data["params"]))


def directory_fingerprint(directory: str | os.PathLike, depends_on: Any) -> str:
    """SHA-256 of a directory's listing — every entry's name, size and modification time (ns) —
    and of ``depends_on`` (JSON: the settings, code version and product root a planning used)."""
    entries = []
    with os.scandir(directory) as it:
        for e in it:
            st = e.stat()
            entries.append([e.name, e.is_file(), st.st_size, st.st_mtime_ns])
    blob = canonical_json([sorted(entries), depends_on])
    return hashlib.sha256(blob.encode()).hexdigest()


def remembered_units(catalog: Catalog, stage: str, directory: str | os.PathLike, depends_on: Any,
                     plan: Callable[[], list[WorkUnit]]) -> list[WorkUnit]:
    """The units ``plan()`` makes from ``directory`` — remembered in the catalogue, and returned
    without calling it while the directory's listing (names, sizes, modification times) and
    ``depends_on`` (everything else the planning reads: its settings, code version and product
    root) are those of the last call.

    The same trust as the checksum cache (:meth:`Catalog.file_sha256`): a file with the size and
    modification time it had is taken to be the file it was. A rescan of an unchanged raw night
    then reads none of its files (planning read every header twice and looked up every checksum:
    most of a rescan's time, tests/benchmarks/bench_scale.py)."""
    d = str(Path(directory).resolve())
    fingerprint = directory_fingerprint(d, depends_on)
    known = catalog.planned(stage, d)
    if known is not None and known[0] == fingerprint:
        return [unit_from_json(u) for u in known[1]]
    units = plan()
    if directory_fingerprint(d, depends_on) == fingerprint:  # unchanged while planning: worth remembering
        catalog.remember_plan(stage, d, fingerprint, [unit_to_json(u) for u in units])
    return units


@dataclass
class Plan:
    """Units to process and units skipped because they are up to date."""

    todo: list[WorkUnit]
    skipped: list[WorkUnit]


def plan_units(units: Iterable[WorkUnit], catalog: Catalog, *, force: bool = False, verify: bool = False) -> Plan:
    """Split ``units`` into those that need work and those already done with the same key
    (and outputs still present; checksums re-read with ``verify``)."""
    todo, skipped = [], []
    for u in units:
        if not force and catalog.up_to_date(u.stage, u.unit, u.cache_key, verify=verify):
            skipped.append(u)
        else:
            todo.append(u)
    return Plan(todo=todo, skipped=skipped)
