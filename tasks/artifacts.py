"""Prefect artifacts of a run: a Markdown summary, a products table, quicklook PNGs.

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

_KEY = re.compile(r"[^a-z0-9-]+")


def artifact_key(*parts: str) -> str:
    """A valid artifact key (lowercase letters, digits, dashes)."""
    return _KEY.sub("-", "-".join(parts).lower()).strip("-")[:100]


def png_data_uri(path: str | Path) -> str:
    data = Path(path).read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _table_rows(products: list[dict]) -> list[dict]:
    keep = ("night", "target_name", "instrument_mode", "calib_level", "nb_vis", "nb_vis2", "nb_t3",
            "nb_channels", "em_min", "em_max", "access_url", "checksum")
    return [{k: r.get(k) for k in keep} for r in products]


def publish_summary(summary, key_prefix: str = "oiflow") -> list[str]:
    """Create the run's artifacts; returns their keys."""
    keys = []
    md = summary.markdown()
    embedded = [p for p in summary.plots if Path(p).is_file() and Path(p).stat().st_size <= MAX_EMBED_BYTES]
    if embedded:
        md += "\n## Quicklooks\n\n" + "\n\n".join(f"![{Path(p).name}]({png_data_uri(p)})" for p in embedded)
    k = artifact_key(key_prefix, summary.flow, "summary")
    create_markdown_artifact(markdown=md, key=k, description=f"oiflow {summary.flow}: {summary.state_message}")
    keys.append(k)
    k = artifact_key(key_prefix, summary.flow, "products")
    create_table_artifact(table=_table_rows(summary.products), key=k, description=f"products under {summary.root}")
    keys.append(k)
    for p in embedded:
        k = artifact_key(key_prefix, Path(p).stem)
        create_image_artifact(image_url=png_data_uri(p), key=k, description=str(p))
        keys.append(k)
    return keys
