"""OIFITS v1/v2: data model, reader, writer, flat views (validator, merge/select, plots).

    from oiflow.oifits import read_oifits, write_oifits
    oi = read_oifits("file.fits")
    v2 = oi.view("vis2")
    write_oifits(oi, "out.fits")          # OIFITS2; version=1 for OIFITS1
    validate("file.fits").verdict         # clean | valid-with-warnings | non-conformant | unreadable
    merge([oi1, oi2]); select(oi, wave_min=1.6e-6, min_snr=3); summarize(oi)
    # plots: oiflow.oifits.plot.quicklook(oi, "outdir/")

The writer, the summary and merge/select are imported on first use (:data:`_LAZY`): reading a
file (``oiflow image``'s start-up) does not pay for astropy.time, fitsio and astropy.units.
"""

import importlib

from .findings import Finding, Severity
from .model import (
    ArrayTable,
    CorrTable,
    DataTable,
    FluxTable,
    InspolTable,
    OIFits,
    OITable,
    T3Table,
    TargetTable,
    Vis2Table,
    VisTable,
    WavelengthTable,
)
from .read import read_oifits
from .validate import ValidationReport, validate
from .views import ObservableView

#: names imported on first use, and their modules
_LAZY = {"merge": "ops", "select": "ops", "summarize": "summary", "to_hdulist": "write", "write_oifits": "write"}

__all__ = [
    "ArrayTable", "CorrTable", "DataTable", "Finding", "FluxTable", "InspolTable", "OIFits", "OITable",
    "ObservableView", "Severity", "T3Table", "TargetTable", "Vis2Table", "VisTable", "WavelengthTable",
    "ValidationReport", "merge", "read_oifits", "select", "summarize", "to_hdulist", "validate", "write_oifits",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
