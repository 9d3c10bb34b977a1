"""The imaging benchmark panel: simulated data of known truth, and the two programs run on it.

Cases: five morphologies × two (u, v) coverages × two signal-to-noise ratios, simulated with
:func:`oiflow.simulate.synthetic.earth_rotation_oifits`, plus the OITOOLS.jl spotted-disk series
(tests/data/imaging/oitoolsjl_spotdisk, true images beside the data).

Sizes are in units of the coverage's resolution ``res = λ_min / (2 B_max)``; the image grid is
64 × 64 pixels of ``res / 3`` (rounded to two significant digits), so every object fits well
inside the 21-res field. The true images are pixel-integrated (5× supersampled) on that grid and
the data are their exact DFT plus noise.

Both programs get the same file and the same grid and otherwise their defaults:

* oiflow: ``oiflow image FILE --out OUT --npix N --pixel-size P``;
* MiRA (``ymira``): the pixel size and field of view, and what its documentation requires or gives
  as the typical command (MiRA/doc/USAGE.md): ``-initial=Dirac`` (an initial image is required),
  ``-regul=hyperbolic -mu=3e3 -tau=5e-5`` (without a regulariser it returns noise after ≈ 40 s),
  ``-flux=1 -min=0`` and ``-ftol=0 -gtol=0 -maxeval=1000`` (without them it iterates for minutes).

Score: the Beauty-Contest normalised cross-correlation (:func:`oiflow.image.metric.quality`)
against the truth blurred to the nominal resolution λ/2B (``blur="truth"``).
"""

from __future__ import annotations

import math
import os
import resource
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from oiflow.image.initial import gaussian, uniform_disk
from oiflow.image.metric import nominal_resolution, quality
from oiflow.image.plots import quicklook_paths
from oiflow.image.transform import dft
from oiflow.oifits import read_oifits, write_oifits
from oiflow.simulate.geometry import project_baselines
from oiflow.site import resolve_stations
from oiflow.simulate.synthetic import earth_rotation_oifits
from oiflow.units import DEG, MAS

NPIX = 64
WAVES = np.linspace(1.5e-6, 1.8e-6, 6)  # H band, 6 channels (PIONIER / MIRC-X like)

#: (u, v) coverages: configuration, facility, declination (deg), hour angles (h)
COVERAGES = {
    "vlti4-snap": dict(configuration="large", facility="VLTI", dec_deg=-30.0, hour_angles_h=[-1.0, 0.0, 1.0]),
    "chara6-night": dict(configuration="CHARA", facility="CHARA", dec_deg=35.0,
                         hour_angles_h=list(np.linspace(-4.0, 4.0, 9))),
}
#: σ of each complex visibility (absolute): high and low signal-to-noise
SNRS = {"snr-high": 0.005, "snr-low": 0.03}

MIRA_OPTIONS = ["-initial=Dirac", "-regul=hyperbolic", "-mu=3e3", "-tau=5e-5", "-flux=1", "-min=0", "-ftol=0",
                "-gtol=0", "-maxeval=1000"]


def _point(n: int, pix: float, x: float, y: float) -> np.ndarray:
    """A point source (bilinearly shared between the four nearest pixels) at (x East, y North) rad."""
    img = np.zeros((n, n))
    fx, fy = n // 2 - x / pix, n // 2 + y / pix
    ix, iy = int(math.floor(fx)), int(math.floor(fy))
    ax, ay = fx - ix, fy - iy
    for dy, wy in ((0, 1 - ay), (1, ay)):
        for dx, wx in ((0, 1 - ax), (1, ax)):
            img[iy + dy, ix + dx] += wx * wy
    return img


def _supersampled(n: int, pix: float, fn, s: int = 5) -> np.ndarray:
    """Pixel-integrate fn(x_east, y_north) (rad) on the n×n grid (s×s samples per pixel)."""
    k = np.arange(n * s) / s - n // 2 - (s - 1) / (2 * s)
    x, y = -k[None, :] * pix, k[:, None] * pix
    img = fn(x, y)
    return img.reshape(n, s, n, s).sum(axis=(1, 3))


def _ring(n, pix, radius, width, brightest_pa, contrast):
    """A Gaussian-profile ring (FWHM ``width``) of ``radius``, azimuthally modulated as
    1 + contrast·cos(θ − PA) (θ from North through East)."""

    def fn(x, y):
        r = np.hypot(x, y)
        theta = np.arctan2(x, y)
        return np.exp(-4 * math.log(2) * (r - radius) ** 2 / width**2) * (1 + contrast * np.cos(theta - brightest_pa))

    img = _supersampled(n, pix, fn)
    return img / img.sum()


def _ellipse(n, pix, major, minor, pa):
    """An elliptical Gaussian (FWHM ``major`` × ``minor``, major axis at ``pa`` from North through East)."""

    def fn(x, y):
        along = x * math.sin(pa) + y * math.cos(pa)
        across = x * math.cos(pa) - y * math.sin(pa)
        return np.exp(-4 * math.log(2) * ((along / major) ** 2 + (across / minor) ** 2))

    img = _supersampled(n, pix, fn)
    return img / img.sum()


def _offset(r, pa_deg):
    return r * math.sin(pa_deg * DEG), r * math.cos(pa_deg * DEG)


def morphology(name: str, n: int, pix: float, res: float) -> np.ndarray:
    """The true image (unit flux) of morphology ``name`` with sizes in units of ``res`` (rad)."""
    if name == "spotted-disk":
        return (0.65 * uniform_disk(n, pix, 7 * res) + 0.22 * gaussian(n, pix, 1.2 * res, *_offset(2.2 * res, 60))
                + 0.13 * gaussian(n, pix, 1.0 * res, *_offset(2.0 * res, 220)))
    if name == "binary-resolved":
        return 0.7 * uniform_disk(n, pix, 3 * res) + 0.3 * uniform_disk(n, pix, 0.6 * res, *_offset(6 * res, 130))
    if name == "inner-rim":
        return 0.75 * _ring(n, pix, 4 * res, 1.2 * res, 60 * DEG, 0.7) + 0.25 * _point(n, pix, 0.0, 0.0)
    if name == "envelope":
        return 0.7 * _ellipse(n, pix, 9 * res, 4 * res, 35 * DEG) + 0.3 * uniform_disk(n, pix, 0.6 * res)
    if name == "faint-companion":
        return 0.97 * uniform_disk(n, pix, 2 * res) + 0.03 * _point(n, pix, *_offset(5 * res, 250))
    raise KeyError(name)


MORPHOLOGIES = ("spotted-disk", "binary-resolved", "inner-rim", "envelope", "faint-companion")


def coverage_resolution(cov: dict) -> float:
    """λ_min / (2 B_max) (rad) of a coverage."""
    site, stations = resolve_stations(cov["configuration"], cov["facility"])
    enu = site.enu(stations)
    d = np.array([enu[j] - enu[i] for i in range(len(stations)) for j in range(i + 1, len(stations))])
    u, v, _ = project_baselines(d, np.asarray(cov["hour_angles_h"]) * 15 * DEG, cov["dec_deg"] * DEG,
                                site.latitude_deg * DEG)
    return float(WAVES.min() / (2 * np.max(np.hypot(u, v))))


@dataclass
class Case:
    name: str
    oifits: Path
    truth: np.ndarray  # NPIX × NPIX, unit flux, East left, North up
    pixel_mas: float
    npix: int = NPIX


def _visfunc(image: np.ndarray, pix: float):
    def visfunc(u, v, wave):
        shape = np.shape(u)
        return dft(image, pix, np.ravel(u), np.ravel(v), np).reshape(shape) / image.sum()

    return visfunc


#: a held-out panel (defaults were compared on it, not tuned): other (u, v) coverages, the truths
#: turned by 90°, other noise
HELDOUT_COVERAGES = {
    "vlti4-medium-2snap": dict(configuration="medium", facility="VLTI", dec_deg=-50.0, hour_angles_h=[-0.5, 1.0]),
    "chara6-6h": dict(configuration="CHARA", facility="CHARA", dec_deg=20.0, hour_angles_h=list(np.linspace(-3.0, 3.0, 7))),
}


def build_panel(directory: Path, spotdisk_dir: Path | None = None, heldout: bool = False) -> list[Case]:
    """Write the panel's OIFITS files to ``directory``; the cases with their truths
    (``heldout``: the held-out variant, without the spotted-disk series)."""
    directory.mkdir(parents=True, exist_ok=True)
    cases = []
    for ci, (cov_name, cov) in enumerate((HELDOUT_COVERAGES if heldout else COVERAGES).items()):
        res = coverage_resolution(cov)
        pix_mas = float(f"{res / 3 / MAS:.2g}")
        pix = pix_mas * MAS
        for mi, morph in enumerate(MORPHOLOGIES):
            truth = morphology(morph, NPIX, pix, res)
            if heldout:
                truth = np.rot90(truth).copy()
            for si, (snr_name, sigma) in enumerate(SNRS.items()):
                oi = earth_rotation_oifits(_visfunc(truth, pix), wavelength=WAVES, vis_noise=sigma,
                                           seed=100 * ci + 10 * mi + si + (1000 if heldout else 0), target=morph.upper(),
                                           **cov)
                path = directory / f"{morph}_{cov_name}_{snr_name}.oifits"
                write_oifits(oi, path)
                cases.append(Case(f"{morph} {cov_name} {snr_name}", path, truth, pix_mas))
    if spotdisk_dir is not None and not heldout:
        from astropy.io import fits

        for k in (1, 2, 3):
            truth = fits.getdata(spotdisk_dir / f"4masdiskspotchangemove{k}.fits").astype(float)
            cases.append(Case(f"OITOOLS.jl spotted disk {k}", spotdisk_dir / f"4masdiskspotchangemove{k}.oifits",
                              truth / truth.sum(), 0.1))
    return cases


def scores(case: Case, image: np.ndarray) -> tuple[float, float]:
    """Beauty-Contest scores of ``image``: against the case's truth blurred to λ/2B (the issue's
    score), and with both images blurred (Gomes et al. 2017: an image sharper than the beam is
    not penalised)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        oi = read_oifits(case.oifits, warn=False)
    from oiflow.image.data import Selection, imaging_data

    beam = nominal_resolution(imaging_data([oi], Selection()).max_frequency)
    pix = case.pixel_mas * MAS
    return quality(image, case.truth, pix, beam, blur="truth"), quality(image, case.truth, pix, beam, blur="both")


def _read_image(path: Path, case: Case) -> np.ndarray:
    from oiflow.image.imageoi import read_fits_image

    img = read_fits_image(path)
    if img.pixel_size is None:
        img.pixel_size = case.pixel_mas * MAS
    return np.asarray(img.resample(case.npix, case.pixel_mas * MAS), float)


def oiflow_command(case: Case, out: Path) -> list[str]:
    exe = Path(sys.executable).with_name("oiflow")
    prog = [str(exe)] if exe.exists() else [sys.executable, "-m", "oiflow.cli"]
    return prog + ["image", str(case.oifits), "--out", str(out), "--force", "--npix", str(case.npix),
                   "--pixel-size", f"{case.pixel_mas:g}"]  # --force: as MiRA's -overwrite (repeated runs)


def mira_command(case: Case, out: Path) -> list[str]:
    return ["ymira", f"-pixelsize={case.pixel_mas:g}mas", f"-fov={case.npix * case.pixel_mas:g}mas", *MIRA_OPTIONS,
            "-overwrite", str(case.oifits), str(out)]


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(cmd: list[str], out: Path, timeout: float = 600) -> tuple[float, float | None, float, subprocess.CompletedProcess]:
    """(wall time of the whole command, time at which ``out`` was last written — both from the
    command's start, s —, CPU time of its process tree (user + sys of the command and of every
    process it waited for, oiflow's quicklook process included), and the finished process)."""
    cpu0 = _children_cpu()
    t_epoch, t = time.time(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "COLUMNS": "120"})
    wall = time.perf_counter() - t
    cpu = _children_cpu() - cpu0
    written = out.stat().st_mtime - t_epoch if out.exists() else None
    return wall, written, cpu, proc


def run_case(case: Case, workdir: Path, mira: bool = True, mira_first: bool = False) -> dict:
    """Both programs on one case, one after the other (``mira_first`` alternates the order over
    the panel, so that a change of the machine's load does not favour one): exit status, wall
    time of the whole command, time until the product file was written, CPU time of the process
    tree, the two scores of each (MiRA's absent without ymira) and oiflow's verdict."""
    slug = case.oifits.stem
    row: dict = {"case": case.name, "npix": case.npix, "pixel_mas": case.pixel_mas}
    progs = [("oiflow", oiflow_command)] + ([("mira", mira_command)] if mira and shutil.which("ymira") else [])
    for name, command in (progs[::-1] if mira_first else progs):
        out = workdir / f"{slug}.{name}.fits"
        out.unlink(missing_ok=True)
        for png in quicklook_paths(out):
            png.unlink(missing_ok=True)
        wall, written, cpu, proc = run(command(case, out), out)
        row[f"{name}_exit"] = proc.returncode
        row[f"{name}_wall_s"] = round(wall, 3)
        row[f"{name}_cpu_s"] = round(cpu, 3)
        row[f"{name}_product_s"] = None if written is None else round(written, 3)
        ok = out.exists()
        truth_score, both_score = scores(case, _read_image(out, case)) if ok else (None, None)
        row[f"{name}_score"] = None if truth_score is None else round(truth_score, 4)
        row[f"{name}_score_both"] = None if both_score is None else round(both_score, 4)
        if name == "oiflow":
            lines = proc.stdout.strip().splitlines() or [""]
            row["oiflow_summary"] = lines[0][:300]
            row["oiflow_verdict"] = lines[-1].split()[1] if lines[-1].startswith("verdict: ") else "none"
            row["oiflow_quicklooks"] = all(p.is_file() for p in quicklook_paths(out))
    return row


def startup(case: Case, workdir: Path, repeat: int = 3) -> dict:
    """Start-up of ``oiflow image`` on ``case``: from the command's start to its first iteration
    (the ``-v`` log line), best of ``repeat``; beside it, in the same run, the floor any such
    command pays — a bare interpreter, one importing numpy, one importing numpy and
    astropy.io.fits the usual way (astropy.units included), one importing the OIFITS reader
    package (oiflow.oifits, which imports astropy.io.fits without astropy.units) — to show the
    machine's load."""
    import re

    out = workdir / "startup.fits"
    cmd = oiflow_command(case, out)
    cmd.insert(1 if cmd[0].endswith("oiflow") else 3, "-v")
    first, bare, numpy_only, floor, reader = [], [], [], [], []
    for _ in range(repeat):
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        m = re.search(r"first iteration at ([0-9.]+)", proc.stderr + proc.stdout)
        if m:
            first.append(float(m.group(1)) - t0)
        for sink, code in ((bare, "pass"), (numpy_only, "import numpy"), (floor, "import numpy, astropy.io.fits"),
                           (reader, "import oiflow.oifits")):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            sink.append(time.perf_counter() - t)
    return {"first_iteration_s": round(min(first), 3) if first else None, "python_bare_s": round(min(bare), 3),
            "python_numpy_s": round(min(numpy_only), 3), "python_numpy_astropy_s": round(min(floor), 3),
            "python_oiflow_oifits_s": round(min(reader), 3)}
