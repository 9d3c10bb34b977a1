"""The summary of a run: what was processed, skipped and failed, and the products.

Plain data (no Prefect): the flow builds it, :mod:`tasks.artifacts` publishes it, the command
line prints it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunSummary:
    flow: str
    root: str
    processed: list[str] = field(default_factory=list)  # units processed in this run
    skipped: list[str] = field(default_factory=list)  # units already up to date
    failures: list[dict[str, str]] = field(default_factory=list)  # [{"unit", "item", "error"}]
    products: list[dict[str, Any]] = field(default_factory=list)  # catalogue rows of the run's units
    plots: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)  # product paths written by this run
    flow_run_id: str | None = None
    seconds: float = 0.0  # the whole flow
    units_seconds: float = 0.0  # from the first submission to the last result
    stage_seconds: float = 0.0  # sum of the stage functions' own times (inside the tasks)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def state_message(self) -> str:
        n_units = len(self.processed) + len(self.skipped)
        if self.ok:
            return (f"{len(self.processed)} unit(s) processed, {len(self.skipped)} up to date, "
                    f"{len(self.products)} granule(s) in {self.root}")
        items = "; ".join(f"{f['item']}: {f['error']}" for f in self.failures[:5])
        more = f" (+{len(self.failures) - 5} more)" if len(self.failures) > 5 else ""
        return f"partially failed: {len(self.failures)} item(s) of {n_units} unit(s) failed — {items}{more}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunSummary":
        return cls(**data)

    def markdown(self) -> str:
        from oiflow.catalog import products_table_markdown

        lines = [f"# oiflow {self.flow}", "", f"Products under `{self.root}`.", "",
                 f"- processed: {len(self.processed)} unit(s) {', '.join(self.processed)}",
                 f"- up to date (skipped): {len(self.skipped)} unit(s)",
                 f"- failed items: {len(self.failures)}", f"- time: {self.seconds:.1f} s", ""]
        if self.failures:
            lines += ["## Failures", "", "| unit | item | error |", "|---|---|---|"]
            lines += [f"| {f['unit']} | {Path(f['item']).name} | {f['error']} |" for f in self.failures]
            lines.append("")
        lines += ["## Products", "", products_table_markdown(self.products, self.root)]
        return "\n".join(lines)
