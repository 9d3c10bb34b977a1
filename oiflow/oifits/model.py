"""The in-memory OIFITS model: an :class:`OIFits` holds the primary header and a list of
:class:`OITable` objects (one per OI_* HDU), plus any other HDUs untouched.

Columns are numpy arrays in the file's units (phases in degrees, as OIFITS stores them);
the flat views of :mod:`oiflow.oifits.views` convert to radians/metres. Data columns with one
value per channel always have shape (nrows, nwave), also when NWAVE = 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from .astropy_fits import fits

from ..errors import OIFitsError
from .findings import Finding
from .schema import TABLES, TableDef


class OITable:
    """One OI_* binary table: keywords (an astropy Header without structural cards) and
    columns (name → numpy array), with units and the original TFORMs of each column."""

    EXTNAME: ClassVar[str] = ""

    def __init__(self, header: fits.Header | dict | None = None, columns: dict | None = None,
                 units: dict | None = None, formats: dict | None = None, hdu_index: int | None = None):
        if header is None:
            header = fits.Header()
        elif not isinstance(header, fits.Header):
            h = fits.Header()
            for k, v in header.items():
                h[k] = v
            header = h
        self.header: fits.Header = header
        self.columns: dict[str, np.ndarray] = dict(columns or {})
        self.units: dict[str, str] = dict(units or {})
        self.formats: dict[str, str] = dict(formats or {})
        self.hdu_index = hdu_index

    # -- generic access ---------------------------------------------------------------
    @property
    def definition(self) -> TableDef:
        return TABLES[self.EXTNAME]

    @property
    def nrows(self) -> int:
        for col in self.columns.values():
            return int(col.shape[0])
        return 0

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.columns[name]
        except KeyError:
            raise OIFitsError(f"missing column {name}", hdu=self.label, column=name) from None

    def __contains__(self, name: str) -> bool:
        return name in self.columns

    def get(self, name: str, default=None):
        return self.columns.get(name, default)

    @property
    def label(self) -> str:
        """``EXTNAME#index`` for messages (index = HDU number in the file, when read)."""
        return f"{self.EXTNAME}#{self.hdu_index}" if self.hdu_index is not None else self.EXTNAME

    @property
    def revn(self) -> int | None:
        v = self.header.get("OI_REVN")
        try:
            return int(v) if v is not None else None
        except (TypeError, ValueError):
            return None

    def keyword(self, name: str, default=None):
        v = self.header.get(name, default)
        return v.strip() if isinstance(v, str) else v

    def copy(self) -> "OITable":
        return type(self)(self.header.copy(), {k: v.copy() for k, v in self.columns.items()},
                          dict(self.units), dict(self.formats), self.hdu_index)

    def take(self, rows) -> "OITable":
        """A copy with only the given rows (index array or boolean mask)."""
        return type(self)(self.header.copy(), {k: np.asarray(v)[rows].copy() for k, v in self.columns.items()},
                          dict(self.units), dict(self.formats), self.hdu_index)

    def __repr__(self) -> str:
        extra = ""
        for key in ("INSNAME", "ARRNAME", "CORRNAME"):
            if self.keyword(key):
                extra += f" {key}={self.keyword(key)!r}"
        return f"<{self.EXTNAME} rows={self.nrows}{extra}>"


class TargetTable(OITable):
    EXTNAME = "OI_TARGET"

    def names(self) -> dict[int, str]:
        return {int(i): str(n).strip() for i, n in zip(self["TARGET_ID"], self["TARGET"])}

    def id_of(self, name: str) -> int:
        for i, n in self.names().items():
            if n == name:
                return i
        raise OIFitsError(f"no target named {name!r}", hdu=self.label, column="TARGET")


class ArrayTable(OITable):
    EXTNAME = "OI_ARRAY"

    @property
    def arrname(self) -> str:
        return str(self.keyword("ARRNAME", "") or "")

    def station_names(self) -> dict[int, str]:
        sta = self.get("STA_NAME")
        tel = self.get("TEL_NAME")
        names = sta if sta is not None else tel
        return {int(i): str(n).strip() for i, n in zip(self["STA_INDEX"], names)}


class WavelengthTable(OITable):
    EXTNAME = "OI_WAVELENGTH"

    @property
    def insname(self) -> str:
        return str(self.keyword("INSNAME", "") or "")

    @property
    def eff_wave(self) -> np.ndarray:
        return np.asarray(self["EFF_WAVE"], dtype=float)

    @property
    def eff_band(self) -> np.ndarray:
        return np.asarray(self["EFF_BAND"], dtype=float)

    @property
    def nwave(self) -> int:
        return self.nrows


class CorrTable(OITable):
    EXTNAME = "OI_CORR"

    @property
    def corrname(self) -> str:
        return str(self.keyword("CORRNAME", "") or "")

    @property
    def ndata(self) -> int:
        """NDATA, or 0 when the keyword is absent or not an integer."""
        v = self.keyword("NDATA", 0)
        return int(v) if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else 0

    def matrix(self) -> np.ndarray:
        """The dense NDATA × NDATA correlation matrix (unit diagonal)."""
        n = self.ndata
        m = np.eye(n)
        i = np.asarray(self["IINDX"], dtype=int) - 1
        j = np.asarray(self["JINDX"], dtype=int) - 1
        ok = (i >= 0) & (j >= 0) & (i < n) & (j < n)
        m[i[ok], j[ok]] = self["CORR"][ok]
        m[j[ok], i[ok]] = self["CORR"][ok]
        return m


class InspolTable(OITable):
    EXTNAME = "OI_INSPOL"

    @property
    def arrname(self) -> str:
        return str(self.keyword("ARRNAME", "") or "")


class DataTable(OITable):
    """Common part of OI_VIS, OI_VIS2, OI_T3 and OI_FLUX."""

    #: the main value/error columns of the table
    VALUE_COLUMNS: ClassVar[tuple[tuple[str, str], ...]] = ()

    @property
    def insname(self) -> str:
        return str(self.keyword("INSNAME", "") or "")

    @property
    def arrname(self) -> str:
        return str(self.keyword("ARRNAME", "") or "")

    @property
    def corrname(self) -> str:
        return str(self.keyword("CORRNAME", "") or "")

    @property
    def nwave(self) -> int:
        flag = self.get("FLAG")
        if flag is not None and flag.ndim == 2:
            return int(flag.shape[1])
        for name, _ in self.VALUE_COLUMNS:
            col = self.get(name)
            if col is not None and col.ndim == 2:
                return int(col.shape[1])
        return 1


class VisTable(DataTable):
    EXTNAME = "OI_VIS"
    VALUE_COLUMNS = (("VISAMP", "VISAMPERR"), ("VISPHI", "VISPHIERR"))


class Vis2Table(DataTable):
    EXTNAME = "OI_VIS2"
    VALUE_COLUMNS = (("VIS2DATA", "VIS2ERR"),)


class T3Table(DataTable):
    EXTNAME = "OI_T3"
    VALUE_COLUMNS = (("T3AMP", "T3AMPERR"), ("T3PHI", "T3PHIERR"))


class FluxTable(DataTable):
    EXTNAME = "OI_FLUX"
    VALUE_COLUMNS = (("FLUXDATA", "FLUXERR"),)

    @property
    def calstat(self) -> str:
        return str(self.keyword("CALSTAT", "") or "")


TABLE_CLASSES: dict[str, type[OITable]] = {
    cls.EXTNAME: cls
    for cls in (TargetTable, ArrayTable, WavelengthTable, CorrTable, InspolTable, VisTable, Vis2Table, T3Table, FluxTable)
}


@dataclass
class OIFits:
    """A whole OIFITS file in memory.

    ``tables`` keeps every OI_* table in file order; ``extra_hdus`` keeps other HDUs (images,
    IMAGE-OI parameter tables, instrument-specific tables) as astropy HDU objects.
    ``read_findings`` lists what the reader noticed while loading (the validator reports them).
    """

    primary_header: fits.Header = field(default_factory=fits.Header)
    tables: list[OITable] = field(default_factory=list)
    extra_hdus: list[Any] = field(default_factory=list)
    primary_data: np.ndarray | None = None
    path: str | None = None
    read_findings: list[Finding] = field(default_factory=list)

    # -- tables by kind ----------------------------------------------------------------
    def _of(self, cls):
        return [t for t in self.tables if isinstance(t, cls)]

    @property
    def targets(self) -> list[TargetTable]:
        return self._of(TargetTable)

    @property
    def target(self) -> TargetTable:
        """The (single) OI_TARGET table."""
        found = self.targets
        if not found:
            raise OIFitsError("no OI_TARGET table", file=self.path)
        return found[0]

    @property
    def arrays(self) -> list[ArrayTable]:
        return self._of(ArrayTable)

    @property
    def wavelengths(self) -> list[WavelengthTable]:
        return self._of(WavelengthTable)

    @property
    def corrs(self) -> list[CorrTable]:
        return self._of(CorrTable)

    @property
    def inspols(self) -> list[InspolTable]:
        return self._of(InspolTable)

    @property
    def vis(self) -> list[VisTable]:
        return self._of(VisTable)

    @property
    def vis2(self) -> list[Vis2Table]:
        return self._of(Vis2Table)

    @property
    def t3(self) -> list[T3Table]:
        return self._of(T3Table)

    @property
    def flux(self) -> list[FluxTable]:
        return self._of(FluxTable)

    @property
    def data_tables(self) -> list[DataTable]:
        return self._of(DataTable)

    # -- cross references ----------------------------------------------------------------
    def wavelength_of(self, table: DataTable | InspolTable | str) -> WavelengthTable:
        """The OI_WAVELENGTH table referenced by a data table's INSNAME (or a name)."""
        name = table if isinstance(table, str) else table.insname
        matches = [w for w in self.wavelengths if w.insname == name]
        if not matches:
            hdu = None if isinstance(table, str) else table.label
            raise OIFitsError(f"no OI_WAVELENGTH with INSNAME {name!r}", file=self.path, hdu=hdu, column="INSNAME")
        return matches[0]

    def array_of(self, table: DataTable | str) -> ArrayTable | None:
        """The OI_ARRAY referenced by ARRNAME; the only one when ARRNAME is absent; else None."""
        name = table if isinstance(table, str) else table.arrname
        if name:
            for a in self.arrays:
                if a.arrname == name:
                    return a
            return None
        return self.arrays[0] if len(self.arrays) == 1 else None

    def corr_of(self, table: DataTable) -> CorrTable | None:
        if not table.corrname:
            return None
        for c in self.corrs:
            if c.corrname == table.corrname:
                return c
        return None

    def target_names(self) -> dict[int, str]:
        return self.target.names() if self.targets else {}

    @property
    def version(self) -> int:
        """2 when the file says CONTENT='OIFITS2' (or uses v2 revisions), else 1."""
        if str(self.primary_header.get("CONTENT", "")).strip().upper() == "OIFITS2":
            return 2
        classic = [t.revn for t in self.tables
                   if t.EXTNAME in ("OI_VIS", "OI_VIS2", "OI_T3", "OI_TARGET", "OI_ARRAY", "OI_WAVELENGTH")]
        return 2 if classic and all(r == 2 for r in classic) else 1

    def copy(self) -> "OIFits":
        return OIFits(self.primary_header.copy(), [t.copy() for t in self.tables], [h.copy() for h in self.extra_hdus],
                      None if self.primary_data is None else self.primary_data.copy(), self.path, list(self.read_findings))

    # -- flat views (see oiflow.oifits.views) ----------------------------------------------
    def view(self, kind: str):
        """Flat per-point view of one observable: ``"vis2"``, ``"t3"``, ``"vis"`` or ``"flux"``."""
        from .views import make_view

        return make_view(self, kind)

    def __repr__(self) -> str:
        name = self.path or "<memory>"
        kinds = ", ".join(repr(t) for t in self.tables)
        return f"<OIFits {name} v{self.version}: {kinds}>"
