"""Standards validator for OIFITS v1/v2, in the spirit of JMMC's OIFits checker.

    from oiflow.oifits.validate import validate
    report = validate("file.fits")          # or an OIFits already read
    report.verdict                          # "clean" | "valid-with-warnings" | "non-conformant" | "unreadable"
    for f in report.errors: print(f.rule, f.location(), f.message)

Rules follow ``shared/docs/OIFITS2.md`` (tables generated from JMMC's DataModelV2.xml) and the
OIFITS2 paper; rule names are JMMC's where one exists (GENERIC_COL_FORMAT, INSNAME_REF, ...).
Checks that JMMC does not name but oifitslib's ``oifits-check`` enforces (VISREFMAP for
differential visibilities, ARRNAME/STA_INDEX/FOVTYPE versus CALSTAT in OI_FLUX) carry
descriptive names.

Severity policy (chosen so that the verdicts agree with the corpus MANIFEST and with
oifitslib's breach levels, except where listed in tests/test_oifits_corpus.py DEVIATIONS):

* **unreadable** (verdict) — :func:`~oiflow.oifits.read.read_oifits` refuses the file: damaged FITS
  structure (``FITS_STRUCTURE``: truncation, bytes after the last HDU, a size not a multiple of
  2880, bad mandatory cards, TFORM widths ≠ NAXIS1; file, HDU and card named), an OI table
  whose columns cannot be interpreted (``OI_TABLE_UNREADABLE``), no OI_TARGET / OI_WAVELENGTH /
  data table. Every other rule still runs on what could be read.
* **error** — the file does not conform: a mandatory table, keyword or column is missing;
  a column has the wrong type or a wrong NWAVE repeat; a v2 table has a string column narrower
  than the standard width; a cross-reference (INSNAME, ARRNAME, CORRNAME, TARGET_ID, STA_INDEX)
  does not resolve or is ambiguous; an index is duplicated; a keyword has a value outside its
  accepted set; an unflagged error bar is negative; an unflagged point with a finite value has a
  non-finite error bar, MJD or INT_TIME, or a non-finite or implausible (u, v) or wavelength
  (``UNUSABLE_POINT``, from :func:`~oiflow.oifits.views.implausible_points`); the data checksum
  (DATASUM) fails; an
  OIFITS2-only table sits in an OIFITS1 file; table revisions contradict the file's version.
* **warning** — legal or harmless but likely to trip software: JMMC sanity ranges (RANGE_VIS,
  RANGE_ANGLE, positive MJD/INT_TIME, MJD and DATE-OBS within 1933-2150), unit spelling variants
  ('sec', 'year'), missing units, NaN error bars on unflagged points whose value is NaN too,
  zero error bars on unflagged points, NaN/inf or |value| > 1e30 in any other float column
  (``NUMERIC_VALUE``), a table without rows (``EMPTY_TABLE``), decreasing
  wavelengths, duplicate target names, non-zero TIME in OIFITS2, header-only checksum
  mismatch (CHECKSUM fails while DATASUM holds: the header was edited after writing).
* **info** — worth knowing: non-standard columns, extra HDUs, narrow string columns in OIFITS1
  tables (the old pipelines wrote them and every OIFITS1 reader accepts them).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import OIFitsError
from .findings import Finding, Severity
from .model import DataTable, FluxTable, InspolTable, OIFits, OITable, TargetTable, VisTable
from .schema import COLUMN_ALIASES, MAIN_HEADER_V2, TABLES, V1, V2
from .views import COORD_MAX_M, KINDS, WAVELENGTH_RANGE_M, implausible_points, make_view

ERROR, WARNING, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

#: MJD of 1933-01-01 and 2150-01-01 (JMMC's "normal" range for MJD and DATE-OBS)
MJD_MIN, MJD_MAX = 27014.0, 106385.0
#: JMMC sanity range of EFF_WAVE (m)
EFF_WAVE_RANGE = (0.1e-6, 20.0e-6)
#: maximum number of rows listed in a finding
MAX_ROWS = 20
#: a magnitude no quantity of an OIFITS file reaches (SI units, ADU, Jy): beyond it a value is damaged
ABSURD = 1e30

_TFORM = re.compile(r"^\s*(\d*)\s*([A-Z])")
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(T\d{2}:\d{2}(:\d{2}(\.\d*)?)?)?$")
_FAMILY = {"B": "int", "I": "int", "J": "int", "K": "int", "E": "float", "D": "float", "C": "complex",
           "M": "complex", "A": "str", "L": "bool", "X": "bit", "P": "var", "Q": "var"}

#: units oiflow writes, and the FITS-standard spellings accepted without comment
_UNIT_OK = {
    "deg": {"deg"},
    "m": {"m"},
    "s": {"s"},
    "day": {"day", "d"},
    "yr": {"yr", "a"},
    "m/s": {"m/s", "m s-1", "m.s-1", "m s**-1", "m s^-1"},
    "deg/yr": {"deg/yr", "deg yr-1", "deg.yr-1", "deg/a", "deg a-1"},
    "arcsec": {"arcsec"},
}
#: spelling variants readers understand but that are not FITS unit strings (warnings)
_UNIT_VARIANT = {
    "deg": {"degree", "degrees", "degr"},
    "m": {"meter", "meters", "metre", "metres"},
    "s": {"sec", "second", "seconds", "secs"},
    "day": {"days", "mjd"},
    "yr": {"year", "years", "y"},
    "m/s": {"meter/second", "m/sec", "meter_per_second", "km/s*1000"},
    "deg/yr": {"deg/year", "degree/year", "degrees/year", "deg/y", "degree_per_year"},
    "arcsec": {"arcseconds", "arcsecond", "as"},
}

#: keywords of data tables that must be 'MULTI' in the main header when the content is heterogeneous
_V2_ONLY_TABLES = ("OI_FLUX", "OI_CORR", "OI_INSPOL")
_CLASSIC = ("OI_TARGET", "OI_ARRAY", "OI_WAVELENGTH", "OI_VIS", "OI_VIS2", "OI_T3")
#: value/error column pairs of data tables
_ERR_PAIRS = {
    "OI_VIS": (("VISAMP", "VISAMPERR"), ("VISPHI", "VISPHIERR"), ("RVIS", "RVISERR"), ("IVIS", "IVISERR")),
    "OI_VIS2": (("VIS2DATA", "VIS2ERR"),),
    "OI_T3": (("T3AMP", "T3AMPERR"), ("T3PHI", "T3PHIERR")),
    "OI_FLUX": (("FLUXDATA", "FLUXERR"),),
}
#: error columns checked on usable points through the views (check_points)
_VIEW_ERRORS = ("VIS2ERR", "T3PHIERR", "T3AMPERR", "VISAMPERR", "VISPHIERR", "FLUXERR")
_CORRINDX = {
    "OI_VIS": ("CORRINDX_VISAMP", "CORRINDX_VISPHI", "CORRINDX_RVIS", "CORRINDX_IVIS"),
    "OI_VIS2": ("CORRINDX_VIS2DATA",),
    "OI_T3": ("CORRINDX_T3AMP", "CORRINDX_T3PHI"),
    "OI_FLUX": ("CORRINDX_FLUXDATA",),
}
#: readers' own findings the validator keeps (the rest it re-derives itself)
_KEEP_READ_RULES = {"CHECKSUM_HDU", "CHECKSUM_DATA", "FITS_VERIFY", "FITS_STRUCTURE", "COLUMN_ALIAS",
                    "DUPLICATE_COLUMN", "OI_TABLE_UNREADABLE", "EMPTY_TABLE"}


@dataclass
class ValidationReport:
    """The validator's result for one file."""

    file: str | None
    version: int
    findings: list[Finding] = field(default_factory=list)
    #: why read_oifits refuses the file (its error message), None when the file can be read
    unreadable: str | None = None

    def _of(self, severity: Severity) -> list[Finding]:
        return [f for f in self.findings if f.severity == severity]

    @property
    def errors(self) -> list[Finding]:
        return self._of(ERROR)

    @property
    def warnings(self) -> list[Finding]:
        return self._of(WARNING)

    @property
    def infos(self) -> list[Finding]:
        return self._of(INFO)

    @property
    def ok(self) -> bool:
        """True when the file has no error (it conforms, possibly with warnings)."""
        return not self.errors

    @property
    def verdict(self) -> str:
        if self.unreadable:
            return "unreadable"
        if self.errors:
            return "non-conformant"
        return "valid-with-warnings" if self.warnings else "clean"

    def rules(self, severity: Severity | str | None = None) -> set[str]:
        """Names of the rules that fired (optionally at one severity)."""
        sev = None if severity is None else Severity(severity)
        return {f.rule for f in self.findings if sev is None or f.severity == sev}

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "version": self.version,
            "verdict": self.verdict,
            "unreadable": self.unreadable,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "infos": len(self.infos),
            "findings": [f.to_dict() for f in self.findings],
        }

    def summary(self) -> str:
        why = f" — {self.unreadable}" if self.unreadable else ""
        return (f"{self.file or '<memory>'}: {self.verdict} (OIFITS{self.version}; {len(self.errors)} errors, "
                f"{len(self.warnings)} warnings, {len(self.infos)} infos){why}")


def validate(oi_or_path: OIFits | str | os.PathLike) -> ValidationReport:
    """Check an OIFITS file (path) or an in-memory :class:`OIFits` against the standard.

    A path is read with :func:`~oiflow.oifits.read.load_oifits`: damage that makes
    :func:`~oiflow.oifits.read.read_oifits` refuse the file (broken FITS structure, an OI table
    that cannot be interpreted, no OI_TARGET …) is reported with every rule that applies to
    what could be read, and ``report.unreadable`` says why the file is refused. Raises
    :class:`OIFitsError` only when the path cannot be opened at all (missing, a directory).
    """
    unreadable, is_fits = None, True
    if isinstance(oi_or_path, OIFits):
        oi = oi_or_path
    else:
        from .read import load_oifits

        loaded = load_oifits(oi_or_path)
        oi, is_fits = loaded.oi, loaded.is_fits
        unreadable = str(loaded.fatal[0]) if loaded.fatal else None
    checker = _Checker(oi)
    if is_fits:
        checker.run()
    else:  # not FITS at all: only the reader's findings apply
        checker.findings += [f for f in oi.read_findings if f.rule in _KEEP_READ_RULES]
    return ValidationReport(oi.path, checker.version, checker.findings, unreadable)


# ----------------------------------------------------------------------------------------------
def _code_repeat(fmt: str | None) -> tuple[str | None, int | None]:
    m = _TFORM.match(fmt or "")
    if not m:
        return None, None
    return m.group(2), int(m.group(1)) if m.group(1) else 1


def _as_float(arr) -> np.ndarray | None:
    try:
        a = np.asarray(arr)
        if a.dtype.kind in "biuf":
            return a.astype(float, copy=False)
        if a.dtype.kind == "c":
            return None
        return None
    except Exception:
        return None


def _as_int(arr) -> np.ndarray | None:
    a = _as_float(arr)
    if a is None:
        return None
    with np.errstate(invalid="ignore"):
        if not np.all(np.isfinite(a)):
            return None
    return a.astype(np.int64)


def _rows_of(mask: np.ndarray) -> tuple[list[int], int]:
    """(first rows where mask is true along axis 0, count of true elements)."""
    m = np.asarray(mask)
    count = int(m.sum())
    if m.ndim > 1:
        m = m.reshape(m.shape[0], -1).any(axis=1)
    rows = np.flatnonzero(m)[:MAX_ROWS].tolist()
    return rows, count


def _date_to_mjd(text: str) -> float | None:
    m = _DATE.match(text.strip())
    if not m:
        return None
    y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if not (1 <= mo <= 12 and 1 <= d <= 31):
        return None
    # Fliegel & Van Flandern Julian day number (valid for all Gregorian dates)
    a = (14 - mo) // 12
    yy = y + 4800 - a
    mm = mo + 12 * a - 3
    jdn = d + (153 * mm + 2) // 5 + 365 * yy + yy // 4 - yy // 100 + yy // 400 - 32045
    return jdn - 2400001.0


class _Checker:
    def __init__(self, oi: OIFits):
        self.oi = oi
        self.path = oi.path
        self.findings: list[Finding] = []
        self.version = self._file_version()

    # -- bookkeeping -----------------------------------------------------------------------
    def add(self, severity, rule, message, table: OITable | str | None = None, column=None, rows=None):
        hdu = table.label if isinstance(table, OITable) else table
        self.findings.append(Finding(severity, rule, message, hdu, column, list(rows or []), file=self.path))

    def add_mask(self, severity, rule, message, table, column, mask):
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        rows, count = _rows_of(mask)
        unit = "point" if mask.ndim > 1 else "row"
        self.add(severity, rule, f"{message} ({count} {unit}{'s' if count != 1 else ''})", table, column, rows)

    def run(self) -> None:
        for f in self.oi.read_findings:
            if f.rule in _KEEP_READ_RULES:
                self.findings.append(f)
        steps = [self.check_structure, self.check_main_header, self.check_tables, self.check_target,
                 self.check_arrays, self.check_wavelengths, self.check_corr, self.check_data_tables,
                 self.check_points, self.check_inspol, self.check_numbers]
        for step in steps:
            try:
                step()
            except Exception as exc:  # a validator never crashes on a file it could read
                self.add(ERROR, "VALIDATOR_INTERNAL",
                         f"check {step.__name__} could not complete ({exc.__class__.__name__}: {exc}); "
                         "the file is too damaged for this check")

    # -- file-level ------------------------------------------------------------------------
    def _file_version(self) -> int:
        content = str(self.oi.primary_header.get("CONTENT", "")).strip().upper()
        if content == "OIFITS2":
            return V2
        if content == "OIFITS1":
            return V1
        classic = [t.revn for t in self.oi.tables if t.EXTNAME in _CLASSIC]
        return V2 if classic and all(r == 2 for r in classic) else V1

    def table_version(self, table: OITable) -> int:
        """Which definition a table follows: v2-only tables are v2; classic ones per OI_REVN."""
        if table.EXTNAME in _V2_ONLY_TABLES:
            return V2
        return V2 if table.revn == 2 else (V1 if table.revn == 1 else self.version)

    def check_structure(self) -> None:
        oi = self.oi
        if len(oi.targets) != 1:
            self.add(ERROR, "OIFITS_OI_TARGET_EXIST", f"{len(oi.targets)} OI_TARGET tables; exactly one is required",
                     oi.targets[1] if len(oi.targets) > 1 else None)
        if not oi.wavelengths:
            self.add(ERROR, "OIFITS_OI_WAVELENGTH_EXIST", "no OI_WAVELENGTH table; at least one is required")
        if not oi.data_tables:
            self.add(ERROR, "OIFITS_DATA_EXIST", "no data table (OI_VIS, OI_VIS2, OI_T3 or OI_FLUX)")
        if self.version == V2 and not oi.arrays:
            self.add(ERROR, "OIFITS_OI_ARRAY_EXIST_V2", "OIFITS2 requires at least one OI_ARRAY table")
        elif not oi.arrays:
            self.add(WARNING, "OIFITS_OI_ARRAY_EXIST",
                     "no OI_ARRAY table (allowed in OIFITS1): station names and positions are unknown")
        if self.version == V1:
            for t in oi.tables:
                if t.EXTNAME in _V2_ONLY_TABLES:
                    self.add(ERROR, "UNKNOWN_TABLE",
                             f"OIFITS2-only table {t.EXTNAME} in a file labelled OIFITS1 (classic tables have "
                             f"OI_REVN=1 and no CONTENT='OIFITS2')", t)
        revs = {t.revn for t in oi.tables if t.EXTNAME in _CLASSIC and t.revn in (1, 2)}
        if self.version == V2 and 1 in revs:
            bad = [t.label for t in oi.tables if t.EXTNAME in _CLASSIC and t.revn == 1]
            self.add(ERROR, "GENERIC_OIREV",
                     f"CONTENT='OIFITS2' but {len(bad)} table(s) have OI_REVN=1 (OIFITS1 definitions): "
                     f"{', '.join(bad[:6])}{' …' if len(bad) > 6 else ''}")
        elif revs == {1, 2}:
            self.add(ERROR, "GENERIC_OIREV", "classic tables mix OI_REVN=1 and OI_REVN=2")
        for hdu in oi.extra_hdus:
            name = str(hdu.header.get("EXTNAME", "")).strip()
            if name.upper().startswith("OI_"):
                self.add(WARNING, "UNKNOWN_TABLE", f"unknown OIFITS table {name!r} (ignored)", name or None)
            else:
                self.add(INFO, "UNKNOWN_TABLE", f"non-OIFITS HDU {name or '(no EXTNAME)'} kept as is", name or None)

    def check_main_header(self) -> None:
        h = self.oi.primary_header
        if self.version != V2:
            return
        content = str(h.get("CONTENT", "")).strip()
        if content and content != "OIFITS2":
            self.add(ERROR, "OIFITS_MAIN_HEADER_EXIST_V2", f"CONTENT={content!r}; must be exactly 'OIFITS2'", "PRIMARY",
                     "CONTENT")
        keys = list(MAIN_HEADER_V2) + ["DATE-OBS"]
        missing = [k for k in keys if h.get(k) is None or (isinstance(h.get(k), str) and not h.get(k).strip())]
        if missing:
            self.add(ERROR, "GENERIC_KEYWORD_MANDATORY",
                     f"mandatory OIFITS2 main-header keyword(s) missing or empty: {', '.join(missing)}",
                     "PRIMARY", missing[0])
        for key in keys:
            val = h.get(key)
            if key in missing:
                continue
            if not isinstance(val, str):
                self.add(ERROR, "GENERIC_KEYWORD_FORMAT", f"{key} must be a string, not {val!r}", "PRIMARY", key)
        date_obs = h.get("DATE-OBS")
        if isinstance(date_obs, str) and date_obs.strip():
            self._check_date_obs(date_obs, "PRIMARY")
        # heterogeneous content: OBJECT should be 'MULTI'
        used = set()
        names = self.oi.target_names()
        for t in self.oi.data_tables:
            tid = _as_int(t.get("TARGET_ID", np.zeros(0)))
            if tid is not None:
                used.update(names.get(int(i), str(int(i))) for i in np.unique(tid))
        obj = str(h.get("OBJECT", "") or "").strip()
        if len(used) > 1 and obj and obj != "MULTI":
            self.add(WARNING, "MAIN_HEADER_TYPE_MULTI",
                     f"data refer to {len(used)} targets but OBJECT={obj!r}; heterogeneous files use 'MULTI'",
                     "PRIMARY", "OBJECT")

    # -- generic per-table checks --------------------------------------------------------------
    def check_tables(self) -> None:
        for t in self.oi.tables:
            self._check_keywords(t)
            self._check_columns(t)

    def _check_keywords(self, t: OITable) -> None:
        tdef = TABLES[t.EXTNAME]
        tver = self.table_version(t)
        revn = t.header.get("OI_REVN")
        if revn is None:
            self.add(ERROR, "GENERIC_KEYWORD_MANDATORY", f"{t.EXTNAME} has no OI_REVN keyword", t, "OI_REVN")
        elif isinstance(revn, bool) or not isinstance(revn, (int, np.integer)):
            self.add(ERROR, "GENERIC_KEYWORD_FORMAT", f"OI_REVN must be an integer, not {revn!r}", t, "OI_REVN")
        elif int(revn) not in tdef.revn.values():
            allowed = sorted(set(tdef.revn.values()))
            self.add(ERROR, "GENERIC_KEYWORD_VAL_ACCEPTED_INT", f"OI_REVN={revn}; {t.EXTNAME} allows {allowed}", t,
                     "OI_REVN")
        for kw in tdef.keywords_for(tver):
            if kw.name == "OI_REVN":
                continue
            val = t.header.get(kw.name)
            if val is None:
                if kw.mandatory:
                    self.add(ERROR, "GENERIC_KEYWORD_MANDATORY", f"mandatory keyword {kw.name} is missing", t, kw.name)
                continue
            if not self._keyword_type_ok(kw.code, val):
                self.add(ERROR, "GENERIC_KEYWORD_FORMAT",
                         f"{kw.name}={val!r} has the wrong type (expected {_FAMILY.get(kw.code, kw.code)})", t, kw.name)
                continue
            if kw.accepted is not None and isinstance(val, str) and val.strip() and val.strip() not in kw.accepted:
                caseless = val.strip().lower() in {a.lower() for a in kw.accepted}
                self.add(WARNING if caseless else ERROR, "GENERIC_KEYWORD_VAL_ACCEPTED_STR",
                         f"{kw.name}={val.strip()!r}; accepted: {', '.join(kw.accepted)}"
                         + (" (differs only in letter case)" if caseless else ""), t, kw.name)
        if isinstance(t, DataTable):
            date_obs = t.header.get("DATE-OBS")
            if isinstance(date_obs, str):
                if not date_obs.strip():
                    self.add(ERROR if tver == V2 else WARNING, "GENERIC_KEYWORD_MANDATORY",
                             "DATE-OBS is empty (MJD gives the dates)", t, "DATE-OBS")
                else:
                    self._check_date_obs(date_obs, t)

    @staticmethod
    def _keyword_type_ok(code: str, val) -> bool:
        if code == "A":
            return isinstance(val, str)
        if code in "IJK":
            return isinstance(val, (int, np.integer)) and not isinstance(val, bool)
        if code in "ED":
            return isinstance(val, (int, float, np.integer, np.floating)) and not isinstance(val, bool)
        if code == "L":
            return isinstance(val, (bool, np.bool_))
        return True

    def _check_date_obs(self, text: str, where) -> None:
        mjd = _date_to_mjd(text)
        if mjd is None:
            self.add(WARNING, "GENERIC_DATE_OBS_STANDARD", f"DATE-OBS={text!r} is not 'YYYY-MM-DD[Thh:mm:ss]'",
                     where, "DATE-OBS")
        elif not (MJD_MIN <= mjd <= MJD_MAX):
            self.add(WARNING, "GENERIC_DATE_OBS_RANGE", f"DATE-OBS={text!r} is outside 1933-2150", where, "DATE-OBS")

    def _expected_nwave(self, t: OITable) -> int | None:
        if isinstance(t, DataTable):
            matches = [w for w in self.oi.wavelengths if w.insname == t.insname]
            return matches[0].nwave if matches else None
        if isinstance(t, InspolTable):
            ins = t.get("INSNAME")
            if ins is not None and len(ins):
                matches = [w for w in self.oi.wavelengths if w.insname == str(ins[0]).strip()]
                return matches[0].nwave if matches else None
        return None

    def _check_columns(self, t: OITable) -> None:
        tdef = TABLES[t.EXTNAME]
        tver = self.table_version(t)
        known = {c.name for c in tdef.columns}
        aliases = set(COLUMN_ALIASES.get(t.EXTNAME, {}).values())
        nwave = self._expected_nwave(t)
        for col in tdef.columns_for(tver):
            if col.name not in t.columns:
                if col.mandatory:
                    extra = ""
                    if col.name in aliases:
                        extra = " (a pre-standard alias was not found either)"
                    if t.EXTNAME == "OI_FLUX" and col.name == "FLUXDATA" and "FLUXDATA" in t.columns:
                        continue
                    self.add(ERROR, "GENERIC_COL_MANDATORY", f"mandatory column {col.name} is missing{extra}", t,
                             col.name)
                continue
            self._check_format(t, col, nwave, tver)
            self._check_unit(t, col)
        # FLUX read as FLUXDATA: the file itself lacks the standard name
        alias_map = COLUMN_ALIASES.get(t.EXTNAME, {})
        for f in self.oi.read_findings:
            if f.rule == "COLUMN_ALIAS" and f.hdu == t.label and f.column in alias_map:
                self.add(ERROR, "GENERIC_COL_MANDATORY",
                         f"mandatory column {alias_map[f.column]} is missing (the file has the pre-standard "
                         f"column {f.column} instead)", t, alias_map[f.column])
        unknown = [n for n in t.columns if n not in known]
        v2_in_v1 = [n for n in t.columns if n in known and tver not in tdef.column(n).versions]
        if unknown:
            self.add(INFO, "UNKNOWN_COLUMN", f"non-standard columns kept: {', '.join(unknown[:12])}"
                     f"{' …' if len(unknown) > 12 else ''}", t)
        if v2_in_v1:
            self.add(INFO, "UNKNOWN_COLUMN", f"OIFITS2 columns in an OI_REVN=1 table: {', '.join(v2_in_v1)}", t)

    def _check_format(self, t: OITable, col, nwave: int | None, tver: int) -> None:
        fmt = t.formats.get(col.name)
        code, repeat = _code_repeat(fmt)
        arr = t.columns[col.name]
        a = np.asarray(arr)
        if code is not None and code != "A" and a.dtype.kind in "biufc" and a.ndim >= 1:
            repeat = int(np.prod(a.shape[1:])) if a.ndim > 1 else 1  # the data, not a TFORM made stale by edits
        if code is None:  # built in memory: judge from the array
            kind = np.asarray(arr).dtype.kind
            code = {"U": "A", "S": "A", "b": "L", "i": "J", "u": "J", "f": "D", "c": "C"}.get(kind)
            a = np.asarray(arr)
            repeat = int(np.prod(a.shape[1:])) if a.ndim > 1 else (
                max((len(str(v)) for v in a.ravel()), default=1) if code == "A" else 1)
            if code is None:
                self.add(ERROR, "GENERIC_COL_FORMAT", f"{col.name} has unusable dtype {a.dtype}", t, col.name)
                return
        want = col.code
        if _FAMILY.get(code) != _FAMILY.get(want):
            self.add(ERROR, "GENERIC_COL_FORMAT",
                     f"{col.name} has format {fmt or code!r} ({_FAMILY.get(code, code)}); the standard says "
                     f"{want} ({_FAMILY.get(want, want)})", t, col.name)
            return
        if code != want and want != "A":
            self.add(WARNING, "GENERIC_COL_FORMAT",
                     f"{col.name} is stored as {code} instead of the standard {want} (same kind, readers convert)",
                     t, col.name)
        if want == "A":
            if fmt is None:
                return  # in memory: the writer pads strings to the standard width
            width = col.repeat if isinstance(col.repeat, int) else 1
            if repeat is not None and repeat < width:
                if tver == V2:
                    self.add(ERROR, "GENERIC_COL_FORMAT",
                             f"{col.name} is {repeat}A, narrower than the OIFITS2 format {width}A", t, col.name)
                else:
                    self.add(INFO, "GENERIC_COL_FORMAT",
                             f"{col.name} is {repeat}A, narrower than the standard {width}A (accepted by OIFITS1 readers)",
                             t, col.name)
            elif (tver == V2 and t.EXTNAME == "OI_TARGET" and col.name in ("TARGET", "SPECTYP") and repeat is not None
                  and repeat < 32):
                self.add(INFO, "STRING_WIDTH_COMPAT",
                         f"{col.name} is {repeat}A: standard, but oifitslib writes 32A for OIFITS2 and tools built "
                         "on it report narrower TARGET/SPECTYP columns as short", t, col.name)
            return
        if col.repeat == "NWAVE":
            if nwave is not None and repeat != nwave:
                self.add(ERROR, "GENERIC_COL_FORMAT",
                         f"{col.name} has {repeat} values per row but the referenced OI_WAVELENGTH has NWAVE={nwave}",
                         t, col.name)
        elif col.repeat == "NWAVE2":
            if nwave is not None and repeat != nwave * nwave:
                self.add(ERROR, "GENERIC_COL_FORMAT", f"{col.name} has {repeat} values per row, expected NWAVE²={nwave * nwave}",
                         t, col.name)
        elif isinstance(col.repeat, int) and repeat != col.repeat:
            self.add(ERROR, "GENERIC_COL_FORMAT", f"{col.name} has {repeat} values per row, the standard says {col.repeat}",
                     t, col.name)

    def _check_unit(self, t: OITable, col) -> None:
        if col.unit is None:
            return
        unit = (t.units.get(col.name) or "").strip()
        if not unit:
            if t.formats.get(col.name) is None:
                return  # built in memory: the writer adds the unit
            self.add(WARNING, "GENERIC_COL_UNIT_EXIST", f"{col.name} has no unit (standard: {col.unit})", t, col.name)
            return
        low = unit.lower()
        if low in {u.lower() for u in _UNIT_OK.get(col.unit, {col.unit})}:
            return
        if low in _UNIT_VARIANT.get(col.unit, set()):
            self.add(WARNING, "GENERIC_COL_UNIT", f"{col.name} unit {unit!r} is a non-standard spelling of {col.unit!r}",
                     t, col.name)
            return
        self.add(ERROR, "GENERIC_COL_UNIT", f"{col.name} unit {unit!r}; the standard unit is {col.unit!r}", t, col.name)

    def _check_accepted_strings(self, t: OITable, name: str, accepted: tuple) -> None:
        vals = t.get(name)
        if vals is None or np.asarray(vals).dtype.kind not in "US":
            return
        vals = np.asarray(vals).astype(str)
        stripped = np.char.strip(vals)
        ok_exact = np.isin(vals, accepted)
        ok_stripped = np.isin(stripped, accepted)
        # empty CATEGORY is tolerated (optional content)
        empty = stripped == ""
        bad = ~ok_stripped & ~(empty & (name == "CATEGORY"))
        if bad.any():
            shown = sorted(set(stripped[bad].tolist()))[:5]
            self.add_mask(ERROR, "GENERIC_COL_VAL_ACCEPTED_STR",
                          f"{name} values {shown} not in {', '.join(accepted)}", t, name, bad)
        spaced = ok_stripped & ~ok_exact
        if spaced.any():
            self.add_mask(WARNING, "GENERIC_COL_VAL_ACCEPTED_STR", f"{name} values have leading blanks", t, name, spaced)

    # -- OI_TARGET --------------------------------------------------------------------------------
    def check_target(self) -> None:
        for t in self.oi.targets:
            self._check_target_table(t)

    def _check_target_table(self, t: TargetTable) -> None:
        if t.nrows == 0:
            self.add(ERROR, "OI_TARGET_TARGET_EXIST", "OI_TARGET has no rows", t)
            return
        ids = _as_int(t.get("TARGET_ID"))
        if ids is not None:
            # the paper says >= 1; oifitslib and real simulators use 0, and references still resolve
            self.add_mask(WARNING, "OI_TARGET_TARGETID_MIN", "TARGET_ID < 1", t, "TARGET_ID", ids < 1)
            _, first = np.unique(ids, return_index=True)
            dup = np.ones(ids.shape, bool)
            dup[first] = False
            self.add_mask(ERROR, "OI_TARGET_TARGETID_UNIQ", "duplicate TARGET_ID", t, "TARGET_ID", dup)
        names = t.get("TARGET")
        if names is not None and np.asarray(names).dtype.kind in "US":
            names = np.char.strip(np.asarray(names).astype(str))
            self.add_mask(ERROR, "OI_TARGET_TARGET", "empty TARGET name", t, "TARGET", names == "")
            _, first = np.unique(names, return_index=True)
            dup = np.ones(names.shape, bool)
            dup[first] = False
            dup &= names != ""
            self.add_mask(WARNING, "OI_TARGET_TARGET_UNIQ", "duplicate TARGET name (targets are told apart by TARGET_ID only)",
                          t, "TARGET", dup)
        ra, dec = _as_float(t.get("RAEP0")), _as_float(t.get("DECEP0"))
        if ra is not None and dec is not None and ra.shape == dec.shape:
            self.add_mask(WARNING, "OI_TARGET_COORD_EXIST", "RAEP0/DECEP0 undefined (NaN)", t, "RAEP0",
                          ~np.isfinite(ra) | ~np.isfinite(dec))
            self.add_mask(WARNING, "OI_TARGET_COORD", "RAEP0 and DECEP0 are both 0", t, "RAEP0", (ra == 0) & (dec == 0))
        for name in ("VELTYP", "VELDEF", "CATEGORY"):
            col = t.definition.column(name)
            if col is not None and col.accepted:
                self._check_accepted_strings(t, name, col.accepted)

    # -- OI_ARRAY ---------------------------------------------------------------------------------
    def check_arrays(self) -> None:
        names = [a.arrname for a in self.oi.arrays]
        for a in self.oi.arrays:
            if not a.arrname.strip():
                self.add(ERROR, "OI_ARRAY_ARRNAME", "ARRNAME is empty", a, "ARRNAME")
            elif names.count(a.arrname) > 1:
                self.add(ERROR, "ARRNAME_UNIQ", f"{names.count(a.arrname)} OI_ARRAY tables share ARRNAME {a.arrname!r}",
                         a, "ARRNAME")
            idx = _as_int(a.get("STA_INDEX"))
            if idx is not None:
                self.add_mask(WARNING, "OI_ARRAY_STA_INDEX_MIN", "STA_INDEX < 1", a, "STA_INDEX", idx < 1)
                _, first = np.unique(idx, return_index=True)
                dup = np.ones(idx.shape, bool)
                dup[first] = False
                self.add_mask(ERROR, "OI_ARRAY_STA_INDEX_UNIQ", "duplicate STA_INDEX", a, "STA_INDEX", dup)
            sta = a.get("STA_NAME")
            if sta is not None and np.asarray(sta).dtype.kind in "US":
                sta = np.char.strip(np.asarray(sta).astype(str))
                self.add_mask(WARNING, "OI_ARRAY_STA_NAME", "empty STA_NAME", a, "STA_NAME", sta == "")
                _, first = np.unique(sta, return_index=True)
                dup = np.ones(sta.shape, bool)
                dup[first] = False
                self.add_mask(WARNING, "OI_ARRAY_STA_NAME_UNIQ", "duplicate STA_NAME", a, "STA_NAME", dup & (sta != ""))
            diam = _as_float(a.get("DIAMETER"))
            if diam is not None:
                self.add_mask(WARNING, "RANGE_POSITIVE_STRICT", "DIAMETER <= 0", a, "DIAMETER", ~(diam > 0))
            fov = _as_float(a.get("FOV"))
            if fov is not None:
                self.add_mask(WARNING, "RANGE_POSITIVE_STRICT", "FOV <= 0", a, "FOV", ~(fov > 0))
            col = a.definition.column("FOVTYPE")
            if "FOVTYPE" in a:
                self._check_accepted_strings(a, "FOVTYPE", col.accepted)
            frame = str(a.keyword("FRAME", "") or "").upper()
            xyz = [a.header.get(k) for k in ("ARRAYX", "ARRAYY", "ARRAYZ")]
            if frame == "GEOCENTRIC" and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in xyz):
                r = float(np.sqrt(sum(float(v) ** 2 for v in xyz)))
                if not (6.3e6 <= r <= 6.4e6):
                    self.add(WARNING, "OI_ARRAY_XYZ",
                             f"ARRAYX/Y/Z = ({xyz[0]}, {xyz[1]}, {xyz[2]}) m is not a point on the Earth's surface "
                             f"(|XYZ| = {r:.4g} m)", a, "ARRAYX")

    # -- OI_WAVELENGTH ----------------------------------------------------------------------------
    def check_wavelengths(self) -> None:
        names = [w.insname for w in self.oi.wavelengths]
        for w in self.oi.wavelengths:
            if not w.insname.strip():
                self.add(ERROR, "OI_WAVELENGTH_INSNAME", "INSNAME is empty", w, "INSNAME")
            elif names.count(w.insname) > 1:
                self.add(ERROR, "INSNAME_UNIQ", f"{names.count(w.insname)} OI_WAVELENGTH tables share INSNAME {w.insname!r}",
                         w, "INSNAME")
            wave = _as_float(w.get("EFF_WAVE"))
            if wave is None:
                continue
            wave = wave.reshape(-1) if wave.ndim != 1 else wave
            self.add_mask(ERROR, "GENERIC_COL_VAL_POSITIVE", "EFF_WAVE is not a positive finite number", w, "EFF_WAVE",
                          ~(np.isfinite(wave) & (wave > 0)))
            ok = np.isfinite(wave) & (wave > 0)
            self.add_mask(WARNING, "OI_WAVELENGTH_EFF_WAVE", "EFF_WAVE outside [0.1, 20] µm (unit not metres?)", w,
                          "EFF_WAVE", ok & ((wave < EFF_WAVE_RANGE[0]) | (wave > EFF_WAVE_RANGE[1])))
            band = _as_float(w.get("EFF_BAND"))
            if band is not None and band.shape == wave.shape:
                self.add_mask(WARNING, "RANGE_POSITIVE_STRICT", "EFF_BAND <= 0 or not finite", w, "EFF_BAND",
                              ~(np.isfinite(band) & (band > 0)))
            d = np.diff(wave[ok]) if ok.sum() > 1 else np.zeros(0)
            if d.size and np.any(d < 0):
                kind = "decreasing" if np.all(d < 0) else "non-monotonic"
                self.add(WARNING, "EFF_WAVE_ORDER", f"EFF_WAVE is {kind} (legal, but trips naive interpolation)", w,
                         "EFF_WAVE")

    # -- OI_CORR ----------------------------------------------------------------------------------
    def check_corr(self) -> None:
        names = [c.corrname for c in self.oi.corrs]
        for c in self.oi.corrs:
            if not c.corrname.strip():
                self.add(ERROR, "OI_CORR_CORRNAME", "CORRNAME is empty", c, "CORRNAME")
            elif names.count(c.corrname) > 1:
                self.add(ERROR, "CORRNAME_UNIQ", f"{names.count(c.corrname)} OI_CORR tables share CORRNAME {c.corrname!r}",
                         c, "CORRNAME")
            ndata = c.header.get("NDATA")
            ii, jj = _as_int(c.get("IINDX")), _as_int(c.get("JINDX"))
            if ii is None or jj is None or ii.shape != jj.shape:
                continue
            self.add_mask(ERROR, "OI_CORR_IINDEX_MIN", "IINDX < 1", c, "IINDX", ii < 1)
            self.add_mask(ERROR, "OI_CORR_JINDEX_SUP", "JINDX <= IINDX", c, "JINDX", jj <= ii)
            if isinstance(ndata, (int, np.integer)) and not isinstance(ndata, bool):
                self.add_mask(ERROR, "OI_CORR_IJINDEX_MAX", f"IINDX or JINDX > NDATA={ndata}", c, "JINDX",
                              (ii > ndata) | (jj > ndata))
            corr = _as_float(c.get("CORR"))
            if corr is not None:
                self.add_mask(WARNING, "RANGE_CORR", "CORR outside [-1, 1] or not finite", c, "CORR",
                              ~(np.abs(corr) <= 1))

    # -- data tables -------------------------------------------------------------------------------
    def check_data_tables(self) -> None:
        oi = self.oi
        target_ids = set()
        if oi.targets:
            ids = _as_int(oi.targets[0].get("TARGET_ID"))
            if ids is not None:
                target_ids = set(ids.tolist())
        corr_used: dict[str, list] = {}
        for t in oi.data_tables:
            tver = self.table_version(t)
            self._check_refs(t, tver)
            self._check_target_ids(t, target_ids)
            self._check_sta_index(t)
            self._check_values(t, tver)
            self._check_time(t, tver)
            if isinstance(t, VisTable):
                self._check_vis(t, tver)
            if isinstance(t, FluxTable):
                self._check_flux(t)
            self._check_corrindx(t, corr_used)
        for name, spans in corr_used.items():
            self._check_corrindx_overlap(name, spans)

    def _check_refs(self, t: DataTable, tver: int) -> None:
        oi = self.oi
        n_ins = sum(1 for w in oi.wavelengths if w.insname == t.insname)
        if not t.insname.strip():
            pass  # GENERIC_KEYWORD_MANDATORY reported by the keyword checks when missing
        elif n_ins == 0:
            self.add(ERROR, "INSNAME_REF", f"INSNAME {t.insname!r} matches no OI_WAVELENGTH table", t, "INSNAME")
        arr = t.arrname
        if arr:
            n_arr = sum(1 for a in oi.arrays if a.arrname == arr)
            if n_arr == 0:
                sev = ERROR if (oi.arrays or tver == V2) else WARNING
                self.add(sev, "ARRNAME_REF", f"ARRNAME {arr!r} matches no OI_ARRAY table", t, "ARRNAME")
        elif tver == V2 and not (isinstance(t, FluxTable) and t.calstat == "C"):
            self.add(ERROR, "GENERIC_KEYWORD_MANDATORY", "ARRNAME is mandatory in OIFITS2 data tables", t, "ARRNAME")
        corr = t.corrname
        if corr and not any(c.corrname == corr for c in oi.corrs):
            self.add(ERROR, "CORRNAME_REF", f"CORRNAME {corr!r} matches no OI_CORR table", t, "CORRNAME")

    def _check_target_ids(self, t: DataTable, target_ids: set) -> None:
        tid = _as_int(t.get("TARGET_ID"))
        if tid is None or not target_ids:
            return
        bad = ~np.isin(tid.reshape(-1), list(target_ids)) if tid.size else np.zeros(0, bool)
        self.add_mask(ERROR, "TARGET_ID_REF", "TARGET_ID not in OI_TARGET", t, "TARGET_ID", bad)

    def _check_sta_index(self, t: DataTable) -> None:
        sta = _as_int(t.get("STA_INDEX"))
        if sta is None or sta.size == 0:
            return
        sta = sta.reshape(t.nrows, -1) if t.nrows else sta.reshape(0, 1)
        if sta.shape[1] > 1:
            s = np.sort(sta, axis=1)
            dup = np.any(s[:, 1:] == s[:, :-1], axis=1)
            self.add_mask(ERROR, "GENERIC_STA_INDEX_UNIQ", "the same station appears twice in STA_INDEX", t, "STA_INDEX", dup)
        arr = self.oi.array_of(t)
        if arr is None:
            return
        known = _as_int(arr.get("STA_INDEX"))
        if known is None:
            return
        missing = ~np.isin(sta, known)
        if isinstance(t, FluxTable):
            missing &= sta >= 0  # -1: no station (calibrated flux)
        self.add_mask(ERROR, "STA_INDEX_REF", f"STA_INDEX not in OI_ARRAY {arr.arrname!r}", t, "STA_INDEX",
                      missing.any(axis=1))

    def _check_values(self, t: DataTable, tver: int) -> None:
        nrows = t.nrows
        flag = t.get("FLAG")
        pairs = [(v, e) for v, e in _ERR_PAIRS[t.EXTNAME] if v in t or e in t]
        for vname, ename in pairs:
            val = _as_float(t.get(vname)) if vname in t else None
            err = _as_float(t.get(ename)) if ename in t else None
            shape = None
            for a in (val, err):
                if a is not None:
                    shape = a.shape
            if shape is None:
                continue
            unflagged = np.ones(shape, bool)
            if flag is not None:
                f = np.asarray(flag)
                if f.shape == shape:
                    unflagged = ~f.astype(bool)
                elif f.size == int(np.prod(shape)):
                    unflagged = ~f.reshape(shape).astype(bool)
            if err is not None and err.shape == shape:
                with np.errstate(invalid="ignore"):
                    self.add_mask(ERROR, "GENERIC_COL_VAL_POSITIVE", f"negative {ename} on unflagged data", t, ename,
                                  unflagged & (err < 0))
                    self.add_mask(INFO, "GENERIC_COL_ERR_FLAGGED", f"negative {ename} on flagged data (ignored by readers)",
                                  t, ename, ~unflagged & (err < 0))
                    self.add_mask(WARNING, "ERR_ZERO", f"zero {ename} on unflagged data (infinite weight)", t, ename,
                                  unflagged & (err == 0))
                if np.all(~np.isfinite(err)) and (val is None or np.all(~np.isfinite(val))):
                    self.add(INFO, "NOT_MEASURED", f"{vname}/{ename} are NaN everywhere (not measured)", t, vname)
                    continue
                nan_err = unflagged & ~np.isfinite(err)
                if val is not None and val.shape == shape:
                    measured = np.isfinite(val)
                    if ename not in _VIEW_ERRORS:  # the others: check_points, through the views
                        self.add_mask(ERROR, "UNUSABLE_POINT", f"{ename} is NaN/inf where {vname} is measured "
                                      "(unflagged)", t, ename, nan_err & measured)
                    nan_err &= ~measured
                self.add_mask(WARNING, "UNFLAGGED_NAN", f"{ename} is NaN/inf on unflagged data where {vname} is not "
                              "measured either (flag such points)", t, ename, nan_err)
            if val is not None and val.shape == shape:
                finite = np.isfinite(val)
                self.add_mask(WARNING, "UNFLAGGED_NAN", f"{vname} is NaN/inf on unflagged data", t, vname,
                              unflagged & ~finite)
                ok = unflagged & finite
                with np.errstate(invalid="ignore"):
                    if vname == "VIS2DATA":
                        self.add_mask(WARNING, "RANGE_VIS", "VIS2DATA outside [-0.1, 1.1]", t, vname,
                                      ok & ((val < -0.1) | (val > 1.1)))
                    elif vname == "VISAMP" and str(t.keyword("AMPTYP", "") or "") not in ("correlated flux",) and (
                            not (t.units.get("VISAMP") or "").strip()):
                        self.add_mask(WARNING, "RANGE_VIS", "VISAMP outside [-0.1, 1.1]", t, vname,
                                      ok & ((val < -0.1) | (val > 1.1)))
                    elif vname in ("VISPHI", "T3PHI"):
                        self.add_mask(WARNING, "RANGE_ANGLE", f"{vname} outside [-200, 200] deg", t, vname,
                                      ok & (np.abs(val) > 200))
                    elif vname == "T3AMP":
                        self.add_mask(WARNING, "RANGE_POSITIVE", "negative T3AMP", t, vname, ok & (val < 0))
        _ = nrows

    def _check_time(self, t: DataTable, tver: int) -> None:
        mjd = _as_float(t.get("MJD"))
        if mjd is not None:
            with np.errstate(invalid="ignore"):
                self.add_mask(WARNING, "RANGE_POSITIVE_STRICT", "MJD <= 0", t, "MJD", ~(mjd > 0))
                self.add_mask(WARNING, "GENERIC_MJD_RANGE", "MJD outside 1933-2150", t, "MJD",
                              (mjd > 0) & ((mjd < MJD_MIN) | (mjd > MJD_MAX)))
        it = _as_float(t.get("INT_TIME"))
        if it is not None:
            with np.errstate(invalid="ignore"):
                self.add_mask(WARNING, "RANGE_POSITIVE_STRICT", "INT_TIME <= 0 or not finite", t, "INT_TIME", ~(it > 0))
        time = _as_float(t.get("TIME"))
        if time is not None and "TIME" in (c.name for c in t.definition.columns):
            with np.errstate(invalid="ignore"):
                self.add_mask(WARNING, "RANGE_POSITIVE", "TIME < 0", t, "TIME", time < 0)
                if self.version == V2 and tver == V2:
                    self.add_mask(WARNING, "TIME_V2", "non-zero TIME in an OIFITS2 table (deprecated: MJD is the time)",
                                  t, "TIME", np.abs(time) > 1e-10)

    def _check_vis(self, t: VisTable, tver: int) -> None:
        amptyp = str(t.keyword("AMPTYP", "") or "")
        phityp = str(t.keyword("PHITYP", "") or "")
        if tver != V2:
            return  # AMPTYP/PHITYP/VISREFMAP are OIFITS2 concepts
        differential = "differential" in (amptyp, phityp)
        if differential and "VISREFMAP" not in t:
            self.add(ERROR, "OI_VIS_VISREFMAP",
                     f"AMPTYP={amptyp!r} PHITYP={phityp!r}: differential visibilities need the VISREFMAP column", t,
                     "VISREFMAP")
        elif not differential and "VISREFMAP" in t and (amptyp or phityp):
            self.add(WARNING, "OI_VIS_VISREFMAP", "VISREFMAP present for absolute visibilities", t, "VISREFMAP")

    def _check_flux(self, t: FluxTable) -> None:
        calstat = t.calstat
        has_sta = "STA_INDEX" in t
        if calstat == "C":
            if t.arrname:
                self.add(ERROR, "OI_FLUX_CALSTAT", "calibrated flux (CALSTAT='C') must not have ARRNAME", t, "ARRNAME")
            if has_sta:
                sta = _as_int(t.get("STA_INDEX"))
                if sta is None or np.any(sta >= 0):
                    self.add(ERROR, "OI_FLUX_CALSTAT", "calibrated flux (CALSTAT='C') must not have STA_INDEX", t,
                             "STA_INDEX")
        elif calstat == "U":
            if not has_sta:
                self.add(ERROR, "OI_FLUX_CALSTAT", "uncalibrated flux (CALSTAT='U') needs STA_INDEX", t, "STA_INDEX")
            if t.keyword("FOVTYPE"):
                self.add(ERROR, "OI_FLUX_CALSTAT", "uncalibrated flux (CALSTAT='U') must not have FOVTYPE", t, "FOVTYPE")

    def _check_corrindx(self, t: DataTable, corr_used: dict) -> None:
        names = [n for n in _CORRINDX[t.EXTNAME] if n in t]
        if not names:
            return
        corr = self.oi.corr_of(t)
        if corr is None:
            rule = {"OI_VIS": "OI_VIS_CORRINDX", "OI_VIS2": "OI_VIS2_CORRINDX", "OI_T3": "OI_T3_CORRINDX",
                    "OI_FLUX": "OI_FLUX_CORRINDX"}[t.EXTNAME]
            if not t.corrname:
                self.add(ERROR, rule, f"{', '.join(names)} present but no CORRNAME keyword", t, names[0])
            return  # CORRNAME_REF already reported
        nwave = self._expected_nwave(t) or t.nwave
        ndata = corr.ndata
        for n in names:
            idx = _as_int(t.get(n))
            if idx is None:
                continue
            idx = idx.reshape(-1)
            self.add_mask(ERROR, "GENERIC_CORRINDX_MIN", f"{n} < 1", t, n, idx < 1)
            self.add_mask(ERROR, "GENERIC_CORRINDX_MAX", f"{n} + NWAVE - 1 > NDATA={ndata}", t, n, idx + nwave - 1 > ndata)
            corr_used.setdefault(corr.corrname, []).extend((int(i), int(i) + nwave - 1, t.label, n) for i in idx)

    def _check_corrindx_overlap(self, corrname: str, spans: list) -> None:
        spans = sorted(spans)
        for (a0, a1, la, na), (b0, b1, lb, nb) in zip(spans, spans[1:]):
            if b0 <= a1:
                self.add(ERROR, "GENERIC_CORRINDX_UNIQ",
                         f"CORRINDX ranges overlap in OI_CORR {corrname!r}: {la} {na} [{a0}, {a1}] and {lb} {nb} [{b0}, {b1}]",
                         lb, nb)
                return

    # -- unflagged points that cannot be used --------------------------------------------------
    def check_points(self) -> None:
        """Unflagged points with a finite value whose baseline coordinates, wavelength, MJD,
        INT_TIME or error bar are not finite (u, v and wavelength also: implausible): errors
        naming the column and rows. The rule has one home,
        :func:`~oiflow.oifits.views.implausible_points`; the fit refuses the same points."""
        oi = self.oi
        for kind, extname in KINDS.items():
            if not any(t.EXTNAME == extname for t in oi.data_tables):
                continue
            try:
                view = make_view(oi, kind)
            except OIFitsError:
                continue  # a table the views cannot read: its columns are reported by check_tables
            for col, bad in implausible_points(view, errors=True, times=True).items():
                for ti in np.unique(view.table[bad]).tolist():
                    self._report_points(oi.tables[ti], col, bad & (view.table == ti), view)

    def _report_points(self, table: DataTable, col: str, sel: np.ndarray, view) -> None:
        count = int(sel.sum())
        if col == "EFF_WAVE":
            wave = self.oi.wavelength_of(table)
            chans = np.unique(view.channel[sel])
            values = np.asarray(wave.eff_wave, float)[chans]
            chans = chans[np.isfinite(values) & (values > 0)]  # the others: GENERIC_COL_VAL_POSITIVE
            if chans.size:
                self.add(ERROR, "UNUSABLE_POINT",
                         f"implausible wavelength for unflagged data of {table.label} (plausible: "
                         f"{WAVELENGTH_RANGE_M[0]:g}–{WAVELENGTH_RANGE_M[1]:g} m)", wave, "EFF_WAVE",
                         chans[:MAX_ROWS].tolist())
            return
        if col not in table:
            return  # a missing mandatory column is reported as such
        what = {"MJD": "MJD is not finite", "INT_TIME": "INT_TIME is not finite"}.get(col)
        if what is None and col in ("UCOORD", "VCOORD", "U1COORD", "V1COORD", "U2COORD", "V2COORD"):
            what = f"{col} is not finite or implausible (plausible: |value| <= {COORD_MAX_M:g} m)"
        what = what or f"{col} is NaN/inf where the value is measured"
        rows = np.unique(view.row[sel])
        self.add(ERROR, "UNUSABLE_POINT", f"{what} on unflagged data ({count} point{'s' if count != 1 else ''})",
                 table, col, rows[:MAX_ROWS].tolist())

    # -- every number -------------------------------------------------------------------------------
    def check_numbers(self) -> None:
        """Every float column of every table: NaN/inf (unflagged data) or magnitudes beyond
        :data:`ABSURD`, in a column whose values no other rule has reported (a finding with rows
        on that table and column): warnings, so that a damaged value is named even where the
        standard says nothing about the column."""
        named = {(f.hdu, f.column) for f in self.findings if f.rows}
        for t in self.oi.tables:
            unflagged = None
            if isinstance(t, DataTable) and "FLAG" in t:
                unflagged = ~np.asarray(t["FLAG"]).astype(bool)
            for name, arr in t.columns.items():
                if (t.label, name) in named or name == "FLAG":
                    continue
                a = np.asarray(arr)
                if a.dtype.kind not in "fc" or a.size == 0:
                    continue
                with np.errstate(invalid="ignore", over="ignore"):
                    bad_nan = ~np.isfinite(a)
                    bad_big = np.isfinite(a) & (np.abs(a) > ABSURD)
                for bad, what in ((bad_nan, "NaN/inf"), (bad_big, f"|value| > {ABSURD:g} (damaged?)")):
                    bad = self._unflagged(bad, unflagged)
                    if bad.any():
                        where = "unflagged data" if unflagged is not None else "data"
                        self.add_mask(WARNING, "NUMERIC_VALUE", f"{name}: {what} on {where}", t, name, bad)

    @staticmethod
    def _unflagged(bad: np.ndarray, unflagged: np.ndarray | None) -> np.ndarray:
        """``bad`` restricted to unflagged points (per point where shapes agree, else per row)."""
        if unflagged is None or unflagged.shape[:1] != bad.shape[:1]:
            return bad
        if bad.shape == unflagged.shape:
            return bad & unflagged
        row_ok = unflagged.reshape(len(unflagged), -1).any(axis=1)
        return bad & row_ok.reshape((-1,) + (1,) * (bad.ndim - 1))

    # -- OI_INSPOL --------------------------------------------------------------------------------
    def check_inspol(self) -> None:
        oi = self.oi
        seen: dict[str, str] = {}
        for p in oi.inspols:
            ins = p.get("INSNAME")
            if ins is None:
                continue
            ins = np.char.strip(np.asarray(ins).astype(str))
            if ins.ndim != 1:  # a damaged column (its format is reported by the column checks): one name a row
                ins = ins.reshape(len(ins), -1)[:, 0] if ins.ndim > 1 else ins.reshape(-1)
            for name in sorted(set(ins.tolist())):
                if not any(w.insname == name for w in oi.wavelengths):
                    self.add(ERROR, "INSNAME_REF", f"OI_INSPOL INSNAME {name!r} matches no OI_WAVELENGTH table", p, "INSNAME",
                             np.flatnonzero(ins == name)[:MAX_ROWS].tolist())
                if name in seen and seen[name] != p.label:
                    self.add(ERROR, "OI_INSPOL_INSNAME_UNIQ",
                             f"INSNAME {name!r} appears in more than one OI_INSPOL table ({seen[name]} and {p.label})",
                             p, "INSNAME")
                seen.setdefault(name, p.label)
            if p.arrname and not any(a.arrname == p.arrname for a in oi.arrays):
                self.add(ERROR, "ARRNAME_REF", f"ARRNAME {p.arrname!r} matches no OI_ARRAY table", p, "ARRNAME")
            elif not p.arrname:
                self.add(ERROR, "GENERIC_KEYWORD_MANDATORY", "ARRNAME is mandatory in OI_INSPOL", p, "ARRNAME")
            npol = p.header.get("NPOL")
            if isinstance(npol, (int, np.integer)) and not isinstance(npol, bool) and npol < 1:
                self.add(ERROR, "GENERIC_KEYWORD_VAL_ACCEPTED_INT", f"NPOL={npol} must be >= 1", p, "NPOL")
            t0, t1 = _as_float(p.get("MJD_OBS")), _as_float(p.get("MJD_END"))
            if t0 is not None and t1 is not None and t0.shape == t1.shape:
                self.add_mask(ERROR, "OI_INSPOL_MJD_DIFF", "MJD_OBS > MJD_END", p, "MJD_OBS", t0 > t1)
                self._check_inspol_mjd_range(p, ins, t0, t1)
            tid = _as_int(p.get("TARGET_ID"))
            if tid is not None and oi.targets:
                known = _as_int(oi.targets[0].get("TARGET_ID"))
                if known is not None:
                    self.add_mask(ERROR, "TARGET_ID_REF", "TARGET_ID not in OI_TARGET", p, "TARGET_ID",
                                  ~np.isin(tid.reshape(-1), known))
            sta = _as_int(p.get("STA_INDEX"))
            arr = oi.array_of(p.arrname) if p.arrname else None
            if sta is not None and arr is not None:
                known = _as_int(arr.get("STA_INDEX"))
                if known is not None:
                    self.add_mask(ERROR, "STA_INDEX_REF", f"STA_INDEX not in OI_ARRAY {arr.arrname!r}", p, "STA_INDEX",
                                  ~np.isin(sta.reshape(-1), known))

    def _check_inspol_mjd_range(self, p: InspolTable, ins: np.ndarray, t0: np.ndarray, t1: np.ndarray) -> None:
        for t in self.oi.data_tables:
            if p.arrname and t.arrname and t.arrname != p.arrname:
                continue
            sel = ins == t.insname
            if not sel.any():
                continue
            mjd = _as_float(t.get("MJD"))
            if mjd is None:
                continue
            lo, hi = t0[sel], t1[sel]
            inside = np.any((mjd[:, None] >= lo[None, :]) & (mjd[:, None] <= hi[None, :]), axis=1)
            self.add_mask(WARNING, "OI_INSPOL_MJD_RANGE",
                          f"MJD outside every [MJD_OBS, MJD_END] interval of {p.label} for INSNAME {t.insname!r}",
                          t, "MJD", ~inside)
