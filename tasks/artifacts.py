"""Prefect artifacts of a run: a Markdown summary and a products table (flow), and each task's
quicklook PNGs (the TF plot, fit plots, image.png) as image artifacts.

Images are embedded as ``data:`` URIs: the Prefect UI needs a URL for an image artifact, and a
``data:`` URI renders offline (no file server, no network).
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

from prefect.artifacts import create_image_artifact, create_markdown_artifact, create_table_artifact

#: largest PNG embedded (bytes); bigger quicklooks are linked by path only
MAX_EMBED_BYTES = 2_000_000
#: most PNG bytes embedded in one run summary (the others are the tasks' own artifacts)
MAX_SUMMARY_EMBED_BYTES = 4_000_000
#: most rows of the products table artifact (an archive's run has tens of thousands; the catalogue has them all)
MAX_TABLE_ROWS = 1000

_KEY = re.compile(r"[^a-z0-9-]+")


def artifact_key(*parts: str) -> str:
    """A valid artifact key (lowercase letters, digits, dashes)."""
    return _KEY.sub("-", "-".join(parts).lower()).strip("-")[:100]


def png_data_uri(path: str | Path) -> str:
    data = Path(path).read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _table_rows(products: list[dict]) -> list[dict]:
    keep = ("night", "target_name", "instrument_mode", "calib_level", "dataproduct_type", "nb_vis", "nb_vis2", "nb_t3",
            "nb_channels", "em_min", "em_max", "access_url", "checksum")
    return [{k: r.get(k) for k in keep} for r in products]


def _embeddable(paths) -> list[Path]:
    return [Path(p) for p in paths if Path(p).is_file() and Path(p).stat().st_size <= MAX_EMBED_BYTES]


def publish_quicklooks(plots, stage: str, unit: str) -> list[str]:
    """One image artifact per quicklook PNG of a task (key ``<stage>-<unit>-<file stem>``)."""
    keys = []
    for p in _embeddable(plots):
        k = artifact_key(stage, unit, p.stem)
        create_image_artifact(image_url=png_data_uri(p), key=k, description=f"{stage} {unit}: {p}")
        keys.append(k)
    return keys


def report_unit(result):
    """In a Prefect task run: log the unit's failures and warnings to the task run and publish its
    quicklooks; returns ``result``. Reporting never fails the task."""
    from prefect import get_run_logger
    from prefect.context import TaskRunContext

    if TaskRunContext.get() is None:  # a plain Dask task (cluster.unit_runs: dask): the flow reports
        return result
    try:
        logger = get_run_logger()
        for f in result.failures:
            logger.error("%s: %s", f["item"], f["error"])
        for w in result.warnings:
            logger.warning("%s", w)
        publish_quicklooks(result.plots, result.stage, result.unit)
    except Exception as exc:  # noqa: BLE001 - artifacts are a convenience, the products are what counts
        try:
            get_run_logger().warning("could not publish the quicklooks: %s", exc)
        except Exception:  # noqa: BLE001
            pass
    return result


def publish_summary(summary, key_prefix: str = "oiflow") -> list[str]:
    """Create the run's artifacts (Markdown summary with the quicklooks embedded up to
    MAX_SUMMARY_EMBED_BYTES, products table); returns their keys."""
    keys = []
    md = summary.markdown()
    embedded, total = [], 0
    for p in _embeddable(summary.plots):
        size = p.stat().st_size
        if total + size > MAX_SUMMARY_EMBED_BYTES:
            break
        embedded.append(p)
        total += size
    if embedded:
        md += "\n## Quicklooks\n\n" + "\n\n".join(f"**{p.parent.name}/{p.name}**\n\n![{p.name}]({png_data_uri(p)})"
                                                   for p in embedded)
    if len(embedded) < len(summary.plots):
        md += f"\n\n{len(summary.plots) - len(embedded)} more quicklook(s): see the tasks' artifacts.\n"
    k = artifact_key(key_prefix, summary.flow, "summary")
    create_markdown_artifact(markdown=md, key=k, description=f"oiflow {summary.flow}: {summary.state_message}")
    keys.append(k)
    k = artifact_key(key_prefix, summary.flow, "products")
    rows = summary.products[:MAX_TABLE_ROWS]
    more = f" (the first {MAX_TABLE_ROWS} of {len(summary.products)}: oiflow products --root {summary.root})" \
        if len(summary.products) > MAX_TABLE_ROWS else ""
    create_table_artifact(table=_table_rows(rows), key=k, description=f"products under {summary.root}{more}")
    keys.append(k)
    return keys
