"""The summary of a run: what was processed, skipped and failed, and the products.

Plain data (no Prefect): the flow builds it, :mod:`oiflow.tasks.artifacts` publishes it, the command
line prints it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


#: units and product rows listed in the Markdown summary (an archive's run has tens of thousands)
MARKDOWN_UNITS = 50
MARKDOWN_PRODUCTS = 500


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
    current: list[str] = field(default_factory=list)  # product paths of every unit of the run (written or up to date)
    warnings: list[str] = field(default_factory=list)
    flow_run_id: str | None = None
    seconds: float = 0.0  # the whole flow
    units_seconds: float = 0.0  # from the first submission to the last result
    stage_seconds: float = 0.0  # sum of the stage functions' own times (inside the tasks)
    orchestration: str = ""  # how Prefect ran it (set by the command line: oiflow.flows.run)

    @property
    def ok(self) -> bool:
        """Nothing failed and every product's verdict (L3) is ok."""
        return not self.failures and not self.not_ok

    @property
    def not_ok(self) -> list[dict[str, Any]]:
        """Product rows whose verdict is set and not ok (one per product file)."""
        seen, out = set(), []
        for r in self.products:
            if r.get("verdict") not in (None, "ok") and r["access_url"] not in seen:
                seen.add(r["access_url"])
                out.append(r)
        return out

    @property
    def state_message(self) -> str:
        n_units = len(self.processed) + len(self.skipped)
        done = (f"{len(self.processed)} unit(s) processed, {len(self.skipped)} up to date, "
                f"{len(self.products)} granule(s) in {self.root}")
        bad = self.not_ok
        verdicts = (f"{len(bad)} product(s) with a verdict other than ok: "
                    + "; ".join(f"{Path(r['access_url']).name} ({r['target_name']}): {r['verdict']}" for r in bad[:5])
                    + (f" (+{len(bad) - 5} more)" if len(bad) > 5 else "")) if bad else ""
        if not self.failures:
            return f"{done}; {verdicts}" if bad else done
        items = "; ".join(f"{f['item']}: {f['error']}" for f in self.failures[:5])
        more = f" (+{len(self.failures) - 5} more)" if len(self.failures) > 5 else ""
        msg = f"partially failed: {len(self.failures)} item(s) of {n_units} unit(s) failed — {items}{more}"
        return f"{msg}; {verdicts}" if bad else msg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunSummary":
        return cls(**data)

    def to_json(self) -> str:
        """The summary as the data of a flow run's final state: JSON text, which Prefect does not
        walk looking for futures (walking an archive's summary as a dict — 20,000 products —
        took seconds at the end of every run)."""
        return json.dumps(self.to_dict(), default=str)

    @classmethod
    def from_state_data(cls, data: Any) -> "RunSummary | None":
        """The summary in a flow run's result (:meth:`to_json`, or a dict); None if there is none."""
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError:
                return None
        return cls.from_dict(data) if isinstance(data, dict) and "flow" in data else None

    def markdown(self) -> str:
        from oiflow.products_table import markdown as products_table_markdown

        shown = ", ".join(self.processed[:MARKDOWN_UNITS]) + (
            f" … (+{len(self.processed) - MARKDOWN_UNITS} more)" if len(self.processed) > MARKDOWN_UNITS else "")
        lines = [f"# oiflow {self.flow}", "", f"Products under `{self.root}`.", "",
                 f"- processed: {len(self.processed)} unit(s) {shown}",
                 f"- up to date (skipped): {len(self.skipped)} unit(s)",
                 f"- failed items: {len(self.failures)}", f"- time: {self.seconds:.1f} s", ""]
        if self.warnings:
            lines += ["## Warnings", ""] + [f"- {w}" for w in self.warnings] + [""]
        if self.not_ok:
            lines += ["## Verdicts other than ok", "", "| target | product | verdict | reasons |", "|---|---|---|---|"]
            lines += [f"| {r['target_name']} | {Path(r['access_url']).name} | {r['verdict']} | "
                      f"{'; '.join((r.get('verdict_detail') or {}).get('reasons', []))} |" for r in self.not_ok]
            lines.append("")
        if self.failures:
            lines += ["## Failures", "", "| unit | item | error |", "|---|---|---|"]
            lines += [f"| {f['unit']} | {Path(f['item']).name} | {f['error']} |" for f in self.failures]
            lines.append("")
        lines += ["## Products", "", products_table_markdown(self.products[:MARKDOWN_PRODUCTS], self.root)]
        if len(self.products) > MARKDOWN_PRODUCTS:
            lines += [f"… and {len(self.products) - MARKDOWN_PRODUCTS} more: `oiflow products --root {self.root}`"]
        return "\n".join(lines)
