"""The exception and warning hierarchy of oiflow.

Every error raised on purpose by oiflow derives from :class:`OiflowError`; the command line
maps them to exit codes. Warnings derive from :class:`OiflowWarning` so users can filter
them (``warnings.filterwarnings("ignore", category=OIFitsWarning)``).
"""

from __future__ import annotations


class OiflowError(Exception):
    """Base class of all oiflow errors."""


class ConfigError(OiflowError):
    """Invalid configuration, model description or command-line option."""


class OIFitsError(OiflowError):
    """Unreadable or unusable OIFITS (or other FITS) input. Names the file, HDU, header card
    (a damaged structural card such as NAXIS2 or TFORM3), column and rows when known."""

    def __init__(self, message: str, *, file=None, hdu=None, column=None, rows=None, card=None):
        self.message = message
        self.file = None if file is None else str(file)
        self.hdu = hdu
        self.card = card
        self.column = column
        self.rows = rows
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.file is not None:
            where.append(f"file {self.file}")
        if self.hdu is not None:
            where.append(f"HDU {self.hdu}")
        if self.card is not None:
            where.append(f"card {self.card}")
        if self.column is not None:
            where.append(f"column {self.column}")
        if self.rows is not None:
            rows = list(self.rows) if not isinstance(self.rows, (int, str)) else [self.rows]
            shown = ", ".join(str(r) for r in rows[:10]) + (" …" if len(rows) > 10 else "")
            where.append(f"rows {shown}")
        return f"{self.message} ({'; '.join(where)})" if where else self.message


class DataError(OiflowError):
    """Data that can be read but cannot be used for the requested operation
    (e.g. asking for V² from a file without OI_VIS2, non-positive error bars)."""


class ReductionError(OiflowError):
    """A reduction step failed (missing calibration files, corrupt raw frames, …)."""


class CalibrationError(OiflowError):
    """Calibration failed (e.g. no usable calibrator for a setup)."""


class FitError(OiflowError):
    """Model fitting failed."""


class ImagingError(OiflowError):
    """Image reconstruction failed."""


class EngineError(OiflowError):
    """An external program (esorex, pndrs, a container) failed.

    ``returncode`` is the exit status (None for a timeout) and ``log`` the captured output.
    """

    def __init__(self, message: str, *, returncode: int | None = None, log: str = ""):
        self.returncode = returncode
        self.log = log
        super().__init__(message)


class OiflowWarning(UserWarning):
    """Base class of oiflow warnings."""


class OIFitsWarning(OiflowWarning):
    """Something in an OIFITS file is off the standard but could be read."""


class CalibrationWarning(OiflowWarning):
    """Something was left out of a calibration (e.g. a calibrator without a known diameter)."""
