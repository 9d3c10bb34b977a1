"""What the L3 stages (fit, image) share: matching configured targets to the data, naming the
night-or-set of an L3 product, reading a target's data and describing the product's granule.

Targets of ``fit.targets`` / ``image.targets`` are matched to the OI_TARGET names of the L2
granules exactly, else by :func:`oiflow.product_tree.target_key` (case, spaces, ``_`` and ``-``
ignored: "AX Cir" finds "AX_CIR"), the rule ``oiflow products --target`` uses too.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Iterable

from ..catalog import ProductRecord, granules_of, l3_granule
from ..errors import OIFitsWarning
from ..oifits import read_oifits
from ..oifits.model import OIFits
from ..product_tree import target_key

def match_target(wanted: str, available: Iterable[str]) -> str | None:
    """The OI_TARGET name in ``available`` that the configured name ``wanted`` designates."""
    names = sorted({a for a in available if a})
    if wanted in names:
        return wanted
    loose = [a for a in names if target_key(a) == target_key(wanted)]
    return loose[0] if len(loose) == 1 else None


def start_order(stage: str, spec, points: int) -> tuple[int, int]:
    """Sort key putting first the L3 units expected to take longest, so that the last units of
    a run end together rather than one long unit starting last. Expected length, coarsely:
    companion searches (a fit at every node of a grid), then images (hundreds of iterations),
    then model fits; within each, by data points (images: points × pixels). It orders the
    starts only; no result depends on it."""
    if stage == "image":
        return (-1, -points * spec.npix ** 2)
    return (-2 if getattr(spec, "companion_search", False) else 0, -points)


def subset_name(nights: Iterable[str]) -> str:
    """``<night>`` for data of one night, ``<first>_to_<last>`` for several ("all" if unknown)."""
    ns = sorted({n for n in nights if n})
    if not ns:
        return "all"
    return ns[0] if len(ns) == 1 else f"{ns[0]}_to_{ns[-1]}"


def target_data(files: Iterable[str | Path], target: str) -> list[OIFits]:
    """The files' data restricted to ``target`` (files holding only it are used whole); each
    OIFits keeps its file path, so the products' provenance names the files."""
    from ..oifits import select

    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OIFitsWarning)
        for f in files:
            oi = read_oifits(f, warn=False)
            names = set(oi.target_names().values())
            if names - {target}:
                oi = select(oi, target=target)
                oi.path = str(f)
            out.append(oi)
    return out


def input_granules(oifits: Iterable[OIFits]) -> list[dict[str, Any]]:
    return [g for oi in oifits for g in granules_of(oi, 2)]


def l3_record(path: str | Path, *, stage: str, target: str, subset: str, granules, dataproduct_type: str,
              settings_hash: str, inputs, nb_channels: int | None = None,
              access_format: str = "application/fits", verdict: dict[str, Any] | None = None,
              result: str | None = None) -> ProductRecord:
    """The catalogue record of one L3 product; ``verdict``: the result's ``Verdict.to_dict()``;
    ``result``: what it found in a few words (:mod:`oiflow.fit.headline`)."""
    obs_id = f"{target}/{subset}"
    g = l3_granule(granules, target, dataproduct_type=dataproduct_type, obs_id=obs_id, nb_channels=nb_channels)
    return ProductRecord.for_file(path, calib_level=3, stage=stage, granules=[g], settings_hash=settings_hash,
                                  inputs=list(inputs), access_format=access_format, obs_id=obs_id, verdict=verdict,
                                  result=result)
