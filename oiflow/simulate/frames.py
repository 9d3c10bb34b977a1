"""Raw-frame physics of a pairwise ABCD integrated-optics combiner (PIONIER/GRAVITY-like).

This module only makes arrays (frames + metadata); writing them in a raw file layout is the job
of :mod:`oiflow.simulate.raw_writer` (other layouts, e.g. AMBER, can be added beside it).

Forward model (P2VM.md §1), per spectral channel c and output p (N_p = 6 baselines × 4)::

    I_p = Σ_i T_{p,i} F_i + Σ_{i<j} c_{p,ij} [ Re(C_ij) cos ψ_{p,ij} − Im(C_ij) sin ψ_{p,ij} ]
        = V2PM · X,   X = [F_1..F_4, Re C_12..Re C_34, Im C_12..Im C_34]

with C_ij = √(F_i F_j) · V_ij · e^{i(φ_i − φ_j)} (V_ij = sky visibility × instrumental visibility,
φ_i atmospheric piston phase of telescope i). An ideal combiner has T_{p,i} = 1/12 on the
outputs fed by telescope i, c_{p,ij} = 2√(T_{p,i}T_{p,j}) and ψ = 0, π/2, π, 3π/2 for A, B, C, D;
:meth:`Combiner.perturbed` moves transmissions, coherences and phases off these values.

Detector: expected electrons = I + dark/background level; Poisson photon noise, Gaussian read
noise, plus a constant bias; frames are float32 ADU with gain 1 e-/ADU.

Calibration exposures (P2VM.md §7): DARK (all shutters closed), FLAT (one beam open: gives T),
P2VM (two beams open, internal OPD scanned: gives c and ψ; the commanded OPD of each frame is
recorded). Science frames are monochromatic per channel (no bandwidth smearing; the lamp scans
do include the channel's bandwidth envelope sinc(OPD·Δλ/λ²)).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..observables import baselines as _baselines

N_TEL = 4
ABCD = ("A", "B", "C", "D")


@dataclass
class Combiner:
    """The instrument: spectral channels, the true V2PM ingredients and the detector."""

    name: str
    mode: str  # spectral setup name, e.g. "H-6CH"
    wavelength: np.ndarray  # (C,) m
    bandwidth: np.ndarray  # (C,) m
    transmission: np.ndarray  # (P, 4, C)  T_{p,i}
    coherence: np.ndarray  # (P, 6, C)   c_{p,ij}
    phase: np.ndarray  # (P, 6, C)   ψ_{p,ij} (rad)
    read_noise: float = 5.0  # e- rms
    dark_level: np.ndarray | float = 20.0  # e- per frame and pixel (dark current + background)
    bias: float = 200.0  # ADU
    output_baseline: np.ndarray = field(default_factory=lambda: np.repeat(np.arange(6), 4))  # (P,)
    output_label: tuple[str, ...] = tuple(ABCD) * 6

    @property
    def n_outputs(self) -> int:
        return self.transmission.shape[0]

    @property
    def n_channels(self) -> int:
        return self.wavelength.size

    @classmethod
    def ideal(cls, wavelength, bandwidth=None, *, name="SIMABCD", mode=None, **detector) -> "Combiner":
        wave = np.asarray(wavelength, float)
        band = np.abs(np.gradient(wave)) if bandwidth is None else np.broadcast_to(np.asarray(bandwidth, float), wave.shape)
        if wave.size == 1 and bandwidth is None:
            band = wave * 0.05
        bl = _baselines(N_TEL)
        nout, nc = 4 * len(bl), wave.size
        trans = np.zeros((nout, N_TEL, nc))
        coh = np.zeros((nout, len(bl), nc))
        psi = np.zeros((nout, len(bl), nc))
        for b, (i, j) in enumerate(bl):
            for k in range(4):
                p = 4 * b + k
                trans[p, i] = trans[p, j] = 1.0 / 12.0
                coh[p, b] = 2.0 / 12.0
                psi[p, b] = k * np.pi / 2.0
        mode = mode or f"SIM-{wave.size}CH"
        return cls(name, mode, wave, np.array(band, float), trans, coh, psi, **detector)

    def perturbed(self, rng: np.random.Generator, *, transmission_rms=0.1, coherence_min=0.8, coherence_max=0.98,
                  phase_rms_deg=10.0, chromatic_rms=0.02) -> "Combiner":
        """A non-ideal copy: transmissions ×(1 ± rms), coherence factors κ in [min, max] and
        phase errors (smooth in wavelength), as measured on real integrated-optics chips."""
        nout, _, nc = self.transmission.shape
        x = (self.wavelength - self.wavelength.mean()) / max(np.ptp(self.wavelength), 1e-30)
        fed = self.transmission > 0
        t_gain = 1.0 + transmission_rms * rng.standard_normal((nout, N_TEL, 1))
        t_gain = t_gain * (1.0 + chromatic_rms * rng.standard_normal((nout, N_TEL, 1)) * x)
        trans = np.where(fed, self.transmission * np.clip(t_gain, 0.3, None), 0.0)
        used = self.coherence > 0
        kappa = rng.uniform(coherence_min, coherence_max, (nout, self.coherence.shape[1], 1))
        kappa = np.clip(kappa * (1.0 + chromatic_rms * rng.standard_normal(kappa.shape) * x), 0.05, 1.0)
        coh = np.zeros_like(self.coherence)
        for b, (i, j) in enumerate(_baselines(N_TEL)):
            coh[:, b, :] = 2.0 * np.sqrt(trans[:, i, :] * trans[:, j, :]) * kappa[:, b, :]
        coh = np.where(used, coh, 0.0)
        dpsi = np.deg2rad(phase_rms_deg) * (rng.standard_normal((nout, coh.shape[1], 1))
                                            + 0.3 * rng.standard_normal((nout, coh.shape[1], 1)) * x)
        psi = np.where(used, self.phase + dpsi, 0.0)
        return Combiner(self.name, self.mode, self.wavelength.copy(), self.bandwidth.copy(), trans, coh, psi,
                        self.read_noise, self.dark_level, self.bias, self.output_baseline.copy(), self.output_label)

    def v2pm(self) -> np.ndarray:
        """(C, P, 16): columns [T_{p,1..4}, c cos ψ (6), −c sin ψ (6)] for each channel."""
        t = np.transpose(self.transmission, (2, 0, 1))
        c = np.transpose(self.coherence, (2, 0, 1))
        s = np.transpose(self.phase, (2, 0, 1))
        return np.concatenate([t, c * np.cos(s), -c * np.sin(s)], axis=2)


@dataclass
class Exposure:
    """One simulated exposure: frames (ADU, float32, shape (frames, outputs, channels)) and metadata."""

    kind: str  # DARK | FLAT | P2VM | OBJECT
    frames: np.ndarray
    mjd: np.ndarray  # (frames,) start of each frame
    dit: float  # s
    meta: dict[str, Any] = field(default_factory=dict)  # target, coordinates, stations, beams, category…
    opd: np.ndarray | None = None  # (frames,) commanded internal OPD (m) for P2VM scans


def _pack_x(flux, coherent):
    """X = [F (4), Re C (6), Im C (6)] → (T, 16, C) from F (T, 4, C) and C (T, 6, C)."""
    return np.concatenate([flux, coherent.real, coherent.imag], axis=1)


def detect(combiner: Combiner, x: np.ndarray, rng: np.random.Generator, noise: bool = True) -> np.ndarray:
    """Detector frames (T, P, C) ADU for unknowns x (T, 16, C): float32 with noise; float64
    and exactly the expected signal with ``noise=False`` (for exact-recovery tests)."""
    v2pm = combiner.v2pm()  # (C, P, 16)
    signal = np.einsum("cpk,tkc->tpc", v2pm, x, optimize=True)
    expected = np.clip(signal, 0.0, None) + combiner.dark_level
    if not noise:
        return expected + combiner.bias
    electrons = rng.poisson(expected).astype(np.float64)
    frames = electrons + combiner.read_noise * rng.standard_normal(electrons.shape) + combiner.bias
    return frames.astype(np.float32)


def _frame_times(mjd0: float, n: int, dit: float) -> np.ndarray:
    return mjd0 + np.arange(n) * dit / 86400.0


def dark_exposure(combiner: Combiner, n_frames: int, dit: float, mjd0: float, rng, *, noise: bool = True) -> Exposure:
    x = np.zeros((n_frames, 16, combiner.n_channels))
    return Exposure("DARK", detect(combiner, x, rng, noise), _frame_times(mjd0, n_frames, dit), dit, {"beams": []})


def flat_exposure(combiner: Combiner, beam: int, n_frames: int, dit: float, mjd0: float, rng, *,
                  lamp_flux: float = 50000.0, flux_rms: float = 0.005, noise: bool = True) -> Exposure:
    """Only telescope ``beam`` (0-based) open on the internal lamp."""
    nc = combiner.n_channels
    x = np.zeros((n_frames, 16, nc))
    x[:, beam, :] = lamp_flux * (1.0 + flux_rms * rng.standard_normal((n_frames, 1)))
    return Exposure("FLAT", detect(combiner, x, rng, noise), _frame_times(mjd0, n_frames, dit), dit, {"beams": [beam]})


def p2vm_exposure(combiner: Combiner, pair: tuple[int, int], n_frames: int, dit: float, mjd0: float, rng, *,
                  lamp_flux: float = 50000.0, flux_rms: float = 0.005, scan_fringes: float = 3.0,
                  noise: bool = True) -> Exposure:
    """Beams ``pair`` open, internal OPD scanned linearly over ±scan_fringes/2 fringes."""
    i, j = pair
    b = _baselines(N_TEL).index((min(i, j), max(i, j)))
    lam0 = float(np.mean(combiner.wavelength))
    opd = np.linspace(-0.5, 0.5, n_frames) * scan_fringes * lam0
    nc = combiner.n_channels
    f = lamp_flux * (1.0 + flux_rms * rng.standard_normal((n_frames, 2, 1)))
    env = np.sinc(opd[:, None] * combiner.bandwidth[None, :] / combiner.wavelength[None, :] ** 2)
    phase = 2.0 * np.pi * opd[:, None] / combiner.wavelength[None, :]
    flux = np.zeros((n_frames, N_TEL, nc))
    flux[:, i, :] = f[:, 0]
    flux[:, j, :] = f[:, 1]
    coh = np.zeros((n_frames, 6, nc), complex)
    coh[:, b, :] = np.sqrt(f[:, 0] * f[:, 1]) * env * np.exp(1j * phase)
    return Exposure("P2VM", detect(combiner, _pack_x(flux, coh), rng, noise), _frame_times(mjd0, n_frames, dit), dit,
                    {"beams": [i, j]}, opd=opd)


def object_exposure(combiner: Combiner, visibility: np.ndarray, flux: np.ndarray, n_frames: int, dit: float,
                    mjd0: float, rng, *, injection_rms: float = 0.25, piston_rms_m: float = 5e-6,
                    noise: bool = True) -> Exposure:
    """Frames of a star: ``visibility`` (6, C) complex = sky × instrumental visibility for each
    baseline (i<j), ``flux`` (4, C) mean photo-electrons per frame and telescope over all outputs.

    Per frame and telescope: injection factor (lognormal, ``injection_rms``) and an atmospheric
    OPD (Gaussian, ``piston_rms_m``) giving the phase 2π·OPD/λ.
    """
    inj = np.exp(injection_rms * rng.standard_normal((n_frames, N_TEL, 1)) - 0.5 * injection_rms**2)
    f = inj * np.asarray(flux, float)[None, :, :]
    opd = piston_rms_m * rng.standard_normal((n_frames, N_TEL, 1))
    phi = 2.0 * np.pi * opd / combiner.wavelength[None, None, :]
    bl = _baselines(N_TEL)
    ii = np.array([i for i, _ in bl])
    jj = np.array([j for _, j in bl])
    coh = np.sqrt(f[:, ii, :] * f[:, jj, :]) * np.asarray(visibility)[None] * np.exp(1j * (phi[:, ii, :] - phi[:, jj, :]))
    return Exposure("OBJECT", detect(combiner, _pack_x(f, coh), rng, noise), _frame_times(mjd0, n_frames, dit), dit,
                    {"beams": list(range(N_TEL))})
