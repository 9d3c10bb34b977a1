"""The order of the stages of every flow: one function per flow, to be read top to bottom like a
recipe (as jwst's ``Pipeline.process()``)::

    raw night ───────── reduce ── calibrate ──┐
    L1 night or files ─ ingest ── calibrate ──┤
    L2 night or files ─ ingest ───────────────┴── fit, image (the configured targets)

Each line of a recipe is a stage of :class:`~oiflow.flows.chain.Chain`: it takes the
:class:`~oiflow.flows.chain.Products` of the stage before and returns its own. Stages are planned when
their inputs settle, so they overlap across nights (one night is calibrated while another is
being reduced); the flow's ``stages`` say which of them run (the single-stage flows run one),
and fit and image run only for the targets configured.
"""

from __future__ import annotations

from pathlib import Path

from oiflow.config import RunConfig

from oiflow.flows.chain import Chain, Products, all_of


def l0_to_l3(chain: Chain, config: RunConfig, nights: list[Path]) -> None:
    """``oiflow run``: every input night and ``input.files`` into ONE set of L2 products, fitted
    and imaged together (``L3/<target>/<first night>_to_<last night>``)."""
    l2 = [night_to_l2(chain, night, config.input.level) for night in nights]
    if config.input.files:
        l2.append(files_to_l2(chain, config.input.files, files_level(config)))
    chain.fit_and_image(all_of(l2))


def reprocess_archive(chain: Chain, config: RunConfig, nights: list[Path]) -> None:
    """``oiflow reprocess``: each night of the archive on its own, to its own L3
    (``L3/<target>/<night>``)."""
    for night in nights:
        chain.fit_and_image(night_to_l2(chain, night, config.input.level))


def reduce_night(chain: Chain, night: Path) -> None:
    """A raw night to L1."""
    chain.reduce(night)


def calibrate_night(chain: Chain, l1_files: list[Path]) -> None:
    """L1 OIFITS (ingested first) to L2."""
    chain.calibrate(chain.ingest_files(l1_files, 1))


def l2_to_l3(chain: Chain, l2_files: list[Path]) -> None:
    """L2 OIFITS (ingested first) to the L3 of the flow's stages: ``fit-targets`` fits,
    ``reconstruct-targets`` images."""
    chain.fit_and_image(chain.ingest_files(l2_files, 2))


# -- the steps the recipes share ----------------------------------------------------------------


def night_to_l2(chain: Chain, night: Path, level: int) -> Products:
    """The L2 products of one night directory of level ``level``: raw (0) reduced then
    calibrated, L1 (1) ingested then calibrated, L2 (2) ingested."""
    if level == 0:
        return chain.calibrate(chain.reduce(night))
    if level == 1:
        return chain.calibrate(chain.ingest_night(night, 1))
    return chain.ingest_night(night, level)


def files_to_l2(chain: Chain, files: list[Path], level: int) -> Products:
    """The L2 products of OIFITS files of level ``level`` (1: calibrated after ingest, 2: ingested)."""
    ingested = chain.ingest_files(files, level)
    return chain.calibrate(ingested) if level == 1 else ingested


def files_level(config: RunConfig) -> int:
    """Level of ``input.files``: ``input.files_level``, else ``input.level`` (2 when that is 0)."""
    if config.input.files_level is not None:
        return config.input.files_level
    return config.input.level if config.input.level in (1, 2) else 2
