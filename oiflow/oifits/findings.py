"""Findings: what the reader and the validator report about a file."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass
class Finding:
    """One rule failure: severity, rule name, message and location (HDU, header card, column, rows)."""

    severity: Severity
    rule: str
    message: str
    hdu: str | None = None  # e.g. "OI_VIS2#4" (EXTNAME and 0-based HDU index)
    column: str | None = None
    rows: list[int] = field(default_factory=list)  # 0-based row indices (first ones only)
    file: str | None = None
    card: str | None = None  # a header card (structural damage: NAXIS2, TFORM3, XTENSION …)

    def to_dict(self) -> dict:
        return {
            "severity": self.severity.value,
            "rule": self.rule,
            "message": self.message,
            "hdu": self.hdu,
            "card": self.card,
            "column": self.column,
            "rows": list(self.rows),
            "file": self.file,
        }

    def location(self) -> str:
        parts = [p for p in (self.hdu, self.card and f"card {self.card}", self.column) if p]
        if self.rows:
            shown = ",".join(str(r) for r in self.rows[:8]) + ("…" if len(self.rows) > 8 else "")
            parts.append(f"rows {shown}")
        return " ".join(parts)
