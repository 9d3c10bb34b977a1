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
# detector regions, in the order of IMAGING_DETECTOR rows / DATA1..DATA5 columns: amdlib takes the
# 4th for the interferometric channel and the 2nd, 3rd and 5th for the photometric channels P1-P3
# (found with the real amber_p2vm: another order gives instrumental visibilities ≈ 0).
REGIONS = ("DARK", "P1", "P2", "IF", "P3")
IF_REGION = REGIONS.index("IF")
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
    # per beam: coherent fraction (wavefront/polarisation quality) and phase (optical path)
    beam_coherence: tuple[float, float, float] = (0.95, 0.85, 0.9)
    beam_phase: tuple[float, float, float] = (0.0, 0.7, -0.4)

    @property
    def instrument_vis(self) -> dict[str, float]:
        """Instrumental visibility of each pair, √(η_i η_j): a coherence matrix that stays positive."""
        return {p: float(np.sqrt(self.beam_coherence[i] * self.beam_coherence[j])) for p, (i, j) in _PAIRS.items()}

    @property
    def instrument_phase(self) -> dict[str, float]:
        """Instrumental phase of each pair, ψ_i − ψ_j (beam-based: its closure is zero)."""
        return {p: float(self.beam_phase[i] - self.beam_phase[j]) for p, (i, j) in _PAIRS.items()}

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
    """Noise-free region images of one frame in the order of :data:`REGIONS`, in photo-electrons.

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
    images = {"DARK": dark, "P1": photo[0], "P2": photo[1], "P3": photo[2], "IF": ifimg}
    return [images[r] for r in REGIONS]


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
    h["HIERARCH ESO DET NTEL"] = 3
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
                   mjd: float = 60310.0, seed: int = 0, noise: bool = True) -> list[Path]:
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
        frames = [_detector_counts(frame_images(setup, flux, coh), setup, rng if noise else None) for _ in range(nframes)]
        t = mjd + n * 1e-3
        paths.append(write_raw(d / f"AMBER.P2VM.{n:02d}.fits", setup, frames, dpr=("CALIB", "3P2V", "INTERFEROMETRY"),
                               mjd=t, extra={"HIERARCH ESO OCS DET FRAM TYPE": ftype,
                                             "HIERARCH ESO TPL START": "p2vm-" + str(mjd)}))
    return paths


# ---------------------------------------------------------------------------------------------
# object files (science targets and calibrators)
# ---------------------------------------------------------------------------------------------
PAIRS = ("12", "23", "13")


def pair_uv(stations_en: np.ndarray, wavelength_m: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(u, v) in cycles/rad of each pair (i, j) for each channel: (r_j − r_i)/λ (oiflow's convention)."""
    out = {}
    for pair in PAIRS:
        i, j = _PAIRS[pair]
        b = stations_en[j] - stations_en[i]
        out[pair] = (b[0] / wavelength_m, b[1] / wavelength_m)
    return out


def sky_visibilities(visfunc, stations_en, setup: AmberSetup) -> dict[str, np.ndarray]:
    """Complex sky visibility V_ij(λ) of each pair from ``visfunc(u, v, wavelength)``."""
    lam = setup.channel_wavelengths_nm() * 1e-9
    return {p: np.asarray(visfunc(u, v, lam), complex) for p, (u, v) in pair_uv(stations_en, lam).items()}


def object_frames(setup: AmberSetup, sky: dict[str, np.ndarray], flux: np.ndarray, nframes: int, rng, *,
                  piston_rms_m: float = 5e-6, injection: tuple[float, float] = (0.6, 1.0),
                  noise: bool = True) -> list[list[np.ndarray]]:
    """Detector counts of ``nframes`` frames of a source with sky visibilities ``sky`` (pair → (nwave,)).

    Per frame: a random atmospheric piston per telescope (OPD, Gaussian of ``piston_rms_m``), which
    multiplies V_ij by exp(2πi (p_i − p_j)/λ) and cancels in closure phases, and a random injection
    factor per telescope (uniform in ``injection``) seen by both the photometric and the
    interferometric channels. The instrument multiplies V_ij by its visibility and phase
    (``setup.instrument_vis/phase``), as for the lamp in the P2VM files."""
    lam = setup.channel_wavelengths_nm() * 1e-9
    frames = []
    for _ in range(nframes):
        piston = rng.normal(0.0, piston_rms_m, 3)
        inj = rng.uniform(*injection, 3)
        coh = {}
        for pair in PAIRS:
            i, j = _PAIRS[pair]
            atm = np.exp(2j * np.pi * (piston[i] - piston[j]) / lam)
            coh[pair] = setup.instrument_vis[pair] * np.exp(1j * setup.instrument_phase[pair]) * sky[pair] * atm
        frames.append(_detector_counts(frame_images(setup, flux * inj[:, None], coh), setup, rng if noise else None))
    return frames


def _baseline_cards(stations_en: np.ndarray) -> dict:
    """ISS projected baseline length and angle of each pair (constant over the exposure)."""
    cards = {}
    for pair in PAIRS:
        i, j = _PAIRS[pair]
        b = stations_en[j] - stations_en[i]
        length = float(np.hypot(b[0], b[1]))
        angle = float(np.degrees(np.arctan2(b[0], b[1])))  # from North through East
        for when in ("START", "END"):
            cards[f"HIERARCH ESO ISS PBL{pair} {when}"] = length
            cards[f"HIERARCH ESO ISS PBLA{pair} {when}"] = angle
    return cards


def write_object(path: str | os.PathLike, setup: AmberSetup, visfunc, stations_en, *, category: str = "SCIENCE",
                 target: str = "SIM", ra_deg: float = 0.0, dec_deg: float = 0.0, nframes: int = 100,
                 flux_level: float = 2.0e4, mjd: float = 60310.1, seed: int = 0, **frame_kw) -> Path:
    """One AMBER object file (``category`` SCIENCE or CALIB) of a source ``visfunc(u, v, λ)`` seen by
    three telescopes at ``stations_en`` (3 × 2 projected positions East, North in metres)."""
    rng = np.random.default_rng(seed)
    stations_en = np.asarray(stations_en, float)[:, :2]
    sky = sky_visibilities(visfunc, stations_en, setup)
    frames = object_frames(setup, sky, lamp_spectrum(setup, flux_level), nframes, rng, **frame_kw)
    extra = {"HIERARCH ESO OBS TARG NAME": target, "OBJECT": target, "RA": ra_deg, "DEC": dec_deg,
             "HIERARCH ESO ISS CONF NTEL": 3, **_baseline_cards(stations_en)}
    return write_raw(path, setup, frames, dpr=(category, "OBJECT", "INTERFEROMETRY"), mjd=mjd, extra=extra)
