"""The product catalogue: one row per product granule, plus the bookkeeping of stage runs.

A **granule** is (target, instrument mode, night) of one product file, as in OiDB/OITools
(``../shared/docs/LEVELS.md``): one OIFITS file can hold several granules. Columns follow
ObsCore + the OiDB extensions (``target_name``, ``s_ra``/``s_dec`` in degrees, ``t_min``/``t_max``
in MJD, ``em_min``/``em_max`` in metres, ``calib_level``, ``nb_vis``/``nb_vis2``/``nb_t3`` as ROW
counts, ``nb_channels``…), the POINT counts ``nb_vis_points``/``nb_vis2_points``/``nb_t3_points``
(rows × channels, flagged points included: what ``oiflow inspect`` counts as points and the
products tables show), plus what reprocessing needs (checksum, size, software, settings hash,
input checksums, flow run id, time).

**L3 products** (fit JSON, companion-search JSON and maps, IMAGE-OI images) get ``calib_level``
3, as the CALIB_LV of their headers (README: "Pipeline runs, the product catalogue…"): ObsCore level 3, "enhanced data
products, possibly combining several observations". This is NOT OiDB's "L3 — published
calibrated OIFITS" (which needs a bibcode): these rows are told apart by ``dataproduct_type``
("fit" or "image"; OIFITS granules are "visibility") and are not OIFITS. An L3 product is about
one target and has ONE granule (:func:`l3_granule`) describing the data it was made from:
``target_name``/``s_ra``/``s_dec`` of the target; ``t_min``/``t_max`` and ``em_min``/``em_max``
the span of the input granules; ``nb_vis``/``nb_vis2``/``nb_t3`` the input ROW counts (sums), the
``*_points`` columns the input POINT counts (sums);
``instrument_name``/``instrument_mode`` the inputs' values joined by "+"; ``night`` the night
of the inputs when they all come from one night, else "" (the set is named in ``obs_id``:
``<target>/<night-or-set>``); ``nb_channels`` the image planes (images) or the most channels
of an input (fits).

**Verdicts.** Every row of an L3 product carries the product's :class:`~oiflow.verdict.Verdict`:
``verdict`` its status (``ok``, ``poor-fit``, ``maxiter``, ``not-at-minimum``, ``unconstrained``…;
filter with ``products(verdict=...)``) and ``verdict_detail`` its reasons and figures (JSON);
``result`` what it found in a few words (:mod:`oiflow.fit.headline`: "UD 8.26 ± 0.02 mas",
"sep 4.50 mas, PA 60.0°, f 0.300"; an image's χ²_red and μ).
OIFITS granules (L1, L2) have none (NULL). Catalogues made before these columns existed get
them added when opened (:meth:`Catalog._migrate`).

A **stage run** records that one stage processed one unit (a night, a target) with a given
*cache key* (hash of input checksums + settings + code version) and which outputs it wrote;
:meth:`Catalog.up_to_date` answers "can this unit be skipped?" — the basis of idempotent
reprocessing. The catalogue lives in SQLite under the product root by default
(``<root>/catalog.sqlite``) or in any SQLAlchemy database (PostgreSQL) by URL.

Conventions: ``night`` is the local date at the start of the night (``YYYY-MM-DD``) at the
longitude of the array, both as :mod:`oiflow.site` defines them (the one home of that rule).
``instrument_name`` is the primary header's INSTRUME when present (else the INSNAME) and
``instrument_mode`` the INSNAME.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    UniqueConstraint,
    bindparam,
    create_engine,
    delete,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from . import PROCSOFT
from .errors import ConfigError, DataError, OiflowError
from .product_tree import target_key
from .provenance import sha256_file
from .site import longitude_of, nights_of

CATALOG_FILENAME = "catalog.sqlite"
#: most values in one IN (...) clause (SQLite's limit on a statement's parameters is 32766)
_IN_CHUNK = 5000

#: stage-run states
RUNNING, COMPLETED, FAILED = "RUNNING", "COMPLETED", "FAILED"


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)


class _Base(DeclarativeBase):
    pass


class Granule(_Base):
    """One (product file, target, instrument mode, night) row, ObsCore/OiDB style."""

    __tablename__ = "granule"
    __table_args__ = (UniqueConstraint("access_url", "target_name", "instrument_mode", "night", name="uq_granule"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # ObsCore
    dataproduct_type: Mapped[str] = mapped_column(String(32))  # visibility | fit | image
    calib_level: Mapped[int] = mapped_column(Integer, index=True)
    target_name: Mapped[str] = mapped_column(String(128), index=True)
    obs_id: Mapped[str | None] = mapped_column(String(256))
    s_ra: Mapped[float | None] = mapped_column(Float)  # deg
    s_dec: Mapped[float | None] = mapped_column(Float)  # deg
    t_min: Mapped[float | None] = mapped_column(Float)  # MJD
    t_max: Mapped[float | None] = mapped_column(Float)  # MJD
    t_exptime: Mapped[float | None] = mapped_column(Float)  # s (minimum INT_TIME, as OITools)
    em_min: Mapped[float | None] = mapped_column(Float)  # m
    em_max: Mapped[float | None] = mapped_column(Float)  # m
    em_res_power: Mapped[float | None] = mapped_column(Float)  # λ/Δλ (median)
    facility_name: Mapped[str | None] = mapped_column(String(64))
    instrument_name: Mapped[str | None] = mapped_column(String(64))
    access_url: Mapped[str] = mapped_column(String(1024), index=True)  # absolute path of the product
    access_format: Mapped[str] = mapped_column(String(64))
    access_estsize: Mapped[int | None] = mapped_column(Integer)  # kbyte
    # OiDB extensions
    instrument_mode: Mapped[str] = mapped_column(String(128), default="")
    night: Mapped[str] = mapped_column(String(10), index=True, default="")  # YYYY-MM-DD
    nb_channels: Mapped[int | None] = mapped_column(Integer)
    nb_vis: Mapped[int] = mapped_column(Integer, default=0)
    nb_vis2: Mapped[int] = mapped_column(Integer, default=0)
    nb_t3: Mapped[int] = mapped_column(Integer, default=0)
    # points (rows × channels), as `oiflow inspect` counts; NULL in catalogues made before them
    nb_vis_points: Mapped[int | None] = mapped_column(Integer, nullable=True)
    nb_vis2_points: Mapped[int | None] = mapped_column(Integer, nullable=True)
    nb_t3_points: Mapped[int | None] = mapped_column(Integer, nullable=True)
    procsoft: Mapped[str] = mapped_column(String(64), default=PROCSOFT)
    # what the product is worth (L3; NULL for OIFITS granules): oiflow.verdict
    verdict: Mapped[str | None] = mapped_column(String(32), index=True, nullable=True)
    verdict_detail: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # {"reasons", "figures"}
    result: Mapped[str | None] = mapped_column(String(256), nullable=True)  # L3: what was found, in words
    # reprocessing bookkeeping
    stage: Mapped[str] = mapped_column(String(32))
    checksum: Mapped[str] = mapped_column(String(64))  # sha256 of the file
    size: Mapped[int] = mapped_column(BigInteger)  # bytes
    settings_hash: Mapped[str] = mapped_column(String(64), default="")
    input_checksums: Mapped[list] = mapped_column(JSON, default=list)  # [{"name", "sha256"}]
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    run_id: Mapped[int | None] = mapped_column(Integer)
    created: Mapped[_dt.datetime] = mapped_column(DateTime, default=_utcnow)

    COLUMNS = (
        "id", "dataproduct_type", "calib_level", "target_name", "obs_id", "s_ra", "s_dec", "t_min", "t_max",
        "t_exptime", "em_min", "em_max", "em_res_power", "facility_name", "instrument_name", "instrument_mode",
        "night", "nb_channels", "nb_vis", "nb_vis2", "nb_t3", "nb_vis_points", "nb_vis2_points", "nb_t3_points",
        "access_url", "access_format", "access_estsize", "procsoft", "verdict", "verdict_detail", "result", "stage",
        "checksum", "size", "settings_hash", "input_checksums", "flow_run_id", "run_id", "created",
    )

    def to_dict(self) -> dict[str, Any]:
        out = {c: getattr(self, c) for c in self.COLUMNS}
        out["created"] = self.created.isoformat() if self.created else None
        return out


class StageRun(_Base):
    """One stage applied to one unit (a night, a target): what went in, what came out."""

    __tablename__ = "stage_run"
    #: the last run of a unit in a given status (every unit of a rescan asks): without it SQLite
    #: searched all runs of the stage — 7 ms a unit at 20,000 runs, growing with the archive
    __table_args__ = (Index("ix_stage_run_unit_status", "stage", "unit", "status", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stage: Mapped[str] = mapped_column(String(32), index=True)
    unit: Mapped[str] = mapped_column(String(512), index=True)
    cache_key: Mapped[str] = mapped_column(String(64))
    input_digest: Mapped[str] = mapped_column(String(64))
    settings_hash: Mapped[str] = mapped_column(String(64))
    code_version: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=RUNNING)
    inputs: Mapped[list] = mapped_column(JSON, default=list)  # [{"path", "sha256"}]
    outputs: Mapped[list] = mapped_column(JSON, default=list)  # [{"path", "sha256", "size"}]
    failures: Mapped[list] = mapped_column(JSON, default=list)  # [{"item", "error"}]
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    started: Mapped[_dt.datetime] = mapped_column(DateTime, default=_utcnow)
    finished: Mapped[_dt.datetime | None] = mapped_column(DateTime)


class InputFile(_Base):
    """Cache of input checksums keyed on (path, size, mtime): a rescan of an unchanged archive
    does not re-read every file."""

    __tablename__ = "input_file"

    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))


class PlannedDirectory(_Base):
    """The units last planned for a directory by a stage (e.g. the reduce units of a raw night),
    with the fingerprint of what that planning read (:func:`oiflow.archive.remembered_units`):
    a rescan of an unchanged night does not read its files again."""

    __tablename__ = "planned_directory"

    stage: Mapped[str] = mapped_column(String(32), primary_key=True)
    directory: Mapped[str] = mapped_column(String(1024), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    units: Mapped[list] = mapped_column(JSON, default=list)


@dataclass(frozen=True)
class LastRun:
    """What a rescan needs of a unit's last completed run."""

    id: int
    cache_key: str
    outputs: list  # [{"path", "sha256", "size"}]


#: the query of Catalog.last_completed, built once (building a statement cost more than running it)
_LAST_COMPLETED = (select(StageRun.id, StageRun.cache_key, StageRun.outputs)
                   .where(StageRun.stage == bindparam("stage"), StageRun.unit == bindparam("unit"),
                          StageRun.status == COMPLETED)
                   .order_by(StageRun.id.desc()).limit(1))


# -- granules from an OIFITS file ----------------------------------------------------------


def _finite(values) -> np.ndarray:
    a = np.asarray(values, dtype=float).ravel()
    return a[np.isfinite(a)]


def granules_of(oi, calib_level: int) -> list[dict[str, Any]]:
    """The granules of an in-memory :class:`~oiflow.oifits.OIFits`: one dict per
    (target, INSNAME, night) with the ObsCore/OiDB observational columns.

    ``nb_vis``/``nb_vis2``/``nb_t3`` count ROWS of OI_VIS/OI_VIS2/OI_T3 (as OiDB), flags ignored;
    ``nb_*_points`` their POINTS (rows × channels, flags ignored: ``oiflow inspect``'s points).
    OI_FLUX rows define granules but are not counted.
    """
    from .oifits.model import FluxTable, T3Table, Vis2Table, VisTable

    names = oi.target_names()
    tgt = oi.target if oi.targets else None
    coords: dict[int, tuple[float | None, float | None]] = {}
    if tgt is not None:
        ra = tgt.get("RAEP0")
        dec = tgt.get("DECEP0")
        for k, tid in enumerate(np.asarray(tgt["TARGET_ID"]).astype(int)):
            coords[int(tid)] = (float(ra[k]) if ra is not None else None, float(dec[k]) if dec is not None else None)
    instrume = str(oi.primary_header.get("INSTRUME", "") or "").strip()
    counters = {VisTable: "nb_vis", Vis2Table: "nb_vis2", T3Table: "nb_t3"}
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for table in oi.data_tables:
        if not isinstance(table, (VisTable, Vis2Table, T3Table, FluxTable)) or table.nrows == 0:
            continue
        wave = oi.wavelength_of(table)
        lon = longitude_of(oi, table)
        nrows = table.nrows
        tids = np.asarray(table.get("TARGET_ID", np.ones(nrows)), dtype=int).reshape(nrows)
        mjd = np.asarray(table.get("MJD", np.full(nrows, np.nan)), dtype=float).reshape(nrows)
        itime = np.asarray(table.get("INT_TIME", np.full(nrows, np.nan)), dtype=float).reshape(nrows)
        nights = nights_of(mjd, lon)
        eff_wave = _finite(wave.eff_wave)
        band = _finite(wave.get("EFF_BAND", []))
        res = float(np.median(eff_wave / band)) if band.size == eff_wave.size and band.size and np.all(band > 0) else None
        counter = next((c for cls, c in counters.items() if isinstance(table, cls)), None)
        for tid, night in {(int(t), n) for t, n in zip(tids, nights)}:
            rows = (tids == tid) & (nights == night)
            target = names.get(tid, f"TARGET_ID={tid}")
            key = (target, wave.insname, night)
            g = out.get(key)
            if g is None:
                ra, dec = coords.get(tid, (None, None))
                g = out[key] = {
                    "dataproduct_type": "visibility", "calib_level": int(calib_level), "target_name": target,
                    "s_ra": ra, "s_dec": dec, "t_min": None, "t_max": None, "t_exptime": None,
                    "em_min": float(eff_wave.min()) if eff_wave.size else None,
                    "em_max": float(eff_wave.max()) if eff_wave.size else None,
                    "em_res_power": res, "nb_channels": int(wave.nwave),
                    "instrument_name": instrume or wave.insname, "instrument_mode": wave.insname,
                    "facility_name": table.arrname or (oi.arrays[0].arrname if oi.arrays else None),
                    "night": night, "nb_vis": 0, "nb_vis2": 0, "nb_t3": 0,
                    "nb_vis_points": 0, "nb_vis2_points": 0, "nb_t3_points": 0,
                }
            t = _finite(mjd[rows])
            if t.size:
                g["t_min"] = float(t.min()) if g["t_min"] is None else min(g["t_min"], float(t.min()))
                g["t_max"] = float(t.max()) if g["t_max"] is None else max(g["t_max"], float(t.max()))
            it = _finite(itime[rows])
            if it.size:
                g["t_exptime"] = float(it.min()) if g["t_exptime"] is None else min(g["t_exptime"], float(it.min()))
            if counter:
                g[counter] += int(rows.sum())
                g[f"{counter}_points"] += int(rows.sum()) * int(wave.nwave)
    return [out[k] for k in sorted(out)]


def l3_granule(input_granules: Iterable[dict[str, Any]], target: str, *, dataproduct_type: str,
               obs_id: str, nb_channels: int | None = None, calib_level: int = 3) -> dict[str, Any]:
    """The one granule of an L3 product (fit or image) about ``target``, made from the granules
    of its input OIFITS (those of other targets are ignored); see the module docstring."""
    rows = [g for g in input_granules if g.get("target_name") == target]
    if not rows:
        raise DataError(f"no input granule of target {target!r} for the L3 product {obs_id}")

    def span(key, fn):
        vals = [g[key] for g in rows if g.get(key) is not None]
        return fn(vals) if vals else None

    def joined(key, width):  # within the column's width (PostgreSQL enforces it)
        return "+".join(sorted({str(g[key]) for g in rows if g.get(key)}))[:width]

    nights = {g.get("night") or "" for g in rows}
    return {
        "dataproduct_type": dataproduct_type, "calib_level": int(calib_level), "target_name": target,
        "obs_id": obs_id[:256], "s_ra": rows[0].get("s_ra"), "s_dec": rows[0].get("s_dec"),
        "t_min": span("t_min", min), "t_max": span("t_max", max), "t_exptime": span("t_exptime", min),
        "em_min": span("em_min", min), "em_max": span("em_max", max), "em_res_power": span("em_res_power", min),
        "facility_name": joined("facility_name", 64) or None,
        "instrument_name": joined("instrument_name", 64) or None, "instrument_mode": joined("instrument_mode", 128),
        "night": nights.pop() if len(nights) == 1 else "",
        "nb_channels": nb_channels if nb_channels is not None else span("nb_channels", max),
        "nb_vis": sum(int(g.get("nb_vis", 0)) for g in rows), "nb_vis2": sum(int(g.get("nb_vis2", 0)) for g in rows),
        "nb_t3": sum(int(g.get("nb_t3", 0)) for g in rows),
        **{f"{k}_points": _sum_known(rows, f"{k}_points") for k in ("nb_vis", "nb_vis2", "nb_t3")},
    }


def _sum_known(rows, key: str) -> int | None:
    """The sum of ``key`` over ``rows``, None when a row does not know it (an older catalogue)."""
    vals = [g.get(key) for g in rows]
    return None if any(v is None for v in vals) else sum(int(v) for v in vals)


@dataclass
class ProductRecord:
    """What a stage wrote: a file plus its granules and provenance, ready to be registered.

    Built where the product is written (a task on a worker); registered by the flow, so that
    only one process writes to the catalogue.
    """

    path: str
    calib_level: int
    stage: str
    sha256: str
    size: int
    granules: list[dict[str, Any]] = field(default_factory=list)
    settings_hash: str = ""
    inputs: list[dict[str, str]] = field(default_factory=list)  # [{"name", "sha256"}]
    procsoft: str = PROCSOFT
    access_format: str = "application/fits"
    obs_id: str | None = None
    verdict: dict[str, Any] | None = None  # Verdict.to_dict() of an L3 product
    result: str | None = None  # an L3 product's result in words (oiflow.fit.headline)

    @classmethod
    def for_file(cls, path, *, calib_level: int, stage: str, granules, settings_hash: str = "",
                 inputs: Iterable[dict[str, str]] = (), access_format: str = "application/fits",
                 obs_id: str | None = None, verdict: dict[str, Any] | None = None,
                 result: str | None = None) -> "ProductRecord":
        p = Path(path).resolve()
        return cls(path=str(p), calib_level=calib_level, stage=stage, sha256=sha256_file(p), size=p.stat().st_size,
                   granules=list(granules), settings_hash=settings_hash, inputs=list(inputs),
                   access_format=access_format, obs_id=obs_id, verdict=verdict, result=result)

    def to_output(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}


# -- the catalogue ---------------------------------------------------------------------------


def _clip(value, width: int):
    """A string within its column's width (PostgreSQL refuses longer ones; SQLite keeps them)."""
    return value[:width] if isinstance(value, str) else value


def default_url(root: str | os.PathLike) -> str:
    return f"sqlite:///{Path(root).resolve() / CATALOG_FILENAME}"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout = 30000")
    cur.close()


def _sqlite_writer_pragmas(dbapi_conn, _record) -> None:
    """A writer's connections (see :class:`Catalog`): ``synchronous=NORMAL`` (with WAL, from its
    first write on)."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA synchronous = NORMAL")
    cur.close()


class Catalog:
    """The product catalogue of one product tree.

    ``Catalog(url)`` opens (and creates the tables of) a database; ``Catalog.for_root(root)``
    uses ``<root>/catalog.sqlite`` unless ``url`` is given. Reading never writes.

    ``writer=True`` (a flow, which commits twice per unit): from its first write on, an SQLite
    catalogue is written with write-ahead logging and ``synchronous=NORMAL`` — a commit appends
    to the log without waiting for the disk (a killed process keeps its commits; a power cut may
    lose the last ones, never corrupt the file) — and is put back in rollback-journal mode when
    the writer closes (unless another process has it open), so that the tree at rest reads as
    before, by users without write permission too, and a run that writes nothing leaves the file
    untouched. With the default journal each commit waited for two syncs (~6 ms
    here): at 32 one-second workers finishing 30 units/s, 40% of a core
    (tests/benchmarks/bench_scale.py). WAL needs a local file system (SQLite's rule); a
    catalogue shared over the network belongs in PostgreSQL (``catalog.url``).
    """

    def __init__(self, url: str, *, writer: bool = False):
        self.url = url
        self.writer = writer
        self._wal = False  # switched to write-ahead logging (writer, SQLite)
        self._sha256_seen: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) → checksum
        self._dirs_loaded: set[str] = set()  # directories whose cached checksums are in _sha256_seen
        self._real_dirs: dict[str, str] = {}  # directory → its resolved path (:meth:`_resolve`)
        try:
            if url.startswith("sqlite:///"):
                Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(url)
            if self.engine.dialect.name == "sqlite":
                event.listen(self.engine, "connect", _sqlite_pragmas)
                if writer:
                    event.listen(self.engine, "connect", _sqlite_writer_pragmas)
            self._create_tables()
        except OiflowError:
            raise
        except Exception as exc:  # bad URL, server down, missing driver
            raise ConfigError(f"cannot open the product catalogue at {self.safe_url}: {exc}") from None

    def _create_tables(self, attempts: int = 5) -> None:
        """Create missing tables; another process creating them at the same time is not an error."""
        from sqlalchemy.exc import OperationalError, ProgrammingError, IntegrityError

        for k in range(attempts):
            try:
                _Base.metadata.create_all(self.engine)
                self._migrate()
                return
            except (OperationalError, ProgrammingError, IntegrityError) as exc:
                if "already exists" not in str(exc) and "duplicate" not in str(exc).lower() or k == attempts - 1:
                    raise

    def _migrate(self) -> None:
        """Add the columns and indexes that later versions defined to a catalogue made by an
        earlier one (nullable columns only: the rows already there keep NULL)."""
        from sqlalchemy import inspect, text
        from sqlalchemy.exc import OperationalError

        for table in _Base.metadata.sorted_tables:
            indexes = {i["name"] for i in inspect(self.engine).get_indexes(table.name)}
            for index in table.indexes:
                if index.name not in indexes:
                    try:
                        index.create(self.engine)
                    except OperationalError:  # a reader without write access does without it
                        pass
            have = {c["name"] for c in inspect(self.engine).get_columns(table.name)}
            for col in table.columns:
                if col.name in have or not col.nullable:
                    continue
                kind = col.type.compile(dialect=self.engine.dialect)
                with self.engine.begin() as conn:
                    conn.execute(text(f'ALTER TABLE {table.name} ADD COLUMN {col.name} {kind}'))

    @classmethod
    def for_root(cls, root: str | os.PathLike, url: str | None = None, *, writer: bool = False) -> "Catalog":
        return cls(url or default_url(root), writer=writer)

    @property
    def safe_url(self) -> str:
        """The URL without its password, for messages."""
        from sqlalchemy.engine import make_url

        try:
            return make_url(self.url).render_as_string(hide_password=True)
        except Exception:
            return "<invalid URL>"

    def _before_write(self) -> None:
        """A writer's first write switches SQLite to WAL (class docstring)."""
        if self.writer and not self._wal and self.engine.dialect.name == "sqlite":
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA journal_mode = WAL")
            self._wal = True

    @contextlib.contextmanager
    def _write(self) -> Iterator[Session]:
        """A session in a write transaction."""
        self._before_write()
        with Session(self.engine) as s, s.begin():
            yield s

    @contextlib.contextmanager
    def _write_core(self) -> Iterator[Connection]:
        """A connection in a write transaction, for Core statements (a stage run's bookkeeping:
        an ORM session cost as much again per unit, for rows written once and never loaded)."""
        self._before_write()
        with self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()
        db = self.engine.url.database
        if self._wal and db and db != ":memory:":
            import sqlite3  # back to the rollback journal (class docstring)

            try:
                with contextlib.closing(sqlite3.connect(db, timeout=1.0)) as conn:
                    conn.execute("PRAGMA journal_mode = DELETE")
            except sqlite3.Error:  # another process has it open: it stays in WAL mode until the next writer closes
                pass

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- products ------------------------------------------------------------------------
    def register(self, records: Iterable[ProductRecord], *, run_id: int | None = None,
                 flow_run_id: str | None = None) -> int:
        """Register products: each file's granules REPLACE any earlier rows for the same path
        (one transaction), so re-registering never duplicates. Returns the number of rows."""
        with self._write() as s:
            return self._register(s, records, run_id=run_id, flow_run_id=flow_run_id)

    @staticmethod
    def _register(s: Session | Connection, records: Iterable[ProductRecord], *, run_id: int | None,
                  flow_run_id: str | None) -> int:
        table = Granule.__table__
        rows = []
        for rec in records:
            s.execute(delete(table).where(table.c.access_url == rec.path))
            granules = rec.granules or [{"target_name": "", "calib_level": rec.calib_level}]
            for g in granules:
                rows.append(dict(
                    dataproduct_type=g.get("dataproduct_type", "visibility"),
                    calib_level=int(g.get("calib_level", rec.calib_level)),
                    target_name=_clip(g.get("target_name", ""), 128),
                    obs_id=_clip(g.get("obs_id", rec.obs_id), 256),
                    s_ra=g.get("s_ra"), s_dec=g.get("s_dec"), t_min=g.get("t_min"), t_max=g.get("t_max"),
                    t_exptime=g.get("t_exptime"), em_min=g.get("em_min"), em_max=g.get("em_max"),
                    em_res_power=g.get("em_res_power"), facility_name=_clip(g.get("facility_name"), 64),
                    instrument_name=_clip(g.get("instrument_name"), 64),
                    instrument_mode=_clip(g.get("instrument_mode", ""), 128),
                    night=g.get("night", ""), nb_channels=g.get("nb_channels"),
                    nb_vis=int(g.get("nb_vis", 0)), nb_vis2=int(g.get("nb_vis2", 0)), nb_t3=int(g.get("nb_t3", 0)),
                    nb_vis_points=g.get("nb_vis_points"), nb_vis2_points=g.get("nb_vis2_points"),
                    nb_t3_points=g.get("nb_t3_points"),
                    access_url=rec.path, access_format=rec.access_format,
                    access_estsize=int(math.ceil(rec.size / 1024)), procsoft=rec.procsoft, stage=rec.stage,
                    verdict=(rec.verdict or {}).get("status"),
                    verdict_detail=({k: rec.verdict[k] for k in ("reasons", "figures") if k in rec.verdict}
                                    if rec.verdict else None),
                    result=_clip(rec.result, 256),
                    checksum=rec.sha256, size=rec.size, settings_hash=rec.settings_hash,
                    input_checksums=list(rec.inputs), flow_run_id=flow_run_id, run_id=run_id, created=_utcnow(),
                ))
        if rows:
            s.execute(insert(table), rows)
        return len(rows)

    def unregister(self, paths: Iterable[str]) -> int:
        """Remove the granules of products that no longer exist as such (e.g. a target no longer
        in a night's calibration); the files are left alone. Returns the number of rows."""
        paths = [str(p) for p in paths]
        if not paths:
            return 0
        with self._write() as s:
            return s.execute(delete(Granule).where(Granule.access_url.in_(paths))).rowcount or 0

    def products(self, *, target: str | None = None, level: int | None = None, night: str | None = None,
                 path_prefix: str | None = None, paths: Iterable[str] | None = None,
                 flow_run_id: str | None = None, verdict: str | None = None) -> list[dict[str, Any]]:
        """Granule rows as dicts, filtered; ordered by night, target, instrument mode, path.
        ``target``: the rows of every target name that :func:`~oiflow.product_tree.target_key`
        makes equal to it (the run's matching rule: "AX Cir" finds "AX_CIR").
        ``verdict``: a status (``ok``, ``poor-fit``…), or ``not-ok`` for L3 rows whose verdict is
        anything but ok."""
        q = select(Granule)
        if verdict == "not-ok":
            q = q.where(Granule.verdict.is_not(None), Granule.verdict != "ok")
        elif verdict is not None:
            q = q.where(Granule.verdict == verdict)
        if flow_run_id is not None:
            q = q.where(Granule.flow_run_id == str(flow_run_id))
        if paths is not None:
            paths = sorted({str(p) for p in paths})
            if len(paths) > _IN_CHUNK:  # SQLite limits the parameters of one statement
                rows = [r for k in range(0, len(paths), _IN_CHUNK) for r in self.products(
                    target=target, level=level, night=night, path_prefix=path_prefix, paths=paths[k:k + _IN_CHUNK],
                    flow_run_id=flow_run_id, verdict=verdict)]
                return sorted(rows, key=lambda r: (r["night"], r["target_name"], r["instrument_mode"], r["access_url"]))
            q = q.where(Granule.access_url.in_(paths))
        if target is not None:
            q = q.where(Granule.target_name.in_(self.target_names(target)))
        if level is not None:
            q = q.where(Granule.calib_level == int(level))
        if night is not None:
            q = q.where(Granule.night == night)
        if path_prefix is not None:
            q = q.where(Granule.access_url.startswith(str(path_prefix)))
        q = q.order_by(Granule.night, Granule.target_name, Granule.instrument_mode, Granule.access_url)
        with Session(self.engine) as s:
            return [g.to_dict() for g in s.scalars(q)]

    def target_names(self, target: str) -> list[str]:
        """The catalogued target names that designate ``target`` (same
        :func:`~oiflow.product_tree.target_key`), read from the distinct names (one per target,
        not per row)."""
        key = target_key(target)
        with self.engine.connect() as conn:
            names = conn.execute(select(Granule.target_name).distinct()).scalars().all()
        return sorted({n for n in names if n is not None and target_key(n) == key} | {target})

    # -- stage runs ----------------------------------------------------------------------
    def begin_run(self, stage: str, unit: str, *, cache_key: str, input_digest: str, settings_hash: str,
                  code_version: str, inputs: list[dict[str, str]], flow_run_id: str | None = None) -> int:
        """Record that (stage, unit) starts (RUNNING); the RUNNING runs of it that a killed process
        left are marked FAILED ("interrupted") in the same transaction. Returns the run's id."""
        table = StageRun.__table__
        with self._write_core() as conn:
            self._close_interrupted(conn, stage, unit)
            return int(conn.execute(insert(table).values(
                stage=stage, unit=unit, cache_key=cache_key, input_digest=input_digest, settings_hash=settings_hash,
                code_version=code_version, status=RUNNING, inputs=list(inputs), outputs=[], failures=[],
                flow_run_id=flow_run_id, started=_utcnow()).returning(table.c.id)).scalar_one())

    def close_interrupted(self, stage: str, unit: str) -> int:
        """Mark RUNNING runs of (stage, unit) left by a killed process as FAILED; returns how many."""
        with self._write() as s:
            return self._close_interrupted(s, stage, unit)

    @staticmethod
    def _close_interrupted(s: Session | Connection, stage: str, unit: str) -> int:
        t = StageRun.__table__.c
        return s.execute(update(StageRun.__table__).where(t.stage == stage, t.unit == unit, t.status == RUNNING).values(
            status=FAILED, finished=_utcnow(),
            failures=[{"item": unit, "error": "interrupted (the process running it stopped)"}])).rowcount or 0

    def finish_run(self, run_id: int, *, status: str, outputs: list[dict[str, Any]],
                   failures: list[dict[str, str]] = ()) -> None:
        with self._write() as s:
            self._finish_run(s, run_id, status, outputs, failures)

    def _finish_run(self, s: Session | Connection, run_id: int, status: str, outputs, failures) -> None:
        if status not in (COMPLETED, FAILED):
            raise DataError(f"a finished run is {COMPLETED} or {FAILED}, not {status!r}")
        done = s.execute(update(StageRun.__table__).where(StageRun.__table__.c.id == run_id).values(
            status=status, outputs=list(outputs), failures=list(failures), finished=_utcnow())).rowcount
        if not done:
            raise DataError(f"no stage run with id {run_id} in {self.safe_url}")

    def record_run(self, run_id: int, *, status: str, products: Iterable[ProductRecord] = (),
                   failures: list[dict[str, str]] = (), unregister: Iterable[str] = (),
                   flow_run_id: str | None = None) -> None:
        """Close run ``run_id`` in ONE transaction: unregister the products of the unit's previous
        run that this one did not write again (``unregister``), register ``products``, and finish
        the run (``status``, its outputs and ``failures``). A crash leaves all of it or none.
        The products' checksums join the checksum cache (:meth:`file_sha256`): the next stage's
        planning takes them as inputs without reading them again.
        """
        products = list(products)
        known = self._product_checksums(products)
        with self._write_core() as s:
            paths = [str(p) for p in unregister]
            if paths:
                s.execute(delete(Granule.__table__).where(Granule.__table__.c.access_url.in_(paths)))
            self._register(s, products, run_id=run_id, flow_run_id=flow_run_id)
            self._finish_run(s, run_id, status, [p.to_output() for p in products], failures)
            self._remember_checksums(s, known)
        self._sha256_seen.update(known)

    @staticmethod
    def _product_checksums(products: list[ProductRecord]) -> dict[tuple[str, int, int], str]:
        """(path, size, mtime_ns) → checksum of the products still as recorded (same size)."""
        out = {}
        for rec in products:
            try:
                st = os.stat(rec.path)
            except OSError:
                continue
            if st.st_size == rec.size:
                out[(str(Path(rec.path).resolve()), st.st_size, st.st_mtime_ns)] = rec.sha256
        return out

    def last_run(self, stage: str, unit: str, status: str | None = COMPLETED) -> StageRun | None:
        q = select(StageRun).where(StageRun.stage == stage, StageRun.unit == unit)
        if status is not None:
            q = q.where(StageRun.status == status)
        q = q.order_by(StageRun.id.desc()).limit(1)
        with Session(self.engine) as s:
            run = s.scalars(q).first()
            if run is not None:
                s.expunge(run)
            return run

    def last_completed(self, stage: str, unit: str) -> LastRun | None:
        """The unit's last completed run: its cache key and outputs only (a rescan asks this of
        every unit; :meth:`last_run` loads the whole row)."""
        with self.engine.connect() as conn:
            row = conn.execute(_LAST_COMPLETED, {"stage": stage, "unit": unit}).first()
        return None if row is None else LastRun(int(row.id), row.cache_key, list(row.outputs or []))

    def runs(self, stage: str | None = None) -> list[StageRun]:
        q = select(StageRun).order_by(StageRun.id)
        if stage is not None:
            q = q.where(StageRun.stage == stage)
        with Session(self.engine) as s:
            out = list(s.scalars(q))
            for r in out:
                s.expunge(r)
            return out

    def up_to_date(self, stage: str, unit: str, cache_key: str, *, verify: bool = False) -> bool:
        """True when the last completed run of (stage, unit) had this cache key and all its
        outputs are still there with the recorded size (and checksum with ``verify``)."""
        run = self.last_run(stage, unit)
        return run is not None and self.run_is_current(run, cache_key, verify=verify)

    @staticmethod
    def run_is_current(run: StageRun | LastRun, cache_key: str, *, verify: bool = False) -> bool:
        """True when the completed ``run`` had this cache key and all its outputs are still there
        with the recorded size (and checksum with ``verify``)."""
        if run.cache_key != cache_key:
            return False
        for out in run.outputs:
            p = Path(out["path"])
            try:
                if p.stat().st_size != int(out["size"]):
                    return False
            except FileNotFoundError:
                return False
            if verify and sha256_file(p) != out["sha256"]:
                return False
        return True

    # -- input checksums -------------------------------------------------------------------
    def file_sha256(self, path: str | os.PathLike) -> str:
        """SHA-256 of a file (:meth:`resolved_sha256s`)."""
        return self.resolved_sha256s([path])[0][1]

    def resolved_sha256s(self, paths: Iterable[str | os.PathLike]) -> list[tuple[str, str]]:
        """(absolute path with symbolic links resolved, SHA-256) of each file, cached on (path,
        size, mtime_ns): unchanged files are not re-read (and nothing is written when the cache
        is current); the checksums of the files read are written in one transaction. The cached
        checksums of a directory are read in one query, the first time one of its files is asked
        for."""
        keys = []
        for path in paths:
            p, st = self._resolve(path)
            key = (p, st.st_size, st.st_mtime_ns)
            if key not in self._sha256_seen:
                parent = os.path.dirname(p)
                if parent not in self._dirs_loaded:
                    self._load_checksums(parent)
            keys.append(key)
        new = {key: sha256_file(Path(key[0])) for key in dict.fromkeys(keys) if key not in self._sha256_seen}
        if new:
            with self._write_core() as s:
                self._remember_checksums(s, new)
            self._sha256_seen.update(new)
        return [(key[0], self._sha256_seen[key]) for key in keys]

    def _resolve(self, path: str | os.PathLike) -> tuple[str, os.stat_result]:
        """``Path(path).resolve()`` as a string, and the file's status; a file that is not a
        symbolic link is resolved through its directory's resolution, made once (resolving
        walks every component of the path: most of a night's planning time here)."""
        path = os.fspath(path)
        if ".." in path:  # "dir/link/.." is not "dir" when link is a symbolic link
            p = str(Path(path).resolve())
            return p, os.stat(p)
        path = os.path.abspath(path)
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            p = str(Path(path).resolve())
            return p, os.stat(p)
        head, name = os.path.split(path)
        real = self._real_dirs.get(head)
        if real is None:
            real = self._real_dirs[head] = str(Path(head).resolve())
        return os.path.join(real, name), st

    def _remember_checksums(self, s: Session | Connection, digests: dict[tuple[str, int, int], str]) -> None:
        """Write (path, size, mtime_ns) → checksum rows, replacing the rows of those paths: an
        upsert (SQLite, PostgreSQL; other databases: a delete and an insert)."""
        if not digests:
            return
        rows = [{"path": p, "size": size, "mtime_ns": mtime_ns, "sha256": d} for (p, size, mtime_ns), d in digests.items()]
        dialect = self.engine.dialect.name
        if dialect not in ("sqlite", "postgresql"):
            table = InputFile.__table__
            for k in range(0, len(rows), _IN_CHUNK):
                s.execute(delete(table).where(table.c.path.in_([r["path"] for r in rows[k:k + _IN_CHUNK]])))
            s.execute(insert(table), rows)
            return
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as upsert
        else:
            from sqlalchemy.dialects.postgresql import insert as upsert
        for k in range(0, len(rows), _IN_CHUNK // 4):  # 4 parameters a row: SQLite's limit on one statement
            stmt = upsert(InputFile).values(rows[k:k + _IN_CHUNK // 4])
            s.execute(stmt.on_conflict_do_update(index_elements=[InputFile.path], set_={
                "size": stmt.excluded.size, "mtime_ns": stmt.excluded.mtime_ns, "sha256": stmt.excluded.sha256}))

    def _load_checksums(self, directory: str) -> None:
        """The cached checksums of the files directly under ``directory`` (an index range)."""
        lo = directory.rstrip("/") + "/"
        hi = lo[:-1] + chr(ord("/") + 1)
        q = select(InputFile.path, InputFile.size, InputFile.mtime_ns, InputFile.sha256).where(
            InputFile.path >= lo, InputFile.path < hi)
        with self.engine.connect() as conn:
            for row in conn.execute(q):
                if "/" not in row.path[len(lo):]:
                    self._sha256_seen[(row.path, int(row.size), int(row.mtime_ns))] = row.sha256
        self._dirs_loaded.add(directory)

    # -- planned directories -------------------------------------------------------------------
    def planned(self, stage: str, directory: str) -> tuple[str, list] | None:
        """(fingerprint, units) last remembered for (stage, directory), or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(PlannedDirectory.fingerprint, PlannedDirectory.units).where(
                PlannedDirectory.stage == stage, PlannedDirectory.directory == directory)).first()
        return None if row is None else (row.fingerprint, list(row.units))

    def remember_plan(self, stage: str, directory: str, fingerprint: str, units: list) -> None:
        with self._write() as s:
            s.merge(PlannedDirectory(stage=stage, directory=directory, fingerprint=fingerprint, units=list(units)))


def dumps(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=2, default=str)
