"""OIFITS v1/v2 table definitions (from JMMC's DataModelV2.xml, see shared docs OIFITS2.md).

One description drives the reader (column shapes), the writer (formats, units) and the validator
(mandatory keywords/columns, formats, units, accepted values). ``repeat`` is an int or one of
``"NWAVE"`` (the referenced OI_WAVELENGTH's row count) and ``"NWAVE2"`` (NWAVE × NWAVE).
"""

from __future__ import annotations

from dataclasses import dataclass

V1, V2 = 1, 2
BOTH = (V1, V2)


@dataclass(frozen=True)
class Keyword:
    name: str
    code: str  # A, I, J, E, D, L
    mandatory: bool = True
    accepted: tuple | None = None
    versions: tuple = BOTH
    unit: str | None = None


@dataclass(frozen=True)
class Column:
    name: str
    code: str  # A, I, J, E, D, C, L
    repeat: int | str = 1
    unit: str | None = None
    mandatory: bool = True
    versions: tuple = BOTH
    accepted: tuple | None = None
    range: str | None = None  # "vis", "angle", "positive", "positive_strict"
    error_of: str | None = None  # for *ERR columns: the value column they belong to


@dataclass(frozen=True)
class TableDef:
    extname: str
    revn: dict  # {file version: OI_REVN}
    keywords: tuple
    columns: tuple
    versions: tuple = BOTH
    data_table: bool = False

    def column(self, name: str) -> Column | None:
        for c in self.columns:
            if c.name == name:
                return c
        return None

    def columns_for(self, version: int) -> tuple:
        return tuple(c for c in self.columns if version in c.versions)

    def keywords_for(self, version: int) -> tuple:
        return tuple(k for k in self.keywords if version in k.versions)


#: canonical unit strings written by oiflow, and the spellings accepted when reading
UNITS = {
    "deg": ("deg", "degree", "degrees"),
    "m": ("m", "meter", "meters", "metre", "metres"),
    "s": ("s", "sec", "second", "seconds"),
    "day": ("day", "days", "d"),
    "yr": ("yr", "year", "years", "a"),
    "m/s": ("m/s", "m s-1", "m.s-1", "m s^-1", "meter/second"),
    "deg/yr": ("deg/yr", "deg/year", "deg yr-1", "deg.yr-1", "degree/year"),
    "arcsec": ("arcsec", "arcseconds"),
}


def unit_matches(expected: str | None, actual: str | None) -> bool:
    if expected is None:
        return True
    if not actual:
        return False
    return actual.strip().lower() in {a.lower() for a in UNITS.get(expected, (expected,))}


_DATA_COMMON_KW = (
    Keyword("OI_REVN", "J"),
    Keyword("DATE-OBS", "A"),
    Keyword("ARRNAME", "A", mandatory=False),
    Keyword("INSNAME", "A"),
    Keyword("CORRNAME", "A", mandatory=False, versions=(V2,)),
)

_TIME_COLS = (
    Column("TARGET_ID", "I"),
    Column("TIME", "D", unit="s", range="positive"),
    Column("MJD", "D", unit="day", range="positive_strict"),
    Column("INT_TIME", "D", unit="s", range="positive_strict"),
)

OI_TARGET = TableDef(
    "OI_TARGET",
    {V1: 1, V2: 2},
    (Keyword("OI_REVN", "J"),),
    (
        Column("TARGET_ID", "I"),
        Column("TARGET", "A", 16),
        Column("RAEP0", "D", unit="deg"),
        Column("DECEP0", "D", unit="deg"),
        Column("EQUINOX", "E", unit="yr"),
        Column("RA_ERR", "D", unit="deg"),
        Column("DEC_ERR", "D", unit="deg"),
        Column("SYSVEL", "D", unit="m/s"),
        Column("VELTYP", "A", 8, accepted=("LSR", "HELIOCEN", "BARYCENT", "GEOCENTR", "TOPOCENT", "UNKNOWN")),
        Column("VELDEF", "A", 8, accepted=("RADIO", "OPTICAL")),
        Column("PMRA", "D", unit="deg/yr"),
        Column("PMDEC", "D", unit="deg/yr"),
        Column("PMRA_ERR", "D", unit="deg/yr"),
        Column("PMDEC_ERR", "D", unit="deg/yr"),
        Column("PARALLAX", "E", unit="deg"),
        Column("PARA_ERR", "E", unit="deg"),
        Column("SPECTYP", "A", 16),
        Column("CATEGORY", "A", 3, mandatory=False, versions=(V2,), accepted=("CAL", "SCI")),
    ),
)

OI_ARRAY = TableDef(
    "OI_ARRAY",
    {V1: 1, V2: 2},
    (
        Keyword("OI_REVN", "J"),
        Keyword("ARRNAME", "A"),
        Keyword("FRAME", "A", accepted=("GEOCENTRIC", "SKY")),
        Keyword("ARRAYX", "D", unit="m"),
        Keyword("ARRAYY", "D", unit="m"),
        Keyword("ARRAYZ", "D", unit="m"),
    ),
    (
        Column("TEL_NAME", "A", 16),
        Column("STA_NAME", "A", 16),
        Column("STA_INDEX", "I"),
        Column("DIAMETER", "E", unit="m", range="positive_strict"),
        Column("STAXYZ", "D", 3, unit="m"),
        Column("FOV", "D", unit="arcsec", versions=(V2,), range="positive_strict"),
        Column("FOVTYPE", "A", 6, versions=(V2,), accepted=("FWHM", "RADIUS")),
    ),
)

OI_WAVELENGTH = TableDef(
    "OI_WAVELENGTH",
    {V1: 1, V2: 2},
    (Keyword("OI_REVN", "J"), Keyword("INSNAME", "A")),
    (
        Column("EFF_WAVE", "E", unit="m", range="positive_strict"),
        Column("EFF_BAND", "E", unit="m", range="positive_strict"),
    ),
)

OI_CORR = TableDef(
    "OI_CORR",
    {V2: 1},
    (Keyword("OI_REVN", "J"), Keyword("CORRNAME", "A"), Keyword("NDATA", "J")),
    (Column("IINDX", "J"), Column("JINDX", "J"), Column("CORR", "D")),
    versions=(V2,),
)

OI_INSPOL = TableDef(
    "OI_INSPOL",
    {V2: 1},
    (
        Keyword("OI_REVN", "J"),
        Keyword("DATE-OBS", "A", mandatory=False),
        Keyword("ARRNAME", "A", mandatory=False),
        Keyword("NPOL", "J"),
        Keyword("ORIENT", "A", accepted=("NORTH", "LABORATORY")),
        Keyword("MODEL", "A"),
    ),
    (
        Column("TARGET_ID", "I"),
        Column("INSNAME", "A", 70),
        Column("MJD_OBS", "D", unit="day", range="positive_strict"),
        Column("MJD_END", "D", unit="day", range="positive_strict"),
        Column("JXX", "C", "NWAVE"),
        Column("JYY", "C", "NWAVE"),
        Column("JXY", "C", "NWAVE"),
        Column("JYX", "C", "NWAVE"),
        Column("STA_INDEX", "I"),
    ),
    versions=(V2,),
)

OI_VIS = TableDef(
    "OI_VIS",
    {V1: 1, V2: 2},
    _DATA_COMMON_KW
    + (
        Keyword("AMPTYP", "A", mandatory=False, versions=(V2,), accepted=("absolute", "differential", "correlated flux")),
        Keyword("PHITYP", "A", mandatory=False, versions=(V2,), accepted=("absolute", "differential")),
        Keyword("AMPORDER", "J", mandatory=False, versions=(V2,)),
        Keyword("PHIORDER", "J", mandatory=False, versions=(V2,)),
    ),
    _TIME_COLS
    + (
        Column("VISAMP", "D", "NWAVE", range="vis"),
        Column("VISAMPERR", "D", "NWAVE", range="positive", error_of="VISAMP"),
        Column("CORRINDX_VISAMP", "J", mandatory=False, versions=(V2,)),
        Column("VISPHI", "D", "NWAVE", unit="deg", range="angle"),
        Column("VISPHIERR", "D", "NWAVE", unit="deg", range="positive", error_of="VISPHI"),
        Column("CORRINDX_VISPHI", "J", mandatory=False, versions=(V2,)),
        Column("VISREFMAP", "L", "NWAVE2", mandatory=False, versions=(V2,)),
        Column("RVIS", "D", "NWAVE", mandatory=False, versions=(V2,)),
        Column("RVISERR", "D", "NWAVE", mandatory=False, versions=(V2,), range="positive", error_of="RVIS"),
        Column("CORRINDX_RVIS", "J", mandatory=False, versions=(V2,)),
        Column("IVIS", "D", "NWAVE", mandatory=False, versions=(V2,)),
        Column("IVISERR", "D", "NWAVE", mandatory=False, versions=(V2,), range="positive", error_of="IVIS"),
        Column("CORRINDX_IVIS", "J", mandatory=False, versions=(V2,)),
        Column("UCOORD", "D", unit="m"),
        Column("VCOORD", "D", unit="m"),
        Column("STA_INDEX", "I", 2),
        Column("FLAG", "L", "NWAVE"),
    ),
    data_table=True,
)

OI_VIS2 = TableDef(
    "OI_VIS2",
    {V1: 1, V2: 2},
    _DATA_COMMON_KW,
    _TIME_COLS
    + (
        Column("VIS2DATA", "D", "NWAVE", range="vis"),
        Column("VIS2ERR", "D", "NWAVE", range="positive", error_of="VIS2DATA"),
        Column("CORRINDX_VIS2DATA", "J", mandatory=False, versions=(V2,)),
        Column("UCOORD", "D", unit="m"),
        Column("VCOORD", "D", unit="m"),
        Column("STA_INDEX", "I", 2),
        Column("FLAG", "L", "NWAVE"),
    ),
    data_table=True,
)

OI_T3 = TableDef(
    "OI_T3",
    {V1: 1, V2: 2},
    _DATA_COMMON_KW,
    _TIME_COLS
    + (
        Column("T3AMP", "D", "NWAVE", range="positive"),
        Column("T3AMPERR", "D", "NWAVE", range="positive", error_of="T3AMP"),
        Column("CORRINDX_T3AMP", "J", mandatory=False, versions=(V2,)),
        Column("T3PHI", "D", "NWAVE", unit="deg", range="angle"),
        Column("T3PHIERR", "D", "NWAVE", unit="deg", range="positive", error_of="T3PHI"),
        Column("CORRINDX_T3PHI", "J", mandatory=False, versions=(V2,)),
        Column("U1COORD", "D", unit="m"),
        Column("V1COORD", "D", unit="m"),
        Column("U2COORD", "D", unit="m"),
        Column("V2COORD", "D", unit="m"),
        Column("STA_INDEX", "I", 3),
        Column("FLAG", "L", "NWAVE"),
    ),
    data_table=True,
)

OI_FLUX = TableDef(
    "OI_FLUX",
    {V2: 1},
    _DATA_COMMON_KW
    + (
        Keyword("CALSTAT", "A", accepted=("C", "U")),
        Keyword("FOV", "D", mandatory=False, unit="arcsec"),
        Keyword("FOVTYPE", "A", mandatory=False, accepted=("FWHM", "RADIUS")),
    ),
    (
        Column("TARGET_ID", "I"),
        Column("MJD", "D", unit="day", range="positive_strict"),
        Column("INT_TIME", "D", unit="s", range="positive_strict"),
        Column("FLUXDATA", "D", "NWAVE", range="positive"),
        Column("FLUXERR", "D", "NWAVE", range="positive", error_of="FLUXDATA"),
        Column("CORRINDX_FLUXDATA", "J", mandatory=False),
        Column("STA_INDEX", "I", mandatory=False),
        Column("FLAG", "L", "NWAVE"),
    ),
    versions=(V2,),
    data_table=True,
)

TABLES: dict[str, TableDef] = {
    t.extname: t for t in (OI_TARGET, OI_ARRAY, OI_WAVELENGTH, OI_CORR, OI_INSPOL, OI_VIS, OI_VIS2, OI_T3, OI_FLUX)
}

#: data tables in the order oiflow writes them
DATA_TABLES = ("OI_VIS", "OI_VIS2", "OI_T3", "OI_FLUX")

#: mandatory main-header keywords of OIFITS2
MAIN_HEADER_V2 = ("ORIGIN", "DATE", "CONTENT", "TELESCOP", "INSTRUME", "OBSERVER", "INSMODE", "OBJECT")

#: alias column names seen in real files → standard name
COLUMN_ALIASES = {"OI_FLUX": {"FLUX": "FLUXDATA"}}

#: numpy dtype per FITS type code
NUMPY_DTYPES = {"I": "int16", "J": "int32", "K": "int64", "E": "float32", "D": "float64", "C": "complex64",
                "M": "complex128", "L": "bool"}
