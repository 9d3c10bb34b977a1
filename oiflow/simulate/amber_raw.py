"""AMBER-format raw files (the layout amdlib reads), with their own small fringe physics.

AMBER is a 3-telescope multi-axial combiner: the beams overlap on the detector with different
separations, so each pair makes spatially coded fringes at its own frequency, dispersed along
the other axis; photometric channels P1-P3 see each beam alone. One detector row = one
wavelength. The files are what ESO's AMBER recipes (amdlib) accept; the format was found by
reading Debian's libamber.so (strings and disassembly, its source package is not reachable here)
and checked with the real recipes:

* primary header: ``INSTRUME='AMBER'``, ``MJD-OBS``, ``DATE-OBS``, ``ESO DPR CATG/TYPE/TECH``
  (classification), ``ESO INS …`` cards (amdlib treats a file *without* any ``ESO INS`` card as a
  P2VM product, not raw data), and for P2VM files ``ESO OCS DET FRAM TYPE`` ∈ {DARK, TEL1, TEL2,
  TEL3, TEL12, TEL23, TEL13, TEL12Q, TEL23Q, TEL13Q} (the 3T P2VM is these 10 files, in this order);
* ``IMAGING_DETECTOR``: one row per detector region (1 row × 5 columns: dark, P1, P2, P3,
  interferometric); ``REGNAME`` must equal the name of the ``IMAGING_DATA`` column holding that
  region (amdlib matches them); ``CORNER`` is the region's lower-left detector pixel (1-based),
  ``NAXIS`` its size;
* ``IMAGING_DATA``: one row per frame, ``DATA1…DATA5`` images (16-bit counts);
* ``AMBER_WAVEDATA``: the wavelength (nm) and bandwidth of each of the 512 detector rows, and the
  spectral offsets of P1-P3 (``ESO DET1 Pk OFFSETY``).

Static calibrations (``AMBER_BADPIX``, ``AMBER_FLATFIELD``) are 512×512 images identified by
``ESO DPR TYPE``.

Status (phase 1): the real amber_p2vm reads, dark-subtracts, equalises and adds all ten files of a
set written by :func:`write_p2vm_set` and writes a P2VM_REDUCED product with the simulated
wavelength table (a container test checks it). NOT yet right: the P2VM's instrumental
visibilities (QC P2VM VISij ≈ 0.01 instead of the simulated 0.8-0.9), so the pair ordering,
the quadrature convention or the fringe model still differ from what amdlib expects; and object
files (ISS baseline keywords, ARRAY_GEOMETRY) for amber_SciCal are not written yet, so no
V²/closure-phase comparison with the truth exists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..provenance import write_hdulist_atomic

DETECTOR = 512
P2VM_FRAME_TYPES = ("DARK", "TEL1", "TEL2", "TEL3", "TEL12", "TEL23", "TEL13", "TEL12Q", "TEL23Q", "TEL13Q")
_PAIRS = {"12": (0, 1), "23": (1, 2), "13": (0, 2)}


@dataclass
class AmberSetup:
    """Detector layout and the instrument's fringe coding (all in detector pixels)."""

    nx: int = 32  # width of each region
    first_row: int = 100  # detector row (1-based) of the first spectral channel
    nwave: int = 64  # spectral channels (rows)
    wave0_nm: float = 1950.0  # wavelength of detector row 1
    dwave_nm: float = 3.0  # per row
    f0: float = 0.07  # fringe frequency of pair 12 at lambda_ref (cycles/pixel); 23: 2 f0; 13: 3 f0
    lambda_ref_nm: float = 2200.0
    envelope_fwhm: float = 14.0  # width of the beams' overlap in the interferometric channel
    kappa: tuple[float, float, float] = (0.5, 0.5, 0.5)  # flux split photometric / interferometric
    bias: float = 1000.0  # detector counts
    read_noise: float = 5.0
    dit: float = 0.05
    instrument_phase: dict[str, float] = field(default_factory=lambda: {"12": 0.3, "23": -0.5, "13": 1.1})
    instrument_vis: dict[str, float] = field(default_factory=lambda: {"12": 0.9, "23": 0.85, "13": 0.8})

    def wavelengths_nm(self) -> np.ndarray:
        rows = np.arange(1, DETECTOR + 1)
        return self.wave0_nm + (rows - 1) * self.dwave_nm

    def channel_wavelengths_nm(self) -> np.ndarray:
        return self.wavelengths_nm()[self.first_row - 1 : self.first_row - 1 + self.nwave]

    def frequency(self, pair: str) -> np.ndarray:
        """Fringe frequency (cycles/pixel) of ``pair`` for each spectral channel."""
        mult = {"12": 1, "23": 2, "13": 3}[pair]
        return mult * self.f0 * self.lambda_ref_nm / self.channel_wavelengths_nm()


def _x(setup: AmberSetup) -> np.ndarray:
    return np.arange(setup.nx) - (setup.nx - 1) / 2


def _envelope(setup: AmberSetup) -> np.ndarray:
    sig = setup.envelope_fwhm / 2.3548
    g = np.exp(-0.5 * (_x(setup) / sig) ** 2)
    return g / g.sum()


def frame_images(setup: AmberSetup, flux: np.ndarray, coherence: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Noise-free region images (dark, P1, P2, P3, IF) of one frame, in photo-electrons.

    ``flux``: (3, nwave) photo-electrons per beam and channel; ``coherence``: pair → complex
    (nwave,) coherent factor (visibility × instrumental and atmospheric phasors) for open pairs."""
    env = _envelope(setup)
    x = _x(setup)
    kappa = np.asarray(setup.kappa)[:, None]
    dark = np.zeros((setup.nwave, setup.nx))
    photo = [np.outer(kappa[k] * flux[k], env) for k in range(3)]
    inter_flux = (1 - kappa) * flux  # (3, nwave)
    ifimg = np.outer(inter_flux.sum(axis=0), env)
    for pair, mu in coherence.items():
        i, j = _PAIRS[pair]
        amp = 2 * np.sqrt(inter_flux[i] * inter_flux[j])  # (nwave,)
        phase = 2 * np.pi * np.outer(setup.frequency(pair), x)  # (nwave, nx)
        ifimg = ifimg + (amp * np.abs(mu))[:, None] * env[None, :] * np.cos(phase + np.angle(mu)[:, None])
    return [dark, *photo, ifimg]


def _detector_counts(images: list[np.ndarray], setup: AmberSetup, rng) -> list[np.ndarray]:
    out = []
    for img in images:
        e = rng.poisson(np.clip(img, 0, None)) if rng is not None else img
        noise = rng.normal(0, setup.read_noise, img.shape) if rng is not None else 0.0
        out.append(np.clip(np.rint(setup.bias + e + noise), -32768, 32767).astype(np.int16))
    return out


def _primary(setup: AmberSetup, dpr: tuple[str, str, str], mjd: float, extra: dict) -> fits.PrimaryHDU:
    from astropy.time import Time

    ph = fits.PrimaryHDU()
    h = ph.header
    h["ORIGIN"] = "ESO"
    h["TELESCOP"] = "ESO-VLTI-U1234"
    h["INSTRUME"] = "AMBER"
    h["MJD-OBS"] = mjd
    h["DATE-OBS"] = Time(mjd, format="mjd").isot
    h["HIERARCH ESO DPR CATG"], h["HIERARCH ESO DPR TYPE"], h["HIERARCH ESO DPR TECH"] = dpr
    h["HIERARCH ESO DET DIT"] = setup.dit
    h["HIERARCH ESO INS MODE"] = "oiflow-sim"
    h["HIERARCH ESO INS GRAT1 NAME"] = "LR"
    h["HIERARCH ESO INS GRAT1 ORDER"] = 1
    h["HIERARCH ESO INS GRAT1 WLEN"] = setup.lambda_ref_nm / 1000
    for k in (2, 5, 6, 7):
        h[f"HIERARCH ESO INS OPTI{k} NAME"] = "IN"
    h["HIERARCH ESO INS GRIS1 NAME"] = "OUT"  # required by amdlib's configuration check
    h["HIERARCH ESO INS GRIS2 NAME"] = "OUT"
    h["HIERARCH OIFLOW SIMULATED"] = (True, "written by oiflow.simulate.amber_raw")
    for k, v in extra.items():
        h[k] = v
    return ph


def _imaging_detector(setup: AmberSetup) -> fits.BinTableHDU:
    n = 5
    corners = np.array([(1 + (setup.nx + 8) * i, setup.first_row) for i in range(n)])
    cols = [
        fits.Column("REGION", "1J", array=np.arange(1, n + 1)),
        fits.Column("DETECTOR", "1J", array=np.ones(n, int)),
        fits.Column("PORTS", "3J", array=np.tile([1, 2, 3], (n, 1))),
        fits.Column("CORRELATION", "1J", array=[1, 1, 1, 1, 3]),
        fits.Column("REGNAME", "16A", array=[f"DATA{i + 1}" for i in range(n)]),
        fits.Column("CORNER", "2J", array=corners),
        fits.Column("GAIN", "1E", array=np.ones(n)),
        fits.Column("NAXIS", "2J", array=np.tile([setup.nx, setup.nwave], (n, 1))),
        fits.Column("CRVAL", "2E", array=np.zeros((n, 2))),
        fits.Column("CRPIX", "2E", array=np.zeros((n, 2))),
        fits.Column("CTYPE", "16A", array=["PIXEL"] * n),
        fits.Column("CD", "4E", array=np.tile([1.0, 0, 0, 1.0], (n, 1))),
    ]
    hdu = fits.BinTableHDU.from_columns(cols, name="IMAGING_DETECTOR")
    for k, v in dict(NDETECT=1, NREGION=n, MAX_COEF=0, NUM_DIM=2, MAXTEL=3).items():
        hdu.header[k] = v
    return hdu


def _imaging_data(setup: AmberSetup, frames: list[list[np.ndarray]], mjd: float) -> fits.BinTableHDU:
    nf = len(frames)
    cols = [
        fits.Column("FRAME", "1J", array=np.arange(1, nf + 1)),
        fits.Column("TIME", "1D", array=mjd + np.arange(nf) * setup.dit / 86400),
        fits.Column("EXPTIME", "1E", array=np.full(nf, setup.dit)),
        fits.Column("OPT_TRAIN", "3J", array=np.tile([1, 2, 3], (nf, 1))),
        fits.Column("INS_TRAIN", "3J", array=np.tile([1, 2, 3], (nf, 1))),
        fits.Column("REFERENCE", "3J", array=np.zeros((nf, 3), int)),
        fits.Column("OPD", "3D", array=np.zeros((nf, 3))),
        fits.Column("LOCALOPD", "3D", array=np.zeros((nf, 3))),
        fits.Column("OFFSET", "2E", array=np.zeros((nf, 2))),
        fits.Column("ROTATION", "1E", array=np.zeros(nf)),
        fits.Column("STEPPING_PHASE", "1J", array=np.ones(nf, int)),
        fits.Column("TARGET1", "1J", array=np.ones(nf, int)),
        fits.Column("TARTYP1", "1A", array=["U"] * nf),
    ]
    for r in range(5):
        data = np.stack([f[r] for f in frames])
        cols.append(fits.Column(f"DATA{r + 1}", f"{setup.nx * setup.nwave}I", dim=f"({setup.nx},{setup.nwave})",
                                array=data))
    hdu = fits.BinTableHDU.from_columns(cols, name="IMAGING_DATA")
    for k, v in dict(NREGION=5, MAXTEL=3, MAXINS=3, MAXSTEP=1, ORIGIN="ESO", INSTRUME="AMBER").items():
        hdu.header[k] = v
    return hdu


def _wavedata(setup: AmberSetup, mjd: float, date_obs: str) -> fits.BinTableHDU:
    wl = setup.wavelengths_nm()
    hdu = fits.BinTableHDU.from_columns(
        [fits.Column("EFF_WAVE", "1D", array=wl), fits.Column("EFF_BAND", "1D", array=np.full(wl.size, setup.dwave_nm))],
        name="AMBER_WAVEDATA")
    for k, v in {"ORIGIN": "ESO", "INSTRUME": "AMBER", "MJD-OBS": mjd, "DATE-OBS": date_obs, "DATE": date_obs[:10],
                 "HIERARCH ESO INS DID": "AMBER", "HIERARCH ESO INS ID": "AMBER", "NWAVE": wl.size,
                 "HIERARCH ESO DET1 P1 OFFSETY": 0.0, "HIERARCH ESO DET1 P2 OFFSETY": 0.0,
                 "HIERARCH ESO DET1 P3 OFFSETY": 0.0}.items():
        hdu.header[k] = v
    return hdu


def write_raw(path: str | os.PathLike, setup: AmberSetup, frames: list[list[np.ndarray]], *, dpr, mjd: float,
              extra: dict | None = None) -> Path:
    """One AMBER raw file from detector-count region images (``frames[f][region]``)."""
    ph = _primary(setup, dpr, mjd, extra or {})
    hdul = fits.HDUList([ph, _imaging_detector(setup), _imaging_data(setup, frames, mjd),
                         _wavedata(setup, mjd, ph.header["DATE-OBS"])])
    return write_hdulist_atomic(hdul, path, checksum=False)


def write_static_calibrations(directory: str | os.PathLike) -> tuple[Path, Path]:
    """A bad-pixel map (all good) and a flat field (all 1) for the 512×512 detector."""
    d = Path(directory)
    out = []
    for name, dpr_type, catg in (("amber_bpm.fits", "BADPIX", "AMBER_BADPIX"),
                                 ("amber_ffm.fits", "FLATFIELD", "AMBER_FLATFIELD")):
        ph = fits.PrimaryHDU(np.ones((DETECTOR, DETECTOR), np.float32))
        ph.header["INSTRUME"] = "AMBER"
        ph.header["HIERARCH ESO DPR CATG"] = "CALIB"
        ph.header["HIERARCH ESO DPR TYPE"] = dpr_type
        ph.header["HIERARCH ESO DPR TECH"] = "IMAGE"
        ph.header["HIERARCH ESO PRO CATG"] = catg
        out.append(write_hdulist_atomic(fits.HDUList([ph]), d / name, checksum=False))
    return out[0], out[1]


def lamp_spectrum(setup: AmberSetup, level: float = 2.0e4) -> np.ndarray:
    """Photo-electrons per beam and channel of the internal lamp (3, nwave), smooth in λ."""
    lam = setup.channel_wavelengths_nm()
    shape = 1.0 + 0.2 * np.cos((lam - lam.mean()) / np.ptp(lam) * np.pi)
    return level * np.vstack([shape * t for t in (1.0, 0.9, 1.1)])


def write_p2vm_set(directory: str | os.PathLike, setup: AmberSetup | None = None, *, nframes: int = 20,
                   mjd: float = 60310.0, seed: int = 0) -> list[Path]:
    """The 10 files of a 3-telescope P2VM calibration (dark, one beam at a time, each pair with
    and without the quadrature phase shift), on the internal lamp (instrumental visibilities
    and phases from ``setup``)."""
    setup = setup or AmberSetup()
    rng = np.random.default_rng(seed)
    d = Path(directory)
    lamp = lamp_spectrum(setup)
    paths = []
    for n, ftype in enumerate(P2VM_FRAME_TYPES):
        beams = [int(c) - 1 for c in ftype[3:].rstrip("Q")] if ftype != "DARK" else []
        flux = np.zeros_like(lamp)
        for b in beams:
            flux[b] = lamp[b]
        coh = {}
        if len(beams) == 2:
            pair = "".join(str(b + 1) for b in beams)
            shift = np.pi / 2 if ftype.endswith("Q") else 0.0
            coh[pair] = np.full(setup.nwave, setup.instrument_vis[pair]
                                * np.exp(1j * (setup.instrument_phase[pair] + shift)))
        frames = [_detector_counts(frame_images(setup, flux, coh), setup, rng) for _ in range(nframes)]
        t = mjd + n * 1e-3
        paths.append(write_raw(d / f"AMBER.P2VM.{n:02d}.fits", setup, frames, dpr=("CALIB", "3P2V", "INTERFEROMETRY"),
                               mjd=t, extra={"HIERARCH ESO OCS DET FRAM TYPE": ftype,
                                             "HIERARCH ESO TPL START": "p2vm-" + str(mjd)}))
    return paths
