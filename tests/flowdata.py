"""Synthetic archives of nights for the catalogue, ingest and flow tests and benchmarks.

Each file is a small synthetic OIFITS2 (uniform disk, 4 telescopes: 6 V² rows and 4 T3 rows per
snapshot) at a known MJD, so the expected granules are known exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from oiflow.fit.analytic import uniform_disk
from oiflow.oifits import write_oifits
from oiflow.simulate import synthetic
from oiflow.units import MAS

STATIONS = np.array([[0.0, 0.0, 0.0], [32.0, 5.0, 0.0], [-12.0, 60.0, 0.0], [70.0, 40.0, 0.0]])
MJD0 = 60310.1  # 2024-01-01 02:24 UTC: night 2023-12-31 at longitude 0 (noon-to-noon UTC)


def night_name(k: int) -> str:
    return f"2023-12-{31 - k:02d}" if k < 31 else f"night{k:03d}"


def make_file(path: Path, *, target: str = "HD_1", mjd: float = MJD0, nwave: int = 8, seed: int = 0,
              insname: str = "SIM_K") -> Path:
    wave = np.linspace(2.0e-6, 2.4e-6, nwave)
    oi = synthetic.synthetic_oifits(lambda u, v, w: uniform_disk(u, v, 1.0 * MAS), u=None, v=None,
                                    wavelength=wave, station_xyz=STATIONS, mjd=mjd, seed=seed,
                                    target=target, insname=insname, arrname="SIMARRAY")
    write_oifits(oi, path)
    return path


def make_archive(root: Path, n_nights: int = 3, files_per_night: int = 2, *, nwave: int = 8,
                 bad: dict[int, int] | None = None) -> list[Path]:
    """``root/<night>/obs_<i>.fits``; ``bad={night_index: n}`` adds n truncated (unreadable) files.
    Returns the night directories."""
    nights = []
    for k in range(n_nights):
        d = root / night_name(k)
        d.mkdir(parents=True, exist_ok=True)
        for i in range(files_per_night):
            make_file(d / f"obs_{i:02d}.fits", target=f"HD_{i}", mjd=MJD0 - k + 0.01 * i, nwave=nwave,
                      seed=100 * k + i)
        for j in range((bad or {}).get(k, 0)):
            (d / f"broken_{j}.fits").write_bytes(b"SIMPLE  =                    T" + b" " * 1000)
        nights.append(d)
    return nights
