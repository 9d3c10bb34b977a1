"""What every oiflow flow does around its stages: open the catalogue, publish, end."""

from __future__ import annotations

import time
from pathlib import Path

from prefect.states import Completed, Failed

from oiflow.catalog import Catalog
from oiflow.config import RunConfig
from tasks.artifacts import publish_summary

from flows.summary import RunSummary


def open_catalog(config: RunConfig) -> Catalog:
    return Catalog.for_root(config.output.root, config.catalog.url)


def new_summary(flow: str, config: RunConfig) -> RunSummary:
    return RunSummary(flow=flow, root=str(Path(config.output.root).resolve()), seconds=time.perf_counter())


def finish(summary: RunSummary, catalog: Catalog, stage: str):
    """Collect the products of the run's units, publish artifacts and return the final state:
    Completed, or Failed ("partially failed: …") when any item failed; the summary is the data."""
    summary.products = catalog.products(paths=summary.outputs + catalog.outputs_of(stage, summary.skipped))
    summary.seconds = time.perf_counter() - summary.seconds
    publish_summary(summary)
    data = summary.to_dict()
    if summary.ok:
        return Completed(message=summary.state_message, data=data)
    return Failed(message=summary.state_message, data=data)
