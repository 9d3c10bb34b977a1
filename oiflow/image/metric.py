"""Beam of a uv coverage and the Beauty-Contest quality metric.

Beam: the Gaussian with the same curvature at the origin as the dirty beam
B(x) = mean cos(2π u·x): B ≈ 1 − 2π² xᵀ C x with C = mean(u uᵀ) over the frequencies (both
signs), so σ² along an eigenvector e of C is 1/(4π² λ_e). It is what the interferometer
resolves (for a single baseline of length ρ, FWHM ≈ 0.37/ρ; the usual "λ/2B" is 0.5/ρ_max).

Metric (Lawson et al. 2004, 2008 and Sanchez-Bermudez et al. 2016 Beauty Contests): both
images, or only the truth (``blur="truth"``), are convolved with the beam, optionally raised
to a power γ, then the normalised cross-correlation ρ = Σ a b / √(Σa² Σb²) is maximised over
a sub-pixel shift of the reconstruction (ρ does not depend on a flux scale factor: the scale
is free). 1 = identical; it is invariant under translation only, so a 180°-rotated image or a
mirrored one scores lower.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclass
class Beam:
    """Elliptical Gaussian beam: FWHM major/minor axes (rad), position angle of the major
    axis (rad, North through East)."""

    major: float
    minor: float
    pa: float

    @property
    def mean_fwhm(self) -> float:
        return math.sqrt(self.major * self.minor)

    def image(self, n: int, pixel_size: float) -> np.ndarray:
        """The beam on an n×n grid (peak 1 at the reference pixel n//2)."""
        k = np.arange(n) - n // 2
        x = -k[None, :] * pixel_size  # East
        y = k[:, None] * pixel_size  # North
        s, c = math.sin(self.pa), math.cos(self.pa)
        along = x * s + y * c
        across = x * c - y * s
        sa = self.major / _FWHM_PER_SIGMA
        sb = self.minor / _FWHM_PER_SIGMA
        return np.exp(-0.5 * ((along / sa) ** 2 + (across / sb) ** 2))


def beam_from_uv(u, v) -> Beam:
    """Gaussian fit to the central lobe of the dirty beam of frequencies (u, v) (cycles/rad)."""
    u = np.asarray(u, float).ravel()
    v = np.asarray(v, float).ravel()
    if u.size == 0:
        raise ValueError("no frequencies")
    C = np.array([[np.mean(u * u), np.mean(u * v)], [np.mean(u * v), np.mean(v * v)]])
    evals, evecs = np.linalg.eigh(C)
    evals = np.maximum(evals, 1e-30)
    sig = 1.0 / (2.0 * math.pi * np.sqrt(evals))  # evals ascending → sig descending
    major_vec = evecs[:, 0]  # direction (u→East, v→North) of the smallest curvature
    pa = math.atan2(major_vec[0], major_vec[1]) % math.pi
    return Beam(major=float(sig[0] * _FWHM_PER_SIGMA), minor=float(sig[1] * _FWHM_PER_SIGMA), pa=pa)


def nominal_resolution(max_frequency: float) -> float:
    """λ/(2 B_max) in radians: the customary resolution of an interferometer."""
    return 0.5 / max_frequency


def _fft_convolve(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Linear convolution (zero padding) of img with a kernel centred at n//2."""
    ny, nx = img.shape
    py, px = 2 * ny, 2 * nx
    k = np.zeros((py, px))
    k[:ny, :nx] = kernel
    k = np.roll(k, (-(ny // 2), -(nx // 2)), axis=(0, 1))
    a = np.zeros((py, px))
    a[:ny, :nx] = img
    out = np.fft.irfft2(np.fft.rfft2(a) * np.fft.rfft2(k), s=(py, px))
    return out[:ny, :nx]


def convolve_beam(img: np.ndarray, pixel_size: float, beam: Beam | float) -> np.ndarray:
    """Convolve with a Gaussian beam (a :class:`Beam` or a circular FWHM in rad), flux kept."""
    if not isinstance(beam, Beam):
        beam = Beam(float(beam), float(beam), 0.0)
    n = max(img.shape)
    kern = beam.image(n, pixel_size)
    kern = kern[: img.shape[0], : img.shape[1]]
    kern /= kern.sum()
    return _fft_convolve(img, kern)


def fourier_shift(img: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Shift an image by (dy, dx) pixels (sub-pixel, periodic) through the Fourier transform."""
    ny, nx = img.shape
    fy = np.fft.fftfreq(ny)[:, None]
    fx = np.fft.rfftfreq(nx)[None, :]
    ph = np.exp(-2j * math.pi * (fy * dy + fx * dx))
    return np.fft.irfft2(np.fft.rfft2(img) * ph, s=(ny, nx))


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    den = math.sqrt(float(np.sum(a * a)) * float(np.sum(b * b)))
    return float(np.sum(a * b)) / den if den > 0 else 0.0


def _pad_to(img: np.ndarray, shape) -> np.ndarray:
    out = np.zeros(shape)
    ny, nx = img.shape
    oy = shape[0] // 2 - ny // 2
    ox = shape[1] // 2 - nx // 2
    out[oy:oy + ny, ox:ox + nx] = img
    return out


def quality(reconstruction: np.ndarray, truth: np.ndarray, pixel_size: float, beam: Beam | float | None,
            *, blur: str = "both", gamma: float = 1.0) -> float:
    """Beauty-Contest score of ``reconstruction`` against ``truth`` (same grid and pixel size).

    ``blur``: "both" (convolve both with the beam), "truth" (only the truth) or "none".
    ``gamma``: exponent applied to the (clipped positive) images before correlating.
    Maximised over a sub-pixel shift of the reconstruction; the flux scale is free.
    """
    rec = np.clip(np.asarray(reconstruction, float), 0, None)
    tru = np.clip(np.asarray(truth, float), 0, None)
    if rec.shape != tru.shape:
        shape = (max(rec.shape[0], tru.shape[0]), max(rec.shape[1], tru.shape[1]))
        rec, tru = _pad_to(rec, shape), _pad_to(tru, shape)
    if blur not in ("both", "truth", "none"):
        raise ValueError("blur must be 'both', 'truth' or 'none'")
    if beam is not None and blur != "none":
        tru = convolve_beam(tru, pixel_size, beam)
        if blur == "both":
            rec = convolve_beam(rec, pixel_size, beam)
    if gamma != 1.0:
        rec = np.clip(rec, 0, None) ** gamma
        tru = np.clip(tru, 0, None) ** gamma
    ny, nx = rec.shape
    # integer shift: peak of the cross-correlation (zero-padded)
    py, px = 2 * ny, 2 * nx
    fa = np.fft.rfft2(tru, s=(py, px))
    fb = np.fft.rfft2(rec, s=(py, px))
    cc = np.fft.irfft2(fa * np.conj(fb), s=(py, px))
    iy, ix = np.unravel_index(int(np.argmax(cc)), cc.shape)
    sy = iy if iy <= py // 2 else iy - py
    sx = ix if ix <= px // 2 else ix - px
    # sub-pixel refinement (on a padded copy so the shift does not wrap emission around)
    recp = _pad_to(rec, (py, px))
    trup = _pad_to(tru, (py, px))

    from scipy import optimize  # here: scipy.optimize costs ~0.3 s of start-up to every imaging command

    def neg(s):
        return -_ncc(trup, fourier_shift(recp, s[0], s[1]))

    best = optimize.minimize(neg, x0=[float(sy), float(sx)], method="Nelder-Mead",
                             options=dict(xatol=0.01, fatol=1e-7, initial_simplex=[[sy, sx], [sy + 0.5, sx], [sy, sx + 0.5]]))
    return float(max(-best.fun, -neg([float(sy), float(sx)])))
