"""Benchmark: read + validate the whole OIFITS corpus, against a plain astropy open-and-read of
the same files (every column of every binary table touched) measured in the same run.

    PYTHONPATH=. python -m pytest -m benchmark tests/benchmarks/bench_oifits.py -s

Goal: oiflow's read + validate takes at most 2x the baseline. The ratio (best of several
repeats, each side interleaved to share the machine's noise) is printed and asserted.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from astropy.io import fits

from oiflow.errors import OIFitsError
from oiflow.oifits import read_oifits
from oiflow.oifits.validate import validate

pytestmark = pytest.mark.benchmark

REPEATS = 5
GOAL = 2.0


def _files(shared_data):
    root = shared_data / "oifits"
    return sorted(p for p in root.rglob("*") if p.suffix in (".fits", ".oifits"))


def _baseline(files) -> int:
    n = 0
    for f in files:
        try:
            with fits.open(f, memmap=False) as hdul:
                for hdu in hdul[1:]:
                    if isinstance(hdu, fits.BinTableHDU):
                        for name in hdu.columns.names:
                            n += np.asarray(hdu.data[name]).size
        except OSError:
            pass  # the truncated file
    return n


def _oiflow(files) -> int:
    n = 0
    for f in files:
        try:
            rep = validate(read_oifits(f, warn=False))
            n += len(rep.findings)
        except OIFitsError:
            pass
    return n


def test_read_validate_corpus_vs_astropy(shared_data):
    files = _files(shared_data)
    assert len(files) >= 35
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _baseline(files), _oiflow(files)  # warm up imports and caches
        base, ours = [], []
        for _ in range(REPEATS):
            t = time.perf_counter()
            _baseline(files)
            base.append(time.perf_counter() - t)
            t = time.perf_counter()
            _oiflow(files)
            ours.append(time.perf_counter() - t)
    ratio = min(ours) / min(base)
    size = sum(f.stat().st_size for f in files) / 1e6
    print(f"\ncorpus: {len(files)} files, {size:.1f} MB")
    print(f"astropy open + read every column : best {min(base):.3f} s  (median {np.median(base):.3f} s)")
    print(f"oiflow read_oifits + validate    : best {min(ours):.3f} s  (median {np.median(ours):.3f} s)")
    print(f"ratio oiflow / astropy           : {ratio:.2f}  (goal <= {GOAL})")
    assert ratio <= GOAL
