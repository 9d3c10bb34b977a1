"""Quicklooks: drawn by a child process off the solver's critical path (``oiflow image``), never
costing the product or the exit status whatever happens to that child, on an asinh scale that
shows a 1 % companion, with the verdict in the title."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from oiflow.image import plots
from oiflow.image.quicklook_process import QuicklookProcess
from oiflow.units import MAS

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests/benchmarks"))
import image_panel as panel  # noqa: E402


@pytest.fixture(scope="module")
def companion_snapshot(tmp_path_factory) -> Path:
    """A star with a 3 % companion, VLTI 4T snapshots (the imaging panel's case): imaged with the
    defaults in well under a second, verdict ok."""
    from oiflow.oifits import write_oifits
    from oiflow.simulate.synthetic import earth_rotation_oifits

    cov = panel.COVERAGES["vlti4-snap"]
    res = panel.coverage_resolution(cov)
    pix = float(f"{res / 3 / MAS:.2g}") * MAS
    truth = panel.morphology("faint-companion", 32, pix, res)
    oi = earth_rotation_oifits(panel._visfunc(truth, pix), wavelength=panel.WAVES, vis_noise=0.03, seed=3,
                               target="COMP", **cov)
    path = tmp_path_factory.mktemp("ql") / "comp.oifits"
    write_oifits(oi, path)
    return path


def _command(src: Path, out: Path, prelude: str = "") -> subprocess.CompletedProcess:
    """``oiflow image`` in a fresh single-threaded interpreter (the fork path), after ``prelude``;
    prints the exit status and whether matplotlib was imported by the command's own process."""
    code = (f"import sys\n{prelude}\nfrom oiflow.cli import main\n"
            f"rc = main(['image', {str(src)!r}, '--out', {str(out)!r}, '--npix', '32', '--pixel-size', '0.8', '-q'])\n"
            "print('RESULT', rc, 'matplotlib' in sys.modules)\n")
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)


def _result(proc) -> tuple[int, bool]:
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    _, rc, mpl = line.split()
    return int(rc), mpl == "True"


def test_the_command_draws_its_quicklooks_in_a_child_process(companion_snapshot, tmp_path):
    proc = _command(companion_snapshot, tmp_path / "x.fits")
    rc, mpl_in_parent = _result(proc)
    assert rc == 0 and "verdict: ok" in proc.stdout, proc.stdout + proc.stderr
    assert not mpl_in_parent  # matplotlib was imported (and the PNGs drawn) by the child only
    for name in ("x.fits", "x.png", "x.residuals.png"):
        assert (tmp_path / name).stat().st_size > 1000
    assert f"  {tmp_path / 'x.png'}" in proc.stdout.splitlines()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.fits", "x.png", "x.residuals.png"]  # no temporary left


@pytest.mark.parametrize("failure, message", [
    ("raise np.linalg.LinAlgError('Singular matrix')", "quicklook x.png not written: LinAlgError: Singular matrix"),
    ("os.kill(os.getpid(), signal.SIGKILL)",
     "quicklooks not written: the drawing process ended without drawing (killed by signal 9)"),
])
def test_a_failing_drawing_process_costs_neither_the_product_nor_the_exit_status(companion_snapshot, tmp_path, failure,
                                                                               message):
    prelude = ("import os, signal\nimport numpy as np\nimport oiflow.image.plots as plots\n"
               f"def broken(*a, **k):\n    {failure}\nplots.plot_image = broken")
    proc = _command(companion_snapshot, tmp_path / "x.fits", prelude)
    rc, _ = _result(proc)
    assert rc == 0 and "verdict: ok" in proc.stdout, proc.stdout + proc.stderr
    assert (tmp_path / "x.fits").is_file() and not (tmp_path / "x.png").exists()
    assert message in proc.stderr
    if "LinAlgError" in message:  # the other figure is still drawn
        assert (tmp_path / "x.residuals.png").is_file()


def _payload(n=32, pixel_mas=0.3):
    img = np.zeros((n, n))
    img[n // 2, n // 2] = 1.0
    return {"image": img, "truth": None, "pixel_size": pixel_mas * MAS, "title": "t", "beam": None,
            "observables": []}


def test_a_drawing_process_that_hangs_is_stopped(tmp_path, monkeypatch):
    monkeypatch.setattr(plots, "plot_image", lambda *a, **k: time.sleep(60))
    monkeypatch.setattr("threading.active_count", lambda: 1)  # pytest's worker may run threads: fork anyway
    proc = QuicklookProcess(timeout=2.0).start()
    assert proc.running
    t = time.perf_counter()
    assert proc.submit(_payload(), tmp_path / "x.fits")
    paths, messages = proc.join()
    assert time.perf_counter() - t < 30 and not proc.running
    assert paths == [] and messages == ["quicklooks not written: the drawing process took more than 2 s and was stopped"]


def test_stopping_the_drawing_process_stops_the_grandchild_drawing_the_residuals(tmp_path, monkeypatch):
    """The residuals are drawn by a grandchild (at the same time as the image): when the parent
    stops the drawing (timeout, or the product not written), no figure appears later."""
    late = tmp_path / "late"

    def slow_residuals(payload, path):
        time.sleep(4)
        late.write_text("drawn after the parent gave up")
        return str(path)

    monkeypatch.setattr(plots, "plot_residuals", slow_residuals)
    monkeypatch.setattr("threading.active_count", lambda: 1)
    proc = QuicklookProcess(timeout=1.0).start()
    assert proc.submit(_payload(), tmp_path / "x.fits")
    paths, messages = proc.join()
    assert paths == [] and messages == ["quicklooks not written: the drawing process took more than 1 s and was stopped"]
    time.sleep(6)
    assert not late.exists()


def test_a_process_that_is_never_sent_a_result_ends_with_its_parent(tmp_path, monkeypatch):
    monkeypatch.setattr("threading.active_count", lambda: 1)
    with QuicklookProcess() as proc:
        pid = proc.pid
        assert pid is not None
    assert not proc.running
    with pytest.raises(ChildProcessError):  # reaped
        os.waitpid(pid, os.WNOHANG)


def test_no_fork_beside_other_threads(tmp_path):
    """A library caller with threads (a Dask worker) is not forked: the caller draws in-process."""
    import threading

    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        proc = QuicklookProcess().start()
        assert not proc.running and not proc.submit(_payload(), tmp_path / "x.fits") and proc.join() == ([], [])
    finally:
        stop.set()
        worker.join()


def _luminance(png: Path) -> np.ndarray:
    from matplotlib.image import imread

    rgb = imread(png)[..., :3]
    return rgb @ np.array([0.2126, 0.7152, 0.0722])


def test_a_one_percent_companion_stands_out_in_the_image_png(tmp_path):
    """A resolved star with a 1 % companion (simulated CHARA night, σ|V| = 0.005), reconstructed
    with the defaults and drawn: read back from the PNG, the companion's pixels are at ≥ 25 % of
    the display's luminance, ≥ 10 × the 99th percentile of the background around the star (on
    a linear scale its ~2 % of the peak would be black); the colour bar says the stretch, the
    title carries the verdict."""
    from oiflow.image.files import reconstruct_files
    from oiflow.image.initial import uniform_disk
    from oiflow.oifits import write_oifits
    from oiflow.simulate.synthetic import earth_rotation_oifits

    cov = panel.COVERAGES["chara6-night"]
    res = panel.coverage_resolution(cov)
    pix_mas = float(f"{res / 3 / MAS:.2g}")
    pix, n = pix_mas * MAS, 64
    x, y = panel._offset(6 * res, 120)  # East, North (rad)
    truth = 0.99 * uniform_disk(n, pix, 2 * res) + 0.01 * panel._point(n, pix, x, y)
    oi = earth_rotation_oifits(panel._visfunc(truth, pix), wavelength=panel.WAVES, vis_noise=0.005, seed=7,
                               target="COMPANION", **cov)
    write_oifits(oi, tmp_path / "c.oifits")
    result = reconstruct_files([tmp_path / "c.oifits"], tmp_path / "c.fits", {"npix": n, "pixel_size_mas": pix_mas})
    assert result.verdict.ok and result.png_paths[0] == str(tmp_path / "c.png")
    lum = _luminance(tmp_path / "c.png")
    (w_in, h_in), rects = plots.image_layout(1)
    left, bottom, width, height = rects[0]
    H, W = lum.shape
    assert (W, H) == (int(w_in * plots.IMAGE_DPI), int(h_in * plots.IMAGE_DPI))

    def png_xy(ix: float, iy: float) -> tuple[int, int]:
        """PNG column and row of image pixel (ix, iy) (iy from the bottom)."""
        return int((left + (ix + 0.5) / n * width) * W), int((1 - bottom - (iy + 0.5) / n * height) * H)

    cx, cy = png_xy(n // 2 - x / pix, n // 2 + y / pix)
    companion = lum[cy - 3: cy + 4, cx - 3: cx + 4].max()
    ox, oy = png_xy(n // 2, n // 2)
    rows, cols = np.indices(lum.shape)
    box = width * W  # the image's side in PNG pixels
    r = np.hypot(rows - oy, cols - ox) / box
    background = lum[(r > 0.1) & (r < 0.3) & (np.hypot(rows - cy, cols - cx) / box > 0.08)]
    assert companion >= 0.25 and companion >= 10 * np.percentile(background, 99), (companion, np.percentile(background, 99))
    payload = plots.quicklook_payload(result)
    assert payload["title"].endswith("verdict ok")
    assert plots.ASINH_WIDTH == 0.003 and "asinh stretch" in _colorbar_label()


def _colorbar_label() -> str:
    """The colour bar's label of a drawn image quicklook."""
    import io

    from matplotlib.figure import Figure

    size, rects = plots.image_layout(1)
    fig = Figure(figsize=size)
    plots._draw_image(fig, rects[0], _payload()["image"], 0.3 * MAS, None, "t")
    fig.savefig(io.BytesIO(), format="png")
    return fig.axes[-1].get_ylabel()  # the colour bar's axes come last


def test_the_payload_is_bounded_and_picklable():
    """The residuals figure draws at most MAX_POINTS per observable; the payload crosses a pipe."""
    import pickle

    from oiflow.image.data import DataGroup, ImagingData, Selection, Term
    from oiflow.image.metric import Beam
    from oiflow.image.reconstruct import ImageResult, image_settings

    m = 3 * plots.MAX_POINTS + 7
    term = Term(np.arange(m)[:, None], np.ones(m), np.full(m, 0.1), np.linspace(1e6, 1e8, m), np.full(m, 1.6e-6))
    data = ImagingData([DataGroup(1.6e-6, np.zeros(m), np.zeros(m), {"vis2": term})], "T", Selection(), {}, {"vis2": m})
    res = ImageResult(image=np.ones((8, 8)) / 64, pixel_size=MAS, wavelengths=np.array([1.6e-6]), chi2=1.0,
                      chi2_terms={"vis2": 1.0}, ndata=m, used={"vis2": m}, excluded={}, mu=1.0, regularization="hyperbolic",
                      regularization_value=0.0, niter=1, nfev=1, converged=True, message="", beam=Beam(MAS, MAS, 0.0),
                      initial_image=np.ones((8, 8)), settings=image_settings(), elapsed=0.0, backend="numpy",
                      transform="nufft", data=data, models=[{"vis2": np.ones(m)}])
    p = plots.quicklook_payload(res)
    (obs,) = p["observables"]
    assert obs["total"] == m and obs["frequency"].size <= plots.MAX_POINTS and obs["frequency"].size > plots.MAX_POINTS // 2
    assert pickle.loads(pickle.dumps(p))["observables"][0]["total"] == m


def test_no_quicklook_is_left_without_its_product(companion_snapshot, tmp_path):
    """The quicklooks are drawn while the product is written; when writing it fails (here after
    the child has had time to draw), the drawings are removed with it: exit 1, nothing left."""
    prelude = ("import time\nimport oiflow.image.files as files\nfrom oiflow.errors import ImagingError\n"
               "def broken(*a, **k):\n    time.sleep(3)\n    raise ImagingError('disk full')\n"
               "files.write_imageoi_output = broken")
    proc = _command(companion_snapshot, tmp_path / "x.fits", prelude)
    rc, _ = _result(proc)
    assert rc == 1 and "error: disk full" in proc.stderr, proc.stdout + proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("maxiter, rc", [(None, 0), ("5", 1)])
def test_the_program_leaves_at_once_with_its_output_and_status(companion_snapshot, tmp_path, maxiter, rc):
    """Run as the program, `oiflow image` skips Python's teardown (os._exit, oiflow.cli.FAST_EXIT)
    after flushing: every line is out (the verdict last, the PNG paths before it), the status is
    the verdict's, the product and both quicklooks are on disk, no process is left behind."""
    out = tmp_path / "x.fits"
    cmd = [sys.executable, "-m", "oiflow.cli", "-v", "image", str(companion_snapshot), "--out", str(out), "--npix", "32",
           "--pixel-size", "0.8"] + (["--maxiter", maxiter] if maxiter else [])
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == rc and lines[-1].startswith("verdict: " + ("ok" if rc == 0 else "maxiter")), proc.stdout
    assert lines[-3:-1] == [f"  {tmp_path / 'x.png'}", f"  {tmp_path / 'x.residuals.png'}"]
    assert "first iteration at" in proc.stderr  # the log is flushed too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.fits", "x.png", "x.residuals.png"]


def test_the_leftovers_of_a_killed_atomic_write_are_found(tmp_path):
    """What a SIGKILL leaves of :func:`oiflow.provenance.atomic_path` (its temporary file) is
    found for that file only: the quicklook child killed mid-drawing leaves nothing behind."""
    import multiprocessing
    import os
    import signal

    from oiflow.provenance import atomic_leftovers, atomic_path

    def write_then_hang(path):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"half a PNG")
            os.kill(os.getpid(), signal.SIGKILL)

    for name in ("x.residuals.png", "x.png"):
        child = multiprocessing.get_context("fork").Process(target=write_then_hang, args=(tmp_path / name,))
        child.start()
        child.join()
        assert child.exitcode == -signal.SIGKILL
    (tmp_path / "x.png.other.tmp").write_text("not ours")
    left = atomic_leftovers(tmp_path / "x.png")
    assert len(left) == 1 and left[0].name.startswith(".x.") and left[0].name.endswith(".png.tmp")
    assert left[0].read_bytes() == b"half a PNG" and not (tmp_path / "x.png").exists()
    (other,) = atomic_leftovers(tmp_path / "x.residuals.png")
    assert other.name.startswith(".x.residuals.") and other != left[0]


def test_atomic_leftovers_names_only_the_temporary_files_of_that_path(tmp_path):
    import tempfile

    from oiflow.provenance import atomic_leftovers

    ours = [tempfile.mkstemp(prefix=f".{stem}.", suffix=".png.tmp", dir=tmp_path)[1] for stem in ("x", "x.residuals")]
    other = tempfile.mkstemp(prefix=".x.y.", suffix=".png.tmp", dir=tmp_path)[1]  # product x.y.fits
    assert atomic_leftovers(tmp_path / "x.png") == [Path(ours[0])]
    assert atomic_leftovers(tmp_path / "x.residuals.png") == [Path(ours[1])]
    assert Path(other) not in atomic_leftovers(tmp_path / "x.png")


def test_the_image_figure_keeps_what_it_shows_with_few_ticks():
    """Title (with the verdict), axis labels, N/E arrows, beam, scale bar and the labelled asinh
    colour bar are drawn; the image axes carry a few labelled ticks inside the field and the
    colour bar its :data:`COLORBAR_TICKS` only (no minor ticks: each tick is a millisecond)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    payload = dict(_payload(n=64, pixel_mas=0.4), beam=(2 * MAS, 1.5 * MAS, 0.3), title="T\nχ²_red 1.02\n9 it, verdict ok")
    with plots._style():
        fig = plots._image_figure(payload)
        FigureCanvasAgg(fig).draw()
    ax, cax = fig.axes
    assert [t.get_text() for t in fig.texts] == [payload["title"]]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("ΔRA (mas, East ←)", "ΔDec (mas, North ↑)")
    assert sorted(t.get_text() for t in ax.texts if t.get_text()) == ["5 mas", "E", "N", "beam"]
    assert sum(getattr(t, "arrow_patch", None) is not None for t in ax.texts) == 2  # the N and E arrows
    assert len(ax.patches) == 1 and len(ax.lines) == 1  # the beam, the scale bar
    assert [t.get_text() for t in cax.yaxis.get_ticklabels()] == [f"{t:g}" for t in plots.COLORBAR_TICKS]
    assert cax.get_ylabel() == "intensity / peak (asinh stretch, linear below 0.003)"
    assert cax.yaxis.get_minorticklocs().size == 0
    for axis in (ax.xaxis, ax.yaxis):
        ticks = axis.get_major_ticks()
        assert 3 <= len(ticks) <= 5 and all(abs(t.get_loc()) <= 64 * 0.4 / 2 for t in ticks)
        assert all(t.label1.get_text() and t.label1.get_fontsize() == 7 for t in ticks)
        assert axis.get_minorticklocs().size == 0
