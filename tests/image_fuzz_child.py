"""Child process of tests/test_image_robust.py::test_random_uv_never_crash_the_process: random
finite and non-finite (u, v) through the imaging path, in its own process so that a native crash
(finufft's segfault or "double free" abort) shows as the exit status, not as a dead test runner.

Usage: python tests/image_fuzz_child.py SOURCE.oifits WORKDIR N_EXAMPLES
Prints one line per outcome kind and "examples: N" at the end; exit 0 when every example either
gave a result or raised one of oiflow's errors.
"""

from __future__ import annotations

import collections
import logging
import sys
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oiflow.errors import OiflowError
from oiflow.image.data import Selection, imaging_data
from oiflow.image.reconstruct import reconstruct
from oiflow.image.transform import make_transform
from oiflow.oifits import read_oifits

DAMAGE = [np.nan, np.inf, -np.inf, 1e308, -1e308, 1e20, 1e5 * 1.01]
values = st.one_of(st.floats(min_value=-300.0, max_value=300.0), st.sampled_from(DAMAGE),
                   st.floats(allow_nan=True, allow_infinity=True))
outcomes: collections.Counter = collections.Counter()


def transform_case(u, v, pixel_mas, method):
    """A transform either runs (finite output for finite input) or refuses with ImagingError."""
    u = np.asarray(u, float)
    v = np.asarray(v, float)
    try:
        T = make_transform(u, v, 32, pixel_mas * 4.8481368e-9, np, method=method)
    except OiflowError as exc:
        outcomes[f"transform refused: {type(exc).__name__}"] += 1
        return
    out = T.forward(np.ones((32, 32)) / 1024)
    back = T.adjoint(np.ones(u.size, complex))
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(back)), (u, v)
    outcomes["transform ran"] += 1


def file_case(src: Path, work: Path, column: str, rows: list[int], vals: list[float], flag: bool):
    """Damaged coordinates written into a real file: imaging refuses them or images the rest."""
    path = work / "fuzz.oifits"
    ext = "OI_T3" if column[1] in "12" else "OI_VIS2"
    with fits.open(src) as h:
        data = h[ext].data
        for r, val in zip(rows, vals):
            data[column][r % len(data)] = val
            if flag:
                data["FLAG"][r % len(data)] = True
        h.writeto(path, overwrite=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            oi = read_oifits(path, warn=False)
            data = imaging_data([oi], Selection(use_t3="phi"))
            res = reconstruct(data, dict(npix=32, pixel_size_mas=0.45, mu=1e3, maxiter=5, levels=1))
        except OiflowError as exc:
            outcomes[f"file refused: {type(exc).__name__}"] += 1
            return
    assert np.isfinite(res.chi2) and res.verdict is not None
    outcomes["file imaged"] += 1


def main(src: str, work: str, n: int) -> int:
    logging.disable(logging.WARNING)  # the undersampling warnings of damaged data are expected
    cfg = settings(max_examples=n, deadline=None, database=None, derandomize=True,
                   suppress_health_check=list(HealthCheck))

    @cfg
    @given(uv=st.lists(st.tuples(values, values), min_size=1, max_size=40),
           scale=st.sampled_from([1e6, 1e7, 1e8]), pixel=st.sampled_from([0.1, 0.6, 5.0]),
           method=st.sampled_from(["nufft", "dft"]))
    def transforms(uv, scale, pixel, method):
        u = [a * scale for a, _ in uv]
        v = [b * scale for _, b in uv]
        with np.errstate(all="ignore"):
            transform_case(u, v, pixel, method)

    @cfg
    @given(column=st.sampled_from(["UCOORD", "VCOORD", "U1COORD", "V2COORD"]),
           rows=st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=5),
           vals=st.lists(values, min_size=5, max_size=5), flag=st.booleans())
    def files(column, rows, vals, flag):
        file_case(Path(src), Path(work), column, rows, vals, flag)

    transforms()
    files()
    for k, c in sorted(outcomes.items()):
        print(f"{k}: {c}")
    print(f"examples: {sum(outcomes.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
