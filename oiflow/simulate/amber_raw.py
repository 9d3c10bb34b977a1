"""AMBER-format raw files (the layout amdlib reads), with their own small fringe physics.

Physics (kept small on purpose). AMBER is a 3-telescope multi-axial combiner: the three beams
overlap on the detector with different separations, so each pair (i, j) makes spatially coded
fringes at its own frequency f_ij, dispersed along the other axis (one detector row = one
spectral channel); photometric channels P1-P3 see each beam alone. Per channel and pixel x::

    P_k(x)  = κ F_k g(x)                                         (photometric channel k)
    IF(x)   = Σ_k (1 − κ) F_k g(x)
              + Σ_(i<j) 2 (1 − κ) √(F_i F_j) |μ_ij| g(x) cos(2π f_ij x + arg μ_ij)

with g the beams' common overlap envelope (normalised), κ the photometric split and μ_ij the
coherence of the pair: μ_ij = √(η_i η_j) e^{i(ψ_i − ψ_j)} · V_ij(sky) · e^{2πi (p_i − p_j)/λ}.
η_i and ψ_i (``beam_coherence``, ``beam_phase``) are the instrument's per-beam coherent fraction
and phase, p_i the atmospheric piston (OPD) of telescope i: the coherence matrix stays positive
(a physical interferogram, never negative light). The internal lamp (P2VM files) has
V_ij = 1 and no piston; its "Q" files add a quarter-wave delay: μ_ij → μ_ij · e^{±iπ/2}. Frames
are monochromatic per channel (no bandwidth smearing within a 3 nm channel), the detector adds
Poisson photon noise, Gaussian read noise and a bias (gain 1 e-/ADU, 16-bit counts). Frequencies:
f_12 : f_23 : f_13 = 1 : 2 : 3 (non-redundant), scaling as 1/λ.

File layout (found by reading Debian's libamber.so, strings and disassembly, since the source
package was not reachable, and checked against the real recipes amber_p2vm and amber_SciCal):

* primary header: ``INSTRUME='AMBER'``, ``MJD-OBS``, ``DATE-OBS``, ``ESO DPR CATG/TYPE/TECH``
  (classification), ``ESO DET NTEL``, ``ESO INS …`` cards (amdlib treats a file *without* any
  ``ESO INS`` card as a P2VM product, not raw data); P2VM files carry ``ESO OCS DET FRAM TYPE`` ∈
  {DARK, TEL1, TEL2, TEL3, TEL12, TEL23, TEL13, TEL12Q, TEL23Q, TEL13Q}; object files carry the
  pointing and array geometry amdlib uses for (u, v): ``ESO ISS REF RA``/``DEC`` (packed
  sexagesimal HHMMSS.sss / DDMMSS.sss), ``ESO ISS GEOLAT`` (deg), ``LST`` (s),
  ``ESO ISS CONF STATIONn`` and ``ESO ISS CONF TnX/Y/Z`` (station East, North, Up in metres),
  ``ESO ISS PARANG START/END``, ``ESO ISS PBLij/PBLAij START/END``, ``RA``/``DEC`` (deg, used by
  amber_trf to find the calibrator in its database) and ``ESO OBS TARG NAME``;
* ``IMAGING_DETECTOR``: one row per detector region, in the order (dark, P1, P2, IF, P3) — amdlib
  takes the 4th region for the interferometric channel (:data:`REGIONS`); ``REGNAME`` must equal
  the name of the ``IMAGING_DATA`` column holding that region, ``CORNER`` is the region's
  lower-left detector pixel (1-based), ``NAXIS`` its size;
* ``IMAGING_DATA``: one row per frame, ``DATA1…DATA5`` images (16-bit counts);
* ``AMBER_WAVEDATA``: the wavelength (nm) and bandwidth of each of the 512 detector rows;
* ``ARRAY_GEOMETRY`` (object files): stations (``STA_NAME`` is what ``ISS CONF STATIONn`` names).

Static calibrations (``AMBER_BADPIX``, ``AMBER_FLATFIELD``) are 512×512 images identified by
``ESO DPR TYPE``; the calibrator database (``CALIB_DATABASE_J/H/K``) is a ``CALIBRATOR_DATA``
table (name, sexagesimal RA/Dec, J/H/K magnitudes, flag, UD diameter and error in mas).

Conventions (measured with the real recipes, see tests/containers/test_amber_end_to_end.py):
amdlib's (u, v) for stations (i, j), i < j, is the projection of r_i − r_j (from ISS CONF TnX/Y/Z;
the opposite of the OIFITS/oiflow orientation r_j − r_i), and its phases are those of the coherent
fluxes measured against the lamp's carrier waves, so their sign follows the sign of the lamp's
quarter-wave delay, which no source at hand states. The simulator's ``quadrature_sign = −1``
(Q files: μ → μ·e^{−iπ/2}) is the choice for which amdlib's products are self-consistent
OIFITS: its VISPHI/T3PHI equal the sky's at the products' own (u, v) (i.e. its T3PHI for
STA_INDEX (1, 2, 3) is minus oiflow's closure phase of the same stations). With +1, T3PHI equals
oiflow's closure phase while UCOORD/VCOORD stay reversed — a mirrored sky. This sign is thus a
convention of the simulator, not something the end-to-end test can check in amdlib.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
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
PAIRS = ("12", "23", "13")  # amdlib's baseline order (it labels the third one "31")
_PAIRS = {"12": (0, 1), "23": (1, 2), "13": (0, 2)}


@dataclass
class AmberSetup:
    """Detector layout, the instrument's fringe coding and response (detector pixels, nm, e-)."""

    nx: int = 32  # width of each region
    first_row: int = 100  # detector row (1-based) of the first spectral channel
    nwave: int = 64  # spectral channels (rows)
    wave0_nm: float = 1950.0  # wavelength of detector row 1
    dwave_nm: float = 3.0  # per row
    f0: float = 0.07  # fringe frequency of pair 12 at lambda_ref (cycles/pixel); 23: 2 f0; 13: 3 f0
    lambda_ref_nm: float = 2200.0
    envelope_fwhm: float = 14.0  # width of the beams' overlap in the interferometric channel
    kappa: float = 0.5  # flux fraction sent to the photometric channels
    bias: float = 1000.0  # detector counts
    read_noise: float = 5.0
    dit: float = 0.05
    lamp_level: float = 1.0e5  # e- per beam and channel of the internal lamp (before the split)
    star_level: float = 2.0e4  # e- per telescope and channel in a frame from a star of flux 1
    # per beam: coherent fraction (wavefront/polarisation quality) and phase (optical path)
    beam_coherence: tuple[float, float, float] = (0.95, 0.85, 0.9)
    beam_phase: tuple[float, float, float] = (0.0, 0.7, -0.4)
    # sign of the P2VM lamp's quarter-wave delay as seen in μ_ij ("Q" files: μ → μ·e^{±iπ/2}); see
    # the module docstring: −1 makes amdlib's products self-consistent OIFITS
    quadrature_sign: int = -1

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

    def wavelength(self) -> np.ndarray:
        """Wavelengths of the spectral channels, metres."""
        return self.channel_wavelengths_nm() * 1e-9

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
    (nwave,) coherence μ_ij of the open pairs (see the module docstring)."""
    env = _envelope(setup)
    x = _x(setup)
    photo = [np.outer(setup.kappa * flux[k], env) for k in range(3)]
    inter_flux = (1 - setup.kappa) * flux  # (3, nwave)
    ifimg = np.outer(inter_flux.sum(axis=0), env)
    for pair, mu in coherence.items():
        i, j = _PAIRS[pair]
        amp = 2 * np.sqrt(inter_flux[i] * inter_flux[j])  # (nwave,)
        phase = 2 * np.pi * np.outer(setup.frequency(pair), x)  # (nwave, nx)
        ifimg = ifimg + (amp * np.abs(mu))[:, None] * env[None, :] * np.cos(phase + np.angle(mu)[:, None])
    images = {"DARK": np.zeros((setup.nwave, setup.nx)), "P1": photo[0], "P2": photo[1], "P3": photo[2], "IF": ifimg}
    return [images[r] for r in REGIONS]


def _detector_counts(images: list[np.ndarray], setup: AmberSetup, rng) -> list[np.ndarray]:
    """16-bit counts: bias + Poisson(electrons) + read noise (no noise at all when ``rng`` is None)."""
    out = []
    for img in images:
        e = rng.poisson(np.clip(img, 0, None)) if rng is not None else img
        noise = rng.normal(0, setup.read_noise, img.shape) if rng is not None else 0.0
        out.append(np.clip(np.rint(setup.bias + e + noise), -32768, 32767).astype(np.int16))
    return out


# ---------------------------------------------------------------------------------------------
# FITS layout
# ---------------------------------------------------------------------------------------------
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
    n = len(REGIONS)
    corners = np.array([(1 + (setup.nx + 8) * i, setup.first_row) for i in range(n)])
    cols = [
        fits.Column("REGION", "1J", array=np.arange(1, n + 1)),
        fits.Column("DETECTOR", "1J", array=np.ones(n, int)),
        fits.Column("PORTS", "3J", array=np.tile([1, 2, 3], (n, 1))),
        fits.Column("CORRELATION", "1J", array=[3 if r == "IF" else 1 for r in REGIONS]),
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
    for r in range(len(REGIONS)):
        data = np.stack([f[r] for f in frames])
        cols.append(fits.Column(f"DATA{r + 1}", f"{setup.nx * setup.nwave}I", dim=f"({setup.nx},{setup.nwave})",
                                array=data))
    hdu = fits.BinTableHDU.from_columns(cols, name="IMAGING_DATA")
    for k, v in dict(NREGION=len(REGIONS), MAXTEL=3, MAXINS=3, MAXSTEP=1, ORIGIN="ESO", INSTRUME="AMBER").items():
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


def _array_geometry(site, stations: list[str]) -> fits.BinTableHDU:
    """ARRAY_GEOMETRY: the stations (amdlib matches ``ISS CONF STATIONn`` against STA_NAME)."""
    n = len(stations)
    hdu = fits.BinTableHDU.from_columns([
        fits.Column("TEL_NAME", "16A", array=[f"T{k + 1}" for k in range(n)]),
        fits.Column("STA_NAME", "16A", array=list(stations)),
        fits.Column("STA_INDEX", "1I", array=np.arange(1, n + 1)),
        fits.Column("DIAMETER", "1E", unit="m", array=[site.diameter(s) for s in stations]),
        fits.Column("STAXYZ", "3D", unit="m", array=site.geocentric_offsets(stations)),
    ], name="ARRAY_GEOMETRY")
    x, y, z = site.geocentric_position()
    for k, v in {"ARRNAME": site.name, "FRAME": "GEOCENTRIC", "ARRAYX": x, "ARRAYY": y, "ARRAYZ": z}.items():
        hdu.header[k] = v
    return hdu


def write_raw(path: str | os.PathLike, setup: AmberSetup, frames: list[list[np.ndarray]], *, dpr, mjd: float,
              extra: dict | None = None, extensions: list | None = None) -> Path:
    """One AMBER raw file from detector-count region images (``frames[f][region]``)."""
    ph = _primary(setup, dpr, mjd, extra or {})
    hdul = fits.HDUList([ph, _imaging_detector(setup), *(extensions or []), _imaging_data(setup, frames, mjd),
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


# ---------------------------------------------------------------------------------------------
# P2VM calibration set (internal lamp)
# ---------------------------------------------------------------------------------------------
def lamp_spectrum(setup: AmberSetup, level: float | None = None) -> np.ndarray:
    """Photo-electrons per beam and channel of the internal lamp (3, nwave), smooth in λ."""
    level = setup.lamp_level if level is None else level
    lam = setup.channel_wavelengths_nm()
    shape = 1.0 + 0.2 * np.cos((lam - lam.mean()) / np.ptp(lam) * np.pi)
    return level * np.vstack([shape * t for t in (1.0, 0.9, 1.1)])


def write_p2vm_set(directory: str | os.PathLike, setup: AmberSetup | None = None, *, nframes: int = 20,
                   mjd: float = 60310.0, seed: int = 0, noise: bool = True, prefix: str = "AMBER.P2VM") -> list[Path]:
    """The 10 files of a 3-telescope P2VM calibration (dark, one beam at a time, each pair with
    and without the quarter-wave delay), on the internal lamp."""
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
            shift = setup.quadrature_sign * np.pi / 2 if ftype.endswith("Q") else 0.0
            coh[pair] = np.full(setup.nwave, setup.instrument_vis[pair]
                                * np.exp(1j * (setup.instrument_phase[pair] + shift)))
        frames = [_detector_counts(frame_images(setup, flux, coh), setup, rng if noise else None) for _ in range(nframes)]
        t = mjd + n * 1e-3
        paths.append(write_raw(d / f"{prefix}.{n:02d}.fits", setup, frames, dpr=("CALIB", "3P2V", "INTERFEROMETRY"),
                               mjd=t, extra={"HIERARCH ESO OCS DET FRAM TYPE": ftype,
                                             "HIERARCH ESO TPL START": f"p2vm-{mjd:.5f}"}))
    return paths


# ---------------------------------------------------------------------------------------------
# object files (science targets and calibrators)
# ---------------------------------------------------------------------------------------------
def object_frames(setup: AmberSetup, sky: dict[str, np.ndarray], flux: np.ndarray, nframes: int, rng, *,
                  piston_rms_m: float = 5e-6, injection_rms: float = 0.25,
                  noise: bool = True) -> list[list[np.ndarray]]:
    """Detector counts of ``nframes`` frames of a source with sky visibilities ``sky`` (pair → (nwave,)).

    Per frame and telescope: an atmospheric piston (OPD, Gaussian of ``piston_rms_m``), which
    multiplies V_ij by exp(2πi (p_i − p_j)/λ) and cancels in closure phases, and an injection
    factor (lognormal of ``injection_rms``, mean 1) seen by both the photometric and the
    interferometric channels. The instrument multiplies V_ij by its coherence, as for the lamp."""
    lam = setup.wavelength()
    frames = []
    for _ in range(nframes):
        piston = rng.normal(0.0, piston_rms_m, 3)
        inj = np.exp(injection_rms * rng.standard_normal(3) - 0.5 * injection_rms**2)
        coh = {}
        for pair in PAIRS:
            i, j = _PAIRS[pair]
            atm = np.exp(2j * np.pi * (piston[i] - piston[j]) / lam)
            coh[pair] = setup.instrument_vis[pair] * np.exp(1j * setup.instrument_phase[pair]) * sky[pair] * atm
        frames.append(_detector_counts(frame_images(setup, flux * inj[:, None], coh), setup, rng if noise else None))
    return frames


def _sexagesimal(value_deg: float, hours: bool) -> float:
    """ESO's packed sexagesimal: HHMMSS.sss (``hours``) or ±DDMMSS.sss from degrees."""
    v = abs(value_deg) / (15.0 if hours else 1.0)
    d = int(v)
    m = int((v - d) * 60)
    s = (v - d - m / 60) * 3600
    return math.copysign(d * 10000 + m * 100 + s, value_deg)


@dataclass
class Pointing:
    """Where the array looks: station layout and target at a time (what amdlib needs for (u, v))."""

    site: object  # oiflow.site.Site
    stations: list[str]
    ra_deg: float
    dec_deg: float
    mjd: float

    def hour_angle(self) -> float:
        from .geometry import hour_angle

        return float(hour_angle(math.radians(self.ra_deg), self.mjd, self.site)[0])

    def uv(self) -> dict[str, tuple[float, float]]:
        """(u, v) in metres of each pair (i, j): projected r_j − r_i (oiflow's convention)."""
        from .geometry import project_baselines

        enu = self.site.enu(self.stations)
        out = {}
        for pair in PAIRS:
            i, j = _PAIRS[pair]
            u, v, _ = project_baselines((enu[j] - enu[i])[None, :], [self.hour_angle()], math.radians(self.dec_deg),
                                        math.radians(self.site.latitude_deg))
            out[pair] = (float(u[0, 0]), float(v[0, 0]))
        return out

    def parallactic_angle_deg(self) -> float:
        h, d, lat = self.hour_angle(), math.radians(self.dec_deg), math.radians(self.site.latitude_deg)
        return math.degrees(math.atan2(math.sin(h), math.tan(lat) * math.cos(d) - math.sin(d) * math.cos(h)))

    def header_cards(self) -> dict:
        """ISS / OBS cards of an object file: pointing, site, stations, projected baselines."""
        lst_s = ((self.hour_angle() + math.radians(self.ra_deg)) % (2 * math.pi)) / (2 * math.pi) * 86400.0
        enu = self.site.enu(self.stations)
        cards = {"RA": self.ra_deg, "DEC": self.dec_deg, "LST": lst_s,
                 "HIERARCH ESO ISS REF RA": _sexagesimal(self.ra_deg, hours=True),
                 "HIERARCH ESO ISS REF DEC": _sexagesimal(self.dec_deg, hours=False),
                 "HIERARCH ESO ISS GEOLAT": self.site.latitude_deg,
                 "HIERARCH ESO ISS GEOLON": self.site.longitude_deg,
                 "HIERARCH ESO ISS CONF NTEL": len(self.stations)}
        for k, name in enumerate(self.stations):
            cards[f"HIERARCH ESO ISS CONF STATION{k + 1}"] = name
            for axis, value in zip("XYZ", enu[k]):
                cards[f"HIERARCH ESO ISS CONF T{k + 1}{axis}"] = float(value)
        pa = self.parallactic_angle_deg()
        for when in ("START", "END"):
            cards[f"HIERARCH ESO ISS PARANG {when}"] = pa
        for pair, (u, v) in self.uv().items():
            for when in ("START", "END"):
                cards[f"HIERARCH ESO ISS PBL{pair} {when}"] = math.hypot(u, v)
                cards[f"HIERARCH ESO ISS PBLA{pair} {when}"] = math.degrees(math.atan2(u, v)) % 360.0
        return cards


def sky_visibilities(visfunc, uv_m: dict[str, tuple[float, float]], setup: AmberSetup) -> dict[str, np.ndarray]:
    """Complex sky visibility V_ij(λ) of each pair from ``visfunc(u, v, wavelength)`` (cycles/rad)."""
    lam = setup.wavelength()
    return {p: np.asarray(visfunc(np.full(lam.size, u) / lam, np.full(lam.size, v) / lam, lam), complex)
            for p, (u, v) in uv_m.items()}


def write_object(path: str | os.PathLike, setup: AmberSetup, visfunc, pointing: Pointing, *,
                 category: str = "SCIENCE", target: str = "SIM", nframes: int = 100, flux_level: float = 2.0e4,
                 seed: int = 0, **frame_kw) -> Path:
    """One AMBER object file (``category`` SCIENCE or CALIB) of a source ``visfunc(u, v, λ)``.

    ``flux_level``: photo-electrons per telescope and channel in a frame (before the split)."""
    rng = np.random.default_rng(seed)
    sky = sky_visibilities(visfunc, pointing.uv(), setup)
    frames = object_frames(setup, sky, lamp_spectrum(setup, flux_level), nframes, rng, **frame_kw)
    extra = {"HIERARCH ESO OBS TARG NAME": target, "OBJECT": target, **pointing.header_cards()}
    return write_raw(path, setup, frames, dpr=(category, "OBJECT", "INTERFEROMETRY"), mjd=pointing.mjd, extra=extra,
                     extensions=[_array_geometry(pointing.site, pointing.stations)])


# ---------------------------------------------------------------------------------------------
# calibrator database (what amber_trf reads)
# ---------------------------------------------------------------------------------------------
def write_calibrator_database(path: str | os.PathLike, calibrators: dict[str, tuple[float, float, float, float]],
                              band: str = "K") -> Path:
    """A ``CALIB_DATABASE_<band>`` file: name → (ra_deg, dec_deg, UD diameter mas, error mas).

    amber_trf takes the entry closest to the observed RA/DEC (within 60 arcsec)."""
    names = list(calibrators)
    ra = np.array([calibrators[n][0] for n in names], float) / 15.0
    dec = np.array([calibrators[n][1] for n in names], float)
    hh = np.floor(ra).astype(int)
    mm = np.floor((ra - hh) * 60).astype(int)
    ss = (ra - hh - mm / 60) * 3600
    sign = np.where(dec < 0, -1, 1)
    ad = np.abs(dec)
    dd = np.floor(ad).astype(int)
    dm = np.floor((ad - dd) * 60).astype(int)
    ds = (ad - dd - dm / 60) * 3600
    n = len(names)
    table = fits.BinTableHDU.from_columns([
        fits.Column("Name", "32A", array=names),
        fits.Column("hourRA", "1J", array=hh), fits.Column("minuteRA", "1J", array=mm), fits.Column("secondRA", "1D", array=ss),
        fits.Column("signDEC", "1J", array=sign), fits.Column("degreeDEC", "1J", array=dd),
        fits.Column("minuteDEC", "1J", array=dm), fits.Column("secondDEC", "1D", array=ds),
        fits.Column("J_band", "1D", array=np.full(n, 5.0)), fits.Column("H_band", "1D", array=np.full(n, 5.0)),
        fits.Column("K_band", "1D", array=np.full(n, 5.0)), fits.Column("flag", "1J", array=np.zeros(n, int)),
        fits.Column("diameter", "1D", unit="mas", array=[calibrators[k][2] for k in names]),
        fits.Column("diameterErr", "1D", unit="mas", array=[calibrators[k][3] for k in names]),
    ], name="CALIBRATOR_DATA")
    ph = fits.PrimaryHDU()
    ph.header["INSTRUME"] = "AMBER"
    ph.header["HIERARCH ESO PRO CATG"] = f"CALIB_DATABASE_{band}"
    ph.header["HIERARCH OIFLOW SIMULATED"] = (True, "written by oiflow.simulate.amber_raw")
    return write_hdulist_atomic(fits.HDUList([ph, table]), path, checksum=False)


# ---------------------------------------------------------------------------------------------
# a night
# ---------------------------------------------------------------------------------------------
def simulate_amber_night(cfg, out_dir: str | os.PathLike, setup: AmberSetup | None = None, *,
                         p2vm_frames: int = 50) -> dict:
    """Write an AMBER night (raw files amdlib reduces) and ``truth.json``; return the truth.

    ``cfg`` is the simulator's :class:`~oiflow.simulate.night.NightConfig`; what applies here:
    ``night``, ``seed``, ``facility``/``array`` (the first three stations), ``targets`` (sky models
    through :mod:`oiflow.simulate.sky`, fluxes, calibrator diameters and errors), ``sequence``,
    ``instrument.n_frames`` and ``instrument.dit_s``, ``conditions.piston_rms_um`` and
    ``conditions.injection_rms``. The instrument is ``setup`` (static: no drift between
    observations). Files: a P2VM set (``AMBER.P2VM.nn.fits``, taken before the first observation),
    the static calibrations, one object file per observation (``AMBER.OBSnnn_<target>.fits``,
    SCIENCE or CALIB) and a ``CALIB_DATABASE_K`` listing the calibrators' UD diameters.

    Truth per observation (same layout as :func:`oiflow.simulate.night.simulate_night`'s):
    (u, v) at mid-exposure for the baselines (1,2), (1,3), (2,3) in oiflow's orientation
    (r_j − r_i), the sky V² and closure phase of triangle (1,2,3) per channel, and the
    instrumental V² (``tf_vis2``)."""
    from ..observables import baselines, closure_phase
    from ..product_tree import safe_name
    from ..provenance import write_json_atomic
    from ..site import resolve_stations
    from .night import _mjd_of
    from .sky import sky_visfunc, uniform_disk_diameter_mas

    setup = setup or AmberSetup()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    site, stations = resolve_stations(cfg.array, cfg.facility)
    if len(stations) < 3:
        from ..errors import ConfigError

        raise ConfigError(f"AMBER combines 3 telescopes; got stations {stations}")
    stations = stations[:3]
    ins, cond = cfg.instrument, cfg.conditions
    setup.dit = ins.dit_s
    t_start = _mjd_of(cfg.night) + cfg.sequence.start_ut_h / 24.0
    slot = cfg.sequence.slot_min / 1440.0
    files = [p.name for p in write_p2vm_set(out, setup, nframes=p2vm_frames, mjd=t_start - 0.05, seed=cfg.seed)]
    files += [p.name for p in write_static_calibrations(out)]
    cals = {}
    for name, t in cfg.targets.items():
        d = uniform_disk_diameter_mas(t.model) if t.category == "CAL" else None
        if d is not None:
            cals[name] = (t.ra_deg, t.dec_deg, d, t.diameter_error_mas if t.diameter_error_mas is not None else 0.05 * d)
    if cals:
        files.append(write_calibrator_database(out / "AMBER.CALIB_DATABASE_K.fits", cals, band="K").name)
    lam = setup.wavelength()
    pair_of_baseline = {(0, 1): "12", (0, 2): "13", (1, 2): "23"}
    observations = []
    for k, name in enumerate(cfg.sequence.order):
        tgt = cfg.targets[name]
        mjd0 = t_start + k * slot
        mjd_mid = mjd0 + 0.5 * ins.n_frames * ins.dit_s / 86400.0
        pointing = Pointing(site, stations, tgt.ra_deg, tgt.dec_deg, mjd_mid)
        fname = f"AMBER.OBS{k + 1:03d}_{safe_name(name)}.fits"
        visfunc = sky_visfunc(tgt.model)
        write_object(out / fname, setup, visfunc, pointing, category="SCIENCE" if tgt.category == "SCI" else "CALIB",
                     target=name, nframes=ins.n_frames, flux_level=setup.star_level * tgt.flux,
                     seed=cfg.seed * 1000 + k + 1, piston_rms_m=cond.piston_rms_um * 1e-6,
                     injection_rms=cond.injection_rms)
        # the header says MJD-OBS = mjd_mid: the (u, v) amdlib computes is that of mid-exposure
        files.append(fname)
        uv = pointing.uv()
        sky = sky_visibilities(visfunc, uv, setup)
        bl = baselines(3)
        observations.append({
            "obs_id": Path(fname).stem, "file": fname, "target": name, "category": tgt.category, "mjd_mid": mjd_mid,
            "u": [uv[pair_of_baseline[b]][0] for b in bl], "v": [uv[pair_of_baseline[b]][1] for b in bl],
            "vis2_sky": [(np.abs(sky[pair_of_baseline[b]]) ** 2).tolist() for b in bl],
            "t3phi_sky_deg": [np.degrees(closure_phase(sky["12"], sky["23"], sky["13"], np)).tolist()],
            "tf_vis2": [[setup.instrument_vis[pair_of_baseline[b]] ** 2] * lam.size for b in bl],
        })
    truth = {
        "night": cfg.night.isoformat(), "seed": cfg.seed, "facility": site.name, "stations": stations,
        "instrument": "AMBER", "wavelength": lam.tolist(),
        "baselines": [[i + 1, j + 1] for i, j in baselines(3)], "triangles": [[1, 2, 3]],
        "targets": {n: {"category": t.category, "ra_deg": t.ra_deg, "dec_deg": t.dec_deg, "model": t.model,
                        "flux": t.flux, "diameter_error_mas": t.diameter_error_mas} for n, t in cfg.targets.items()},
        "calibrator_database": {n: list(v) for n, v in cals.items()},
        "observations": observations, "files": files, "config": cfg.model_dump(mode="json"),
        "conventions": {"uv": "baseline (i, j) = r_j - r_i (amdlib writes r_i - r_j)",
                        "quadrature_sign": setup.quadrature_sign},
    }
    write_json_atomic(truth, out / "truth.json")
    return truth
