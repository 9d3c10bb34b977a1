"""Inputs that cannot crash imaging: damaged (u, v) and wavelengths refused before finufft (which
segfaults or aborts with "double free" on them, killing the process or a Dask worker), damaged
values and error bars dropped with counts, too few points refused, a failing plot never costing
the product, quicklooks named after their product."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from oiflow.errors import DataError, ImagingError
from oiflow.image.data import MIN_ERROR, Selection, imaging_data
from oiflow.image.transform import MAX_CYCLES_PER_PIXEL, make_transform
from oiflow.oifits import read_oifits
from oiflow.units import MAS

REPO = Path(__file__).resolve().parents[1]
BINARY = "imaging/contests_oifitsjl/contest-2008-binary.oifits"
SMALL = dict(npix=32, pixel_size_mas=0.45, mu=1e3, maxiter=20, levels=1)
#: examples of the property test (each: a transform, or a file imaged for 5 iterations)
N_EXAMPLES = 40


def _damaged(shared_data, tmp_path, ext: str, column: str, value: float, every: int = 3) -> Path:
    path = tmp_path / f"damaged-{column}.oifits"
    with fits.open(shared_data / BINARY) as h:
        h[ext].data[column][::every] = value
        h.writeto(path)
    return path


@pytest.mark.parametrize("ext, column, value, hdu", [
    ("OI_VIS2", "UCOORD", np.nan, "OI_VIS2#4"), ("OI_VIS2", "VCOORD", np.inf, "OI_VIS2#4"),
    ("OI_T3", "U1COORD", 1e308, "OI_T3#5"), ("OI_T3", "V2COORD", -np.inf, "OI_T3#5"),
    ("OI_WAVELENGTH", "EFF_WAVE", np.nan, "OI_WAVELENGTH#3")])
def test_damaged_coordinates_are_refused_naming_file_table_and_column(shared_data, tmp_path, ext, column, value, hdu):
    """`oiflow image` on them: exit 2 and one line naming what and where (these segfaulted or
    aborted in finufft); run in a subprocess, so a native crash would show as its status."""
    src = _damaged(shared_data, tmp_path, ext, column, value)
    p = subprocess.run([sys.executable, "-m", "oiflow.cli", "image", str(src), "--out", str(tmp_path / "x.fits"),
                        "--npix", "32", "-q"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: non-finite or implausible")
    assert f"file {src}" in err[0] and f"HDU {hdu}" in err[0] and f"column {column}" in err[0] and "rows 0, " in err[0]
    assert not (tmp_path / "x.fits").exists()


def test_flagged_damage_is_ignored(shared_data, tmp_path):
    """A damaged coordinate on a flagged point is not used, hence not refused."""
    path = tmp_path / "flagged.oifits"
    with fits.open(shared_data / BINARY) as h:
        h["OI_VIS2"].data["UCOORD"][0] = np.nan
        h["OI_VIS2"].data["FLAG"][0] = True
        h.writeto(path)
    data = imaging_data([read_oifits(path, warn=False)])
    assert data.excluded["vis2_flagged"] == 8 and data.used["vis2"] == 600 - 8  # row 0: 8 channels


def test_damaged_input_fails_the_pipeline_unit_not_the_worker(shared_data, tmp_path):
    from oiflow.catalog import Catalog
    from oiflow.config import ImageTarget
    from oiflow.work.image import image_unit, run_image_unit

    src = _damaged(shared_data, tmp_path, "OI_T3", "U1COORD", np.nan)
    with Catalog.for_root(tmp_path) as cat:
        unit = image_unit("Gam_Vic", "2007-05-10", [src], tmp_path, ImageTarget(**SMALL), cat)
    res = run_image_unit(unit)
    assert not res.ok and res.products == []
    (failure,) = res.failures
    assert "U1COORD" in str(failure) and "OI_T3#5" in str(failure)


def test_the_transform_refuses_what_would_crash_finufft():
    u = np.array([1e7, 2e7, np.nan])
    v = np.zeros(3)
    pix = 0.5 * MAS
    for method in ("nufft", "dft"):
        with pytest.raises(ImagingError, match="non-finite or beyond"):
            make_transform(u, v, 32, pix, np, method=method)
        with pytest.raises(ImagingError, match="index 1"):
            make_transform(np.array([1e7, 2 * MAX_CYCLES_PER_PIXEL / pix]), np.zeros(2), 32, pix, np, method=method)
    T = make_transform(np.array([1e7, 0.9 * MAX_CYCLES_PER_PIXEL / pix]), np.zeros(2), 32, pix, np)  # aliased, allowed
    assert np.all(np.isfinite(T.forward(np.ones((32, 32)))))


def test_random_uv_never_crash_the_process(shared_data, tmp_path):
    """Property (hypothesis, in a child process so that a segfault or abort is its exit status):
    random finite and non-finite (u, v) — in a transform, and written into a real file's
    coordinate columns, flagged or not — give a result or one of oiflow's errors, never a crash.
    Without the guards this child dies with SIGSEGV (exit 139) within 40 examples."""
    p = subprocess.run([sys.executable, str(REPO / "tests/image_fuzz_child.py"), str(shared_data / BINARY),
                        str(tmp_path), str(N_EXAMPLES)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, (p.returncode, p.stdout[-2000:], p.stderr[-3000:])
    counts = dict(line.rsplit(": ", 1) for line in p.stdout.strip().splitlines())
    assert int(counts["examples"]) == 2 * N_EXAMPLES
    # both outcomes are exercised at both levels
    assert int(counts["transform ran"]) > 0 and int(counts["transform refused: ImagingError"]) > 0
    assert int(counts["file imaged"]) > 0 and int(counts["file refused: OIFitsError"]) > 0


@pytest.mark.parametrize("value", [0.0, -0.01, np.nan, np.inf, 1e-300])
def test_unusable_error_bars_are_dropped_and_counted(shared_data, tmp_path, value):
    from oiflow.image import reconstruct_files

    src = _damaged(shared_data, tmp_path, "OI_VIS2", "VIS2ERR", value, every=10)
    res = reconstruct_files([src], tmp_path / "x.fits", SMALL, plots=False)
    # every 10th of the 75 rows, 8 channels each: 64 of the 600 V² points
    assert res.excluded["vis2_bad_error"] == 64 and res.used["vis2"] == 536
    assert f"dropped 64 vis2 point(s) with a non-finite error bar or one below {MIN_ERROR:g}" in res.messages
    assert np.isfinite(res.chi2) and res.verdict.status != "failed"
    assert fits.getheader(tmp_path / "x.fits", "IMAGE-OI OUTPUT PARAM")["NV2"] == 536


def test_absurd_values_are_dropped_and_counted(shared_data, tmp_path):
    from oiflow.image import reconstruct_files

    src = _damaged(shared_data, tmp_path, "OI_VIS2", "VIS2DATA", 1e300, every=20)
    res = reconstruct_files([src], tmp_path / "x.fits", SMALL, plots=False)
    assert res.excluded["vis2_bad_value"] == 32 and np.isfinite(res.chi2)  # 4 rows × 8 channels
    assert any(m.startswith("dropped 32 vis2 point(s) with a non-finite value") for m in res.messages)


def test_too_few_points_is_a_clear_error(shared_data, tmp_path):
    from oiflow.cli import main

    path = tmp_path / "few.oifits"
    with fits.open(shared_data / BINARY) as h:
        h["OI_VIS2"].data["FLAG"][:] = True
        h["OI_VIS2"].data["FLAG"][0, 0] = False
        h["OI_T3"].data["FLAG"][:] = True
        h["OI_T3"].data["FLAG"][0, 0] = False
        h.writeto(path)
    with pytest.raises(DataError, match=r"too few data to make an image of 'Gam_Vic': 2 usable point\(s\) "
                                        r"\(vis2 1, t3phi 1\); at least 3 are needed"):
        imaging_data([read_oifits(path, warn=False)], Selection())
    assert main(["image", str(path), "--out", str(tmp_path / "x.fits"), "-q"]) == 1
    assert not (tmp_path / "x.fits").exists()


def test_a_failing_plot_never_costs_the_product(shared_data, tmp_path, monkeypatch):
    """`fig.tight_layout()` raised a singular-matrix error and left image.fits without PNGs."""
    import oiflow.image.plots as plots
    from oiflow.image import reconstruct_files

    def singular(*a, **k):
        raise np.linalg.LinAlgError("Singular matrix")

    monkeypatch.setattr(plots, "plot_image", singular)
    out = tmp_path / "x.fits"
    res = reconstruct_files([shared_data / BINARY], out, SMALL)
    assert out.is_file() and res.png_paths == [str(tmp_path / "x.residuals.png")]
    assert "quicklook x.png not written: LinAlgError: Singular matrix" in res.messages
    assert not (tmp_path / "x.png").exists()


def test_quicklooks_are_named_after_the_product(shared_data, tmp_path):
    """Two runs in one folder keep their own quicklooks (both wrote image.png and residuals.png)."""
    from oiflow.cli import main
    from oiflow.image.plots import quicklook_paths

    assert quicklook_paths("L3/t/n/image.fits") == (Path("L3/t/n/image.png"), Path("L3/t/n/image.residuals.png"))
    assert quicklook_paths("run.2.fits") == (Path("run.2.png"), Path("run.2.residuals.png"))
    src = str(shared_data / BINARY)
    for name, mu in (("a", "1e3"), ("b", "1e6")):
        main(["image", src, "--out", str(tmp_path / f"{name}.fits"), "--npix", "32", "--pixel-size", "0.45",
              "--mu", mu, "--maxiter", "20", "-q"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.fits", "a.png", "a.residuals.png", "b.fits", "b.png",
                                                           "b.residuals.png"]
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "b.png").read_bytes()


def test_an_initial_image_with_infinite_pixels_is_refused(shared_data, tmp_path):
    from oiflow.image import reconstruct_files

    inp = tmp_path / "in.fits"
    with fits.open(shared_data / "imaging/oimaging/Bin_Ary--MIRC_H_with_img.fits") as h:
        h["IMAGE-OI INITIAL IMAGE"].data[3, 4] = np.inf
        h.writeto(inp)
    with pytest.raises(ImagingError, match="image 'IMAGE-OI INITIAL IMAGE' has 1 infinite pixel"):
        reconstruct_files([inp], tmp_path / "out.fits")
    assert not (tmp_path / "out.fits").exists()
